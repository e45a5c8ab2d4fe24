"""What tokens (and the rate limiter) cost `/generate?count=1`, measured side by side in one run.

    .venv/bin/python bench/auth_cost.py [--registry models] [--seconds 3] [--rounds 12] [--no-doc]

Four servers of one worker each on core 0, the same model: no tokens, twice (the spread between
the two is the noise of the run); tokens (every request carries a valid one: hash, lookup, scope);
tokens and a rate per token high enough never to refuse (the shared table's lock and bucket on
every request). `wrk` on core 1 drives `/generate?count=1` with 16 connections, the configurations
taking turns (each first in turn) for --rounds rounds so that drift on a shared machine touches all
alike. Printed beside their ratios to no tokens: the median req/s of each, the median requests
served per CPU-second of the server (/proc: what a saturated core would serve, whatever else the
machine runs), and the middleware alone timed in process. The tables go to their own section of
docs/benchmarks.md (the file is made if missing). Target: tokens >= 0.95 of no tokens."""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import report  # noqa: E402
from service import tokens  # noqa: E402

PATH = "/generate?count=1"
TWIN = "no tokens, a second server (the noise between two equal ones)"


def start(registry: Path, log: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    full = {**os.environ, "NAMEGEN_HOST": "127.0.0.1", "NAMEGEN_PORT": "0", "NAMEGEN_WORKERS": "1",
            "NAMEGEN_MODEL_DIR": str(registry), "NAMEGEN_RELOAD_INTERVAL": "0",
            "PYTHONPATH": str(ROOT), **env}
    out = open(log, "w")
    proc = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-m", "service"], cwd=ROOT, env=full,
                            stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        m = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", log.read_text())
        if m:
            url = m.group(1)
            while httpx.get(url + "/readyz", timeout=5).status_code != 200:
                time.sleep(0.1)
            return proc, url
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.terminate()
    raise SystemExit(f"server did not start:\n{log.read_text()}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def measure(proc: subprocess.Popen, url: str, seconds: int, token: str | None) -> tuple[float, float]:
    """(req/s, served requests per CPU-second of the server)."""
    cpu = cpu_seconds(proc.pid)
    rate, requests = wrk(url, seconds, token)
    return rate, requests / (cpu_seconds(proc.pid) - cpu)


def wrk(url: str, seconds: int, token: str | None) -> tuple[float, int]:
    cmd = ["taskset", "-c", "1", "wrk", "-t1", "-c16", f"-d{seconds}s", url + PATH]
    if token:
        cmd[4:4] = ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"{non2xx.group(1)} refused requests: the measurement would not be of served ones\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return rate, int(re.search(r"(\d+) requests in", out).group(1))


def middleware_us(token: str, plain: Path, rated: Path) -> dict[str, float]:
    """CPU microseconds per request of the access middleware alone (in process, around an empty app):
    the steady figure beside the HTTP one, which a shared machine's noise can swamp."""
    import asyncio

    from service.api import auth, limits

    async def empty(scope, receive, send):
        pass

    headers = [(b"host", b"127.0.0.1"), (b"authorization", b"Bearer " + token.encode())]
    table = limits.create_table()
    try:
        layers = {"no tokens": empty,
                  "tokens": auth.AuthMiddleware(empty, auth.Access(auth.TokenStore(plain), None)),
                  "tokens + rate per token": auth.AuthMiddleware(empty, auth.Access(
                      auth.TokenStore(rated), limits.Limiter(1e9, 10**9, table)))}

        async def per_request(app, n: int = 50_000) -> float:
            cpu = time.process_time()
            for _ in range(n):
                scope = {"type": "http", "path": PATH.split("?")[0], "headers": headers, "client": ("127.0.0.1", 1)}
                await app(scope, None, None)
                limits.charge(scope, 1)  # what the gate does with the request's cost
            return (time.process_time() - cpu) / n * 1e6
        return {label: asyncio.run(per_request(app)) for label, app in layers.items()}
    finally:
        table.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", type=Path, default=ROOT / "models")
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=12)  # a median of more rounds moves less with the neighbours
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="auth-cost-"))
    token = tokens.new_token()
    plain, rated = tmp / "tokens.json", tmp / "rated.json"
    tokens.save(plain, [tokens.Token("bench", tokens.digest(token), frozenset({"generate"}))])
    tokens.save(rated, [tokens.Token("bench", tokens.digest(token), frozenset({"generate"}), rate=1e9, burst=10**9)])
    configs = [("no tokens", {}, None), (TWIN, {}, None),
               ("tokens", {"NAMEGEN_TOKENS_FILE": str(plain)}, token),
               ("tokens + rate per token", {"NAMEGEN_TOKENS_FILE": str(rated), "NAMEGEN_RATE": "1e9"}, token)]
    servers = []
    try:
        for i, (label, env, _) in enumerate(configs):
            servers.append(start(args.registry, tmp / f"server{i}.log", env))
        for (_, url), (_, _, tok) in zip(servers, configs):
            wrk(url, 1, tok)  # warm: caches, first connections
        rates: dict[str, list[float]] = {label: [] for label, _, _ in configs}
        per_cpu: dict[str, list[float]] = {label: [] for label, _, _ in configs}
        pairs = list(zip(servers, configs))
        for r in range(args.rounds):
            turn = pairs[r % len(pairs):] + pairs[:r % len(pairs)]  # each configuration goes first in turn
            for (proc, url), (label, _, tok) in turn:
                rate, served = measure(proc, url, args.seconds, tok)
                rates[label].append(rate)
                per_cpu[label].append(served)
                print(f"round {r + 1} {label}: {rate:.0f} req/s, {served:.0f} per CPU-second", flush=True)
    finally:
        for proc, _ in servers:
            proc.terminate()
            proc.wait(30)
    base, cpu_base = statistics.median(rates["no tokens"]), statistics.median(per_cpu["no tokens"])
    rows = ["| configuration | req/s per round | median | vs no tokens | requests per server CPU-second, median "
            "| vs no tokens |", "|---|---|---|---|---|---|"]
    for label, values in rates.items():
        med, cpu = statistics.median(values), statistics.median(per_cpu[label])
        rows.append(f"| {label} | {' / '.join(f'{v:.0f}' for v in values)} | {med:.0f} | {med / base:.3f} "
                    f"| {cpu:.0f} | {cpu / cpu_base:.3f} |")
    ratio = statistics.median(rates["tokens"]) / base
    cpu_ratio = statistics.median(per_cpu["tokens"]) / cpu_base
    alone = middleware_us(token, plain, rated)
    rows += ["", "| configuration | middleware alone, CPU us per request | share of a served request's CPU |",
             "|---|---|---|"]
    for label, us in alone.items():
        rows.append(f"| {label} | {us:.1f} | {100 * (us - alone['no tokens']) * cpu_base / 1e6:.2f}% |")
    table = (f"## Authentication's cost on `{PATH}`\n\n"
             f"One worker on core 0, `wrk -t1 -c16 -d{args.seconds}s` on core 1, {args.rounds} rounds taking turns. "
             f"{report.machine()}\n\n" + "\n".join(rows) + "\n\n"
             f"With tokens: {ratio:.3f} of the req/s and {cpu_ratio:.3f} of the requests served per CPU-second "
             f"of no tokens (target: >= 0.95; on a shared machine the second is the steadier: "
             f"it does not count the time the worker waited for a core). The second table times the middleware "
             f"alone in this process and sets it against a served request's CPU (1 / requests per CPU-second "
             f"with no tokens).\n")
    print("\n" + table)
    if not args.no_doc:
        report.write_section("auth_cost", table)


if __name__ == "__main__":
    main()

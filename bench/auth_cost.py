"""What tokens (and the rate limiter) cost `/generate?count=1`, measured side by side in one run.

    .venv/bin/python bench/auth_cost.py [--registry models] [--seconds 5] [--rounds 3]

Three servers of one worker each on core 0, the same model: no tokens; tokens (every request
carries a valid one: hash, lookup, scope); tokens and a rate per token high enough never to refuse
(the shared table's lock and bucket on every request). `wrk` on core 1 drives `/generate?count=1`
with 16 connections, the configurations taking turns for --rounds rounds so that drift on a shared
machine touches all alike; the median req/s of each is printed beside its ratio to no tokens, and
the table is written to its own section of docs/benchmarks.md (the file is made if missing).
Target: tokens >= 0.95 of no tokens."""
from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service import tokens  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench/auth_cost.py: begin -->", "<!-- bench/auth_cost.py: end -->"
PATH = "/generate?count=1"


def start(registry: Path, log: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    full = {**os.environ, "NAMEGEN_HOST": "127.0.0.1", "NAMEGEN_PORT": "0", "NAMEGEN_WORKERS": "1",
            "NAMEGEN_MODEL_DIR": str(registry), "NAMEGEN_RELOAD_INTERVAL": "0", "NAMEGEN_LOG_LEVEL": "warning",
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


def wrk(url: str, seconds: int, token: str | None) -> float:
    cmd = ["taskset", "-c", "1", "wrk", "-t1", "-c16", f"-d{seconds}s", url + PATH]
    if token:
        cmd[4:4] = ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"{non2xx.group(1)} refused requests: the measurement would not be of served ones\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def write_section(table: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\nEach section is written by the script it names.\n"
    section = f"{BEGIN}\n{table}{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOC.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", type=Path, default=ROOT / "models")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    command = "bench/auth_cost.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    tmp = Path(tempfile.mkdtemp(prefix="auth-cost-"))
    token = tokens.new_token()
    plain, rated = tmp / "tokens.json", tmp / "rated.json"
    tokens.save(plain, [tokens.Token("bench", tokens.digest(token), frozenset({"generate"}))])
    tokens.save(rated, [tokens.Token("bench", tokens.digest(token), frozenset({"generate"}), rate=1e9, burst=10**9)])
    configs = [("no tokens", {}, None),
               ("tokens", {"NAMEGEN_TOKENS_FILE": str(plain)}, token),
               ("tokens + rate per token", {"NAMEGEN_TOKENS_FILE": str(rated), "NAMEGEN_RATE": "1e9"}, token)]
    servers = []
    try:
        for i, (label, env, _) in enumerate(configs):
            servers.append(start(args.registry, tmp / f"server{i}.log", env))
        for (_, url), (_, _, tok) in zip(servers, configs):
            wrk(url, 1, tok)  # warm: caches, first connections
        rates: dict[str, list[float]] = {label: [] for label, _, _ in configs}
        for r in range(args.rounds):
            for (_, url), (label, _, tok) in zip(servers, configs):
                rates[label].append(wrk(url, args.seconds, tok))
                print(f"round {r + 1} {label}: {rates[label][-1]:.0f} req/s", flush=True)
    finally:
        for proc, _ in servers:
            proc.terminate()
            proc.wait(30)
    base = statistics.median(rates["no tokens"])
    rows = ["| configuration | req/s per round | median | vs no tokens |", "|---|---|---|---|"]
    for label, values in rates.items():
        med = statistics.median(values)
        rows.append(f"| {label} | {' / '.join(f'{v:.0f}' for v in values)} | {med:.0f} | {med / base:.3f} |")
    ratio = statistics.median(rates["tokens"]) / base
    table = (f"## Authentication's cost on `{PATH}`\n\n"
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu_model()}, {os.cpu_count()} cores; "
             f"one worker on core 0, `wrk -t1 -c16 -d{args.seconds}s` on core 1, {args.rounds} rounds taking turns; "
             f"`{command}`.\n\n" + "\n".join(rows) + "\n\n"
             f"Tokens cost {100 * (1 - ratio):.1f}% of the req/s (target: at most 5%).\n")
    print("\n" + table)
    if not args.no_doc:
        write_section(table)


if __name__ == "__main__":
    main()

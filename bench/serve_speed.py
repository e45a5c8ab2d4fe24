"""Serving speed, measured side by side in one run, printed as ratios.

    .venv/bin/python bench/serve_speed.py --run RUN_DIR --registry REGISTRY [--name names]
    .venv/bin/python bench/serve_speed.py --registry REGISTRY --no-lecture   # no torch run needed
    .venv/bin/python bench/serve_speed.py --registry REGISTRY --http-only    # /healthz vs count=1 only
    .venv/bin/python bench/serve_speed.py --registry models --edge-only --baseline ../main-0ccb42e

RUN_DIR is a training run (its model.pt gives the torch weights for the lecture's loop) and
REGISTRY holds the artifact published from that same run. Without either the script trains model B
through the real pipeline first (`--train-steps`, default 20000) into a temp dir.

Every serving figure is printed beside its compute bound: the model rows the engine actually
computed per name (cache misses) times the session's own cost per row at batch 256, i.e. what
the arithmetic alone would allow on this core.

1. The onnxruntime session's cost per row at batch 1, 16 and 256.
2. One name, batch 1, in process (core 0): the lecture's torch eager sampling loop; a plain
   onnxruntime loop (one run per character); the engine (count=1; cache off, and warm as served).
3. 1000 names in one call, core 0: the engine with no cache and as served.
4. HTTP on one worker pinned to core 0, load from `wrk` pinned to core 1: /healthz and
   /generate?count=1 at 16 and 64 connections, count=10 and count=100 at 16; then overload:
   count=1000 at 16 connections (the worker's whole work budget, 16 x 1000 names) against 64
   (4x); time to ready and the worker's RSS.
5. The edge against the framework's floor: a bare Starlette route, a FastAPI `async def` hello, our
   /healthz and /generate?count=1 (and --baseline's, another checkout run from this venv), each on
   one worker on core 0, req/s and the server's CPU per request; the ratios and the rates go into
   this script's section of docs/benchmarks.md, with the bound on count=1 / /healthz that the
   scheduler's own work per name (measured in process) sets.
This script may import torch (for the anchor); the service it measures does not.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import report  # noqa: E402


class Clock:
    """Wall and CPU time together: on a shared machine the CPU time is the fairer single-core figure."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def per(self, n: int, scale: float = 1e6) -> tuple[float, float]:
        return ((time.perf_counter() - self.wall) / n * scale, (time.process_time() - self.cpu) / n * scale)


def timed(fn, min_seconds: float) -> tuple[float, float]:
    """Run fn() repeatedly for at least min_seconds: (wall, cpu) seconds per call."""
    fn()
    calls, clock = 0, Clock()
    while True:
        fn()
        calls += 1
        if time.perf_counter() - clock.wall >= min_seconds:
            return clock.per(calls, scale=1.0)


# ---- 1. one name ---------------------------------------------------------------------------------

def lecture_loop(run_dir: Path, n_names: int, no_grad: bool = False) -> tuple[float, float, float]:
    """makemore part 3's sampling cell on the run's eval-mode torch model: (wall us, cpu us) per name,
    characters per name.
    As in the lecture, it runs with autograd on unless no_grad."""
    import torch
    if no_grad:
        with torch.no_grad():
            return lecture_loop(run_dir, n_names)
    import torch.nn.functional as F

    from training.publish import load_model

    torch.set_num_threads(1)
    model = load_model(run_dir / "model.pt")
    model.eval()
    members = [list(m.layers) for m in getattr(model, "members", [model])]  # an ensemble: mean logits
    block_size = model.config.block_size
    g = torch.Generator().manual_seed(2147483647 + 10)
    chars = 0
    for warmup in (True, False):  # the first pass warms torch up; the second is timed
        chars, clock = 0, Clock()
        for _ in range(20 if warmup else n_names):
            out = []
            context = [0] * block_size
            while True:
                x0, logits = torch.tensor([context]), 0
                for layers in members:
                    x = x0
                    for layer in layers:
                        x = layer(x)
                    logits = logits + x / len(members)
                probs = F.softmax(logits, dim=1)
                ix = torch.multinomial(probs, num_samples=1, generator=g).item()
                context = context[1:] + [ix]
                out.append(ix)
                if ix == 0:
                    break
            chars += len(out)
    return (*clock.per(n_names), chars / n_names)


def ort_loop(model, n_names: int) -> tuple[float, float, float]:
    """A plain onnxruntime loop: one session run per character, numpy softmax and draw."""
    session, inp = model.session, model.session.get_inputs()[0].name
    rng = np.random.default_rng(0)
    chars = 0
    clock = Clock()
    for _ in range(n_names):
        context = [0] * model.block_size
        while True:
            logits = session.run(None, {inp: np.array([context], dtype=np.int64)})[0][0].astype(np.float64)
            p = np.exp(logits - logits.max())
            ix = int(np.searchsorted(np.cumsum(p), rng.random() * p.sum(), side="right"))
            ix = min(ix, len(p) - 1)
            context = context[1:] + [ix]
            chars += 1
            if ix == 0:
                break
    return (*clock.per(n_names), chars / n_names)


def engine_single(engine, n_names: int) -> tuple[float, float, float]:
    from service.core import offline
    seeds = range(10_000, 10_000 + n_names)
    chars = 0
    clock = Clock()
    for seed in seeds:
        chars += len(offline.generate(engine, 1, seed).names[0]) + 1
    return (*clock.per(n_names), chars / n_names)


# ---- 2. cost per row and 1000 names ------------------------------------------------------------

def row_cost(runtime, batch: int, seconds: float = 1.0) -> float:
    """us of the session per row at this batch size (random contexts)."""
    rng = np.random.default_rng(0)
    contexts = rng.integers(0, len(runtime.vocab), (batch, runtime.block_size), dtype=np.int64)
    wall, cpu = timed(lambda: runtime.run(contexts), seconds)
    return cpu / batch * 1e6


def engine_batch(engine, count: int, seconds: float) -> tuple[float, float, float]:
    """(wall, cpu) names per second, model rows computed per name."""
    from service.core import offline
    seed = iter(range(1, 10 ** 9))
    before, names = engine.rows.computed, [0]

    def call():
        names[0] += len(offline.generate(engine, count, next(seed)).names)
    wall, cpu = timed(call, seconds)
    return count / wall, count / cpu, (engine.rows.computed - before) / names[0]


# ---- 3. HTTP -------------------------------------------------------------------------------------

def pin(cpu: int):
    return lambda: os.sched_setaffinity(0, {cpu})


def start_server(registry: Path, name: str, log_path: Path, cpu: int, source: Path = ROOT):
    """`python -m service` from `source` (this checkout, or another commit's for a side-by-side run)."""
    env = {**os.environ, "NAMEGEN_MODEL_DIR": str(registry), "NAMEGEN_MODEL_NAME": name, "NAMEGEN_PORT": "0",
           "NAMEGEN_HOST": "127.0.0.1", "NAMEGEN_WORKERS": "1", "NAMEGEN_RELOAD_INTERVAL": "0",
           "NAMEGEN_LOG_FORMAT": "json", "PYTHONPATH": str(source)}  # access log on, as served
    return start_process([sys.executable, "-m", "service"], env, log_path, cpu, source, "/readyz")


def start_process(cmd: list[str], env: dict, log_path: Path, cpu: int, cwd: Path, ready_path: str):
    log = open(log_path, "w")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=pin(cpu))
    import httpx
    url = None
    while url is None:
        m = re.search(r"running on (http://127\.0\.0\.1:\d+)", log_path.read_text())
        if m:
            url = m.group(1)
        elif proc.poll() is not None or time.perf_counter() - t0 > 60:
            raise RuntimeError(log_path.read_text())
        time.sleep(0.01)
    while True:
        try:
            if httpx.get(f"{url}{ready_path}").status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.01)
    return proc, url, time.perf_counter() - t0


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def wrk(url: str, seconds: int, connections: int, cpu: int, server_pid: int, script: Path | None = None) -> dict:
    """script: a Lua file for wrk -s (e.g. a POST with its body)."""
    before = cpu_seconds(server_pid)
    scripted = ["-s", str(script)] if script is not None else []
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", *scripted, url],
                         capture_output=True, text=True, preexec_fn=pin(cpu)).stdout
    server_cpu = cpu_seconds(server_pid) - before

    def latency(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50_ms": latency("50"),
            "cpu_us": server_cpu / max(requests, 1) * 1e6,
            "p99_ms": latency("99"), "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1) if errors else ""}


class Probe:
    """/healthz every 20 ms from a thread (on core 1, beside wrk) while a load runs: its latencies."""

    def __init__(self, url: str):
        import threading
        self.url, self.ms, self.stop = url, [], threading.Event()
        self.thread = threading.Thread(target=self.loop)
        self.thread.start()

    def loop(self):
        import httpx
        os.sched_setaffinity(0, {1})
        with httpx.Client() as c:
            while not self.stop.wait(0.02):
                t = time.perf_counter()
                c.get(f"{self.url}/healthz")
                self.ms.append((time.perf_counter() - t) * 1e3)

    def finish(self) -> tuple[float, float]:
        self.stop.set()
        self.thread.join()
        return float(np.percentile(self.ms, 50)), float(np.percentile(self.ms, 99))


def model_rows(url: str) -> float:
    import httpx
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("namegen_model_rows "):
            return float(line.split()[1])
    return float("nan")


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def http(args, registry: Path, unit: float, runs: list[tuple[str, int, int]]) -> None:
    """Part 4: a server on core 0, `wrk` on core 1, each of `runs` (path, connections, count)."""
    print("\n4. HTTP, one worker on core 0, wrk -t1 on core 1")
    if not shutil.which("wrk"):
        print("  wrk not found (apt-get install wrk): skipped")
        return
    tmp = Path(tempfile.mkdtemp(prefix="serve-speed-http-"))
    proc, url, ready = start_server(registry, args.name, tmp / "server.log", cpu=0)
    try:
        results: dict = {}
        print(f"  {'request':24s} {'conns':>5s} {'req/s':>8s} {'names/s':>9s} {'p50 ms':>7s} {'p99 ms':>7s}"
              f" {'non-2xx':>7s}  {'rows/name':>9s} {'bound names/s':>13s} {'of bound':>8s}  load")
        for round_, (path, conns, count) in [(k, run) for k in range(args.rounds) for run in runs]:
            # Rounds interleave the configurations (the machine is shared); each keeps its best round.
            rows_before = model_rows(url)
            probe = Probe(url) if count == 1000 else None
            r = wrk(url + path, args.http_seconds, conns, cpu=1, server_pid=proc.pid)
            if probe is not None:
                r["healthz_ms"] = probe.finish()
            names_ok = (r["rps"] - r["non2xx"] / args.http_seconds) * count
            per = (model_rows(url) - rows_before) / max(names_ok * args.http_seconds, 1) if count else 0
            cap = 1e6 / (per * unit) if per else float("inf")
            best = results.get((path, conns))
            if best is None or (names_ok > best["names"] if count else r["rps"] > best["rps"]):
                results[(path, conns)] = dict(r, names=names_ok)
            if (path, conns) == runs[0][:2]:
                print(f"  round {round_ + 1}")
            print(f"  {path:24s} {conns:5d} {r['rps']:8,.0f} {names_ok:9,.0f} {r['p50_ms']:7.2f} {r['p99_ms']:7.2f}"
                  f" {r['non2xx']:7d}  {per:9.2f} {cap:13,.0f} {names_ok / cap if count else 0:8.0%}"
                  f"  {os.getloadavg()[0]:.1f}")
        h, g = results[("/healthz", 16)], results[("/generate?count=1", 16)]
        print(f"  count=1 / healthz at 16 connections: {g['rps'] / h['rps']:.0%} (target >= 50%), "
              f"p99 {g['p99_ms']:.1f} ms (target <= 8); server cpu per request: /healthz {h['cpu_us']:.0f} us, "
              f"count=1 {g['cpu_us']:.0f} us")
        if len(runs) == 2:  # --http-only
            return
        g64 = results[("/generate?count=1", 64)]
        print(f"  count=1 at 64 vs 16 connections:     {g64['rps'] / g['rps']:.0%} (target >= 100%)")
        print(f"  count=10: {results[('/generate?count=10', 16)]['names']:,.0f} names/s (target >= 12,000); "
              f"count=100: {results[('/generate?count=100', 16)]['names']:,.0f} names/s (target >= 25,000), "
              f"non-2xx {results[('/generate?count=100', 16)]['non2xx']} (target 0)")
        limit, over = results[("/generate?count=1000", 16)], results[("/generate?count=1000", 64)]
        print(f"  served names/s at 4x overload vs at the limit: {over['names'] / limit['names']:.0%} "
              f"(target >= 80%); meanwhile a /healthz probe: p50 {over['healthz_ms'][0]:.1f} ms, "
              f"p99 {over['healthz_ms'][1]:.1f} ms")
        print(f"  ready after start        {ready:9.2f} s  (target <= 1.5 s)")
        print(f"  worker RSS               {rss_mb(proc.pid):9.0f} MB  (target <= 150 MB)")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)


# ---- 5. the edge against the framework's floor ----------------------------------------------------



def stepped_per_name(registry: Path, name: str, cache_rows: int, seconds: float = 2.0) -> float:
    """CPU us per name of 16 count=1 jobs at a time stepped together by the scheduler's Batch in this
    process (as the served worker steps 16 connections' requests, warm cache): the work of a count=1
    request that no HTTP edge, parsing or answer writing can remove."""
    from artifact.loader import load_current
    from service.core.engine import Engine
    from service.core.jobs import GenerateJob
    from service.core.scheduler import Batch
    engine = Engine(load_current(registry, name), cache_rows=cache_rows)
    engine.warm()
    seeds = iter(range(10 ** 9))

    def sixteen():
        batch = Batch()
        for _ in range(16):
            batch.submit(GenerateJob(engine, count=1, seed=next(seeds)))
        while not batch.idle:
            batch.step()

    for _ in range(500):  # the cache as a served worker's after its first requests
        sixteen()
    return timed(sixteen, seconds)[1] / 16 * 1e6


def edge(args, registry: Path) -> tuple[list, list, str] | list:
    """One worker each on core 0, wrk on core 1, 16 connections, rounds interleaved (best kept): a bare
    Starlette route, a FastAPI `async def` hello, our /healthz and /generate?count=1, and (--baseline)
    the same two of another checkout run from this venv."""
    print("\n5. the HTTP edge vs the framework's floor (req/s, one worker on core 0, wrk on core 1, 16 connections)")
    if not shutil.which("wrk"):
        print("  wrk not found (apt-get install wrk): skipped")
        return []
    stepped = stepped_per_name(registry, args.name, args.cache_rows)
    tmp = Path(tempfile.mkdtemp(prefix="serve-speed-edge-"))
    floor_env = {**os.environ, "PYTHONPATH": str(ROOT / "bench")}
    servers = {}
    try:
        for label, app in (("bare Starlette route", "starlette_app"), ("FastAPI async def hello", "fastapi_app")):
            cmd = [sys.executable, "-m", "uvicorn", f"floor_apps:{app}", "--port", "0", "--http", "httptools",
                   "--no-access-log", "--log-level", "info"]
            servers[label] = start_process(cmd, floor_env, tmp / f"{app}.log", 0, ROOT / "bench", "/healthz")[:2]
        servers["ours"] = start_server(registry, args.name, tmp / "ours.log", cpu=0)[:2]
        if args.baseline:
            servers["baseline"] = start_server(registry, args.name, tmp / "baseline.log", cpu=0,
                                               source=args.baseline.resolve())[:2]
        targets = [("bare Starlette route", "bare Starlette route", "/healthz"),
                   ("FastAPI async def hello", "FastAPI async def hello", "/healthz"),
                   ("our /healthz", "ours", "/healthz"), ("our /generate?count=1", "ours", "/generate?count=1")]
        if args.baseline:
            targets += [(f"baseline /healthz", "baseline", "/healthz"),
                        (f"baseline /generate?count=1", "baseline", "/generate?count=1")]
        # The server's CPU per request is kept beside req/s (the least of the rounds): on a shared core
        # a neighbour's time lowers req/s, not the work a request costs; its ratios are rates too
        # (requests per CPU second).
        best: dict[str, float] = {}
        cpu: dict[str, float] = {}
        for _ in range(args.rounds):
            for label, server, path in targets:
                proc, url = servers[server]
                r = wrk(url + path, args.http_seconds, 16, cpu=1, server_pid=proc.pid)
                assert r["non2xx"] == 0, (label, r)
                best[label] = max(best.get(label, 0.0), r["rps"])
                cpu[label] = min(cpu.get(label, float("inf")), r["cpu_us"])
        for label, _, _ in targets:
            print(f"  {label:32s} {best[label]:9,.0f}  {cpu[label]:7.1f} us CPU per request")
        pairs = [("our /healthz / bare Starlette route (target >= 90%)", "our /healthz", "bare Starlette route"),
                 ("our count=1 / our /healthz (target >= 50%)", "our /generate?count=1", "our /healthz")]
        if args.baseline:
            pairs.append(("our count=1 / baseline count=1 (target >= 1.5x)", "our /generate?count=1",
                          "baseline /generate?count=1"))
        ratios = [(label, best[a] / best[b], cpu[b] / cpu[a]) for label, a, b in pairs]
        for label, value, by_cpu in ratios:
            print(f"  {label:52s} {value:6.0%}  (by CPU per request {by_cpu:.0%})")
        floor = cpu["our /healthz"]
        bound = (f"A count=1 request's work that no edge can remove, measured in this run: 16 count=1 jobs "
                 f"at a time stepped by the scheduler in process (warm cache), {stepped:.1f} us of CPU per name. "
                 f"With our /healthz's {floor:.1f} us for the HTTP round trip and nothing else added (no "
                 f"routing, parsing or answer writing), count=1 would cost {floor + stepped:.1f} us: at most "
                 f"{floor / (floor + stepped):.0%} of /healthz by CPU per request.")
        print("  " + bound)
        return [(label, best[label], cpu[label]) for label, _, _ in targets], ratios, bound
    finally:
        for proc, _ in servers.values():
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)


def write_section(rates: list[tuple[str, float, float]], ratios: list[tuple[str, float, float]], bound: str,
                  baseline) -> None:
    """This script's section of docs/benchmarks.md (other scripts keep theirs)."""
    lines = ["## The HTTP edge against the framework's floor (bench/serve_speed.py)", "",
             "One worker on core 0, `wrk -t1 -c16` on core 1, best of the interleaved rounds (req/s the most, the "
             "server's CPU per request the least of them)"
             + (f" (baseline: the checkout at `{baseline}`, run from the same venv)" if baseline else "")
             + f". {report.machine()}", "",
             "| what | req/s | server CPU per request |", "|---|---|---|",
             *[f"| {label} | {rate:,.0f} | {cpu_us:,.1f} us |" for label, rate, cpu_us in rates], "",
             "| ratio | by req/s | by CPU per request |", "|---|---|---|",
             *[f"| {label} | {value:.0%} | {by_cpu:.0%} |" for label, value, by_cpu in ratios], "", bound]
    report.write_section("serve_speed", "\n".join(lines))


def edge_and_docs(args, registry: Path) -> None:
    measured = edge(args, registry)
    if measured:
        write_section(*measured, args.baseline)


# ---- main ----------------------------------------------------------------------------------------

def train(steps: int, tmp: Path, name: str) -> tuple[Path, Path]:
    from training.data import load_corpus
    corpus = tmp / "corpus.txt"
    corpus.write_text("\n".join(load_corpus(None).names) + "\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "training", "train", "--preset", "lecture-b", "--steps", str(steps),
           "--lr-decay-step", str(steps * 3 // 4), "--data", str(corpus), "--out", str(tmp / "run"),
           "--publish", str(tmp / "models"), "--name", name, "--no-progress"]
    print("training model B:", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return tmp / "run", tmp / "models"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="training run dir (model.pt) of the published model")
    ap.add_argument("--registry", type=Path, help="registry holding the artifact published from --run")
    ap.add_argument("--name", default="names")
    ap.add_argument("--train-steps", type=int, default=20000)
    ap.add_argument("--names", type=int, default=300, help="names for the one-name loops")
    ap.add_argument("--seconds", type=float, default=3.0, help="per in-process batch measurement")
    ap.add_argument("--http-seconds", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2, help="HTTP rounds; each figure keeps its best")
    ap.add_argument("--cache-rows", type=int, default=None, help="the engine's cache (default: the service's)")
    ap.add_argument("--no-lecture", action="store_true", help="skip the torch loops (no --run needed)")
    ap.add_argument("--baseline", type=Path, help="a checkout of another commit (e.g. a git worktree of main) "
                    "whose /healthz and count=1 are measured beside ours, from this venv")
    ap.add_argument("--edge-only", action="store_true", help="only part 5 (the edge against the framework's floor)")
    ap.add_argument("--http-only", action="store_true",
                    help="only part 4's /healthz and /generate?count=1 at 16 connections (the ratio's pair)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="serve-speed-"))
    try:
        run_dir, registry = args.run, args.registry
        if registry is None:
            run_dir, registry = train(args.train_steps, tmp, args.name)
        if args.cache_rows is None:
            from service.settings import Settings
            args.cache_rows = Settings().cache_rows
        os.sched_setaffinity(0, {0})  # in-process figures: one core
        if args.edge_only:
            return edge_and_docs(args, registry)
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores at the start")

        from artifact.loader import load_current
        from service.core.engine import Engine
        model = load_current(registry, args.name)
        print(f"model {model.name}/{model.version}: vocab {len(model.vocab)}, block_size {model.block_size}, "
              f"{model.manifest.architecture.get('parameters')} parameters, val {model.manifest.metrics['val']:.4f}")

        from service.core.runtime import OnnxRuntime
        runtime = OnnxRuntime(model)
        costs = {b: row_cost(runtime, b) for b in (1, 16, 256)}
        unit = costs[256]  # us per row: the compute bound's unit
        print("\n1. the session's cost per row (cpu us): " +
              ", ".join(f"batch {b}: {c:.2f}" for b, c in costs.items()))

        def bound(rows_per_name: float) -> str:
            return f"{rows_per_name:5.2f} rows/name, bound {rows_per_name * unit:7.1f} us/name"

        if args.http_only:
            http(args, registry, unit, [("/healthz", 16, 0), ("/generate?count=1", 16, 1)])
            return edge_and_docs(args, registry)
        print("\n2. one name, batch 1, in process (core 0)")
        cold = Engine(model, cache_rows=0)
        warm = Engine(model, cache_rows=args.cache_rows)
        warm.warm()
        rows = []
        if run_dir is not None and not args.no_lecture:
            rows += [("lecture torch eager loop", lecture_loop(run_dir, args.names), None),
                     ("  the same under torch.no_grad()", lecture_loop(run_dir, args.names, no_grad=True), None)]
        rows.append(("onnxruntime, one run per char", ort_loop(model, args.names), None))
        for label, engine, n in (("engine count=1, cache off", cold, args.names),
                                 ("engine count=1 (as served)", warm, max(args.names, 3000))):
            before = engine.rows.computed
            result = engine_single(engine, n)
            rows.append((label, result, (engine.rows.computed - before) / n))
        anchor = rows[0][1][1]
        print(f"  {'':32s} {'wall us/name':>12s} {'cpu us/name':>12s} {'chars':>6s} {'x first (cpu)':>14s}")
        for label, (wall, cpu, length), per in rows:
            extra = f"  {bound(per)}" if per is not None else ""
            print(f"  {label:32s} {wall:12.1f} {cpu:12.1f} {length:6.2f} {anchor / cpu:13.1f}x{extra}")
        print(f"  one name as served: {rows[-1][1][1]:.0f} us cpu (target <= 200)")

        print("\n3. 1000 names in one call, core 0 (names/s)")
        print(f"  {'':32s} {'wall':>12s} {'cpu':>12s}")
        for label, engine in (("engine, no cache", cold), ("engine (as served)", warm)):
            wall, cpu, per = engine_batch(engine, 1000, args.seconds)
            print(f"  {label:32s} {wall:12,.0f} {cpu:12,.0f}  {bound(per)}")
        print("  target: as served >= 40,000 names/s")

        http(args, registry, unit, [("/healthz", 16, 0), ("/generate?count=1", 16, 1), ("/generate?count=1", 64, 1),
                                    ("/healthz", 64, 0), ("/generate?count=10", 16, 10),
                                    ("/generate?count=100", 16, 100), ("/generate?count=1000", 16, 1000),
                                    ("/generate?count=1000", 64, 1000)])
        edge_and_docs(args, registry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

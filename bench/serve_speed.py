"""Serving speed, measured side by side in one run (GUIDE section 6), printed as ratios.

    .venv/bin/python bench/serve_speed.py --run RUN_DIR --registry REGISTRY [--name names]

RUN_DIR is a training run (its model.pt gives the torch weights for the lecture's loop) and
REGISTRY holds the artifact published from that same run. Without them the script trains model B
through the real pipeline first (`--train-steps`, default 20000) into a temp dir.

1. One name, batch 1, in process: the lecture's torch eager sampling loop; a plain onnxruntime loop
   (one run per character); the service engine (count=1; warm cache, and with the cache off).
2. 1000 names in one call, one core: onnxruntime batched with no cache (the engine with
   cache_rows=0: one run per step for all active names) vs the engine as served.
3. HTTP on one worker pinned to one core, load from `wrk` pinned to the other core
   (10 connections): GET /generate?count=1 vs GET /healthz on the same server; p99 latencies;
   time to ready and the worker's RSS.
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
    seeds = range(10_000, 10_000 + n_names)
    chars = 0
    clock = Clock()
    for seed in seeds:
        chars += len(engine.generate(1, seed).names[0]) + 1
    return (*clock.per(n_names), chars / n_names)


# ---- 2. 1000 names ---------------------------------------------------------------------------------

def engine_batch(engine, count: int, seconds: float) -> tuple[float, float]:
    """(wall, cpu) names per second."""
    seed = iter(range(1, 10 ** 9))
    wall, cpu = timed(lambda: engine.generate(count, next(seed)), seconds)
    return count / wall, count / cpu


# ---- 3. HTTP -------------------------------------------------------------------------------------

def pin(cpu: int):
    return lambda: os.sched_setaffinity(0, {cpu})


def start_server(registry: Path, name: str, log_path: Path, cpu: int):
    env = {**os.environ, "NAMEGEN_MODEL_DIR": str(registry), "NAMEGEN_MODEL_NAME": name, "NAMEGEN_PORT": "0",
           "NAMEGEN_HOST": "127.0.0.1", "NAMEGEN_WORKERS": "1", "NAMEGEN_RELOAD_INTERVAL": "0",
           "NAMEGEN_LOG_FORMAT": "json"}  # access log on, as served
    log = open(log_path, "w")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, preexec_fn=pin(cpu))
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
            if httpx.get(f"{url}/readyz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.01)
    return proc, url, time.perf_counter() - t0


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def wrk(url: str, seconds: int, connections: int, cpu: int, server_pid: int) -> dict:
    before = cpu_seconds(server_pid)
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
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


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


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
    ap.add_argument("--http-seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=10)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="serve-speed-"))
    try:
        run_dir, registry = args.run, args.registry
        if run_dir is None or registry is None:
            run_dir, registry = train(args.train_steps, tmp, args.name)
        os.sched_setaffinity(0, {0})  # in-process figures: one core
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores at the start")

        from artifact.loader import load_current
        from service.engine import Engine
        model = load_current(registry, args.name)
        print(f"model {model.name}/{model.version}: vocab {len(model.vocab)}, block_size {model.block_size}, "
              f"{model.manifest.architecture.get('parameters')} parameters, val {model.manifest.metrics['val']:.4f}")

        print("\n1. one name, batch 1, in process (1 core)")
        cold = Engine(model, cache_rows=0)
        warm = Engine(model)
        warm.warm()
        rows = [("lecture torch eager loop", lecture_loop(run_dir, args.names)),
                ("  the same under torch.no_grad()", lecture_loop(run_dir, args.names, no_grad=True)),
                ("onnxruntime, one run per char", ort_loop(model, args.names)),
                ("engine count=1, cache off", engine_single(cold, args.names)),
                ("engine count=1 (as served)", engine_single(warm, max(args.names, 3000)))]
        lec_wall, lec_cpu, _ = rows[0][1]
        print(f"  {'':32s} {'wall us/name':>12s} {'cpu us/name':>12s} {'chars':>6s} {'x lecture (cpu)':>16s}")
        for label, (wall, cpu, length) in rows:
            print(f"  {label:32s} {wall:12.1f} {cpu:12.1f} {length:6.2f} {lec_cpu / cpu:15.1f}x")

        print("\n2. 1000 names in one call, 1 core (names/s)")
        base_wall, base_cpu = engine_batch(cold, 1000, args.seconds)
        fast_wall, fast_cpu = engine_batch(warm, 1000, args.seconds)
        print(f"  {'':32s} {'wall':>12s} {'cpu':>12s}")
        print(f"  {'onnxruntime batched, no cache':32s} {base_wall:12,.0f} {base_cpu:12,.0f}")
        print(f"  {'engine (as served)':32s} {fast_wall:12,.0f} {fast_cpu:12,.0f}  "
              f"({fast_cpu / base_cpu:.1f}x; target 200,000)")

        print("\n3. HTTP, one worker on core 0, wrk -t1 -c%d on core 1" % args.connections)
        if not shutil.which("wrk"):
            print("  wrk not found (apt-get install wrk): skipped")
            return
        proc, url, ready = start_server(registry, args.name, tmp / "server.log", cpu=0)
        try:
            results = {}
            for round_ in range(2):
                for label, path in (("healthz", "/healthz"), ("generate", "/generate?count=1")):
                    r = wrk(url + path, args.http_seconds, args.connections, cpu=1, server_pid=proc.pid)
                    results.setdefault(label, []).append(r)
            h = max(results["healthz"], key=lambda r: r["rps"])
            g = max(results["generate"], key=lambda r: r["rps"])
            for label, r in (("GET /healthz", h), ("GET /generate?count=1", g)):
                print(f"  {label:24s} {r['rps']:9,.0f} req/s  p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms"
                      f"  server cpu {r['cpu_us']:.0f} us/req  non-2xx {r['non2xx']} {r['socket_errors']}")
            print(f"  generate / healthz       {g['rps'] / h['rps']:9.0%} req/s, "
                  f"{h['cpu_us'] / g['cpu_us']:.0%} by server cpu per request  (target >= 60%, p99 <= 5 ms)")
            print(f"  ready after start        {ready:9.2f} s  (target <= 1.5 s)")
            print(f"  worker RSS               {rss_mb(proc.pid):9.0f} MB  (target <= 120 MB)")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""The Open Inference Protocol and many models, measured side by side in one run, printed as ratios.

    .venv/bin/python bench/oip_speed.py [--registry models --name names] [--seconds 8] [--no-mlserver]

Each server runs on core 0 with one worker (all started first, idle but for the one under load); load
comes from `wrk` on core 1 (16 connections), every figure the best of a few rounds taken in turn:
1. MLServer (the protocol's reference Python server) with a plain onnxruntime runtime on the same
   graph: `POST /v2/models/<name>/infer` with 16 contexts. Its venv is made once under
   ~/.cache/namegen-bench/mlserver-venv (`python3 -m venv ... && pip install mlserver onnxruntime
   numpy`); --no-mlserver skips it.
2. Our service with one model loaded, then with four (three more model names; traffic on one):
   the same infer request, /generate?count=1 and /healthz, each also as the server's CPU time per
   request (the fairer figure on a shared core). The logits of both servers are checked against
   onnxruntime in this process.
3. The worker's RSS once ready and warm, one model against four: the cost of each further version.
The Markdown table goes to docs/benchmarks.md between this script's own markers.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_speed import ROOT, pin, rss_mb, start_server, wrk  # noqa: E402  (one HTTP harness for both)

from bench import report  # noqa: E402  (serve_speed put the repository on the path)

from artifact.layout import current_version, version_path  # noqa: E402
from artifact.loader import load_version  # noqa: E402
from artifact.manifest import MANIFEST_FILE, MODEL_FILE, Manifest  # noqa: E402
from artifact.registry import set_current  # noqa: E402

CACHE = Path.home() / ".cache" / "namegen-bench"
CONTEXTS = 16  # rows per infer request
CONNECTIONS = 16

MLSERVER_RUNTIME = '''
import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxLogits(MLModel):
    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.settings.parameters.uri, options,
                                            providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.output = self.session.get_outputs()[0].name
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        contexts = NumpyCodec.decode_input(payload.inputs[0]).astype(np.int64)
        logits = self.session.run([self.output], {self.input: contexts})[0]
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("logits", logits)])
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mlserver_venv() -> Path:
    venv = CACHE / "mlserver-venv"
    if not (venv / "bin" / "mlserver").exists():
        print(f"making {venv} (pip install mlserver onnxruntime numpy)")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "mlserver", "onnxruntime", "numpy"], check=True)
    return venv


def start_mlserver(model_file: Path, name: str, work: Path, cpu: int) -> tuple[subprocess.Popen, str]:
    import httpx
    venv = mlserver_venv()
    (work / name).mkdir(parents=True)
    (work / name / "runtime.py").write_text(MLSERVER_RUNTIME)
    (work / name / "model-settings.json").write_text(json.dumps(
        {"name": name, "implementation": "runtime.OnnxLogits", "parameters": {"uri": str(model_file)}}))
    port = free_port()
    # parallel_workers 0: inference in the server's own process, as ours (one core, no hand-off).
    (work / "settings.json").write_text(json.dumps(
        {"host": "127.0.0.1", "http_port": port, "grpc_port": free_port(), "metrics_port": free_port(),
         "parallel_workers": 0, "debug": False}))
    log = open(work / "mlserver.log", "w")
    proc = subprocess.Popen([str(venv / "bin" / "mlserver"), "start", str(work)], cwd=work / name,
                            stdout=log, stderr=subprocess.STDOUT, preexec_fn=pin(cpu))
    url, t0 = f"http://127.0.0.1:{port}", time.perf_counter()
    while True:
        try:
            if httpx.get(f"{url}/v2/models/{name}/ready").status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.perf_counter() - t0 > 120:
            raise RuntimeError((work / "mlserver.log").read_text())
        time.sleep(0.1)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def post_script(path: Path, body: str) -> Path:
    script = path.with_suffix(".lua")
    script.write_text(f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f"wrk.body = {json.dumps(body)}\n")
    return script


def load(url: str, path: str, seconds: int, body_script: Path | None, server_pid: int) -> tuple[float, float]:
    """(req/s, the server's CPU microseconds per request) of `wrk` on core 1 (POST with the script's
    body, else GET); every answer must be 2xx."""
    result = wrk(f"{url}{path}", seconds, CONNECTIONS, 1, server_pid, body_script)
    if result["non2xx"] or result["socket_errors"]:
        raise RuntimeError(f"{path}: {result['non2xx']} non-2xx, socket errors {result['socket_errors']}")
    return result["rps"], result["cpu_us"]


def infer_logits(url: str, name: str, contexts: np.ndarray) -> np.ndarray:
    import httpx
    r = httpx.post(f"{url}/v2/models/{name}/infer", json=infer_body(contexts))
    r.raise_for_status()
    out = r.json()["outputs"][0]
    return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])


def infer_body(contexts: np.ndarray) -> dict:
    return {"inputs": [{"name": "context", "datatype": "INT64", "shape": list(contexts.shape),
                        "data": contexts.ravel().tolist()}]}


def registry_with(source: Path, name: str, extra: list[str], target: Path) -> Path:
    """A registry holding `name`'s CURRENT version, and the same graph again as each of `extra`
    (a model name of its own: its own session, cache and reloader, as a further model costs)."""
    version = current_version(source, name)
    for model in [name, *extra]:
        dest = version_path(target, model, version)
        shutil.copytree(version_path(source, name, version), dest)
        manifest = Manifest.read(dest / MANIFEST_FILE)
        manifest.name = model
        manifest.write(dest / MANIFEST_FILE)
        set_current(target, model, version)
    return target


def start_ours(registry: Path, name: str, work: Path, models: int) -> tuple[subprocess.Popen, str, float]:
    """Our server on core 0, once every model of its registry is loaded and warm."""
    import httpx
    proc, url, ready = start_server(registry, name, work / f"ours-{models}.log", cpu=0)
    deadline = time.perf_counter() + 60
    while not all(m["state"] == "ready" for m in httpx.get(f"{url}/models").json()["models"]):
        if time.perf_counter() > deadline:
            raise RuntimeError("models did not all load")
        time.sleep(0.1)
    time.sleep(1.0)  # the background warm-ups finish
    return proc, url, ready


CONTEXTS_X: np.ndarray  # the one request body every server answers (set in main)


def write_docs(table: str, load_avg: float) -> None:
    report.write_section("oip_speed", (
        f"## Open Inference Protocol and many models (bench/oip_speed.py)\n\n"
        f"Each server on core 0 with one worker (idle but for the one under load), `wrk -t1 -c{CONNECTIONS}` "
        f"on core 1, each figure the best of its rounds, taken in turn; load average {load_avg:.1f} when the run "
        f"began (the machine is shared). {report.machine()}\n\n{table}"))


def main() -> None:
    global CONTEXTS_X
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--registry", type=Path, default=ROOT / "models")
    parser.add_argument("--name", default="names")
    parser.add_argument("--seconds", type=int, default=4, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each figure; the best one counts")
    parser.add_argument("--no-mlserver", action="store_true")
    parser.add_argument("--no-docs", action="store_true", help="print only")
    args = parser.parse_args()
    load_avg = os.getloadavg()[0]
    if not shutil.which("wrk"):
        sys.exit("wrk is needed (Debian: apt-get install -y wrk)")
    version = current_version(args.registry, args.name)
    model = load_version(version_path(args.registry, args.name, version))
    CONTEXTS_X = np.random.default_rng(0).integers(0, len(model.vocab), size=(CONTEXTS, model.block_size))
    expected = model.logits(CONTEXTS_X)  # (16, V) float32, onnxruntime in this process
    work = Path(tempfile.mkdtemp(prefix="oip-speed-"))
    infer = post_script(work / "infer", json.dumps(infer_body(CONTEXTS_X)))
    servers: dict[str, tuple[subprocess.Popen, str]] = {}
    try:
        if not args.no_mlserver:
            servers["mlserver"] = start_mlserver(version_path(args.registry, args.name, version) / MODEL_FILE,
                                                 args.name, work / "mlserver", cpu=0)
        one = start_ours(registry_with(args.registry, args.name, [], work / "one"), args.name, work, 1)
        four = start_ours(registry_with(args.registry, args.name, ["second", "third", "fourth"], work / "four"),
                          args.name, work, 4)
        servers["one"], servers["four"] = one[:2], four[:2]
        ready = {"one": one[2], "four": four[2]}
        equal = {key: np.array_equal(infer_logits(url, args.name, CONTEXTS_X), expected)
                 for key, (_, url) in servers.items()}
        runs = [(key, "infer", f"/v2/models/{args.name}/infer", infer) for key in servers] + [
            (key, what, path, None) for key in ("one", "four")
            for what, path in (("count1", "/generate?count=1"), ("healthz", "/healthz"))]
        # Rounds of every run in turn, each figure the best of its rounds: the machine is shared, and
        # a neighbour's burst should not land on one side of a ratio only.
        # The server's CPU per request is kept beside (the least of the rounds): on a shared core, the
        # time a neighbour takes lowers req/s but not the work each request costs.
        rps: dict[tuple[str, str], float] = {}
        cpu: dict[tuple[str, str], float] = {}
        for _ in range(args.rounds):
            for key, what, path, script in runs:
                proc, url = servers[key]
                rate, cpu_us = load(url, path, args.seconds, script, proc.pid)
                rps[key, what] = max(rps.get((key, what), 0.0), rate)
                cpu[key, what] = min(cpu.get((key, what), float("inf")), cpu_us)
        rss = {key: rss_mb(servers[key][0].pid) for key in ("one", "four")}
    finally:
        for proc, _ in servers.values():
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    mlserver = rps.get(("mlserver", "infer"))
    rows.append(("OIP infer, 16 contexts: ours (one model) / MLServer",
                 f"{rps['one', 'infer']:,.0f} / {mlserver:,.0f} req/s" if mlserver else f"{rps['one', 'infer']:,.0f} / -",
                 f"{rps['one', 'infer'] / mlserver:.2f}x" if mlserver else "-", ">= 2x"))
    for key, label in (("infer", "OIP infer, 16 contexts"), ("count1", "/generate?count=1"), ("healthz", "/healthz")):
        rows.append((f"{label}: four models loaded / one", f"{rps['four', key]:,.0f} / {rps['one', key]:,.0f} req/s",
                     f"{rps['four', key] / rps['one', key]:.1%}", ">= 95%"))
        rows.append((f"{label}: the server's CPU per request, one model / four", f"{cpu['one', key]:,.0f} / "
                     f"{cpu['four', key]:,.0f} us", f"{cpu['one', key] / cpu['four', key]:.1%}", "(the same work)"))
    rows.append(("RSS per further loaded version", f"({rss['four']:.1f} MB with four - {rss['one']:.1f} MB with one) / 3",
                 f"{(rss['four'] - rss['one']) / 3:.1f} MB", "<= 20 MB"))
    rows.append(("ready (default model), one / four models", f"{ready['one']:.2f} s / {ready['four']:.2f} s",
                 "", "<= 1.5 s"))
    rows.append(("logits equal to onnxruntime's in process", ", ".join(f"{k}: {'yes' if v else 'NO'}"
                                                                  for k, v in equal.items()), "", "equal"))
    table = "| what | measured | ratio | target |\n|---|---|---|---|\n" + "\n".join(
        f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows) + "\n"
    print(table)
    if not args.no_docs:
        write_docs(table, load_avg)


if __name__ == "__main__":
    main()

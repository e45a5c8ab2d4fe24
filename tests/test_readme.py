"""The README's commands work as written. Every ```sh block of README.md runs in bash (set -e), in a
scratch directory holding a copy of models/ and a `.venv` link to this interpreter's venv, against
real `python -m service` processes on 127.0.0.1 (the README's 127.0.0.1:8000 becomes the test
server's address); curl fails on any HTTP error (a .curlrc with fail-with-body). A block is skipped
only when an HTML comment right above it says `not run by tests/test_readme.py: <why>`: those train
models for minutes, start a server that runs until stopped, or need docker as root.

The Makefile keeps the README's promise that `NAMEGEN_PORT=... make serve` serves on that port."""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

sys.path.append(str(Path(__file__).resolve().parent / "service"))
from service_helpers import ROOT, Server  # noqa: E402  (shared with the service tests)

from service import tokens  # noqa: E402

README = (ROOT / "README.md").read_text(encoding="utf-8")
SKIP = re.compile(r"<!-- not run by tests/test_readme\.py: (?P<why>[^>]+?) -->\s*$")
README_ADDRESS = "127.0.0.1:8000"


def sh_blocks() -> list[tuple[int, str, str | None]]:
    """(line number, script, reason to skip or None) for every ```sh block of the README."""
    blocks, lines = [], README.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```sh":
            start, body = i + 1, []
            i += 1
            while lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            above = next((line for line in reversed(lines[:start - 1]) if line.strip()), "")
            skip = SKIP.search(above)
            blocks.append((start, "\n".join(body), skip.group("why") if skip else None))
        i += 1
    return blocks


BLOCKS = sh_blocks()
RUN = [b for b in BLOCKS if b[2] is None]


def test_the_readme_has_blocks_to_run_and_says_why_it_skips_the_others():
    assert len(RUN) >= 3, "the README's curl, --help and registry blocks are gone"
    for line, script, why in BLOCKS:
        assert why is None or len(why.split()) >= 3, f"README line {line}: say why the block is not run"
    ran = "\n".join(script for _, script, _ in RUN)
    for command in ("curl -s", "-m artifact rollback", "-m training --help", "-m artifact --help",
                    "-m service.tokens --help", "-m service.tokens add"):
        assert command in ran, f"no README block that the test runs has {command!r}"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A scratch checkout-like directory: models/ copied, .venv linked, HOME with the .curlrc."""
    work = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "models", work / "models")
    (work / ".venv").symlink_to(Path(sys.prefix))  # the venv running this test: `.venv/bin/python` as written
    (work / ".curlrc").write_text("fail-with-body\nmax-time = 30\n")
    tokens.save(work / "tokens.json", [])  # the server starts with an empty token file; the block adds one
    return work


@pytest.fixture(scope="module")
def servers(workdir):
    """(open server's address, token server's address), both on the copied registry."""
    env = {"NAMEGEN_MODEL_DIR": str(workdir / "models"), "NAMEGEN_RELOAD_INTERVAL": "0.2"}
    started = []
    try:
        started.append(Server(env, workdir / "open.log"))
        started.append(Server({**env, "NAMEGEN_TOKENS_FILE": str(workdir / "tokens.json")}, workdir / "tokens.log"))
        yield tuple(s.url.removeprefix("http://") for s in started)
    finally:
        for s in started:
            s.stop()


def run_block(script: str, workdir: Path, address: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NAMEGEN_")}
    env.update(HOME=str(workdir))
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script.replace(README_ADDRESS, address)],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("line,script", [(b[0], b[1]) for b in RUN], ids=[f"line{b[0]}" for b in RUN])
def test_readme_block_runs_as_written(line, script, workdir, servers):
    open_address, token_address = servers
    uses_token = "Authorization" in script
    if uses_token:
        time.sleep(1.1)  # the token server looks at its file at most once a second: let that second pass
    done = run_block(script, workdir, token_address if uses_token else open_address)
    assert done.returncode == 0, (f"README block at line {line} failed ({done.returncode}):\n{script}\n"
                                  f"stdout:\n{done.stdout[-2000:]}\nstderr:\n{done.stderr[-2000:]}")
    if "curl" in script:
        assert '"names"' in done.stdout or '"models"' in done.stdout or '"outputs"' in done.stdout, done.stdout


def test_a_token_line_of_the_readme_is_refused_without_its_token(workdir, servers):
    _, token_address = servers
    answer = httpx.get(f"http://{token_address}/generate", params={"count": 1})
    assert answer.status_code == 401, answer.text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_serve(env_port: int, *args: str) -> list[str]:
    """`make -n serve`'s command line with NAMEGEN_PORT in the environment."""
    env = {**os.environ, "NAMEGEN_PORT": str(env_port)}
    env.pop("NAMEGEN_HOST", None)
    out = subprocess.run(["make", "-s", "-n", "-o", f"{sys.prefix}/.serve-installed", "serve", f"VENV={sys.prefix}",
                          *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    return out.split()


def test_make_serve_takes_the_port_from_the_environment_or_from_make():
    assert "NAMEGEN_PORT=18601" in make_serve(18601)
    assert "NAMEGEN_PORT=18700" in make_serve(18601, "PORT=18700")  # the make variable wins, as documented
    assert "NAMEGEN_HOST=127.0.0.1" in make_serve(18601)


def test_namegen_port_make_serve_serves_on_that_port():
    port = free_port()
    env = {**os.environ, "NAMEGEN_PORT": str(port), "NAMEGEN_WORKERS": "1"}
    env.pop("NAMEGEN_HOST", None)
    proc = subprocess.Popen(["make", "-s", "-o", f"{sys.prefix}/.serve-installed", "serve", f"VENV={sys.prefix}"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # its own process group: make and the server stop together
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
                break
            except httpx.TransportError:
                assert proc.poll() is None, f"make serve exited {proc.returncode}"
                assert time.monotonic() < deadline, f"nothing answered on {port}"
                time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)

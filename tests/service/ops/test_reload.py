"""Reloader: a good version is swapped in; a bad one is refused, counted, retried with backoff only;
clients see a reason code, never a path or an onnxruntime message."""
import asyncio
import hashlib
import json

import pytest
from service_helpers import NAME, make_version, metric, wait_until

from artifact.manifest import MANIFEST_FILE
from artifact.registry import current_version, version_path
from service.core import offline
from service.ops.metrics import Metrics
from service.ops.reload import ModelState, Reloader


@pytest.fixture
def reloader(registry, settings_for):
    return Reloader(settings_for(registry), ModelState(), Metrics())


def failed(r):
    return metric(r.metrics.render().decode(), "namegen_reloads_total", outcome="failed")


def test_first_check_loads_the_current_version(reloader, registry):
    assert reloader.check() == "ok"
    assert reloader.state.engine.version == current_version(registry, NAME)
    assert reloader.check() == "unchanged"
    text = reloader.metrics.render().decode()
    assert metric(text, "namegen_reloads_total", outcome="ok") == 1
    assert metric(text, "namegen_ready") == 1


def test_good_version_is_swapped_in(reloader, registry):
    reloader.check()
    old = reloader.state.engine
    version = make_version(registry)
    assert reloader.check() == "ok"
    assert reloader.state.engine.version == version
    assert reloader.state.engine is not old
    assert offline.generate(old, 3, seed=1).names  # a request holding the old engine can still finish on it
    text = reloader.metrics.render().decode()
    assert metric(text, "namegen_model_info", name=NAME, version=version) == 1
    assert metric(text, "namegen_model_info", name=NAME, version=old.version) == 0


def test_corrupt_version_is_refused_once_and_old_keeps_serving(reloader, registry):
    reloader.check()
    old = reloader.state.engine
    bad = make_version(registry, damage="corrupt")
    assert reloader.check() == "failed"
    assert reloader.state.engine is old
    assert "sha256" in reloader.state.last_error
    assert reloader.state.refused == bad
    assert reloader.check() == "skipped"  # not retried before its backoff (1 s) is over
    assert reloader.check() == "skipped"
    assert failed(reloader) == 1
    reloader.request()  # SIGHUP: an explicit retry
    assert reloader.check() == "failed"
    assert failed(reloader) == 2
    good = make_version(registry)  # CURRENT moves on: the next good version loads
    assert reloader.check() == "ok"
    assert reloader.state.engine.version == good
    assert reloader.state.refused is None
    assert (reloader.state.last_error, reloader.state.reason) == (None, None)


def test_version_failing_the_probe_is_refused(reloader, registry):
    reloader.check()
    bad = make_version(registry, point=False)
    path = version_path(registry, NAME, bad) / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    manifest["probe"][0]["logprobs"][0] += 0.5
    path.write_text(json.dumps(manifest))
    (registry / NAME / "CURRENT").write_text(bad + "\n")
    assert reloader.check() == "failed"
    assert "probe" in reloader.state.last_error
    assert reloader.state.engine.version != bad


def test_missing_pointer_leaves_nothing_served(tmp_path, settings_for):
    r = Reloader(settings_for(tmp_path), ModelState(), Metrics())
    assert r.check() == "failed"
    assert r.state.engine is None
    assert r.check() == "skipped"
    assert failed(r) == 1


def test_run_polls_the_pointer(registry, settings_for):
    async def scenario():
        r = Reloader(settings_for(registry, reload_interval=0.05), ModelState(), Metrics())
        task = asyncio.create_task(r.run())
        try:
            await asyncio.to_thread(wait_until, lambda: r.state.engine is not None)
            version = await asyncio.to_thread(make_version, registry)
            return await asyncio.to_thread(wait_until, lambda: r.state.engine.version == version)
        finally:
            task.cancel()
    assert asyncio.run(scenario())


def test_request_wakes_the_watcher_when_polling_is_off(registry, settings_for):
    async def scenario():
        r = Reloader(settings_for(registry, reload_interval=0), ModelState(), Metrics())
        await asyncio.to_thread(r.check)
        task = asyncio.create_task(r.run())
        try:
            version = await asyncio.to_thread(make_version, registry)
            await asyncio.sleep(0.3)
            assert r.state.engine.version != version  # no polling
            r.request()
            return await asyncio.to_thread(wait_until, lambda: r.state.engine.version == version)
        finally:
            task.cancel()
    assert asyncio.run(scenario())


def test_version_whose_files_had_not_arrived_is_retried_with_backoff(registry, settings_for):
    r = Reloader(settings_for(registry), ModelState(), Metrics(), retry_first=0.2)
    r.check()
    late = make_version(registry, point=False)
    onnx = version_path(registry, NAME, late) / "model.onnx"
    held = onnx.read_bytes()
    onnx.unlink()  # CURRENT names it before its model.onnx arrived (a copy, not a publish)
    (registry / NAME / "CURRENT").write_text(late + "\n")
    assert r.check() == "failed"
    assert (r.state.refused_version, r.state.reason) == (late, "files_missing")
    assert r.check() == "skipped"
    onnx.write_bytes(held)
    wait_until(lambda: r.check() == "ok", timeout=5)  # the next attempt, 0.2 s later, loads it
    assert r.state.engine.version == late
    assert (r.state.refused, r.state.reason, r.state.last_error) == (None, None, None)


def test_backoff_doubles_between_attempts_at_the_same_version(reloader, registry):
    reloader.retry_first = 0.1
    reloader.check()
    make_version(registry, damage="corrupt")
    delays = []
    for _ in range(3):
        reloader.state.retry_at = 0  # the wait is over
        assert reloader.check() == "failed"
        delays.append(reloader.state.retry_at - __import__("time").monotonic())
    assert [round(d, 1) for d in delays] == [0.1, 0.2, 0.4]
    assert failed(reloader) == 3


def test_going_back_to_the_served_version_clears_the_refusal(reloader, registry):
    reloader.check()
    served = reloader.state.engine.version
    make_version(registry, damage="corrupt")
    assert reloader.check() == "failed"
    (registry / NAME / "CURRENT").write_text(served + "\n")
    assert reloader.check() == "unchanged"
    assert (reloader.state.refused, reloader.state.reason, reloader.state.last_error) == (None, None, None)


@pytest.mark.parametrize("damage,reason", [("corrupt", "checksum_mismatch"), ("missing", "files_missing"),
                                           ("graph", "graph_invalid"), ("no_pointer", "no_model_published")])
def test_clients_see_a_reason_code_and_version_never_paths_or_onnxruntime_messages(
        registry, settings_for, damage, reason):
    from fastapi.testclient import TestClient

    from service.api.app import create_app
    version = current_version(registry, NAME)
    path = version_path(registry, NAME, version)
    if damage == "corrupt":
        (path / "model.onnx").write_bytes(b"not a graph")
    elif damage == "missing":
        (path / "model.onnx").unlink()
    elif damage == "graph":  # a checksum that matches a file onnxruntime cannot read
        (path / "model.onnx").write_bytes(b"not a graph")
        manifest = json.loads((path / MANIFEST_FILE).read_text())
        manifest["files"]["model.onnx"] = hashlib.sha256(b"not a graph").hexdigest()
        (path / MANIFEST_FILE).write_text(json.dumps(manifest))
    else:
        (registry / NAME / "CURRENT").unlink()
    with TestClient(create_app(settings_for(registry))) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        body = r.json()
        assert body["reason"] == reason
        assert body["version"] == (None if damage == "no_pointer" else version)
        assert str(registry) not in r.text and "onnxruntime" not in r.text.lower() and "Errno" not in r.text
        assert body["detail"][0]["message"] == f"not ready: {reason}"


def test_readyz_and_model_show_a_refusal_while_the_old_version_serves(registry, settings_for):
    from fastapi.testclient import TestClient

    from service.api.app import create_app
    app = create_app(settings_for(registry))
    with TestClient(app) as c:
        served = c.get("/readyz").json()["model"]["version"]
        bad = make_version(registry, damage="corrupt")
        reloader = Reloader(app.state.settings, app.state.model, app.state.metrics)
        assert reloader.check() == "failed"
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["model"]["version"] == served
        assert ready.json()["reload"] == {"refused": bad, "reason": "checksum_mismatch"}
        model = c.get("/model").json()
        assert model["reload"] == {"refused": bad, "reason": "checksum_mismatch"}
        assert str(registry) not in c.get("/model").text

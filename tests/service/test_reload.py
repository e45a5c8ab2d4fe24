"""Reloader: a good version is swapped in; a bad one is refused, counted, not retried in a loop."""
import asyncio
import json

import pytest
from service_helpers import NAME, make_version, metric, wait_until

from artifact.manifest import MANIFEST_FILE
from artifact.registry import current_version, version_path
from service.metrics import Metrics
from service.reload import ModelState, Reloader


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
    assert old.generate(3, seed=1).names  # a request holding the old engine can still finish on it
    text = reloader.metrics.render().decode()
    assert metric(text, "namegen_model_info", name=NAME, version=version) == 1
    assert metric(text, "namegen_model_info", name=NAME, version=old.version) == 0


def test_corrupt_version_is_refused_once_and_old_keeps_serving(reloader, registry):
    reloader.check()
    old = reloader.state.engine
    bad = make_version(registry, corrupt=True)
    assert reloader.check() == "failed"
    assert reloader.state.engine is old
    assert "sha256" in reloader.state.last_error
    assert reloader.state.refused == bad
    assert reloader.check() == "skipped"  # not retried while CURRENT still names it
    assert reloader.check() == "skipped"
    assert failed(reloader) == 1
    reloader.request()  # SIGHUP: an explicit retry
    assert reloader.check() == "failed"
    assert failed(reloader) == 2
    good = make_version(registry)  # CURRENT moves on: the next good version loads
    assert reloader.check() == "ok"
    assert reloader.state.engine.version == good
    assert reloader.state.refused is None


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

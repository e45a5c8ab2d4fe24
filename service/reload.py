"""Which model is served, and how it changes.

`ModelState.engine` is the one reference requests read (once, at their start); a reload builds and
self-tests a new Engine off the event loop and then replaces that reference in one assignment, so a
request in flight finishes on the engine it started with.

`Reloader.check()` reads `<model_dir>/<model_name>/CURRENT`; when it names a version other than the
one served, that version is loaded through artifact.loader (checksums, graph shape, probe set),
self-tested by the engine (a few names and their scores), its cache warmed, and swapped in (the very
first model is swapped in at once and warmed in the background, so the service is ready sooner). A version that
fails is refused: the old engine keeps serving, the reason is logged and counted, and the version
is not tried again until CURRENT changes or a SIGHUP asks explicitly.
"""
from __future__ import annotations

import asyncio
import math
import threading
import time
from dataclasses import dataclass

from artifact import ArtifactError
from artifact.layout import current_version, version_path
from artifact.loader import load_version
from service.engine import Engine
from service.logs import get_logger
from service.metrics import Metrics
from service.settings import Settings

log = get_logger("reload")

NOT_READY_RETRY = 2.0  # seconds between checks while nothing is served and polling is off


@dataclass
class ModelState:
    engine: Engine | None = None
    refused: str | None = None  # CURRENT's content (or pointer error) that failed; skipped until it changes
    last_error: str | None = None


def self_test(engine: Engine) -> None:
    """Refuse an engine whose samples or scores are not sane (on top of the loader's probe check)."""
    gen = engine.generate(count=16, seed=0, max_length=16)
    if len(gen.names) != 16:
        raise ArtifactError(f"self-test: asked for 16 names, got {len(gen.names)}")
    for name, lp, cut in zip(gen.names, gen.logprobs, gen.cut):
        if not math.isfinite(lp) or lp > 0:
            raise ArtifactError(f"self-test: name {name!r} has log-probability {lp}")
        if not cut:
            scored = engine.score([name])[0].logprob
            if abs(scored - lp) > 1e-6:
                raise ArtifactError(f"self-test: {name!r} scores {scored} but was generated with {lp}")


class Reloader:
    def __init__(self, settings: Settings, state: ModelState, metrics: Metrics):
        self.settings = settings
        self.state = state
        self.metrics = metrics
        self.wake = asyncio.Event()
        self.force = False
        self.warming: threading.Thread | None = None

    def close(self) -> None:
        """Wait for a background warm-up (onnxruntime must not be running when the process exits)."""
        if self.warming is not None:
            self.warming.join()

    def request(self) -> None:
        """Ask for a check now (the SIGHUP handler); also retries a refused version."""
        self.force = True
        self.wake.set()

    def check(self) -> str:
        """One look at CURRENT; returns "unchanged", "skipped" (refused before), "ok" or "failed".
        Blocking: run it in a thread."""
        s, state = self.settings, self.state
        force, self.force = self.force, False
        try:
            version = current_version(s.model_dir, s.model_name)
        except ArtifactError as e:
            return self._refuse(f"pointer: {e}", str(e), force)
        if state.engine is not None and version == state.engine.version:
            state.refused = None
            return "unchanged"
        if version == state.refused and not force:
            return "skipped"
        started = time.perf_counter()
        first = state.engine is None
        try:
            engine = self._load(version)
            if not first:
                engine.warm()  # the old version serves meanwhile: swap in a warm cache
        except Exception as e:  # ArtifactError, or anything a broken graph makes onnxruntime raise
            return self._refuse(version, f"version {version}: {e}", force)
        state.engine = engine  # the swap: one reference assignment
        if first:  # nothing was served: be ready now, warm the cache in the background
            self.warming = threading.Thread(target=engine.warm, name="namegen-warm")
            self.warming.start()
        state.refused, state.last_error = None, None
        self.metrics.reloads.labels("ok").inc()
        self.metrics.serving(engine.name, engine.version)
        log.info("serving %s/%s (loaded and self-tested in %.2f s)", engine.name, engine.version,
                 time.perf_counter() - started,
                 extra={"fields": {"event": "reload", "outcome": "ok", "version": version}})
        return "ok"

    def _load(self, version: str) -> Engine:
        s = self.settings
        path = version_path(s.model_dir, s.model_name, version)
        model = load_version(path, threads=1)
        if (model.name, model.version) != (s.model_name, version):
            raise ArtifactError(f"{path}: manifest says {model.name}/{model.version}, "
                                f"expected {s.model_name}/{version}")
        engine = Engine(model, cache_rows=s.cache_rows)
        self_test(engine)
        return engine

    def _refuse(self, key: str, reason: str, force: bool) -> str:
        state = self.state
        if key == state.refused and not force:
            return "skipped"
        state.refused, state.last_error = key, reason
        self.metrics.reloads.labels("failed").inc()
        serving = f"still serving {state.engine.version}" if state.engine else "no model served"
        log.error("refused: %s (%s)", reason, serving,
                  extra={"fields": {"event": "reload", "outcome": "failed"}})
        return "failed"

    async def run(self) -> None:
        """Poll CURRENT every reload_interval seconds (and whenever `request` is called)."""
        while True:
            interval = self.settings.reload_interval
            if self.state.engine is None and not interval:
                interval = NOT_READY_RETRY
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=interval or None)
            except asyncio.TimeoutError:
                pass
            self.wake.clear()
            try:
                await asyncio.to_thread(self.check)
            except Exception:  # never let the watcher die
                log.exception("reload check failed unexpectedly")

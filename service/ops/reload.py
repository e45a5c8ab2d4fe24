"""Which model is served, and how it changes.

`ModelState.engine` is the one reference requests read (once, at their start); a reload builds and
self-tests a new Engine off the event loop and then replaces that reference in one assignment, so a
request in flight finishes on the engine it started with.

`Reloader.check()` reads `<model_dir>/<model_name>/CURRENT`; when it names a version other than the
one served, that version is loaded through artifact.loader (checksums, graph shape, probe set),
self-tested by the engine (a few names and their scores), its cache warmed, and swapped in (the very
first model is swapped in at once and warmed in the background, so the service is ready sooner). A version that
fails is refused: the old engine keeps serving, the details are logged and counted, clients see only
a reason code (`reason_code`: no paths, no onnxruntime messages), and the same version is tried again
after 1, 2, 4 ... up to RETRY_MAX seconds while CURRENT still names it (its files may not all have
arrived yet: a copy, not a publish, can expose a version early), or at once on SIGHUP.
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
from service.core import offline
from service.core.engine import Engine
from service.logs import get_logger
from service.ops.metrics import Metrics
from service.settings import Settings

log = get_logger("reload")

NOT_READY_RETRY = 2.0  # seconds between checks while nothing is served and polling is off
RETRY_FIRST, RETRY_MAX = 1.0, 60.0  # backoff between attempts at a refused version

# Reason codes clients see, by words of the loader's messages (first match wins); the full message,
# with its paths, goes to the log only.
REASONS = (
    ("no_model_published", ("no CURRENT pointer",)),
    ("bad_pointer", ("cannot read the pointer", "is not a version name")),
    ("files_missing", ("version directory not found", "file missing", "manifest not found", "does not exist")),
    ("checksum_mismatch", ("sha256",)),
    ("probe_mismatch", ("probe",)),
    ("self_test_failed", ("self-test",)),
    ("graph_invalid", ("onnxruntime", "graph")),
    ("manifest_invalid", ("manifest", "vocab")),
)


def reason_code(exc: BaseException) -> str:
    if isinstance(exc, ArtifactError):
        message = str(exc)
        return next((code for code, words in REASONS if any(w in message for w in words)), "load_failed")
    return "files_unreadable" if isinstance(exc, OSError) else "load_failed"


@dataclass
class ModelState:
    engine: Engine | None = None
    refused: str | None = None  # the version (or "pointer") that failed; retried with backoff
    refused_version: str | None = None  # that version, None for a pointer problem
    reason: str | None = None  # its reason code, for clients
    last_error: str | None = None  # the full message, for the log and tests; never sent to clients
    failures: int = 0  # consecutive refusals of `refused`
    retry_at: float = 0.0  # time.monotonic() of the next attempt at `refused`

    def clear_refusal(self) -> None:
        self.refused = self.refused_version = self.reason = self.last_error = None
        self.failures, self.retry_at = 0, 0.0


def self_test(engine: Engine) -> None:
    """Refuse an engine whose samples or scores are not sane (on top of the loader's probe check)."""
    gen = offline.generate(engine, count=16, seed=0, max_length=16)
    if len(gen.names) != 16:
        raise ArtifactError(f"self-test: asked for 16 names, got {len(gen.names)}")
    for name, lp, cut in zip(gen.names, gen.logprobs, gen.cut):
        if not math.isfinite(lp) or lp > 0:
            raise ArtifactError(f"self-test: name {name!r} has log-probability {lp}")
        if not cut:
            scored = offline.score(engine, [name])[0].logprob
            if abs(scored - lp) > 1e-6:
                raise ArtifactError(f"self-test: {name!r} scores {scored} but was generated with {lp}")


def load_engine(settings: Settings, name: str, version: str) -> Engine:
    """A published version loaded through artifact.loader (checksums, graph, probe set) and
    self-tested: every version served, current or pinned, passes here. Blocking: run it in a thread."""
    path = version_path(settings.model_dir, name, version)
    model = load_version(path, threads=1, expect=(name, version))
    engine = Engine(model, cache_rows=settings.cache_rows)
    self_test(engine)
    return engine


class Reloader:
    """Follows one model name's CURRENT."""

    def __init__(self, settings: Settings, state: ModelState, metrics: Metrics, retry_first: float = RETRY_FIRST,
                 name: str | None = None):
        self.settings = settings
        self.name = name or settings.model_name
        self.default = self.name == settings.model_name
        self.state = state
        self.metrics = metrics
        self.retry_first = retry_first
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
            version = current_version(s.model_dir, self.name)
        except ArtifactError as e:  # re-read at every check: no backoff, but logged once per reason
            code = reason_code(e)
            if state.refused == f"pointer: {code}" and not force:
                return "skipped"
            return self._refuse(f"pointer: {code}", None, e)
        if state.engine is not None and version == state.engine.version:
            state.clear_refusal()  # CURRENT went back to the served version
            return "unchanged"
        if version == state.refused and not force and time.monotonic() < state.retry_at:
            return "skipped"
        started = time.perf_counter()
        first = state.engine is None
        try:
            engine = self._load(version)
            if not first:
                engine.warm()  # the old version serves meanwhile: swap in a warm cache
        except Exception as e:  # ArtifactError, or anything a broken graph makes onnxruntime raise
            return self._refuse(version, version, e)
        state.engine = engine  # the swap: one reference assignment
        if first:  # nothing was served: be ready now, warm the cache in the background
            warming = threading.Thread(target=engine.warm, name="namegen-warm")
            warming.start()
            self.warming = warming  # only once started: close() may join it from another thread
        state.clear_refusal()
        self.metrics.reloads.labels(self.name, "ok").inc()
        self.metrics.serving(engine.name, engine.version, self.default)
        log.info("serving %s/%s (loaded and self-tested in %.2f s)", engine.name, engine.version,
                 time.perf_counter() - started,
                 extra={"fields": {"event": "reload", "outcome": "ok", "version": version}})
        return "ok"

    def _load(self, version: str) -> Engine:
        return load_engine(self.settings, self.name, version)

    def _refuse(self, key: str, version: str | None, exc: BaseException) -> str:
        state = self.state
        state.failures = state.failures + 1 if key == state.refused else 1
        state.refused, state.refused_version, state.reason = key, version, reason_code(exc)
        state.last_error = f"version {version}: {exc}" if version else str(exc)
        delay = min(RETRY_MAX, self.retry_first * 2 ** (state.failures - 1))
        state.retry_at = time.monotonic() + delay
        self.metrics.reloads.labels(self.name, "failed").inc()
        serving = f"still serving {state.engine.version}" if state.engine else "no model served"
        log.error("refused: %s: %s (%s; next attempt in %g s)", self.name, state.last_error, serving, delay,
                  extra={"fields": {"event": "reload", "outcome": "failed", "reason": state.reason,
                                    "model": self.name}})
        return "failed"

    async def run(self) -> None:
        """Poll CURRENT every reload_interval seconds (and whenever `request` is called)."""
        while True:
            interval = self.settings.reload_interval or math.inf
            if self.state.engine is None:
                interval = min(interval, NOT_READY_RETRY)
            if self.state.refused_version is not None:  # a refused version's next attempt is due
                interval = min(interval, max(0.0, self.state.retry_at - time.monotonic()))
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=None if interval == math.inf else interval)
            except asyncio.TimeoutError:
                pass
            self.wake.clear()
            await self.run_once()

    async def run_once(self) -> None:
        """One check, off the event loop."""
        try:
            await asyncio.to_thread(self.check)
        except Exception:  # never let the watcher die
            log.exception("reload check failed unexpectedly")

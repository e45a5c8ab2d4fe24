"""Every model the service serves, by name, and the versions requests pin.

Each model name of the registry (or of the `models` allow-list) has its own `ModelState` and
`Reloader`: its own CURRENT, hot reload, self-test and refusal by reason code, so a model whose
version fails to load leaves the others serving. A request may also pin a published version: it is
loaded on demand (in a thread, one load per version however many requests wait for it), verified
and self-tested like any load, and kept among at most `max_pinned` such versions within
`pinned_memory_mb`, least recently used first out. A version is looked up in the registry's own
listing before any path is made from it.
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
from collections import OrderedDict
from pathlib import Path

from artifact.layout import POINTER, list_versions
from artifact.manifest import MANIFEST_FILE, MODEL_FILE
from service.core.engine import Engine
from service.logs import get_logger
from service.ops.metrics import Metrics
from service.ops.reload import ModelState, Reloader, load_engine, reason_code
from service.settings import Settings

log = get_logger("pool")


class UnknownModel(LookupError):
    def __init__(self, name: str, known: list[str]):
        super().__init__(f"unknown model {name!r}; known models: {', '.join(known) or 'none'}")


class UnknownVersion(LookupError):
    def __init__(self, name: str, version: str):
        super().__init__(f"version {version!r} of model {name!r} is not in the registry "
                         "(never published, or pruned)")


class NotServed(Exception):
    """The model has no validated version loaded (yet), or a pinned version was refused."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def engine_bytes(engine: Engine) -> int:
    """What a loaded version holds beyond the process: its cache tables and its graph."""
    cache = engine.rows.cache
    tables = 0 if cache is None else cache.logp.nbytes + cache.cdf.nbytes
    with contextlib.suppress(OSError):
        tables += Path(engine.model.path, MODEL_FILE).stat().st_size
    return tables


class ModelPool:
    def __init__(self, settings: Settings, metrics: Metrics, default_state: ModelState | None = None):
        self.settings = settings
        self.metrics = metrics
        self.default = settings.model_name
        self.allow = {n.strip() for n in settings.models.split(",") if n.strip()}
        self.states: dict[str, ModelState] = {}
        self.reloaders: dict[str, Reloader] = {}
        self.pinned: OrderedDict[tuple[str, str], Engine] = OrderedDict()  # least recently used first
        self.loading: dict[tuple[str, str], asyncio.Task] = {}
        self.tasks: list[asyncio.Task] = []
        self.wake = asyncio.Event()
        self._add(self.default, default_state or ModelState())

    # ---- which models ---------------------------------------------------------------------------

    def _add(self, name: str, state: ModelState) -> Reloader:
        self.states[name] = state
        reloader = self.reloaders[name] = Reloader(self.settings, state, self.metrics, name=name)
        self.metrics.known(name)
        return reloader

    def registry_names(self) -> list[str]:
        """Model names the registry holds (a directory with a CURRENT pointer or a version), within
        the allow-list if there is one. Blocking (reads the disk)."""
        root = Path(self.settings.model_dir)
        try:
            entries = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return []
        return [p.name for p in entries if (not self.allow or p.name in self.allow)
                and ((p / POINTER).exists() or list_versions(root, p.name))]

    async def discover(self) -> list[Reloader]:
        """Reloaders for names that appeared in the registry since the last look (the disk is read in a
        thread; the pool changes on the event loop only)."""
        names = await asyncio.to_thread(self.registry_names)
        return [self._add(name, ModelState()) for name in names if name not in self.states]

    @property
    def names(self) -> list[str]:
        return sorted(self.states)

    def state(self, name: str | None) -> ModelState:
        state = self.states.get(name or self.default)
        if state is None:
            raise UnknownModel(name or self.default, self.names)
        return state

    # ---- running: one watcher per model, and a look for new names --------------------------------

    async def start(self) -> None:
        """Load the default model's CURRENT now (ready as soon as it is), the others in the background."""
        await asyncio.to_thread(self.reloaders[self.default].check)
        for reloader in await self.discover():
            self._watch(reloader, first=True)
        self._watch(self.reloaders[self.default], first=False)
        self.tasks.append(asyncio.create_task(self._look_for_names()))

    def _watch(self, reloader: Reloader, first: bool) -> None:
        self.tasks.append(asyncio.create_task(self._run(reloader, first), name=f"namegen-reload-{reloader.name}"))

    @staticmethod
    async def _run(reloader: Reloader, first: bool) -> None:
        if first:
            await reloader.run_once()
            gc.freeze()  # what the load built lives on, as at startup: out of the collector's full passes
        await reloader.run()

    async def _look_for_names(self) -> None:
        """Every reload_interval seconds (and on SIGHUP), names new in the registry start being served."""
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=self.settings.reload_interval or None)
            self.wake.clear()
            try:
                for reloader in await self.discover():
                    self._watch(reloader, first=True)
            except Exception:  # never let the watcher die
                log.exception("looking for new model names failed unexpectedly")

    def request(self) -> None:
        """SIGHUP: every model looks at its CURRENT now (refused versions included), and for new names."""
        for reloader in list(self.reloaders.values()):
            reloader.request()
        self.wake.set()

    async def close(self) -> None:
        for task in [*self.tasks, *self.loading.values()]:
            task.cancel()
        for task in [*self.tasks, *self.loading.values()]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for reloader in self.reloaders.values():
            await asyncio.to_thread(reloader.close)

    # ---- the engine a request runs on --------------------------------------------------------------

    def current(self, name: str | None) -> Engine:
        """The model's CURRENT engine (UnknownModel, or NotServed while it has none)."""
        state = self.state(name)
        engine = state.engine
        if engine is None:
            reason = state.reason or "loading"
            raise NotServed(f"model {name or self.default!r} has no validated version loaded ({reason})", reason)
        return engine

    async def engine(self, name: str | None, version: str | None) -> Engine:
        """The engine for (model, version): the model's CURRENT when no version is given (or it is the
        served one), else that published version, loaded on demand."""
        name = name or self.default
        state = self.state(name)
        served = state.engine
        if version is None or (served is not None and served.version == version):
            return self.current(name)
        key = (name, version)
        engine = self.pinned.get(key)
        if engine is not None:
            if not (engine.model.path / MANIFEST_FILE).is_file():  # pruned since it was loaded: one stat
                del self.pinned[key]
                raise UnknownVersion(name, version)
            self.pinned.move_to_end(key)
            return engine
        task = self.loading.get(key)
        if task is None:
            task = self.loading[key] = asyncio.ensure_future(self._pin(name, version))
        return await asyncio.shield(task)  # a request that leaves does not stop the load others wait for

    async def _pin(self, name: str, version: str) -> Engine:
        key = (name, version)
        try:
            engine = await asyncio.to_thread(self._load_pinned, name, version)
        finally:
            self.loading.pop(key, None)
        self.pinned[key] = engine
        self._bound()
        return engine

    def _load_pinned(self, name: str, version: str) -> Engine:
        if version not in list_versions(self.settings.model_dir, name):  # before any path is made of it
            raise UnknownVersion(name, version)
        try:
            engine = load_engine(self.settings, name, version)
        except Exception as e:  # ArtifactError, or anything a broken graph makes onnxruntime raise
            code = reason_code(e)
            log.error("pinned version refused: %s/%s: %s", name, version, e,
                      extra={"fields": {"event": "pin", "outcome": "failed", "reason": code, "model": name}})
            raise NotServed(f"version {version!r} of model {name!r} cannot be served ({code})", code) from None
        engine.warm()
        log.info("pinned %s/%s loaded", name, version, extra={"fields": {"event": "pin", "outcome": "ok"}})
        return engine

    def _bound(self) -> None:
        """Least recently used pinned versions out, until both bounds hold (the newest one is kept
        for the request that loaded it even when it alone exceeds them)."""
        limit = self.settings.pinned_memory_mb * 2 ** 20
        while self.pinned and (len(self.pinned) > self.settings.max_pinned
                               or sum(map(engine_bytes, self.pinned.values())) > limit):
            (name, version), _ = self.pinned.popitem(last=False)
            log.info("pinned %s/%s unloaded (least recently used)", name, version)
        self.metrics.pinned.set(len(self.pinned))

    # ---- what clients may know ---------------------------------------------------------------------

    def loaded(self, name: str) -> list[str]:
        engine = self.states[name].engine
        versions = [engine.version] if engine is not None else []
        return versions + sorted(v for n, v in self.pinned if n == name and v not in versions)

    def describe(self, name: str) -> dict:
        """A model's current version, state (ready, loading, or a refusal's reason code), the
        versions loaded, and a refused newer version."""
        state = self.states[name]
        engine = state.engine
        return {"name": name, "default": name == self.default,
                "version": engine.version if engine is not None else None,
                "description": engine.model.manifest.description if engine is not None else None,
                "state": "ready" if engine is not None else (state.reason or "loading"),
                "loaded": self.loaded(name),
                "reload": {"refused": state.refused_version, "reason": state.reason}}


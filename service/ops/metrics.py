"""Prometheus metrics, one registry per app (so several apps in one test process stay apart).
A server started by `python -m service` runs prometheus-client's multiprocess mode
(service/ops/metrics_dir.py): every worker writes its values to the run's directory and a scrape,
whichever worker answers it, adds up all of them.

What every request records (its count and latency, the in-flight gauge, the names generated) is
tallied in plain Python and written to the metric values once at the end of the event-loop pass
that recorded it (`flush`): each write to a shared value takes a lock, checks the pid and packs
into the mapped file, and under load one pass answers several requests. A scrape flushes first."""
from __future__ import annotations

import asyncio
import os
import re
from bisect import bisect_left

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client import multiprocess

from service.ops.metrics_dir import shared_dir

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

METHODS = frozenset({"GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"})


class Metrics:
    def __init__(self) -> None:
        disable_created_metrics()  # no *_created series: they double the output and nobody reads them
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("namegen_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("namegen_request_duration_seconds", "HTTP request latency",
                                 ["route", "method", "status"], buckets=LATENCY_BUCKETS, registry=r)
        # The model label takes only names the registry holds (a request for another name is refused
        # before anything is counted), so its values stay few.
        self.names = Counter("namegen_names_generated", "names returned by /generate", ["model"], registry=r)
        self.scored = Counter("namegen_names_scored", "names scored by /score", ["model"], registry=r)
        self.inferred = Counter("namegen_oip_rows", "contexts run by the inference protocol's infer",
                                ["model"], registry=r)
        self.busy = Counter("namegen_busy_rejections", "requests refused with 503: too many in flight",
                            registry=r)
        self.in_flight = Gauge("namegen_in_flight", "generations and scorings in flight", registry=r,
                               multiprocess_mode="livesum")
        self.model = Gauge("namegen_model_info", "1 for the version each model serves as its CURRENT (by any "
                           "worker)", ["name", "version"], registry=r, multiprocess_mode="livemax")
        self.reloads = Counter("namegen_reloads", "model (re)loads by model and outcome", ["model", "outcome"],
                               registry=r)
        self.ready = Gauge("namegen_ready", "1 when a validated version of the default model is loaded (in every "
                           "worker)", registry=r, multiprocess_mode="livemin")
        self.model_ready = Gauge("namegen_model_ready", "1 when a validated version of the model is loaded (in "
                                 "every worker)", ["model"], registry=r, multiprocess_mode="livemin")
        self.pinned = Gauge("namegen_pinned_versions", "versions loaded for requests that pin one (summed over "
                            "the workers)", registry=r, multiprocess_mode="livesum")
        self.model_rows = Gauge("namegen_model_rows", "contexts the served version's model has computed "
                                "since it was loaded (cache misses; summed over the workers)", registry=r,
                                multiprocess_mode="livesum")
        self._served: dict[str, str] = {}  # model -> the version its model_info series names
        self._children: dict[tuple[str, str, int], tuple] = {}
        self._pending: dict[tuple[str, str, int], list] = {}  # key -> [count, seconds, per bucket]
        self._pending_names: dict[str, int] = {}  # model -> names generated, not yet written
        self._pending_in_flight: int | None = None
        self._flush_due = False
        self.shared = shared_dir()
        if self.shared:
            forget_dead_workers(self.shared)
            # Each kind of value has its own shared file, opened at its first write: write each once
            # now, so a worker holds the same files all its life (none appears under load).
            for gauge in (self.in_flight, self.pinned, self.model_rows):
                gauge.set(0)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """One request: counted, and its latency in the histogram (written at the end of the pass)."""
        if method not in METHODS:  # a client must not mint label values (each is a series kept forever)
            method = "other"
        key = (route, method, status)
        tally = self._pending.get(key)
        if tally is None:
            tally = self._pending[key] = [0, 0.0, [0] * (len(LATENCY_BUCKETS) + 1)]
            self._due()
        tally[0] += 1
        tally[1] += seconds
        tally[2][bisect_left(LATENCY_BUCKETS, seconds)] += 1  # the first bucket whose bound >= seconds

    def generated(self, model: str, names: int) -> None:
        """Names returned by /generate (or the protocol's generate) for a model."""
        self._pending_names[model] = self._pending_names.get(model, 0) + names
        self._due()

    def set_in_flight(self, requests: int) -> None:
        self._pending_in_flight = requests
        self._due()

    def _due(self) -> None:
        if self._flush_due:
            return
        try:
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:  # no event loop in this thread: write now
            self.flush()
            return
        self._flush_due = True

    def flush(self) -> None:
        """Write what the requests since the last flush recorded to the metric values."""
        self._flush_due = False
        pending, self._pending = self._pending, {}
        for key, (count, seconds, buckets) in pending.items():
            children = self._children.get(key)
            if children is None:  # labels() takes a lock and builds a key each time: remember the pair
                route, method, status = key
                children = self._children[key] = (self.requests.labels(route, method, str(status)),
                                                  self.latency.labels(route, method, str(status)))
            counter, histogram = children
            counter.inc(count)
            # Histogram.observe's own writes (the sum, one bucket per observation), one per bucket here.
            histogram._sum.inc(seconds)
            for value, n in zip(histogram._buckets, buckets):
                if n:
                    value.inc(n)
        names, self._pending_names = self._pending_names, {}
        for model, n in names.items():
            self.names.labels(model).inc(n)
        if self._pending_in_flight is not None:
            self.in_flight.set(self._pending_in_flight)
            self._pending_in_flight = None

    def known(self, model: str) -> None:
        """A model the registry holds: its series start at zero."""
        for outcome in ("ok", "failed"):
            self.reloads.labels(model, outcome)
        self.model_ready.labels(model)

    def serving(self, name: str, version: str, default: bool = True) -> None:
        """Record the version a model now serves (that model's previous version's series is dropped)."""
        previous = self._served.get(name)
        if previous is not None and previous != version:
            if self.shared:  # prometheus-client cannot remove a series from the shared files: zero it
                self.model.labels(name, previous).set(0)
            else:
                self.model.remove(name, previous)
        self._served[name] = version
        self.model.labels(name, version).set(1)
        self.model_ready.labels(name).set(1)
        if default:
            self.ready.set(1)

    def render(self) -> bytes:
        self.flush()
        if not self.shared:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.shared)
        return generate_latest(registry)


def forget_dead_workers(path: str) -> None:
    """Drop the live gauges of workers that are gone (uvicorn restarts a worker that dies, under a new pid)."""
    pids = {int(m.group(1)) for f in os.listdir(path) if (m := re.search(r"_(\d+)\.db\Z", f))}
    for pid in pids:
        if not os.path.exists(f"/proc/{pid}"):
            multiprocess.mark_process_dead(pid, path)

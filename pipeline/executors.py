"""Executors: where the graph's stage workers run, behind one protocol.

A :class:`StageWorker` hosts one stage instance (``setup()`` once, then batches).
:class:`RayExecutor` turns each pool into Ray Core actors with the pool's resources
(fractional CPUs, ``num_gpus``, an accelerator type or a custom resource to pin on);
:class:`LocalExecutor` runs the very same workers in this process. The batch driver
(``pipeline.batch``) talks to either through :class:`Executor`, so `talkfarm render` on a
laptop and `talkfarm batch` on a cluster take one path.

Ray Core actors rather than Ray Data: a Ray Data trial with two actor pools hung on this
2-core machine, and the driver needs per-request retries, ordering of a render's frame
chunks on one encoder, and bounded in-flight work, which are direct to express here.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core.stage import Resources, Stage
from monitoring.metrics import metrics
from pipeline.graph import GraphConfig


class Executor(Protocol):
    """Runs stage calls: ``submit`` a batch (or a handle whose result is the batch) to a stage's
    pool, ``wait`` for some handles to finish, read their ``result`` (raising the worker's
    error). ``capacity`` is how many more calls a pool takes before the driver should wait.
    Calls with the same ``key`` go to the same worker, in submission order."""

    def capacity(self, stage: str) -> int: ...

    def submit(self, stage: str, batch: Any, key: str | None = None, tag: Any = None) -> "Handle": ...

    def wait(self, handles: Sequence["Handle"], timeout: float | None = None) -> list["Handle"]: ...

    def result(self, handle: "Handle") -> list: ...

    def shutdown(self) -> None: ...


class StageWorker:
    """Hosts one stage: built and set up once, then called with batches.

    A plain class so the same object serves as a Ray actor and as an in-process worker.
    """

    def __init__(self, factory: Callable[[], Stage]):
        self.stage = factory()
        self.stage.setup()

    def run(self, batch: list) -> list:
        """The stage's output for ``batch``; the call's wall time (and an error, if it raises) is
        recorded in ``talkfarm_stage_duration_seconds`` / ``talkfarm_stage_errors_total``."""
        with metrics().stage_timer(self.stage.name):
            return self.stage(batch)

    def pid(self) -> int:
        return os.getpid()

    def close(self) -> None:
        self.stage.close()

    def device(self) -> str:
        """The torch device the stage runs on ("cpu" for stages without models on a device)."""
        return str(getattr(self.stage, "device", "cpu"))

    def node_id(self) -> str | None:
        """The Ray node this worker runs on (None in-process)."""
        try:
            import ray

            return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
        except ImportError:
            return None

    def assigned_resources(self) -> dict[str, float]:
        """What the scheduler gave this worker (on Ray; empty in-process)."""
        try:
            import ray

            return dict(ray.get_runtime_context().get_assigned_resources()) if ray.is_initialized() else {}
        except ImportError:
            return {}


@dataclass
class Handle:
    """A submitted call: its stage, the worker index it went to, and its result or Ray ref."""

    stage: str
    worker: int
    ref: Any
    tag: Any = None


def pick_worker(loads: Sequence[int], key: str | None) -> int:
    """The worker of a pool (``loads``: calls in flight on each) a call goes to: with a ``key``,
    always the same one (a fixed string hash, not Python's per-process ``hash``), else the least
    loaded."""
    if key is not None:
        return functools.reduce(lambda h, c: (h * 131 + ord(c)) % 1_000_003, key, 7) % len(loads)
    return min(range(len(loads)), key=loads.__getitem__)


@dataclass(frozen=True)
class _Raised:
    """A call that raised in :class:`LocalExecutor`: re-raised by ``result``, as Ray re-raises
    a worker's error at ``ray.get``; a call given it as its batch raises it too."""

    error: BaseException


class LocalExecutor:
    """The graph's workers in this process, one per stage; a call runs when it is submitted.

    Pools keep their ``max_in_flight`` bound: submitted calls count against ``capacity`` until
    ``wait`` hands them back, so the driver keeps as few frame chunks in memory as on Ray.
    """

    def __init__(self, factories: dict[str, Callable[[], Stage]], config: GraphConfig = GraphConfig()):
        self.config = config
        self.workers = {name: StageWorker(factories[name]) for name in config.stage_names}
        self.in_flight: dict[str, list[int]] = {name: [0] for name in config.stage_names}

    def capacity(self, stage: str) -> int:
        return self.config.pools[stage].max_in_flight - self.in_flight[stage][0]

    def submit(self, stage: str, batch: Any, key: str | None = None, tag: Any = None) -> Handle:
        if isinstance(batch, Handle):
            batch = batch.ref
        self.in_flight[stage][0] += 1
        if isinstance(batch, _Raised):
            return Handle(stage, 0, batch, tag)
        try:
            return Handle(stage, 0, self.workers[stage].run(batch), tag)
        except Exception as err:   # noqa: BLE001 - handed to the driver at result(), as on Ray
            return Handle(stage, 0, _Raised(err), tag)

    def wait(self, handles: Sequence[Handle], timeout: float | None = None) -> list[Handle]:
        for handle in handles:
            self.in_flight[handle.stage][0] -= 1
        return list(handles)

    def result(self, handle: Handle) -> list:
        if isinstance(handle.ref, _Raised):
            raise handle.ref.error
        return handle.ref

    def workers_pids(self, stage: str) -> list[int]:
        return [os.getpid()]

    def shutdown(self) -> None:
        for worker in self.workers.values():
            worker.close()


class RayExecutor:
    """One Ray Core actor pool per stage; calls go to the least-busy actor of the pool.

    Calls given a ``key`` (the encode stage's render key) always go to the same actor, so a
    render's frame chunks are written in order by one encoder. Actors restart after a crash
    (``max_restarts``); calls of idempotent stages lost with an actor are re-run by Ray once
    it is back (``max_task_retries``), and the driver retries the requests whose encoder died.
    """

    def __init__(self, factories: dict[str, Callable[[], Stage]], config: GraphConfig = GraphConfig(),
                 max_restarts: int = 3, start_timeout_s: float = 300.0, max_task_retries: int = 3):
        import ray

        self.ray = ray
        self.config = config
        impossible = {name: missing for name in config.stage_names if (missing := self._missing(config.pools[name].resources))}
        if impossible:
            raise RuntimeError("; ".join(f"the {name} pool asks for {missing}, which no node of the cluster has"
                                         for name, missing in impossible.items()))
        remote_worker = ray.remote(StageWorker)
        self.actors: dict[str, list] = {}
        self.in_flight: dict[str, list[int]] = {}
        for name in config.stage_names:
            spec = config.pools[name]
            # A call lost with its actor is re-run by Ray once the actor is back, for stages whose
            # calls are safe to repeat; the others fail the call and the driver retries the request.
            retries = max_task_retries if config.spec(name).stage_class.idempotent else 0
            options: dict[str, Any] = dict(num_cpus=spec.resources.cpus, num_gpus=spec.resources.gpus,
                                           max_restarts=max_restarts, max_task_retries=retries)
            if spec.resources.accelerator_type:
                options["accelerator_type"] = spec.resources.accelerator_type
            if spec.resources.custom:
                options["resources"] = dict(spec.resources.custom)
            self.actors[name] = [remote_worker.options(name=None, **options).remote(factories[name])
                                 for _ in range(spec.size)]
            self.in_flight[name] = [0] * spec.size
        self._wait_until_placed(start_timeout_s)

    def _missing(self, resources: Resources) -> str | None:
        """What one actor of a pool needs that no single node of the cluster has in total
        (such a pool could never start), or None."""
        wanted = {"CPU": resources.cpus, "GPU": resources.gpus, **resources.custom}
        if resources.accelerator_type:
            wanted[f"accelerator_type:{resources.accelerator_type}"] = 0.001
        nodes = [node["Resources"] for node in self.ray.nodes() if node.get("Alive")]
        if any(all(node.get(key, 0.0) >= amount for key, amount in wanted.items() if amount) for node in nodes):
            return None
        return ", ".join(f"{key}={amount:g}" for key, amount in wanted.items() if amount)

    def _wait_until_placed(self, timeout_s: float) -> None:
        """Fail clearly instead of hanging when a pool asks for more than the cluster has."""
        pending = {actor.pid.remote(): name for name, pool in self.actors.items() for actor in pool}
        ready, not_ready = self.ray.wait(list(pending), num_returns=len(pending), timeout=timeout_s)
        self.ray.get(ready)      # raises if a stage failed to set up
        if not_ready:
            stages = sorted({pending[ref] for ref in not_ready})
            available = self.ray.available_resources()
            self.shutdown()
            raise RuntimeError(
                f"the {', '.join(stages)} pool(s) could not be placed within {timeout_s:.0f} s: their resources "
                f"({', '.join(str(self.config.pools[s].resources) for s in stages)}) exceed what the cluster "
                f"has free ({available})")

    def capacity(self, stage: str) -> int:
        """Free call slots in a pool (size x max_in_flight minus what is queued)."""
        spec = self.config.pools[stage]
        return spec.size * spec.max_in_flight - sum(self.in_flight[stage])

    def submit(self, stage: str, batch: Any, key: str | None = None, tag: Any = None) -> Handle:
        if isinstance(batch, Handle):
            batch = batch.ref
        loads = self.in_flight[stage]
        worker = pick_worker(loads, key)
        loads[worker] += 1
        return Handle(stage, worker, self.actors[stage][worker].run.remote(batch), tag)

    def wait(self, handles: Sequence[Handle], timeout: float | None = None) -> list[Handle]:
        if not handles:
            return []
        by_ref = {handle.ref: handle for handle in handles}
        ready, _ = self.ray.wait(list(by_ref), num_returns=1, timeout=timeout)
        # Collect everything else already finished too, without waiting again.
        more, _ = self.ray.wait([ref for ref in by_ref if ref not in ready], num_returns=len(by_ref) - len(ready),
                                timeout=0) if len(by_ref) > len(ready) else ([], None)
        done = [by_ref[ref] for ref in [*ready, *more]]
        for handle in done:
            self.in_flight[handle.stage][handle.worker] -= 1
        return done

    def result(self, handle: Handle) -> list:
        """The stage's output; raises the worker's error (or RayActorError if it died)."""
        return self.ray.get(handle.ref)

    def workers_pids(self, stage: str) -> list[int]:
        return self.ray.get([actor.pid.remote() for actor in self.actors[stage]])

    def assigned_resources(self, stage: str) -> list[dict[str, float]]:
        return self.ray.get([actor.assigned_resources.remote() for actor in self.actors[stage]])

    def kill_worker(self, stage: str, index: int, restart: bool = True) -> None:
        """Kill one actor (fault-injection for tests and chaos drills)."""
        self.ray.kill(self.actors[stage][index], no_restart=not restart)

    def shutdown(self) -> None:
        for pool in self.actors.values():
            for actor in pool:
                self.ray.kill(actor)

"""The graph's stages over this machine's cores: some pools in worker processes, the rest here.

:class:`ProcessExecutor` is the third :class:`~pipeline.executors.Executor`, for renders and
dubs on one machine with more than one core: the pools named ``hosted`` (a dub's take decoders)
run in worker processes (forked, or from a fork server: ``_context``), one
:class:`~pipeline.executors.StageWorker` each, exactly as a Ray actor hosts it; every other stage runs in this process, as on the
:class:`~pipeline.executors.LocalExecutor`. A chunk's encode (here) is submitted with its
decode call's handle as its argument and runs once that result is back, in submission order,
so the encoder writes frame chunks in order while the decoders work on the next ones.
Threads were tried first and gained nothing (the dubbing is Python-bound under the GIL).

Frames cross the process boundary as pickle protocol 5 out-of-band buffers (no copy through a
pickle string), the big ones in shared-memory files; answers are read by a thread a worker. The workers ignore Ctrl-C (the driver
ends them), exit when the driver closes their pipe, and die with the driver (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import collections
import ctypes
import itertools
import mmap
import multiprocessing
import os
import pickle
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.stage import Stage
from pipeline.executors import Handle, StageWorker, _Raised, pick_worker
from pipeline.graph import GraphConfig

_PENDING = object()
# Seconds a worker has to leave after its pipe is closed before it is terminated, then killed.
STOP_GRACE_S = 5.0


# Buffers at least this big (a chunk's frames: ~190 MB at 960p) cross in a shared-memory file
# instead of the pipe: written once by the sender, mapped (not copied) by the receiver. Through
# the pipe a 960p chunk took 0.8-2.4 s of both processes' time on this machine.
SHARED_MIN_BYTES = 1 << 20
SHARED_FOLDER = "/dev/shm"
_shared_names = itertools.count()


def send_message(connection, message: Any) -> None:
    """Send ``message`` on a multiprocessing connection: its pickle (protocol 5) with every
    contiguous array buffer sent apart, unpickled: a big one in a shared-memory file (where the
    system has them), named in the message, the others on the pipe after it."""
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
    raws = [buffer.raw() for buffer in buffers]
    places = [_share(raw) if raw.nbytes >= SHARED_MIN_BYTES else None for raw in raws]
    try:
        connection.send((data, [raw.nbytes for raw in raws], places))
        for raw, place in zip(raws, places):
            if place is None:
                connection.send_bytes(raw)
    except BaseException:
        for place in places:        # never received: nobody else will remove them
            if place is not None:
                _unlink(place)
        raise


def receive_message(connection) -> Any:
    """A message :func:`send_message` sent; its arrays are writable (read into bytearrays, or
    the shared-memory files mapped, whose names are removed at once: the mapping lives on as
    long as the arrays do)."""
    data, sizes, places = connection.recv()
    buffers: list[Any] = []
    try:
        for size, place in zip(sizes, places):
            if place is None:
                buffers.append(bytearray(size))
                connection.recv_bytes_into(buffers[-1])
            else:
                buffers.append(_map(place, size))
    finally:
        for place in places:
            if place is not None:
                _unlink(place)
    return pickle.loads(data, buffers=buffers)


def _share(raw: memoryview) -> str | None:
    """``raw`` written to a new shared-memory file; its path (None where there are none)."""
    if not os.path.isdir(SHARED_FOLDER):
        return None
    path = os.path.join(SHARED_FOLDER, f"talkfarm-{os.getpid()}-{next(_shared_names)}")
    descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        # Written with pwrite, not through a mapping: the kernel fills the file's pages as it
        # copies, where a mapping faulted each 4 KiB page in on its own (a 960p chunk: 161 against
        # 79 ms of CPU on this machine, mostly system time).
        raw = raw.cast("B")
        written = 0
        while written < raw.nbytes:
            written += os.pwrite(descriptor, raw[written:], written)
    except BaseException:
        _unlink(path)
        raise
    finally:
        os.close(descriptor)
    return path


def _map(path: str, size: int) -> mmap.mmap:
    descriptor = os.open(path, os.O_RDWR)
    try:
        return mmap.mmap(descriptor, size)
    finally:
        os.close(descriptor)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _portable(error: BaseException) -> BaseException:
    """The error itself if it pickles, else a RuntimeError naming it (the driver shows one line)."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:      # noqa: BLE001 - any unpicklable error becomes a plain one
        return RuntimeError(f"{type(error).__name__}: {error}")


def _die_with_parent() -> None:
    """Linux: have the kernel kill this process when the driver dies (no orphans, even on SIGKILL)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)     # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _context(factories: Sequence[Callable[[], Stage]]):
    """Where the worker processes come from. Forked from this process where torch runs on one
    thread here, on the CPU (``talkfarm dub``'s default): the child has every module already imported and
    costs nothing to start. A child forked after torch's OpenMP threads ran here hangs in its
    first parallel region (seen: a test process with two torch threads), so otherwise from a
    fork server that imports the hosted stages' modules once (~2.5 s of CPU, not per worker),
    or spawned afresh where there is none."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and _fork_safe():
        return multiprocessing.get_context("fork")
    if "forkserver" not in methods:
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    modules = {getattr(factory, "stage_class", None) or getattr(factory, "func", factory) for factory in factories}
    context.set_forkserver_preload(sorted({__name__, *(module.__module__ for module in modules)}))
    return context


def _fork_safe() -> bool:
    """Whether torch (if loaded) runs one intra-op thread (then it never starts an OpenMP team)
    and has not set CUDA up (which a forked child cannot use)."""
    torch = sys.modules.get("torch")
    return torch is None or (torch.get_num_threads() == 1 and not torch.cuda.is_initialized())


def _serve(factory: Callable[[], Stage], inbox, outbox, foreign: Sequence = ()) -> None:
    """A worker process's life: build and set up the stage, then answer calls in order until the
    driver sends None or closes the pipe. Calls are read by a thread, so the driver's send of the
    next chunk never waits for this one's work. ``foreign``: the driver's ends of the pipes, which
    a forked child holds copies of: closed, so that the driver's close is an end of file to each."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    for connection in foreign:
        connection.close()
    try:
        worker = StageWorker(factory)
    except BaseException as err:        # noqa: BLE001 - reported to the driver, which raises it
        send_message(outbox, ("failed", _portable(err)))
        return
    send_message(outbox, ("ready", os.getpid()))
    calls: queue.SimpleQueue = queue.SimpleQueue()

    def read_calls() -> None:
        while True:
            try:
                call = receive_message(inbox)
            except (EOFError, OSError):
                call = None
            calls.put(call)
            if call is None:
                return

    threading.Thread(target=read_calls, daemon=True).start()
    try:
        while (call := calls.get()) is not None:
            try:
                answer: Any = ("done", worker.run(call))
            except Exception as err:        # noqa: BLE001 - the call's error, raised at the driver's result()
                answer = ("raised", _portable(err))
            try:
                send_message(outbox, answer)
            except (BrokenPipeError, EOFError):
                return
            except Exception as err:        # noqa: BLE001 - a result that does not pickle
                send_message(outbox, ("raised", _portable(err)))
    finally:
        worker.close()


@dataclass
class _Call:
    """One submitted call: its pool and worker, its argument (a batch or the handle whose result
    is the batch) and, once known, its outcome (the result batch or ``_Raised``)."""

    stage: str
    worker: int
    argument: Any
    outcome: Any = _PENDING


@dataclass
class _Process:
    """A worker process of a hosted pool and the calls it has been sent, oldest first (a worker
    answers in order)."""

    process: Any
    inbox: Any
    outbox: Any
    sent: collections.deque = field(default_factory=collections.deque)
    pid: int | None = None
    dead: str | None = None


class ProcessExecutor:
    """Pools in ``hosted`` in worker processes (the pool's ``size`` of them), the other stages in
    this process; the :class:`~pipeline.executors.Executor` protocol, as the other executors.

    A call runs (here) or is sent (to its worker) once its argument is ready and every call
    submitted before it to the same worker has been; so calls with one ``key`` keep their order.
    A worker that dies fails its calls (and every later one) with one line naming it.

    Args:
        factories: each stage's constructor (picklable: a hosted one is built in its process).
        config: the pools; a hosted pool's ``size`` is its process count.
        hosted: the stages whose workers are processes.
        start_timeout_s: longest wait for the workers to load their models.
    """

    def __init__(self, factories: dict[str, Callable[[], Stage]], config: GraphConfig, hosted: Collection[str],
                 start_timeout_s: float = 600.0):
        self.config = config
        self.hosted = frozenset(hosted)
        unknown = self.hosted - set(config.stage_names)
        if unknown:
            raise ValueError(f"no stage {', '.join(sorted(unknown))} in the graph")
        self.in_flight = {name: [0] * (config.pools[name].size if name in self.hosted else 1)
                          for name in config.stage_names}
        self._lanes = {(name, index): collections.deque() for name, counts in self.in_flight.items()
                       for index in range(len(counts))}
        self._arrivals: queue.SimpleQueue = queue.SimpleQueue()
        self.processes: dict[tuple[str, int], _Process] = {}
        self.workers: dict[str, StageWorker] = {}
        self._start_timeout_s = start_timeout_s
        self._start_failure: str | None = None
        # Forked here and now, before this process builds its stages; from a fork server by a
        # thread (its first start waits for its imports, ~3-5 s) while this process builds its
        # stages and runs the task stages. The first call to a worker waits for them (``_started``).
        context = _context([factories[name] for name in self.hosted])
        self._starter: threading.Thread | None = threading.Thread(target=self._start_all, args=(context, factories),
                                                                  daemon=True)
        if context.get_start_method() == "fork":
            self._starter.run()
        else:
            self._starter.start()
        try:
            self.workers = {name: StageWorker(factories[name]) for name in config.stage_names
                            if name not in self.hosted}
        except BaseException:
            self.shutdown()
            raise

    def _start_all(self, context, factories: dict[str, Callable[[], Stage]]) -> None:
        try:
            for name in sorted(self.hosted):
                for index in range(self.config.pools[name].size):
                    self._start(context, name, index, factories[name])
        except BaseException as err:        # noqa: BLE001 - every call to a worker fails with it
            self._start_failure = f"the worker processes could not start: {type(err).__name__}: {err}"

    def _started(self) -> None:
        """Wait (once) until every worker process has set its stage up; one that failed (or did
        not start) fails every call to its pool with one line."""
        if self._starter is None:
            return
        if self._starter.ident is not None:
            self._starter.join()
        self._starter = None
        if self._start_failure is None:
            try:
                self._wait_until_ready(self._start_timeout_s)
            except Exception as err:      # noqa: BLE001 - a stage that cannot be set up
                self._start_failure = f"{type(err).__name__}: {err}"
        if self._start_failure is not None:
            for worker in self.processes.values():
                worker.dead = self._start_failure
            for name in self.hosted:      # no process at all: lanes without one fail alike
                for index in range(len(self.in_flight[name])):
                    self.processes.setdefault((name, index), _Process(None, None, None, dead=self._start_failure))

    def _start(self, context, stage: str, index: int, factory: Callable[[], Stage]) -> None:
        inbox_read, inbox_write = context.Pipe(duplex=False)
        outbox_read, outbox_write = context.Pipe(duplex=False)
        foreign = [inbox_write, outbox_read] + [end for worker in self.processes.values()
                                                for end in (worker.inbox, worker.outbox)]
        process = context.Process(target=_serve, daemon=True, name=f"talkfarm-{stage}-{index}",
                                  args=(factory, inbox_read, outbox_write,
                                        foreign if context.get_start_method() == "fork" else ()))
        process.start()
        inbox_read.close()
        outbox_write.close()
        self.processes[(stage, index)] = _Process(process, inbox_write, outbox_read)

    def _wait_until_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for (stage, index), worker in self.processes.items():
            if not worker.outbox.poll(max(0.0, deadline - time.monotonic())):
                raise RuntimeError(f"the {stage} worker process did not start within {timeout_s:.0f} s")
            try:
                status, detail = receive_message(worker.outbox)
            except (EOFError, OSError):
                raise RuntimeError(f"the {stage} worker process exited while starting "
                                   f"(exit code {worker.process.exitcode})") from None
            if status == "failed":
                raise detail
            worker.pid = detail
            threading.Thread(target=self._read_answers, args=((stage, index), worker.outbox), daemon=True).start()

    def _read_answers(self, lane: tuple[str, int], outbox) -> None:
        """A thread per worker: its answers, as they come, onto the arrivals queue."""
        while True:
            try:
                self._arrivals.put((lane, receive_message(outbox)))
            except (EOFError, OSError):
                self._arrivals.put((lane, None))
                return

    def capacity(self, stage: str) -> int:
        slots = self.config.slots(stage) if stage in self.hosted else self.config.pools[stage].max_in_flight
        return slots - sum(self.in_flight[stage])

    def submit(self, stage: str, batch: Any, key: str | None = None, tag: Any = None) -> Handle:
        loads = self.in_flight[stage]
        worker = pick_worker(loads, key)
        loads[worker] += 1
        call = _Call(stage, worker, batch)
        self._lanes[(stage, worker)].append(call)
        self._pump()
        return Handle(stage, worker, call, tag)

    def _pump(self) -> None:
        """Run or send every call whose argument is ready, each worker's in submission order."""
        moved = True
        while moved:
            moved = False
            for lane, calls in self._lanes.items():
                while calls and _ready(calls[0].argument):
                    self._dispatch(lane, calls.popleft())
                    moved = True

    def _dispatch(self, lane: tuple[str, int], call: _Call) -> None:
        argument = call.argument.ref.outcome if isinstance(call.argument, Handle) else call.argument
        if isinstance(argument, _Raised):
            call.outcome = argument
            return
        if call.stage not in self.hosted:
            try:
                call.outcome = self.workers[call.stage].run(argument)
            except Exception as err:     # noqa: BLE001 - handed to the driver at result(), as on Ray
                call.outcome = _Raised(err)
            return
        self._started()
        worker = self.processes[lane]
        if worker.dead is None:
            try:
                send_message(worker.inbox, argument)
                worker.sent.append(call)
                return
            except (BrokenPipeError, EOFError, OSError):
                self._died(lane)
        call.outcome = _Raised(RuntimeError(worker.dead))

    def _died(self, lane: tuple[str, int]) -> None:
        worker = self.processes[lane]
        if worker.process is None:
            return
        worker.process.join(1.0)
        worker.dead = (f"the {lane[0]} worker process {worker.pid} died (exit code {worker.process.exitcode})")
        while worker.sent:
            worker.sent.popleft().outcome = _Raised(RuntimeError(worker.dead))

    def _take(self, lane: tuple[str, int], answer: Any) -> None:
        if answer is None:
            self._died(lane)
            return
        status, value = answer
        call = self.processes[lane].sent.popleft()
        call.outcome = value if status == "done" else _Raised(value)

    def wait(self, handles: Sequence[Handle], timeout: float | None = None) -> list[Handle]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            while True:
                try:
                    self._take(*self._arrivals.get_nowait())
                except queue.Empty:
                    break
            self._pump()
            done = [handle for handle in handles if handle.ref.outcome is not _PENDING]
            remaining = None if deadline is None else deadline - time.monotonic()
            if done or not handles or (remaining is not None and remaining <= 0):
                break
            try:
                self._take(*self._arrivals.get(timeout=remaining))
            except queue.Empty:
                pass
        for handle in done:
            self.in_flight[handle.stage][handle.worker] -= 1
        return done

    def result(self, handle: Handle) -> list:
        outcome = handle.ref.outcome
        if isinstance(outcome, _Raised):
            raise outcome.error
        return outcome

    def workers_pids(self, stage: str) -> list[int]:
        if stage in self.hosted:
            self._started()
            return [self.processes[(stage, index)].pid for index in range(len(self.in_flight[stage]))]
        return [os.getpid()]

    def shutdown(self) -> None:
        """Stop every worker process (its pipe closed: it closes its stage and leaves; else it is
        terminated, else killed), and close the stages here."""
        if self._starter is not None and self._starter.ident is not None:
            self._starter.join()
        self._starter = None
        for stage_worker in self.workers.values():
            stage_worker.close()
        running = [worker for worker in self.processes.values() if worker.process is not None]
        for worker in running:
            try:
                worker.inbox.close()
            except OSError:
                pass
        deadline = time.monotonic() + STOP_GRACE_S
        for worker in running:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(2.0)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.dead = worker.dead or "the executor was shut down"


def _ready(argument: Any) -> bool:
    return not isinstance(argument, Handle) or argument.ref.outcome is not _PENDING

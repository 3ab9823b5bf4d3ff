"""The stage interface every worker implements, and the resources it asks for.

A stage is a plain class: ``setup()`` loads models once per worker (an actor on Ray, the
process in-process), ``__call__(batch)`` maps a list of items to a list of items. Stages know
nothing about Ray; ``pipeline.graph`` declares them in order and ``pipeline.executors`` runs
the same classes as Ray actor pools or in this process.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Generic, Literal, TypeVar

from core.errors import BadInputError
from core.schemas import RenderControls
from core.task import RenderTask, StageFailure

InT = TypeVar("InT")
OutT = TypeVar("OutT")


@dataclass(frozen=True)
class Resources:
    """What one worker of a stage needs.

    Attributes:
        cpus: CPU cores per worker; fractional values let several actors share a core.
        gpus: GPUs per worker (0 for CPU pools).
        accelerator_type: pin to nodes of one accelerator kind (e.g. ``"H100"``), or None.
        custom: extra scheduler resources to pin on, e.g. ``{"decoder_node": 1}``.
    """

    cpus: float = 1.0
    gpus: float = 0.0
    accelerator_type: str | None = None
    custom: dict[str, float] = field(default_factory=dict)


class Stage(ABC, Generic[InT, OutT]):
    """One step of the render graph: ``setup()`` once, then ``__call__`` on batches, ``close()``.

    Class attributes declare the stage to the graph (``pipeline.graph``), which reads them
    and nothing else: ``name``; ``resources``, what one worker asks the scheduler for (the
    defaults share a 2-CPU laptop: fractional CPUs let the light stages share a core); ``record``, what a call
    takes ("task": one :class:`RenderTask` per request, "chunk": a :class:`FrameChunk` of
    its frames); ``ordered``, calls for one render must reach one worker in frame order.
    """

    name: ClassVar[str]
    resources: ClassVar[Resources] = Resources()
    record: ClassVar[Literal["task", "chunk"]] = "task"
    ordered: ClassVar[bool] = False
    # Calling again with the same batch gives the same result and leaves nothing behind, so a
    # graph may re-run a call whose worker died (the encoder, which appends to an open file,
    # is not).
    idempotent: ClassVar[bool] = True

    @classmethod
    def model_versions(cls, controls: RenderControls) -> dict[str, str]:
        """Name -> version of the models this stage runs for a render with ``controls``, known
        before it runs: part of the render's identity (``core.identity.render_id``)."""
        return {}

    def setup(self) -> None:
        """Load models and warm caches; called once per worker before the first batch."""

    def close(self) -> None:
        """Release what the stage holds open between batches (child processes, files); called
        when its worker stops, where the executor stops it (a worker process before it exits)."""

    @abstractmethod
    def __call__(self, batch: list[InT]) -> list[OutT]:
        """Process a batch; must return one output per input, in order."""


class TaskStage(Stage[RenderTask, RenderTask]):
    """A stage that fills in one part of each :class:`RenderTask`.

    Subclasses implement :meth:`process`. Tasks that already failed pass through untouched;
    a :class:`BadInputError` fails only its own task, recording this stage and the message,
    so one bad request never sinks a batch. Wall seconds per task land in ``task.seconds``.
    """

    def __call__(self, batch: list[RenderTask]) -> list[RenderTask]:
        for task in batch:
            if task.failure is not None:
                continue
            started = time.perf_counter()
            try:
                self.process(task)
            except BadInputError as err:
                task.failure = StageFailure(stage=err.stage or self.name, message=str(err))
            task.seconds[self.name] = task.seconds.get(self.name, 0.0) + time.perf_counter() - started
        return batch

    @abstractmethod
    def process(self, task: RenderTask) -> None:
        """Fill this stage's fields of ``task`` in place; raise BadInputError for bad input."""

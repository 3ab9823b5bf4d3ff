"""The render graph, declared once: its stages in order, how each is built, its pools.

:data:`RENDER_GRAPH` is the one list of the stages. The batch driver walks it (task stages
one after another per request, then each render's frame chunks through the chunk stages),
and the executors (``pipeline.executors``), the settings, the metrics and the benches read
the names, resources and kinds from it. A stage declares its own name, resources, record
kind, ordering and model versions (``core.stage.Stage``); a :class:`StageSpec` adds only how
the graph builds it. A new stage is one class in ``workers/`` and one line here.
:data:`DUB_GRAPH` is the second graph, dubbing an actor's take; it shares the audio, motion and
encode specs. A :class:`GraphConfig` says which graph it runs.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from core.devices import pool_device
from core.schemas import RenderControls
from core.stage import Resources, Stage
from core.storage import Storage
from core.task import FrameChunk, RenderTask
from workers.alignment.stage import AlignmentStage
from workers.audio.stage import AudioFeatureStage
from workers.decoder.renderer import DecoderConfig
from workers.decoder.stage import DecodeStage
from workers.encode.stage import EncodeStage
from workers.motion.stage import MotionStage
from workers.take.stage import TakeDecodeStage, TakeMotionStage, TakeTrackStage


@dataclass(frozen=True)
class StageOptions:
    """What the stages of one graph are built with.

    Attributes:
        storage: where inputs are read and outputs written (None: local files).
        decoder: decoder settings; its device is the pool's unless ``device`` is given.
        quality_check: the encoder measures every finished video (batch QC).
        device: torch device of the device stages (motion sampling, decoding), overriding the
            one their pool's GPUs give (``core.devices.pool_device``); a local render uses one.
    """

    storage: Storage | None = None
    decoder: DecoderConfig = DecoderConfig()
    quality_check: bool = True
    device: str | None = None


@dataclass(frozen=True)
class StageSpec:
    """How the graph builds one stage; all else (name, resources, record kind, ordering, model
    versions) the stage class declares itself.

    Attributes:
        stage_class: the :class:`~core.stage.Stage` subclass.
        arguments: the keyword arguments it is built with, from the graph's :class:`StageOptions`.
        on_device: built with ``device=`` (torch stages), from its pool's GPUs.
        workers: default pool size.
    """

    stage_class: type[Stage]
    arguments: Callable[[StageOptions], dict[str, Any]] = lambda options: {}
    on_device: bool = False
    workers: int = 1

    @property
    def name(self) -> str:
        return self.stage_class.name

    @property
    def resources(self) -> Resources:
        return self.stage_class.resources

    @property
    def record(self) -> str:
        return self.stage_class.record

    @property
    def ordered(self) -> bool:
        return self.stage_class.ordered

    def factory(self, options: StageOptions, gpus: float) -> Callable[[], Stage]:
        """A picklable constructor of the stage (each worker builds its own instance);
        ``gpus``: per worker of its pool, which decide its torch device unless
        ``options.device`` does."""
        build = functools.partial(self.stage_class, **self.arguments(options))
        if not self.on_device:
            return build
        if options.device is not None:
            return functools.partial(build, device=options.device)
        return OnPoolDevice(build, gpus)


_AUDIO = StageSpec(AudioFeatureStage, lambda options: {"storage": options.storage})
_MOTION = StageSpec(MotionStage, on_device=True)
_ENCODE = StageSpec(EncodeStage, lambda options: {"storage": options.storage, "quality_check": options.quality_check})
RENDER_GRAPH: tuple[StageSpec, ...] = (
    StageSpec(AlignmentStage, lambda options: {"storage": options.storage}),
    _AUDIO,
    _MOTION,
    StageSpec(DecodeStage, lambda options: {"config": options.decoder}, on_device=True, workers=2),
    _ENCODE,
)
# Dubbing an actor's take (a request with a ``video``): the take is tracked instead of a photo
# aligned, the same audio and motion stages sample the new speech's motion, the take's own
# motion takes its mouth channels, and each frame of the take is decoded from itself.
DUB_GRAPH: tuple[StageSpec, ...] = (
    StageSpec(TakeTrackStage, lambda options: {"storage": options.storage}),
    _AUDIO,
    _MOTION,
    StageSpec(TakeMotionStage),
    StageSpec(TakeDecodeStage, lambda options: {"config": options.decoder, "storage": options.storage},
              on_device=True, workers=2),
    _ENCODE,
)
STAGES: tuple[str, ...] = tuple(spec.name for spec in RENDER_GRAPH)
# Every stage of either graph: the pools a settings file may name.
ALL_STAGES: tuple[str, ...] = tuple(dict.fromkeys(spec.name for spec in RENDER_GRAPH + DUB_GRAPH))
TASK_STAGES: tuple[str, ...] = tuple(spec.name for spec in RENDER_GRAPH if spec.record == "task")
CHUNK_STAGES: tuple[str, ...] = tuple(spec.name for spec in RENDER_GRAPH if spec.record == "chunk")
CHUNK_FRAMES = 50


def stage_spec(name: str, graph: tuple[StageSpec, ...] = RENDER_GRAPH) -> StageSpec:
    """The spec of the stage called ``name`` in ``graph``."""
    return next(spec for spec in graph if spec.name == name)


@dataclass(frozen=True)
class PoolSpec:
    """One stage's worker pool.

    Attributes:
        size: number of workers (actors).
        resources: what each worker asks the scheduler for.
        max_in_flight: calls queued per worker before the driver waits (backpressure).
    """

    size: int = 1
    resources: Resources = Resources()
    max_in_flight: int = 2


@dataclass(frozen=True)
class GraphConfig:
    """A pool per stage of a graph (:data:`RENDER_GRAPH` unless ``stages`` says another, e.g.
    :data:`DUB_GRAPH`), how frames are split into chunks, and the driver's bound on requests in
    flight."""

    # Each stage's own resources and default worker count (1.9 CPUs in all: fits a 2-CPU laptop).
    pools: dict[str, PoolSpec] = field(default_factory=dict)
    chunk_frames: int = CHUNK_FRAMES
    # Requests the batch driver keeps between claim and finish; None: derived from the pools
    # (:meth:`requests_in_flight`).
    max_requests_in_flight: int | None = None
    stages: tuple[StageSpec, ...] = RENDER_GRAPH

    def __post_init__(self) -> None:
        if not self.pools:     # the graph's own defaults: each stage's resources and worker count
            object.__setattr__(self, "pools", {spec.name: PoolSpec(spec.workers, spec.resources)
                                               for spec in self.stages})
        missing = set(self.stage_names) - set(self.pools)
        if missing:
            raise ValueError(f"graph config lacks pools for {', '.join(sorted(missing))}")

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.stages)

    @property
    def task_stages(self) -> tuple[str, ...]:
        """Stages called once per request, in order."""
        return tuple(spec.name for spec in self.stages if spec.record == "task")

    @property
    def chunk_stages(self) -> tuple[str, ...]:
        """Stages called once per frame chunk, in order."""
        return tuple(spec.name for spec in self.stages if spec.record == "chunk")

    def spec(self, name: str) -> StageSpec:
        return stage_spec(name, self.stages)

    def model_versions(self, controls: RenderControls) -> dict[str, str]:
        """Versions of the models a render through this graph runs, as its stages declare them."""
        return model_versions(controls, self.stages)

    def slots(self, stage: str) -> int:
        """Calls a pool holds at once: workers x max_in_flight."""
        spec = self.pools[stage]
        return spec.size * spec.max_in_flight

    def requests_in_flight(self) -> int:
        """How many requests the driver keeps claimed so that every pool can be kept busy.

        Each task stage (alignment, audio, motion) takes one request per call slot; a request's
        frame chunks can spread over all decoders, but a decoder slot only stays fed across a
        render's end if another request is ready behind it, so each slot of the first chunk
        stage counts one more request. Later chunk stages (the encoders) take a render's chunks
        right behind its decoders and add no requests.
        Explicit ``max_requests_in_flight`` (settings file, chart) wins.
        """
        if self.max_requests_in_flight is not None:
            return self.max_requests_in_flight
        first_chunk_stage = self.chunk_stages[:1]
        return sum(self.slots(stage) for stage in (*self.task_stages, *first_chunk_stage))


def for_graph(config: GraphConfig, stages: tuple[StageSpec, ...]) -> GraphConfig:
    """``config``'s pools, chunk size and bounds, running ``stages`` (e.g. a job of dubs,
    :data:`DUB_GRAPH`): a stage ``config`` has no pool for gets its own default pool."""
    pools = {spec.name: config.pools.get(spec.name, PoolSpec(spec.workers, spec.resources)) for spec in stages}
    return GraphConfig(pools, config.chunk_frames, config.max_requests_in_flight, stages)


@dataclass(frozen=True)
class OnPoolDevice:
    """A picklable constructor of a torch stage that runs on the device its pool's resources
    give it (``core.devices.pool_device``), resolved in the worker, where CUDA is or is not.

    Attributes:
        factory: builds the stage given ``device=``, e.g. ``partial(DecodeStage, config)``.
        gpus: GPUs per worker of the stage's pool.
    """

    factory: Callable[..., Stage]
    gpus: float

    @property
    def stage_class(self) -> type:
        return getattr(self.factory, "func", self.factory)

    def device(self) -> str:
        return pool_device(self.gpus)

    def __call__(self) -> Stage:
        return self.factory(device=self.device())


def stage_factories(options: StageOptions = StageOptions(),
                    graph: GraphConfig | None = None) -> dict[str, Callable[[], Stage]]:
    """Picklable constructors of every stage of the graph, bound to ``graph``'s pools: motion
    sampling and decoding run on CUDA when their pools have GPUs (and the worker has CUDA),
    on the CPU otherwise, unless ``options.device`` names one device for them."""
    graph = graph or GraphConfig()
    return {spec.name: spec.factory(options, graph.pools[spec.name].resources.gpus) for spec in graph.stages}


def model_versions(controls: RenderControls, graph: tuple[StageSpec, ...] = RENDER_GRAPH) -> dict[str, str]:
    """Versions of the models a render with these controls runs through, as each stage of the
    graph declares them (``Stage.model_versions``)."""
    versions: dict[str, str] = {}
    for spec in graph:
        versions.update(spec.stage_class.model_versions(controls))
    return versions


def frame_chunks(task: RenderTask, chunk_frames: int = CHUNK_FRAMES) -> Iterator[FrameChunk]:
    """Split a task's frames into consecutive chunks [start, stop).

    A dub's chunk carries a copy of the task holding only its frames' rows of the take's track
    (``core.take.TakeTrack.window``): on Ray each chunk is shipped to a decoder with its task,
    and a 10-minute take's landmarks alone are ~80 MB. The copy shares everything else.
    """
    for start in range(0, task.num_frames, chunk_frames):
        stop = min(task.num_frames, start + chunk_frames)
        own = task if task.take is None else dataclasses.replace(task, take=task.take.window(start, stop))
        yield FrameChunk(own, start, stop)

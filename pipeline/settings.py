"""Typed, validated batch settings at the edge (YAML / JSON file or CLI flags).

Validated once here with pydantic and turned into the dataclasses the graph uses.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from core.stage import Resources
from pipeline.graph import ALL_STAGES, STAGES, GraphConfig, PoolSpec


class PoolSettings(BaseModel):
    """One stage's pool: how many workers and what each asks the scheduler for."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(1, ge=1, le=1024)
    cpus: float = Field(0.25, ge=0.0, le=256)
    gpus: float = Field(0.0, ge=0.0, le=16)
    accelerator_type: str | None = Field(None, description="pin to nodes with this accelerator, e.g. H100")
    custom_resources: dict[str, float] = Field(default_factory=dict, description="extra Ray resources to pin on")
    max_in_flight: int = Field(2, ge=1, le=64)

    def spec(self) -> PoolSpec:
        return PoolSpec(self.size, Resources(self.cpus, self.gpus, self.accelerator_type, dict(self.custom_resources)),
                        self.max_in_flight)


def _default_pools() -> dict[str, PoolSettings]:
    defaults = GraphConfig().pools
    return {name: PoolSettings(size=spec.size, cpus=spec.resources.cpus, gpus=spec.resources.gpus,
                               max_in_flight=spec.max_in_flight) for name, spec in defaults.items()}


class GraphSettings(BaseModel):
    """The whole graph: a pool per stage plus the frame chunk size."""

    model_config = ConfigDict(extra="forbid")

    pools: dict[str, PoolSettings] = Field(default_factory=_default_pools)
    chunk_frames: int = Field(50, ge=5, le=1000)
    max_requests_in_flight: int | None = Field(
        None, ge=1, le=1_000_000,
        description="requests the batch driver keeps claimed at once; default: derived from the pools so every "
                    "pool can be kept busy (GraphConfig.requests_in_flight)")

    def config(self) -> GraphConfig:
        pools = _default_pools()
        unknown = set(self.pools) - set(ALL_STAGES)
        if unknown:
            raise ValueError(f"unknown stage pools: {', '.join(sorted(unknown))} (stages: {', '.join(ALL_STAGES)})")
        pools.update(self.pools)
        # the render graph's pools, and any pool of the dubbing graph's own stages the file names
        # (pipeline.graph.for_graph gives a job of dubs those, and defaults for the rest)
        names = STAGES + tuple(name for name in ALL_STAGES if name in self.pools and name not in STAGES)
        return GraphConfig({name: pools[name].spec() for name in names}, self.chunk_frames, self.max_requests_in_flight)

    @classmethod
    def from_file(cls, path: str | Path) -> "GraphSettings":
        return cls.model_validate(yaml.safe_load(Path(path).read_text()) or {})

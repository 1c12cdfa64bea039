"""Engine registry. Engines are imported lazily so that torch loads only for diffusion."""

from __future__ import annotations

from pipeline.engines.base import Engine, FrameContext, fit_size
from pipeline.request import StyleParams


def create_engine(params: StyleParams) -> Engine:
    """Build the engine named by params.engine (cheap: weights load in prepare())."""
    params.validate()
    if params.engine == "fast-style":
        from pipeline.engines.fast_style import FastStyleEngine

        return FastStyleEngine(params)
    if params.engine == "classical":
        from pipeline.engines.classical import ClassicalEngine

        return ClassicalEngine(params)
    from pipeline.engines.diffusion import DiffusionEngine

    return DiffusionEngine(params)


__all__ = ["Engine", "FrameContext", "create_engine", "fit_size"]

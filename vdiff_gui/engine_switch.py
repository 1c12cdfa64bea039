"""What changes with the engine: each engine's sensible strength, as the CLI's defaults.

Diffusion img2img at strength 1.0 ignores the frame (pure text-to-image): the CLI defaults to 0.5 for
it and 1.0 for the others, and so does the app when the user switches engine, unless they had moved
the strength away from the old engine's default.
"""

from __future__ import annotations

from pipeline.request import StyleParams

DEFAULT_STRENGTH = {"diffusion": 0.5}  # any other engine: 1.0


def default_strength(engine: str) -> float:
    return DEFAULT_STRENGTH.get(engine, 1.0)


def engine_change(params: StyleParams, engine: str) -> dict:
    """The edits for switching `params` to `engine`: the engine, and its default strength if the
    strength was still the old engine's default."""
    changes: dict = {"engine": engine}
    if engine != params.engine and params.strength == default_strength(params.engine):
        changes["strength"] = default_strength(engine)
    return changes

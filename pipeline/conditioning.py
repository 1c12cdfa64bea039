"""What a diffusion render is conditioned on besides the prompt: ControlNets, LoRAs and an IP-Adapter.

Plain frozen values (no torch): StyleParams holds them, the CLI parses them, presets and projects
store them as JSON objects. `ID|PATH[:NUMBER]` is the command line's way to name a model file and its
scale or weight; a trailing `:NUMBER` is only taken as the number when it parses as one, so Windows
drive letters and hub ids keep their colons.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pipeline.errors import BadInputError

# preprocessors that turn a source frame into a ControlNet's control image (pipeline.engines.controls)
CONTROL_TYPES = ("canny", "tile", "depth", "lineart", "softedge", "none")


@dataclass(frozen=True)
class ControlNetSpec:
    """One ControlNet: its model, the preprocessor for its control image, its scale and guidance window."""

    model: str
    control: str = "canny"
    scale: float = 1.0
    start: float = 0.0  # fraction of the denoising steps where the net starts guiding
    end: float = 1.0  # ... and where it stops

    def validate(self) -> None:
        if not self.model:
            raise BadInputError("a ControlNet needs a model: a hub id, a folder or a .safetensors file")
        if self.control not in CONTROL_TYPES:
            raise BadInputError(f"unknown control '{self.control}'; choose one of {', '.join(CONTROL_TYPES)}")
        if not 0.0 <= self.start < self.end <= 1.0:
            raise BadInputError(
                f"the ControlNet guidance window must satisfy 0 <= start < end <= 1, got {self.start}-{self.end}"
            )
        if not 0.0 <= self.scale <= 5.0:
            raise BadInputError(f"a ControlNet scale must be between 0 and 5, got {self.scale}")


@dataclass(frozen=True)
class LoraSpec:
    """One LoRA: a .safetensors file (diffusers or kohya layout), a folder holding one, or a hub id."""

    path: str
    weight: float = 1.0

    def validate(self) -> None:
        if not self.path:
            raise BadInputError("a LoRA needs a file, a folder or a hub id")
        if not -5.0 <= self.weight <= 5.0:
            raise BadInputError(f"a LoRA weight must be between -5 and 5, got {self.weight}")


def split_scale(text: str, default: float, what: str) -> tuple[str, float]:
    """'models/net:0.8' -> ('models/net', 0.8); 'C:/nets/x' -> ('C:/nets/x', default)."""
    text = text.strip()
    head, sep, tail = text.rpartition(":")
    if sep and head:
        try:
            return head, float(tail)
        except ValueError:
            pass
    if not text:
        raise BadInputError(f"empty {what}: give ID|PATH[:NUMBER]")
    return text, default


def as_controlnets(value) -> tuple[ControlNetSpec, ...]:
    """Normalize stored values (dicts from JSON, specs) into a tuple of ControlNetSpec."""
    return tuple(_as_spec(ControlNetSpec, item) for item in value or ())


def as_loras(value) -> tuple[LoraSpec, ...]:
    return tuple(_as_spec(LoraSpec, item) for item in value or ())


def _as_spec(cls, item):
    if isinstance(item, cls):
        return item
    if isinstance(item, dict):
        known = {k: v for k, v in item.items() if k in cls.__dataclass_fields__}
        try:
            return cls(**known)
        except TypeError as exc:
            raise BadInputError(f"bad {cls.__name__}: {exc}") from None
    raise BadInputError(f"bad {cls.__name__}: {item!r}")


def spec_dicts(specs) -> list[dict]:
    return [asdict(spec) for spec in specs]


CANNY_THRESHOLDS = (100, 200)
WEIGHTLESS_CONTROLS = ("canny", "tile", "none")  # computed with OpenCV alone (the app previews these)


def weightless_control_image(control: str, frame):
    """The control image of an RGB uint8 frame for a preprocessor that needs no model (see
    WEIGHTLESS_CONTROLS): canny edges, the tile net's blurred copy, or the frame itself."""
    import cv2
    import numpy as np

    if control == "none":
        return frame
    if control == "canny":
        edges = cv2.Canny(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), *CANNY_THRESHOLDS)
        return np.repeat(edges[:, :, None], 3, axis=2)
    if control == "tile":  # what tile ControlNets are trained on: the frame with its fine detail blurred away
        h, w = frame.shape[:2]
        small = cv2.resize(frame, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    raise BadInputError(f"the {control} control needs its model; it is computed during the render")

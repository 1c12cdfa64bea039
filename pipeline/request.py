"""The immutable objects that fully describe a job. The GUI or CLI builds them; the worker only reads them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path

from pipeline.conditioning import ControlNetSpec, LoraSpec, as_controlnets, as_loras
from pipeline.errors import BadInputError

ENGINES = ("fast-style", "classical", "diffusion")
CODECS = ("h264", "h265", "prores", "png")
MAX_DENOISE_STRENGTH = 100.0  # a noise deviation past this leaves no picture to recover
CLASSICAL_LOOKS = ("stylization", "pencil", "pencil-color", "cartoon", "edge-preserving", "denoise")

# which StyleParams fields change an engine's pixels; used for the cache key and the GUI panel
TEMPORAL_FIELDS = ("temporal_flow", "flow_blend", "color_anchor")
ENGINE_FIELDS = {
    "fast-style": ("style", "style_image", "strength", "preserve_color", "max_side", *TEMPORAL_FIELDS),
    "classical": ("look", "strength", "denoise_window", "denoise_strength", "max_side", *TEMPORAL_FIELDS),
    "diffusion": (
        "model", "prompt", "negative_prompt", "strength", "steps", "guidance",
        "seed", "scheduler", "max_side", *TEMPORAL_FIELDS, "shared_noise", "cross_frame_attention",
        # conditioning (pipeline.conditioning) and the checker, issue #12 / #10
        "controlnets", "loras", "ip_adapter", "ip_adapter_scale", "style_image", "safety_checker", "annotator",
    ),
}
# diffusion settings that need the model loaded again; every other diffusion field is per call
# (a new prompt is re-encoded, LoRA weights go through set_adapters, scales are call arguments)
DIFFUSION_LOAD_FIELDS = ("model", "device", "low_memory", "scheduler", "allow_pickle", "safety_checker", "annotator")


@dataclass(frozen=True)
class StyleParams:
    """Every engine parameter. Fields an engine does not use are ignored by it (and by its cache key)."""

    engine: str = "fast-style"
    # fast-style
    style: str = "0"  # built-in index or blend such as "3:0.5,12:0.5"
    style_image: str | None = None  # any picture as the style (overrides `style`)
    preserve_color: bool = False
    # classical
    look: str = "stylization"
    denoise_window: int = 5  # frames in the temporal denoising window (odd)
    # the noise deviation at mid-grey in 0-255 levels; None: estimated per clip (pipeline.denoise)
    denoise_strength: float | None = None
    # diffusion
    model: str = ""
    prompt: str = ""
    negative_prompt: str = ""
    steps: int = 20
    guidance: float = 7.5
    seed: int = 0
    scheduler: str = "default"
    allow_pickle: bool = False  # explicit opt-in to unpickle .ckpt/.bin/.pt checkpoints
    low_memory: bool = False  # force model offload and VAE slicing/tiling
    shared_noise: bool = True  # one seed and one initial noise for the whole clip (off: seed + frame index)
    cross_frame_attention: bool = True  # self-attention also attends to the stylized anchor and previous frames
    # diffusion conditioning (pipeline.conditioning, docs/models.md); style_image + ip_adapter: a picture as the style
    controlnets: tuple[ControlNetSpec, ...] = ()
    loras: tuple[LoraSpec, ...] = ()
    ip_adapter: str = ""  # hub id, folder or .safetensors file, with its image encoder
    ip_adapter_scale: float = 0.6
    annotator: str = ""  # the learned preprocessors' model: a transformers depth model (depth), controlnet-aux weights
    safety_checker: bool = False  # run the model's NSFW checker (flagged frames come out black, with a warning)
    # temporal consistency, all engines (docs/quality.md)
    temporal_flow: bool = True  # blend in the previous stylized frame, warped along the input's optical flow
    flow_blend: float = 0.35  # weight of that frame where it is visible, 0-1 (docs/quality.md)
    # match each frame's LAB mean and deviation to the range's first frame; None: on for diffusion only
    # (on fast-style it measured no gain, docs/quality.md)
    color_anchor: bool | None = None
    # content editing (pipeline/editing): a region that follows the motion, values that change over time
    mask: str | None = None  # an image (one mask), a video or a PNG folder (a mask per source frame); white is edited
    mask_anchors: tuple = ()  # ((frame, PNG path), ...): masks painted on frames, tracked along the flow
    mask_feather: float = 0.0  # soft edge of the composite with the source, in output pixels
    prompt_keys: tuple = ()  # ((frame, text), ...) when the prompt changes over time (embeddings interpolated)
    strength_keys: tuple = ()  # ((frame, strength), ...), interpolated (diffusion)
    seed_keys: tuple = ()  # ((frame, seed), ...), each held until the next (diffusion)
    image_guidance: float = 1.5  # InstructPix2Pix models: how closely to keep to the source frame
    # keyframe rendering (pipeline/keyframes, docs/quality.md): the engine runs on keyframes only; the
    # frames between are carried along the source's optical flow from both neighbouring keyframes
    keyframe_interval: int = 0  # 0: the engine's default (KEYFRAME_DEFAULTS); 1: every frame
    keyframes: str = "fixed"  # "fixed": every keyframe_interval frames; "auto": where motion or content changes
    keyframe_min: int = 2  # auto: the shortest and the longest keyframe spacing, in frames
    keyframe_max: int = 8
    # shared
    strength: float = 1.0
    max_side: int = 0  # 0: source size (diffusion: 512 if the source is larger)
    device: str = "auto"

    def __post_init__(self) -> None:
        # stored and CLI values arrive as lists of dicts or specs: keep one hashable form
        object.__setattr__(self, "controlnets", as_controlnets(self.controlnets))
        object.__setattr__(self, "loras", as_loras(self.loras))

    def load_settings(self) -> tuple:
        """What a loaded diffusion model depends on: equal values mean no reload (see DIFFUSION_LOAD_FIELDS)."""
        base = tuple(getattr(self, name) for name in DIFFUSION_LOAD_FIELDS)
        nets = tuple(net.model for net in self.controlnets)
        return (self.engine, *base, nets, tuple(lora.path for lora in self.loras), self.ip_adapter)

    def validate(self) -> "StyleParams":
        """Raise BadInputError on a value no engine can use; return self for chaining."""
        if self.engine not in ENGINES:
            raise BadInputError(f"unknown engine '{self.engine}'; choose one of {', '.join(ENGINES)}")
        if not 0.0 <= self.strength <= 1.0:
            raise BadInputError(f"strength must be between 0 and 1, got {self.strength}")
        if self.engine == "classical" and self.look not in CLASSICAL_LOOKS:
            raise BadInputError(f"unknown look '{self.look}'; choose one of {', '.join(CLASSICAL_LOOKS)}")
        if not 0.0 <= self.flow_blend <= 1.0:
            raise BadInputError(f"the flow blend must be between 0 and 1, got {self.flow_blend}")
        if self.denoise_window < 1 or self.denoise_window % 2 == 0:
            raise BadInputError(f"the denoise window must be an odd number of frames, got {self.denoise_window}")
        if self.denoise_strength is not None and not 0.0 < self.denoise_strength <= MAX_DENOISE_STRENGTH:
            raise BadInputError(
                f"the denoise strength is a noise level above 0 and at most {MAX_DENOISE_STRENGTH:g} "
                f"(0-255 levels, e.g. 20), got {self.denoise_strength:g}"
            )
        if self.steps < 1:
            raise BadInputError(f"steps must be at least 1, got {self.steps}")
        if self.max_side < 0:
            raise BadInputError(f"max side must be 0 (source size) or positive, got {self.max_side}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise BadInputError(f"unknown device '{self.device}'; use auto, cpu or cuda")
        if self.mask_feather < 0:
            raise BadInputError(f"the mask feather must be 0 or more pixels, got {self.mask_feather}")
        for frame, value in self.strength_keys:
            if not 0.0 <= value <= 1.0:
                raise BadInputError(f"strength must be between 0 and 1, got {value} at frame {frame}")
        if self.keyframe_interval < 0 or self.keyframes not in KEYFRAME_MODES:
            raise BadInputError(f"keyframes: use an interval of 0 (engine default) or more, and a mode of "
                                f"{' or '.join(KEYFRAME_MODES)}; got {self.keyframe_interval}, {self.keyframes!r}")
        if not 1 <= self.keyframe_min <= self.keyframe_max:
            raise BadInputError(f"the keyframe spacing needs 1 <= min <= max, got {self.keyframe_min} and {self.keyframe_max}")
        if self.engine == "diffusion" and not self.model:
            raise BadInputError("the diffusion engine needs a model: a hub id, a diffusers folder or a .safetensors file")
        if self.engine == "diffusion":
            self._validate_conditioning()
        return self

    def _validate_conditioning(self) -> None:
        for spec in (*self.controlnets, *self.loras):
            spec.validate()
        if self.ip_adapter and not self.style_image:
            raise BadInputError("the IP-Adapter needs a style image: add --style-image PICTURE")
        if not 0.0 <= self.ip_adapter_scale <= 2.0:
            raise BadInputError(f"the IP-Adapter scale must be between 0 and 2, got {self.ip_adapter_scale}")

    def relevant(self) -> dict:
        """The fields that change this engine's output pixels, for cache keys and display."""
        data = {"engine": self.engine}
        for name in ENGINE_FIELDS[self.engine]:
            data[name] = getattr(self, name)
        if self.engine == "fast-style" and self.style_image:
            data["style_image"] = _file_identity(self.style_image)
        if self.engine == "diffusion":
            self._diffusion_identity(data)
        data.update(_editing_identity(self))
        data.update(keyframe_settings(self) or {})  # resolved, so "engine default" and its value share frames
        return data

    def _diffusion_identity(self, data: dict) -> None:
        """Models by content (pipeline.model_identity), not by name: replaced weights mean new frames."""
        from pipeline.model_identity import model_identity

        data.update(model=model_identity(self.model), safety_checker=self.safety_checker)
        data["controlnets"] = [
            {"model": model_identity(net.model), "control": net.control, "scale": net.scale,
             "start": net.start, "end": net.end, **({"annotator": model_identity(self.annotator)}
                                                    if net.control in ("depth", "lineart", "softedge") else {})}
            for net in self.controlnets
        ]
        data["loras"] = [{"lora": model_identity(lora.path), "weight": lora.weight} for lora in self.loras]
        data.pop("annotator", None)
        if self.ip_adapter:
            data["ip_adapter"] = model_identity(self.ip_adapter)
            data["style_image"] = _file_identity(self.style_image)
        else:
            data.pop("ip_adapter_scale", None)
            data.pop("ip_adapter", None)
            data.pop("style_image", None)

    def replace(self, **changes) -> "StyleParams":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "StyleParams":
        """Build from stored values, ignoring unknown keys and keeping defaults for missing ones."""
        known = {f.name: f for f in fields(cls)}
        kwargs = {}
        for key, value in data.items():
            if key in known:
                kwargs[key] = _keys_tuple(value) if key in KEYED_FIELDS else value
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise BadInputError(f"bad parameters: {exc}") from None


KEYFRAME_MODES = ("fixed", "auto")
# the keyframe interval each engine gets by default, from bench/keyframes.py (docs/quality.md says why);
# classical denoise stays per-frame: carrying a denoised keyframe along the flow is not denoising
KEYFRAME_DEFAULTS = {"fast-style": 4, "classical": 1, "diffusion": 4}


def keyframe_interval(params: StyleParams) -> int:
    """The fixed keyframe interval these parameters render with (1: every frame)."""
    if params.keyframe_interval:
        return params.keyframe_interval
    return KEYFRAME_DEFAULTS.get(params.engine, 1)


def keyframe_settings(params: StyleParams) -> dict | None:
    """The resolved keyframe placement, or None when every frame goes through the engine."""
    if params.keyframes == "auto":
        return {"keyframes": "auto", "keyframe_min": params.keyframe_min, "keyframe_max": params.keyframe_max}
    interval = keyframe_interval(params)
    return {"keyframes": "fixed", "keyframe_interval": interval} if interval > 1 else None


KEYED_FIELDS = ("mask_anchors", "prompt_keys", "strength_keys", "seed_keys")


def _keys_tuple(value) -> tuple:
    """((frame, value), ...) from its JSON form (lists), so the frozen params stay hashable."""
    try:
        return tuple((int(frame), item) for frame, item in value or ())
    except (TypeError, ValueError):
        raise BadInputError(f"bad keyframes: {value!r}") from None


def _editing_identity(p: "StyleParams") -> dict:
    """What the content-editing settings add to the cache key: masks by their content, schedules as
    (frame, value) pairs; nothing when they are unset, so existing keys stay the same."""
    from pipeline.editing.masks import mask_identity

    data: dict = {}
    if p.mask:
        data["mask"] = mask_identity(p.mask)
    if p.mask_anchors:
        data["mask_anchors"] = [[frame, mask_identity(path)] for frame, path in p.mask_anchors]
    if p.mask or p.mask_anchors:
        data["mask_feather"] = p.mask_feather
    if p.engine == "diffusion":
        for name in ("prompt_keys", "strength_keys", "seed_keys"):
            if getattr(p, name):
                data[name] = [list(key) for key in getattr(p, name)]
        if p.image_guidance != StyleParams.image_guidance:  # used by InstructPix2Pix models only; a miss elsewhere is harmless
            data["image_guidance"] = p.image_guidance
    return data


def _file_identity(path: str) -> str:
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return str(p)
    return f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}"


@dataclass(frozen=True)
class OutputSpec:
    """Where and how to write the video."""

    path: Path
    codec: str = "h264"
    crf: int = 18
    audio: bool = True
    # a PNG sequence into a folder that is not empty: replace its frame_*.png files, touch nothing else
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise BadInputError(f"unknown codec '{self.codec}'; choose one of {', '.join(CODECS)}")
        if not 0 <= self.crf <= 51:
            raise BadInputError(f"crf must be between 0 and 51, got {self.crf}")


@dataclass(frozen=True)
class RenderRequest:
    """One render: a source, the engine parameters, a frame range [start, end), and optionally an output."""

    source: Path
    params: StyleParams = field(default_factory=StyleParams)
    start: int = 0
    end: int | None = None  # exclusive; None: to the end of the clip
    output: OutputSpec | None = None
    use_cache: bool = True
    # distributed rendering (pipeline.cluster): a Ray address (auto, HOST:PORT, ray://HOST:10001, local)
    # to render on instead of this machine; None renders here
    cluster: str | None = None



def parse_position(text: str, fps: float, frame_count: int, timeline=None) -> int:
    """Turn '120' (frame), '4.5s', '1:02.5' or '00:01:02.5' (time) into a frame index.

    Pass the clip's VideoInfo as `timeline`: a time then picks the frame whose timestamp is nearest
    (through the timestamp index, so variable-frame-rate clips resolve right), and the clip's end time
    gives frame_count. Without it the average rate `fps` is used.
    """
    text = text.strip()
    try:
        if ":" in text:
            seconds = 0.0
            for part in text.split(":"):
                seconds = seconds * 60 + float(part)
        elif text.endswith("s"):
            seconds = float(text[:-1])
        elif "." in text:
            seconds = float(text)
        else:
            value = int(text)
            if value < 0:
                value += frame_count  # negative counts from the end, like Python slices
            return value
    except ValueError:
        raise BadInputError(f"cannot read '{text}' as a frame number or a time (e.g. 120, 4.5s, 1:02.5)") from None
    return timeline.frame_at(seconds) if timeline is not None else round(seconds * fps)

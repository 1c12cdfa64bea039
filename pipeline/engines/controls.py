"""ControlNets for the diffusion engine: loading the nets, the ControlNet img2img pipeline, and the
control image of each frame (computed from the source frame, kept in a small cache).

A ControlNet is a diffusers folder (config.json + diffusion_pytorch_model.safetensors), a hub id, or a
single `.safetensors` file: in diffusers' layout with its config.json in a folder named like the file
(`canny.safetensors` + `canny/config.json`) or beside it; in the original layout (`control_model.*`)
diffusers converts it. It must be made for the base model's family (SD 1.5, SD 2, SDXL).

Preprocessors (pipeline.conditioning.CONTROL_TYPES): `canny` (OpenCV edges) and `tile` (a blurred
copy) need no weights; `none` passes the frame itself; `depth` runs a transformers depth-estimation
model the user has (`annotator`); `lineart` and `softedge` use controlnet-aux's annotators when that
package and their weights are there. A missing annotator is one clear message.
"""

from __future__ import annotations

import json
import logging
import threading
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from pipeline.conditioning import WEIGHTLESS_CONTROLS, ControlNetSpec, weightless_control_image
from pipeline.engines.model_files import refuse_code, resolve_local
from pipeline.errors import BadInputError, CancelledError, ModelError

log = logging.getLogger(__name__)
CONTROL_CACHE_FRAMES = 64  # control images kept (per engine): scrubbing back and forth reuses them


# --- loading ---


def load_controlnets(nets: tuple[ControlNetSpec, ...], dtype, allow_pickle: bool, unet_config, cancel=None) -> list:
    """One ControlNetModel per spec, each checked against the base model's UNet config."""
    loaded = []
    for spec in nets:
        if cancel is not None and cancel.cancelled:
            raise CancelledError("loading the model was cancelled")
        net = _load_one(spec.model, dtype, allow_pickle)
        check_fits(spec.model, net.config, unet_config)
        loaded.append(net)
    return loaded


def _load_one(name: str, dtype, allow_pickle: bool):
    from diffusers import ControlNetModel

    from pipeline.engines.diffusion_models import _dtype_kwargs

    path = resolve_local(name, "ControlNet", allow_pickle)
    try:
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise ModelError(f"the ControlNet folder '{path}' has no config.json: it is not a diffusers ControlNet")
            safe = any(path.glob("*.safetensors"))
            if not safe and not allow_pickle:
                raise ModelError(
                    f"the ControlNet in '{path}' has only pickle (.bin) weights, which can run code when loaded; "
                    "use .safetensors weights or allow pickle checkpoints explicitly"
                )
            return ControlNetModel.from_pretrained(
                str(path), local_files_only=True, use_safetensors=True if safe else None, **_dtype_kwargs(dtype)
            )
        return _load_single_file(path, dtype)
    except (ModelError, BadInputError):
        raise
    except Exception as exc:
        raise ModelError(f"the ControlNet '{name}' could not be loaded: {_first_line(exc)}") from exc


def _load_single_file(path: Path, dtype):
    from diffusers import ControlNetModel
    from safetensors import safe_open
    from safetensors.torch import load_file

    config = next((c for c in (path.with_suffix("") / "config.json", path.parent / "config.json") if c.is_file()), None)
    if config is not None:
        refuse_code(config.parent, "ControlNet config folder")
    if path.suffix != ".safetensors":
        state = torch.load(str(path), map_location="cpu", weights_only=True)  # only reached with allow_pickle
        keys = list(state)
    else:
        with safe_open(str(path), framework="pt") as handle:
            keys = list(handle.keys())
        state = None
    if any(key.startswith("controlnet_cond_embedding.") for key in keys):  # diffusers' own layout
        if config is None:
            raise ModelError(
                f"the ControlNet '{path.name}' needs its config.json: put it in a folder named '{path.stem}' beside it"
            )
        net = ControlNetModel.from_config(json.loads(config.read_text(encoding="utf-8")))
        missing, unexpected = net.load_state_dict(state or load_file(str(path)), strict=False)
        if missing or unexpected:
            raise ModelError(
                f"the ControlNet '{path.name}' does not match its config.json ({len(missing)} missing and "
                f"{len(unexpected)} unexpected weights)"
            )
        return (net if dtype == torch.float32 else net.to(dtype)).eval()
    kwargs = {"config": str(config.parent)} if config is not None else {}
    from pipeline.engines.diffusion_models import _dtype_kwargs

    return ControlNetModel.from_single_file(str(path), local_files_only=True, **kwargs, **_dtype_kwargs(dtype))


def check_fits(name: str, net_config, unet_config) -> None:
    """ModelError when a ControlNet was made for another base model than the UNet's."""
    family = {768: "SD 1.5", 1024: "SD 2", 2048: "SDXL"}
    net_dim, unet_dim = net_config.cross_attention_dim, unet_config.cross_attention_dim
    if net_dim != unet_dim or tuple(net_config.block_out_channels) != tuple(unet_config.block_out_channels):
        made_for, needs = family.get(net_dim, f"cross-attention {net_dim}"), family.get(unet_dim, f"cross-attention {unet_dim}")
        raise ModelError(
            f"the ControlNet '{name}' was made for another base model ({made_for}) than this one ({needs}); "
            "choose a ControlNet made for this model's family"
        )
    if (net_config.addition_embed_type or None) != (unet_config.addition_embed_type or None):
        raise ModelError(f"the ControlNet '{name}' does not fit this model (SDXL and SD 1.5/2 ControlNets do not mix)")


def controlnet_pipeline(pipe, nets: list):
    """The ControlNet img2img pipeline (SD 1.5/2.x or SDXL) sharing `pipe`'s components."""
    from diffusers import AutoPipelineForImage2Image

    try:
        controlled = AutoPipelineForImage2Image.from_pipe(pipe, controlnet=nets[0] if len(nets) == 1 else nets)
        controlled.set_progress_bar_config(disable=True)
        return controlled
    except Exception as exc:
        raise ModelError(f"{type(pipe).__name__} models cannot take a ControlNet: {_first_line(exc)}") from exc


def control_call_kwargs(nets: tuple[ControlNetSpec, ...], images: list[torch.Tensor]) -> dict:
    """The ControlNet arguments of one pipeline call: images (one B x 3 x H x W tensor per net), scales, windows."""
    one = len(nets) == 1
    pick = (lambda values: values[0]) if one else list
    return {
        "control_image": pick(images),
        "controlnet_conditioning_scale": pick([n.scale for n in nets]),
        "control_guidance_start": pick([n.start for n in nets]),
        "control_guidance_end": pick([n.end for n in nets]),
    }


# --- control images ---


class ControlImages:
    """Control images of frames, by preprocessor, computed once per frame content and size."""

    def __init__(self, annotator: str = "", allow_pickle: bool = False, device: str = "cpu"):
        self.annotator = annotator
        self.allow_pickle = allow_pickle
        self.device = device
        self._cache: OrderedDict = OrderedDict()
        self._lock = threading.Lock()  # frame workers share one cache
        self._depth = None
        self._aux: dict = {}
        self.computed = 0  # how many were computed (not taken from the cache)

    def check(self, controls: tuple[str, ...]) -> None:
        """Load what the learned preprocessors need now, so a missing annotator fails before the first frame."""
        for control in controls:
            if control == "depth":
                self._depth_model()
            elif control in ("lineart", "softedge"):
                self._aux_detector(control)

    def image(self, control: str, frame: np.ndarray) -> np.ndarray:
        """The HxWx3 uint8 control image for an RGB frame (at the frame's size)."""
        key = (control, frame.shape, zlib.crc32(np.ascontiguousarray(frame)))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        image = self._compute(control, frame)
        with self._lock:
            self.computed += 1
            self._cache[key] = image
            while len(self._cache) > CONTROL_CACHE_FRAMES:
                self._cache.popitem(last=False)
        return image

    def _compute(self, control: str, frame: np.ndarray) -> np.ndarray:
        if control in WEIGHTLESS_CONTROLS:
            return weightless_control_image(control, frame)
        if control == "depth":
            return self._run_depth(frame)
        if control in ("lineart", "softedge"):
            from PIL import Image

            result = self._aux_detector(control)(Image.fromarray(frame))
            return np.asarray(result.convert("RGB").resize((frame.shape[1], frame.shape[0])))
        raise BadInputError(f"unknown control '{control}'")

    def _depth_model(self):
        if self._depth is None:
            if not self.annotator:
                raise BadInputError(
                    "the depth control needs a depth-estimation model: give --annotator ID|PATH, a transformers "
                    "depth model you have (e.g. a folder with Intel/dpt-hybrid-midas or a Depth Anything model)"
                )
            from transformers import AutoImageProcessor, AutoModelForDepthEstimation

            from pipeline.engines.model_files import transformers_dtype_kwargs

            path = resolve_local(self.annotator, "depth model", self.allow_pickle)
            if not path.is_dir():
                raise ModelError(f"the depth model '{self.annotator}' must be a folder (config.json and weights)")
            try:
                processor = AutoImageProcessor.from_pretrained(str(path), local_files_only=True)
                model = AutoModelForDepthEstimation.from_pretrained(
                    str(path), local_files_only=True, use_safetensors=None if self.allow_pickle else True,
                    **transformers_dtype_kwargs(torch.float32),
                )
            except Exception as exc:
                raise ModelError(
                    f"the depth model '{self.annotator}' could not be loaded (it must be a transformers "
                    f"depth-estimation model): {_first_line(exc)}"
                ) from exc
            self._depth = (processor, model.to(self.device).eval())
        return self._depth

    def _run_depth(self, frame: np.ndarray) -> np.ndarray:
        processor, model = self._depth_model()
        with torch.inference_mode():
            inputs = processor(images=frame, return_tensors="pt").to(self.device)
            depth = model(**inputs).predicted_depth
            depth = torch.nn.functional.interpolate(depth[:, None].float(), size=frame.shape[:2], mode="bicubic")[0, 0]
        depth = depth - depth.min()
        depth = (depth / depth.max().clamp(min=1e-6) * 255).round().to(torch.uint8).cpu().numpy()
        return np.repeat(depth[:, :, None], 3, axis=2)

    def _aux_detector(self, control: str):
        if control not in self._aux:
            try:
                import controlnet_aux
            except ImportError:
                raise BadInputError(
                    f"the {control} control needs the controlnet-aux package and its annotator weights: "
                    "pip install controlnet-aux, download lllyasviel/Annotators, and give --annotator PATH "
                    "(with --allow-pickle: those weights are .pth files); or use canny, tile or depth"
                ) from None
            if not self.annotator:
                raise BadInputError(f"the {control} control needs its annotator weights: give --annotator PATH")
            if not self.allow_pickle:
                raise BadInputError(
                    f"the {control} annotator's weights are pickle (.pth) files, which can run code when loaded: "
                    "allow pickle checkpoints explicitly to use them"
                )
            detector = controlnet_aux.LineartDetector if control == "lineart" else controlnet_aux.HEDdetector
            self._aux[control] = detector.from_pretrained(str(resolve_local(self.annotator, "annotator", True)))
        return self._aux[control]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]

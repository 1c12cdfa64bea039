"""Content editing with diffusion: inpainting and InstructPix2Pix models, region masks for any model,
and prompt, strength and seed schedules.

A model's job follows from its UNet, as diffusers' own pipelines define it: 4 input channels is
img2img, 9 (latents + mask + masked image) is inpainting, 8 (latents + source image) is InstructPix2Pix.
`task_pipeline` turns a loaded pipeline into the one for its job. Inside a region edit an img2img model
keeps the source outside the mask by blending, after every step, its latents with the source's latents
noised to the next step (`LatentMask`); an inpainting model takes the mask itself. Either way the render
composites the decoded frame with the source (pipeline.editing), so outside the mask it is the source.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from pipeline.editing.schedule import blend_at, value_at
from pipeline.errors import ModelError

log = logging.getLogger(__name__)

IMG2IMG, INPAINT, INSTRUCT = "img2img", "inpaint", "instruct"
_ROLE_BY_CHANNELS = {4: IMG2IMG, 9: INPAINT, 8: INSTRUCT}
# the pipelines that load as themselves: diffusers' AutoPipelineForImage2Image does not map them
EDIT_PIPELINE_CLASSES = {
    "StableDiffusionInstructPix2PixPipeline": INSTRUCT,
    "StableDiffusionXLInstructPix2PixPipeline": INSTRUCT,
    "StableDiffusionInpaintPipeline": INPAINT,
    "StableDiffusionXLInpaintPipeline": INPAINT,
}


def pipeline_role(pipe) -> str:
    """img2img, inpaint or instruct, from the UNet's input channels."""
    unet = getattr(pipe, "unet", None)
    channels = getattr(getattr(unet, "config", None), "in_channels", 4)
    role = _ROLE_BY_CHANNELS.get(channels)
    if role is None:
        raise ModelError(f"the model's UNet takes {channels} input channels; vdiff knows img2img (4), "
                         "inpainting (9) and InstructPix2Pix (8) models")
    return role


def task_pipeline(pipe):
    """The pipeline for the model's job, sharing `pipe`'s components (no weights are copied)."""
    import diffusers

    role = pipeline_role(pipe)
    xl = "XL" in type(pipe).__name__
    if role == INPAINT:
        wanted = diffusers.StableDiffusionXLInpaintPipeline if xl else diffusers.StableDiffusionInpaintPipeline
    elif role == INSTRUCT:
        wanted = diffusers.StableDiffusionXLInstructPix2PixPipeline if xl else diffusers.StableDiffusionInstructPix2PixPipeline
    else:
        return diffusers.AutoPipelineForImage2Image.from_pipe(pipe)
    if isinstance(pipe, wanted):
        return pipe
    names = set(wanted._get_signature_keys(wanted)[0]) | set(wanted._get_signature_keys(wanted)[1])
    components = {name: value for name, value in pipe.components.items() if name in names}
    if "requires_safety_checker" in names:
        components["requires_safety_checker"] = False
    return wanted(**components)


def call_arguments(role: str, params, strength: float, masks: list[np.ndarray | None], size) -> dict:
    """The pipeline-call keywords that depend on the model's job (the engine adds prompt, steps, ...)."""
    if role == INSTRUCT:
        return {"image_guidance_scale": params.image_guidance}  # no strength: it starts from noise, guided by the frame
    kwargs = {"strength": strength}
    if role == INPAINT:
        full = np.ones((size[1], size[0]), np.float32)
        stack = np.stack([full if m is None else m for m in masks])[:, None]
        kwargs["mask_image"] = torch.from_numpy(stack)
        kwargs["height"], kwargs["width"] = size[1], size[0]
    return kwargs


def frame_strength(params, index: int, propagated: float | None) -> float:
    """The strength of frame `index`: its scheduled value (or params.strength), scaled down like the
    stabilizer's propagated strength when the frame starts from the previous frame's output."""
    base = value_at(params.strength_keys, index, params.strength) if params.strength_keys else params.strength
    if propagated is None:
        return base
    return propagated * (base / params.strength) if params.strength > 0 else propagated


def frame_seed(params, index: int) -> int:
    """The seed of frame `index`: its scheduled value (or params.seed); + index without shared noise."""
    seed = value_at(params.seed_keys, index, params.seed) if params.seed_keys else params.seed
    return seed if params.shared_noise else seed + index


class PromptSchedule:
    """Each key's prompt encoded once; a frame's embeddings are the linear blend of the two around it."""

    def __init__(self, keys, encode):
        self._keys = tuple(keys)
        self._encoded = {text: encode(text) for _, text in self._keys}

    def at(self, index: int) -> dict:
        a, b, t = blend_at(self._keys, index)
        first, second = self._encoded[a], self._encoded[b]
        if t == 0.0 or a == b:
            return first
        return {name: torch.lerp(value, second[name], t) if isinstance(value, torch.Tensor) else value
                for name, value in first.items()}


class LatentMask:
    """Keeps an img2img model's latents on the source's outside the mask, step after step.

    `callback(pipe, step, timestep, kwargs)` is diffusers' callback_on_step_end: after step `step` the
    latents outside the mask become the source's latents noised to the next timestep (the source itself
    after the last), so the model only ever changes the masked region and blends into its edge.
    """

    def __init__(self, pipe, sources: list[np.ndarray], masks: list[np.ndarray], seed: int):
        from PIL import Image

        vae = pipe.vae
        device = pipe._execution_device
        with torch.inference_mode():
            pixels = torch.cat([pipe.image_processor.preprocess(Image.fromarray(s)) for s in sources])
            pixels = pixels.to(device=device, dtype=vae.dtype)
            latents = vae.encode(pixels).latent_dist.mode() * vae.config.scaling_factor
        h, w = latents.shape[-2:]
        small = [torch.from_numpy(np.ascontiguousarray(_resize(m, (w, h)))) for m in masks]
        self.keep = (1.0 - torch.stack(small)[:, None]).to(device=device, dtype=latents.dtype)  # 1 outside the mask
        generator = torch.Generator(device="cpu").manual_seed(seed)
        self.noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(device, latents.dtype)
        self.source = latents
        self.pipe = pipe

    def callback(self, pipe, step: int, timestep, kwargs: dict) -> dict:
        latents = kwargs.get("latents")
        if latents is None:
            return kwargs
        timesteps = pipe.scheduler.timesteps
        position = int((timesteps == timestep).nonzero()[0]) if (timesteps == timestep).any() else step
        if position + 1 < len(timesteps):
            target = pipe.scheduler.add_noise(self.source, self.noise, timesteps[position + 1 : position + 2])
        else:
            target = self.source
        kwargs["latents"] = latents * (1.0 - self.keep) + target.to(latents.dtype) * self.keep
        return kwargs


def _resize(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA)


def is_instruct_model(model: str) -> bool:
    """Whether a diffusers folder is an InstructPix2Pix model (by its model_index.json), without loading it."""
    import json
    from pathlib import Path

    index = Path(model).expanduser() / "model_index.json"
    try:
        name = json.loads(index.read_text(encoding="utf-8")).get("_class_name", "")
    except (OSError, ValueError):
        return False
    return EDIT_PIPELINE_CLASSES.get(name) == INSTRUCT

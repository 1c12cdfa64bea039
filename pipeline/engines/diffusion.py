"""diffusion: Stable Diffusion style img2img per frame, with the prompt encoded once and the same noise
for every frame so that a still scene stays still, and optionally cross-frame attention (pipeline.temporal)."""

from __future__ import annotations

import gc
import inspect
from contextlib import nullcontext

import numpy as np
import torch
from PIL import Image

from pipeline.engines.base import Engine, FrameContext, fit_size, resize_to
from pipeline.engines.diffusion_models import (
    check_scheduler,
    load_img2img_pipeline,
    resolve_device,
    tile_big_frames,
    use_low_memory,
    uses_low_memory,
)
from pipeline.errors import BadInputError, CancelledError, OutOfMemoryError
from pipeline.events import CancelToken
from pipeline.temporal.cross_frame import CrossFrameAttention

DEFAULT_MAX_SIDE = 512  # what SD 1.x was trained on; larger sources are scaled down unless max_side says otherwise
SIZE_MULTIPLE = 8  # the VAE downsamples by 8


class DiffusionEngine(Engine):
    """img2img on each frame with a diffusers pipeline (see diffusion_models for what `model` may be).

    `strength` is how far each frame is re-noised (0 keeps the frame, 1 ignores it); only
    int(steps * strength) denoising steps run. guidance <= 1 turns classifier-free guidance off.
    """

    name = "diffusion"

    def __init__(self, params):
        super().__init__(params)
        check_scheduler(params.scheduler)
        if int(params.steps * params.strength) < 1:
            needed = int(np.ceil(1 / params.strength)) if params.strength > 0 else None
            hint = f"use at least {needed} steps or a higher strength" if needed else "raise the strength above 0"
            raise BadInputError(
                f"{params.steps} steps at strength {params.strength} leave no denoising step to run; {hint}"
            )
        self._pipe = None
        self._prompt_kwargs: dict = {}
        self._torch_device = "cpu"  # the torch device behind self.device's label
        self._low_memory = params.low_memory
        self._cross_frame: CrossFrameAttention | None = None

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        return fit_size(width, height, self.params.max_side or DEFAULT_MAX_SIDE, multiple=SIZE_MULTIPLE)

    def prepare(self, cancel: CancelToken | None = None) -> None:
        if cancel is not None and cancel.cancelled:
            raise CancelledError()
        p = self.params
        device, dtype = resolve_device(p.device)
        self._pipe = load_img2img_pipeline(p.model, device, dtype, p.allow_pickle, p.scheduler, p.low_memory)
        self._torch_device = device
        self._low_memory = uses_low_memory(self._pipe)
        self._update_device_label()
        self._prompt_kwargs = self._encode_prompt()
        self._cross_frame = CrossFrameAttention(self._pipe) if p.cross_frame_attention else None

    def _update_device_label(self) -> None:
        """e.g. 'cuda (fp16)', 'cuda (fp16, low memory)', 'cpu'."""
        notes = ["fp16"] if self._torch_device == "cuda" else []
        if self._low_memory:
            notes.append("low memory")
        self.device = f"{self._torch_device} ({', '.join(notes)})" if notes else self._torch_device

    def _encode_prompt(self) -> dict:
        """Encode the prompt once for the whole clip; returns the keyword arguments for each pipeline call."""
        p = self.params
        encode = getattr(self._pipe, "encode_prompt", None)
        fallback = {"prompt": p.prompt, **({"negative_prompt": p.negative_prompt} if p.negative_prompt else {})}
        if encode is None or "do_classifier_free_guidance" not in inspect.signature(encode).parameters:
            return fallback  # other families (Flux, ...) encode differently; let the pipeline encode per frame
        with torch.inference_mode():
            encoded = encode(
                p.prompt,
                device=self._pipe._execution_device,
                num_images_per_prompt=1,
                do_classifier_free_guidance=p.guidance > 1,
                negative_prompt=p.negative_prompt or None,
            )
        if len(encoded) == 2:  # Stable Diffusion 1/2
            names = ("prompt_embeds", "negative_prompt_embeds")
        elif len(encoded) == 4:  # SDXL adds pooled embeddings
            names = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")
        else:
            return fallback
        return {name: value for name, value in zip(names, encoded) if value is not None}

    def process(self, frame: np.ndarray, ctx: FrameContext) -> np.ndarray:
        if self._pipe is None:
            self.prepare(ctx.cancel)
        ctx.check_cancelled()
        h, w = frame.shape[:2]
        size = self.output_size(w, h)
        tile_big_frames(self._pipe, self._torch_device, *size)
        image = resize_to(frame if ctx.init is None else ctx.init, size)
        try:
            return self._denoise(image, ctx)
        except Exception as exc:
            if not _is_out_of_memory(exc):
                raise
        if self._low_memory:
            raise OutOfMemoryError(self._out_of_memory_message(size)) from None
        # first out-of-memory: switch to the lower-memory settings for the rest of the clip, retry once
        gc.collect()
        use_low_memory(self._pipe, self._torch_device)
        self._low_memory = True
        self._update_device_label()
        try:
            return self._denoise(image, ctx)
        except Exception as exc:
            if _is_out_of_memory(exc):
                raise OutOfMemoryError(self._out_of_memory_message(size)) from None
            raise

    def _out_of_memory_message(self, size: tuple[int, int]) -> str:
        return (
            f"the {self._torch_device.upper()} ran out of memory at {size[0]}x{size[1]} even with the low-memory "
            "settings; lower the max side, close other programs using the GPU, or use a smaller model"
        )

    def _denoise(self, image: np.ndarray, ctx: FrameContext) -> np.ndarray:
        p = self.params
        strength = p.strength if ctx.strength is None else ctx.strength
        steps_run = min(int(p.steps * strength), p.steps)

        def on_step_end(pipe, step, timestep, callback_kwargs):
            try:
                ctx.report_step(step + 1, steps_run)  # raises CancelledError when cancelled
                ctx.check_cancelled()  # a cancel made while reporting stops before the next step too
            except CancelledError:
                pipe._interrupt = True  # raising already leaves the loop; this keeps the pipeline's own flag in step
                raise
            return callback_kwargs

        # shared noise: the same seed for every frame keeps unchanged regions from flickering (off: one per frame)
        generator = torch.Generator(device="cpu").manual_seed(p.seed if p.shared_noise else p.seed + ctx.index)
        references = ctx.references if self._cross_frame is not None else []
        attend = self._cross_frame.references(references, p.seed) if references else nullcontext()
        with torch.inference_mode(), attend:
            result = self._pipe(
                image=Image.fromarray(image),
                strength=strength,
                num_inference_steps=p.steps,
                guidance_scale=p.guidance,
                generator=generator,
                output_type="np",
                callback_on_step_end=on_step_end,
                **self._prompt_kwargs,
            )
        out = np.asarray(result.images[0], dtype=np.float32)
        return (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

    def close(self) -> None:
        self._pipe = None
        self._prompt_kwargs = {}
        self._cross_frame = None
        gc.collect()
        if self._torch_device == "cuda":
            torch.cuda.empty_cache()


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )

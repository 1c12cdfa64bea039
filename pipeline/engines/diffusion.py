"""diffusion: Stable Diffusion style img2img per frame, with the prompt encoded once and the same noise
for every frame so that a still scene stays still, and optionally cross-frame attention (pipeline.temporal)."""

from __future__ import annotations

import copy
import inspect
import logging
import os
import queue
import time
import weakref
from contextlib import contextmanager, nullcontext

import numpy as np
import torch

from pipeline.engines.base import Engine, FrameContext, fit_size, resize_to
from pipeline.engines.diffusion_editing import (
    IMG2IMG, INSTRUCT, LatentMask, PromptSchedule, call_arguments, frame_seed, frame_strength, pipeline_role,
)
from pipeline.engines.diffusion_models import (
    check_scheduler,
    compile_unet,
    dtype_label,
    gpu_path_on_cpu,
    load_img2img_pipeline,
    load_tiny_autoencoder,
    place_pipeline,
    resolve_device,
    tile_big_frames,
    use_low_memory,
    uses_low_memory,
)
from pipeline.engines.conditioned import Conditioning
from pipeline.engines.model_size import native_side
from pipeline.errors import BadInputError, CancelledError, OutOfMemoryError
from pipeline.events import CancelToken
from pipeline.garbage import collect_garbage
from pipeline.temporal.cross_frame import CrossFrameAttention

log = logging.getLogger(__name__)

DEFAULT_MAX_SIDE = 512  # what SD 1.x was trained on: the least default side (SD 2 768-px and SDXL models get theirs)
SIZE_MULTIPLE = 8  # the VAE downsamples by 8
CUDA_BATCH_FRAMES = 4  # frames per UNet call on a GPU when they do not depend on each other
COMPILE_ENV = "VDIFF_TORCH_COMPILE"  # "1": torch.compile the UNet (off by default: minutes of warm-up)


def compile_requested() -> bool:
    """The torch.compile setting: the VDIFF_TORCH_COMPILE environment variable, off unless "1"/"true"/"on"."""
    return os.environ.get(COMPILE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class DiffusionEngine(Engine):
    """img2img on each frame with a diffusers pipeline (see diffusion_models for what `model` may be).

    `strength` is how far each frame is re-noised (0 keeps the frame, 1 ignores it); only
    int(steps * strength) denoising steps run, so 1-step and few-step models (SD-Turbo, LCM) need
    strength x steps >= 1, which is checked here. guidance <= 1 turns classifier-free guidance off.

    Speed: the prompt is encoded once per engine. Frames that do not depend on each other (no flow
    propagation or cross-frame attention) go through the UNet `batch_frames` at a time on a GPU, or
    in `frame_workers` threads (pipeline copies sharing the weights, one torch thread each) on the
    CPU. On CUDA the models run in bf16 (fp16 where bf16 is not native) and channels-last with
    PyTorch's SDPA attention; a frame goes up through pinned memory and comes back once, as uint8.
    `compile` (default: the VDIFF_TORCH_COMPILE setting) torch.compiles the UNet; the first frames
    then pay its warm-up, reported in `compile_seconds`. `batch_frames` sets the frames per UNet call
    on the GPU path (bench/gpu.py measures 1 to 16). `preview()` decodes with a tiny
    autoencoder (AutoencoderTiny) when one is available locally, for scrubbing; renders never do.
    """

    name = "diffusion"

    def __init__(self, params, compile: bool | None = None, batch_frames: int = CUDA_BATCH_FRAMES):
        super().__init__(params)
        check_scheduler(params.scheduler)
        _check_steps(params)
        self._pipe = None
        self._prompt_kwargs: dict = {}
        self._prompt_schedule: PromptSchedule | None = None  # prompts keyed at frames (pipeline.editing)
        self.role = IMG2IMG  # the model's job: img2img, inpaint or instruct (diffusion_editing)
        self._torch_device = "cpu"  # the torch device behind self.device's label
        self._low_memory = params.low_memory
        self._cross_frame: CrossFrameAttention | None = None
        self._dtype = torch.float32
        self._compile = compile_requested() if compile is None else compile
        self.compile_seconds: float | None = None  # warm-up of the compiled UNet, once measured
        self._pool: queue.SimpleQueue = queue.SimpleQueue()  # pipelines free for a process() call
        self._tiny_vae = None  # None: not looked for yet; False: none available
        self.previews_exact = True  # False once previews decode with the tiny autoencoder
        self._native_side: int | None = None  # the model family's trained size, once known
        self._max_batch = max(1, batch_frames)  # halved by an out-of-memory fallback before offloading
        self._encoded_for: tuple | None = None  # (prompt, negative prompt, guidance on) of _prompt_kwargs
        self._conditioning = Conditioning()
        self.on_load_progress = None  # (component, done, total) while prepare() loads; set by the app
        self.loads = 0  # how many times this engine loaded its model
        self.flagged_frames: list[int] = []  # frames the safety checker blacked out (when it is on)

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        return fit_size(width, height, self.params.max_side or self.default_side(), multiple=SIZE_MULTIPLE)

    def default_side(self) -> int:
        """The longest output side without max_side: the model family's native size (SD 1.x 512, SD 2
        768-px models 768, SDXL 1024), read from the model's configs, never below 512."""
        if self._native_side is None:
            self._native_side = max(DEFAULT_MAX_SIDE, native_side(self._pipe, self.params.model))
        return self._native_side

    def cache_identity(self) -> dict:
        """What changes pixels beyond the parameters: the device and dtype the model runs in, and the
        requested memory mode (offload and VAE tiling change the arithmetic)."""
        device, dtype = resolve_device(self.params.device)
        identity = {"device": device, "dtype": dtype_label(dtype), "low_memory": self.params.low_memory}
        return {**identity, "tiny_autoencoder": True} if self._renders_with_tiny_autoencoder else identity

    def prepare(self, cancel: CancelToken | None = None) -> None:
        if cancel is not None and cancel.cancelled:
            raise CancelledError()
        if self._pipe is not None:
            return  # loaded already: new per-call settings come through update()
        p = self.params
        device, dtype = resolve_device(p.device)
        pipe = load_img2img_pipeline(
            p.model, device, dtype, p.allow_pickle, p.scheduler, p.low_memory, safety_checker=p.safety_checker,
            cancel=cancel, on_progress=self.on_load_progress, place=False,
        )
        pipe = self._conditioning.load(pipe, p, dtype, cancel)  # LoRAs, IP-Adapter, ControlNets
        place_pipeline(pipe, device, p.low_memory)
        self._pipe = pipe
        self.loads += 1
        self.role = pipeline_role(self._pipe)
        self._torch_device, self._dtype = device, dtype
        self._low_memory = uses_low_memory(self._pipe)
        if self._compile:
            compile_unet(self._pipe)
        self._update_device_label()
        self._native_side = None
        self._encoded_for = None
        self._cross_frame = None
        self._apply_call_settings()
        self._pool = queue.SimpleQueue()
        self._pool.put(self._pipe)

    def update(self, params) -> bool:
        """Take new parameters without loading the model again when only per-call settings changed
        (prompt, seed, strength, steps, guidance, scales, LoRA weights, style picture, ...; see
        pipeline.request.DIFFUSION_LOAD_FIELDS). Returns False when the change needs a reload."""
        if self._pipe is None or params.load_settings() != self.params.load_settings():
            return False
        _check_steps(params)
        self.params = params
        self._apply_call_settings()
        return True

    def _apply_call_settings(self) -> None:
        """Bring the loaded pipeline in line with the per-call parameters: the prompt embeddings (encoded
        again only when the prompt changed), LoRA weights, IP-Adapter scale and picture, cross-frame attention."""
        p = self.params
        encoded_for = (p.prompt, p.negative_prompt, p.guidance > 1, p.prompt_keys)
        if encoded_for != self._encoded_for:
            self._prompt_kwargs = self._encode_prompt()
            self._prompt_schedule = PromptSchedule(p.prompt_keys, self._encode_prompt) if p.prompt_keys else None
            self._encoded_for = encoded_for
        self._conditioning.apply(self._pipe, p)
        # the reference pass feeds plain latents to the UNet: only img2img models take them
        attends = p.cross_frame_attention and self.role == IMG2IMG
        if p.cross_frame_attention and not attends:
            log.info("cross-frame attention is off for %s models", self.role)
        if attends and self._cross_frame is None:
            self._cross_frame = CrossFrameAttention(self._pipe)
        elif not attends and self._cross_frame is not None:
            self._cross_frame.remove()
            self._cross_frame = None

    def _update_device_label(self) -> None:
        """e.g. 'cuda (bf16)', 'cuda (fp16, low memory, compiled)', 'cpu'."""
        notes = [dtype_label(self._dtype)] if self._torch_device == "cuda" or self._dtype != torch.float32 else []
        if self._low_memory:
            notes.append("low memory")
        if self._compile:
            notes.append("compiled")
        self.device = f"{self._torch_device} ({', '.join(notes)})" if notes else self._torch_device

    @property
    def frame_workers(self) -> int:
        """Threads a render may run process() in at once for frames that do not depend on each other:
        one per core on the CPU (small convolutions scale better across frames than across threads,
        and a loaded machine does not stall them at thread-pool barriers); one on a GPU (it batches)."""
        if self._torch_device != "cpu" or self._low_memory or gpu_path_on_cpu():
            return 1
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:
            return max(1, os.cpu_count() or 1)

    @property
    def batch_frames(self) -> int:
        """Frames per UNet call for frames that do not depend on each other."""
        gpu_path = self._torch_device == "cuda" or gpu_path_on_cpu()
        return self._max_batch if gpu_path and not self._low_memory else 1

    @batch_frames.setter
    def batch_frames(self, count: int) -> None:
        self._max_batch = max(1, count)

    @contextmanager
    def parallel(self, workers: int):
        """Within the block up to `workers` threads may call process() at once, each with its own
        pipeline copy (same weights, own scheduler) and one torch thread."""
        if self._pipe is None:
            self.prepare()
        if workers <= 1 or self._cross_frame is not None:
            yield
            return
        threads = torch.get_num_threads()
        main = self._pool.get()
        for _ in range(workers):
            self._pool.put(_pipeline_copy(main))
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            for _ in range(workers):
                self._pool.get()
            self._pool.put(main)

    def _encode_prompt(self, prompt: str | None = None) -> dict:
        """Encode the prompt (default: params.prompt) once for the whole clip; returns the keyword
        arguments for each pipeline call."""
        p = self.params
        prompt = p.prompt if prompt is None else prompt
        encode = getattr(self._pipe, "encode_prompt", None)
        fallback = {"prompt": prompt, **({"negative_prompt": p.negative_prompt} if p.negative_prompt else {})}
        if encode is None or "do_classifier_free_guidance" not in inspect.signature(encode).parameters:
            return fallback  # other families (Flux, ...) encode differently; let the pipeline encode per frame
        with torch.inference_mode():
            encoded = encode(
                prompt,
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
        return self.process_batch([frame], [ctx])[0]

    def process_batch(self, frames: list[np.ndarray], contexts: list[FrameContext]) -> list[np.ndarray]:
        """Stylize frames that do not depend on each other in one pipeline call (one UNet batch); the
        same frames, up to floating-point rounding, as process() on each. One frame may carry
        ctx.init / ctx.references from the stabilizer; a batch of several may not."""
        if self._pipe is None:
            self.prepare(contexts[0].cancel)
        for ctx in contexts:
            ctx.check_cancelled()
        if len(frames) > 1 and any(c.init is not None or c.references or c.strength is not None for c in contexts):
            raise ValueError("frames that depend on earlier outputs cannot share a batch")
        h, w = frames[0].shape[:2]
        size = self.output_size(w, h)
        tile_big_frames(self._pipe, self._torch_device, *size)
        if len(frames) > 1 and len({self._strength_of(c) for c in contexts}) > 1:  # one pipeline call, one strength
            return [image for f, c in zip(frames, contexts) for image in self.process_batch([f], [c])]
        images = [resize_to(f if c.init is None or self.role == INSTRUCT else c.init, size) for f, c in zip(frames, contexts)]
        for ctx, frame in zip(contexts, frames):
            ctx.masked_source = resize_to(frame, size) if ctx.mask is not None else None  # for the latent mask
        sources = [resize_to(f, size) for f in frames]  # control images come from the source, not the init
        out: list[np.ndarray] = []
        while len(out) < len(images):
            # an out-of-memory fallback may have lowered the batch while this call runs: take what fits now
            chunk = slice(len(out), len(out) + max(1, min(self._max_batch, len(images) - len(out))))
            out.extend(self._denoise_with_fallback(images[chunk], sources[chunk], contexts[chunk], size))
        return out

    def _denoise_with_fallback(self, images, sources, contexts, size) -> list[np.ndarray]:
        """Denoise; on out-of-memory first halve the batch (frames per UNet call), and only when one
        frame alone does not fit switch to the low-memory settings (offload, VAE slicing/tiling), then
        give up with OutOfMemoryError. Every retry gives the frames a plain call gives."""
        while True:
            pipe = self._pool.get()
            try:
                return self._denoise(pipe, images, contexts, sources)
            except Exception as exc:
                if not _is_out_of_memory(exc):
                    raise
            finally:
                self._pool.put(pipe)
            collect_garbage()  # the failed batch's tensors, before a smaller one
            if self._torch_device == "cuda":
                torch.cuda.empty_cache()
            if len(images) > 1:
                self._max_batch = max(1, len(images) // 2)
                log.warning("out of memory with %d frames per call: now %d", len(images), self._max_batch)
                out: list[np.ndarray] = []
                while len(out) < len(images):  # in chunks of what fits now (a chunk may lower it further)
                    part = slice(len(out), len(out) + self._max_batch)
                    out.extend(self._denoise_with_fallback(images[part], sources[part], contexts[part], size))
                return out
            if self._low_memory:
                raise OutOfMemoryError(self._out_of_memory_message(size))
            log.warning("out of memory with one frame: switching to the low-memory settings")
            use_low_memory(self._pipe, self._torch_device)
            self._low_memory = True
            self._update_device_label()

    def preview(self, frame: np.ndarray, ctx: FrameContext) -> np.ndarray:
        """A quick look at one frame: decoded with the tiny autoencoder when one is available (see
        diffusion_models.load_tiny_autoencoder), else exactly process()."""
        if self._pipe is None:
            self.prepare(ctx.cancel)
        tiny = self._tiny_autoencoder()
        if tiny is None:
            return self.process(frame, ctx)
        h, w = frame.shape[:2]
        image = resize_to(frame, self.output_size(w, h))
        fast = _pipeline_copy(self._pipe)
        object.__setattr__(fast, "vae", tiny)  # bypasses the pipeline's config bookkeeping
        return self._denoise(fast, [image], [ctx], [image])[0]

    def _tiny_autoencoder(self):
        """The tiny autoencoder, looked for once per loaded model; None when none is available."""
        if self._tiny_vae is None:
            self._tiny_vae = load_tiny_autoencoder(self._pipe, self._torch_device, self._dtype) or False
            self.previews_exact = self._tiny_vae is False
        return None if self._tiny_vae is False else self._tiny_vae

    def use_tiny_autoencoder(self) -> bool:
        """From now on process() too encodes and decodes with the tiny autoencoder (bench/gpu.py's draft
        rows; the frames differ, so the cache identity says so). False when none is available."""
        if self._pipe is None:
            self.prepare()
        tiny = self._tiny_autoencoder()
        if tiny is None:
            return False
        object.__setattr__(self._pipe, "vae", tiny)  # as preview() does; the pool holds this same pipeline
        return True

    @property
    def _renders_with_tiny_autoencoder(self) -> bool:
        tiny = self._tiny_vae
        return self._pipe is not None and isinstance(tiny, torch.nn.Module) and self._pipe.vae is tiny

    def _out_of_memory_message(self, size: tuple[int, int]) -> str:
        return (
            f"the {self._torch_device.upper()} ran out of memory at {size[0]}x{size[1]} even with the low-memory "
            "settings; lower the max side, close other programs using the GPU, or use a smaller model"
        )

    def _strength_of(self, ctx: FrameContext) -> float:
        return frame_strength(self.params, ctx.index, ctx.strength)

    def _denoise(self, pipe, images: list[np.ndarray], contexts: list[FrameContext], control_sources: list[np.ndarray]):
        p = self.params
        first = contexts[0]
        strength = self._strength_of(first)
        steps_run = p.steps if self.role == INSTRUCT else min(int(p.steps * strength), p.steps)
        size = (images[0].shape[1], images[0].shape[0])
        masks = [ctx.mask for ctx in contexts]
        latent_mask = None
        if self.role == IMG2IMG and any(m is not None for m in masks):
            full = np.ones((size[1], size[0]), np.float32)
            sources = [image if c.masked_source is None else c.masked_source for c, image in zip(contexts, images)]
            latent_mask = LatentMask(pipe, sources, [full if m is None else m for m in masks], frame_seed(p, first.index))

        def on_step_end(pipe, step, timestep, callback_kwargs):
            try:
                for ctx in contexts:
                    ctx.report_step(step + 1, steps_run)  # raises CancelledError when cancelled
                    ctx.check_cancelled()  # a cancel made while reporting stops before the next step too
            except CancelledError:
                pipe._interrupt = True  # raising already leaves the loop; this keeps the pipeline's own flag in step
                raise
            if latent_mask is not None:
                callback_kwargs = latent_mask.callback(pipe, step, timestep, callback_kwargs)
            return callback_kwargs

        # shared noise: the same seed for every frame keeps unchanged regions from flickering (off: one per frame)
        generators = [torch.Generator(device="cpu").manual_seed(frame_seed(p, ctx.index)) for ctx in contexts]
        references = first.references if self._cross_frame is not None else []
        attend = self._cross_frame.references(references, p.seed) if references else nullcontext()
        began = time.perf_counter()
        with torch.inference_mode(), attend:
            result = pipe(
                image=self._upload(images),
                num_inference_steps=p.steps,
                guidance_scale=p.guidance,
                generator=generators if len(generators) > 1 else generators[0],
                output_type="pt",
                callback_on_step_end=on_step_end,
                **({"callback_on_step_end_tensor_inputs": ["latents"]} if latent_mask is not None else {}),
                **call_arguments(self.role, p, strength, masks, size),
                **self._frame_prompts(contexts),
                **self._conditioning.call_kwargs(p, control_sources, self._upload),
            )
            out = self._download(result.images)
        self._report_flagged(result, contexts)
        if self._compile and self.compile_seconds is None:
            self.compile_seconds = time.perf_counter() - began  # the first call compiles
            log.info("torch.compile warm-up: %.1f s (the first call, %d frame(s))", self.compile_seconds, len(images))
        return out

    def _report_flagged(self, result, contexts: list[FrameContext]) -> None:
        """With the safety checker on, a flagged frame comes back black: say so, never silently."""
        flagged = getattr(result, "nsfw_content_detected", None) or []
        for ctx, hit in zip(contexts, flagged):
            if hit:
                self.flagged_frames.append(ctx.index)
                log.warning("frame %d was flagged by the model's safety checker and is black", ctx.index)

    def _frame_prompts(self, contexts: list[FrameContext]) -> dict:
        """The prompt keywords for these frames: one encoding for all, or each frame's scheduled blend."""
        if self._prompt_schedule is None:
            return self._batched_prompt(len(contexts))
        each = [self._prompt_schedule.at(ctx.index) for ctx in contexts]
        if len(each) == 1:
            return each[0]
        return {name: torch.cat([e[name] for e in each]) if isinstance(value, torch.Tensor) else [e[name] for e in each]
                for name, value in each[0].items()}

    def _batched_prompt(self, count: int) -> dict:
        if count == 1:
            return self._prompt_kwargs
        return {
            name: value.repeat(count, *([1] * (value.ndim - 1))) if isinstance(value, torch.Tensor) else [value] * count
            for name, value in self._prompt_kwargs.items()
        }

    def _upload(self, images: list[np.ndarray]) -> torch.Tensor:
        """The frames as one B x 3 x H x W float tensor in [0, 1] on the device (through pinned memory
        on CUDA); the pipeline normalizes it as it would a PIL image, to the same values."""
        pixels = torch.from_numpy(np.stack(images))
        if self._torch_device == "cuda":
            pixels = pixels.pin_memory().to(self._torch_device, non_blocking=True)
        return pixels.permute(0, 3, 1, 2).float() / 255.0

    def _download(self, images: torch.Tensor) -> list[np.ndarray]:
        """[0, 1] B x 3 x H x W on the device -> uint8 HxWx3 frames: rounded on the device, one copy back."""
        pixels = (images.float() * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
        if pixels.device.type == "cuda":
            host = torch.empty(pixels.shape, dtype=torch.uint8, pin_memory=True)
            host.copy_(pixels, non_blocking=True)
            torch.cuda.current_stream(pixels.device).synchronize()
            pixels = host
        return list(pixels.numpy())

    def close(self) -> None:
        if self._cross_frame is not None:  # its UNet hook holds it and it holds the pipeline: a cycle
            self._cross_frame.remove()
        model = weakref.ref(self._pipe.unet) if getattr(self._pipe, "unet", None) is not None else None
        self._pipe = None
        self._pool = queue.SimpleQueue()
        self._tiny_vae = None
        self._prompt_kwargs = {}
        self._prompt_schedule = None
        self._cross_frame = None
        self._conditioning = Conditioning()
        self._encoded_for = None
        # freed by reference counting (tests/test_conditioning.py); a full collection pauses the app's GUI
        # thread for ~0.5 s (vdiff_gui/garbage.py), so it is asked for only when a cycle still holds the model
        if model is not None and model() is not None:
            log.info("the closed model is still held (a reference cycle): collecting")
            collect_garbage()
        if self._torch_device == "cuda":
            torch.cuda.empty_cache()


def _check_steps(params) -> None:
    if int(params.steps * params.strength) < 1:
        needed = int(np.ceil(1 / params.strength)) if params.strength > 0 else None
        hint = f"use at least {needed} steps or a higher strength" if needed else "raise the strength above 0"
        raise BadInputError(f"{params.steps} steps at strength {params.strength} leave no denoising step to run; {hint}")


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def _pipeline_copy(pipe):
    """The same pipeline (the same modules, hence weights) with its own scheduler and per-call state,
    so that two threads can run it at once."""
    twin = copy.copy(pipe)
    object.__setattr__(twin, "scheduler", copy.deepcopy(pipe.scheduler))
    return twin

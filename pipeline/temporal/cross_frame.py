"""Cross-frame attention for diffusers UNets: each frame's self-attention also attends to reference frames.

The references are the stylized anchor frame of the range and the previous frame. Before each UNet
call the references are encoded, noised to the same timestep with one noise for the whole clip, and
run through the UNet once in "record" mode; in the frame's own call every self-attention layer then
concatenates the recorded keys and values to its own. Because a reference is only a finished
(cached) frame, a resumed render rebuilds exactly the same attention context from the cache.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


class CrossFrameAttnProcessor:
    """A diffusers attention processor (the computation of AttnProcessor2_0) whose self-attention keys
    and values are extended with those recorded from reference frames."""

    def __init__(self) -> None:
        self.recording = False
        self.recorded: tuple[torch.Tensor, torch.Tensor] | None = None  # (keys, values), batch = refs x batch

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size = hidden_states.shape[0]
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        is_self = encoder_hidden_states is None
        if is_self:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        if is_self and self.recording:
            self.recorded = (key, value)
        elif is_self and self.recorded is not None:
            # the references were run with the same batch layout: split them back into frames
            ref_keys, ref_values = self.recorded
            key = torch.cat([key, *ref_keys.split(batch_size)], dim=1)
            value = torch.cat([value, *ref_values.split(batch_size)], dim=1)
            attention_mask = None  # self-attention in SD UNets has none; a mask would not cover the references

        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, key.shape[1], batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        hidden_states = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=0.0)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim).to(query.dtype)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


class CrossFrameAttention:
    """Installs CrossFrameAttnProcessor on the self-attention layers of a pipeline's UNet.

    Outside a `references(...)` block the UNet behaves as with its own processors' attention.
    """

    def __init__(self, pipe):
        self.pipe = pipe
        self._original = dict(pipe.unet.attn_processors)
        names = [name for name in self._original if name.endswith("attn1.processor")]  # the self-attention layers
        self.processors = {name: CrossFrameAttnProcessor() for name in names}
        self._install()
        self._latents: torch.Tensor | None = None
        self._noise: torch.Tensor | None = None
        self._running_references = False
        self._hook = pipe.unet.register_forward_pre_hook(self._before_unet, with_kwargs=True)

    def _install(self) -> None:
        current = self.pipe.unet.attn_processors
        if any(current.get(name) is not processor for name, processor in self.processors.items()):
            self.pipe.unet.set_attn_processor({**current, **self.processors})

    def remove(self) -> None:
        """Put the UNet's own processors back."""
        self._hook.remove()
        self.pipe.unet.set_attn_processor(self._original)

    @contextmanager
    def references(self, images: list[np.ndarray], seed: int):
        """Within the block, every UNet call also attends to these uint8 RGB frames (at the frame's size)."""
        if not images:
            yield
            return
        pipe = self.pipe
        vae = pipe.vae
        with torch.inference_mode():
            pixels = torch.cat([pipe.image_processor.preprocess(Image.fromarray(image)) for image in images])
            pixels = pixels.to(device=reference_device(pipe), dtype=vae.dtype)
            latents = vae.encode(pixels).latent_dist.mode() * vae.config.scaling_factor
        generator = torch.Generator(device="cpu").manual_seed(seed)
        noise = torch.randn(latents.shape[1:], generator=generator, dtype=torch.float32)
        self._latents, self._noise = latents, noise.to(latents.device, latents.dtype).expand_as(latents)
        try:
            yield
        finally:
            self._latents = self._noise = None
            for processor in self.processors.values():
                processor.recorded = None

    def _before_unet(self, unet, args, kwargs):
        if self._latents is None or self._running_references:
            return None
        self._install()  # the low-memory settings (attention slicing) may have replaced the processors
        sample = args[0] if args else kwargs["sample"]
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        batch, count = sample.shape[0], self._latents.shape[0]
        scheduler = self.pipe.scheduler
        steps = torch.as_tensor(timestep, device=self._latents.device).reshape(-1)[:1].repeat(count)
        noisy = scheduler.add_noise(self._latents, self._noise, steps)
        noisy = scheduler.scale_model_input(noisy.to(sample.device), timestep).to(sample.dtype)
        # batch layout [ref0 x batch, ref1 x batch, ...]; per-sample inputs (prompt embeddings, ...) tiled alike
        ref_kwargs = {k: _tile(v, batch, count) for k, v in kwargs.items() if k not in NOT_FOR_REFERENCES}
        self._running_references = True
        for processor in self.processors.values():
            processor.recording, processor.recorded = True, None
        try:
            unet(noisy.repeat_interleave(batch, dim=0), timestep, **ref_kwargs)
        finally:
            self._running_references = False
            for processor in self.processors.values():
                processor.recording = False
        return None


# the current frame's own inputs: a reference is run on its own latents, without the frame's ControlNet residuals
NOT_FOR_REFERENCES = (
    "sample", "timestep", "down_block_additional_residuals", "mid_block_additional_residual",
    "down_intrablock_additional_residuals",
)


def reference_device(pipe) -> torch.device:
    """Where the references are encoded: the pipeline's execution device. With model offload the VAE's
    weights sit on the CPU between calls (vae.device is the CPU) while every model runs on the GPU."""
    return pipe._execution_device


def _tile(value, batch: int, count: int):
    if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == batch:
        return value.repeat(count, *([1] * (value.ndim - 1)))
    if isinstance(value, dict):
        return {k: _tile(v, batch, count) for k, v in value.items()}
    if isinstance(value, (list, tuple)):  # IP-Adapter image embeddings: one tensor per adapter
        return type(value)(_tile(v, batch, count) for v in value)
    return value

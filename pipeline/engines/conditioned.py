"""The diffusion engine's conditioning beyond the prompt, split like the engine itself: what loads with
the model (LoRA files, the IP-Adapter and its image encoder, the ControlNets) and what each call
takes (LoRA weights, the IP-Adapter scale and picture embedding, control images, scales and windows).
"""

from __future__ import annotations

import numpy as np

from pipeline.engines.controls import ControlImages, control_call_kwargs, controlnet_pipeline, load_controlnets
from pipeline.engines.ip_adapter import load_ip_adapter, style_embeddings
from pipeline.engines.lora import load_loras, set_lora_weights


class Conditioning:
    """Per engine: loads once with the model, then applies per-call settings and builds call arguments."""

    def __init__(self) -> None:
        self.controls: ControlImages | None = None
        self._embeds = None  # the style picture's IP-Adapter embeddings
        self._embeds_for: tuple | None = None  # (picture identity, guidance on) they were computed for
        self.embedding_runs = 0  # how many times the picture was encoded

    def load(self, pipe, params, dtype, cancel=None):
        """Load LoRAs, the IP-Adapter and the ControlNets into `pipe`; returns the pipeline to call
        (the ControlNet img2img variant when there are ControlNets)."""
        load_loras(pipe, params.loras, params.allow_pickle, cancel)
        if params.ip_adapter:
            load_ip_adapter(pipe, params.ip_adapter, dtype, params.allow_pickle)
        if params.controlnets:
            nets = load_controlnets(params.controlnets, dtype, params.allow_pickle, pipe.unet.config, cancel)
            pipe = controlnet_pipeline(pipe, nets)
            self.controls = ControlImages(params.annotator, params.allow_pickle, str(pipe.device))
            self.controls.check(tuple(net.control for net in params.controlnets))
        self._embeds = self._embeds_for = None
        return pipe

    def apply(self, pipe, params) -> None:
        """The per-call settings that live on the pipeline: LoRA weights, IP-Adapter scale and embedding."""
        set_lora_weights(pipe, params.loras)
        if params.ip_adapter:
            pipe.set_ip_adapter_scale(params.ip_adapter_scale)
            wanted = (_picture_identity(params.style_image), params.guidance > 1)
            if wanted != self._embeds_for:
                self._embeds = style_embeddings(pipe, params.style_image, params.guidance)
                self._embeds_for = wanted
                self.embedding_runs += 1
        if params.controlnets and self.controls is not None:
            self.controls.check(tuple(net.control for net in params.controlnets))

    def call_kwargs(self, params, sources: list[np.ndarray], upload) -> dict:
        """Keyword arguments for one pipeline call on these source frames (already at the output size)."""
        kwargs = {}
        if params.ip_adapter and self._embeds is not None:
            kwargs["ip_adapter_image_embeds"] = self._embeds
        if params.controlnets and self.controls is not None:
            images = [upload([self.controls.image(net.control, frame) for frame in sources]) for net in params.controlnets]
            kwargs.update(control_call_kwargs(params.controlnets, images))
        return kwargs


def _picture_identity(path: str) -> tuple:
    from pathlib import Path

    try:
        st = Path(path).stat()
        return (str(path), st.st_size, st.st_mtime_ns)
    except OSError:
        return (str(path),)

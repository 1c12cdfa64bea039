"""IP-Adapter: a picture as the style of every frame, for the diffusion engine.

The adapter is a `.safetensors` file with `image_proj.*` and `ip_adapter.*` weights (h94/IP-Adapter's
`models/ip-adapter_sd15.safetensors`, `sdxl_models/ip-adapter_sdxl.safetensors`, ...) plus its CLIP
image encoder, a transformers folder (`image_encoder/` with config.json and model.safetensors). Given
as a file, the encoder is the `image_encoder/` folder beside it (or one level up); given as a folder,
the one adapter file in it and its `image_encoder/`; a hub id may name the file inside the repo
(`h94/IP-Adapter/models/ip-adapter_sd15.safetensors`). The picture's embedding is computed once per
loaded style picture and reused for every frame; the scale is a per-call setting.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from pipeline.engines.model_files import refuse_code, resolve_local, transformers_dtype_kwargs, weights_in
from pipeline.errors import BadInputError, ModelError

log = logging.getLogger(__name__)


def load_ip_adapter(pipe, name: str, dtype, allow_pickle: bool) -> None:
    """Load the adapter and its image encoder into `pipe`. ModelError for a wrong or mismatched file."""
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    if not hasattr(pipe, "load_ip_adapter"):
        raise ModelError(f"{type(pipe).__name__} models take no IP-Adapter")
    path = resolve_local(name, "IP-Adapter", allow_pickle)
    weights = weights_in(path, "IP-Adapter", allow_pickle) if path.is_dir() else path
    encoder = _encoder_folder(weights)
    if encoder is None:
        raise ModelError(
            f"the IP-Adapter '{name}' needs its image encoder: an 'image_encoder' folder (config.json and "
            "model.safetensors) beside the adapter file"
        )
    refuse_code(encoder, "image encoder folder")
    try:
        image_encoder = CLIPVisionModelWithProjection.from_pretrained(
            str(encoder), local_files_only=True, use_safetensors=None if allow_pickle else True,
            **transformers_dtype_kwargs(dtype),
        )
    except Exception as exc:
        raise ModelError(f"the image encoder of the IP-Adapter '{name}' could not be loaded: {_first_line(exc)}") from exc
    pipe.register_modules(image_encoder=image_encoder)
    size = image_encoder.config.image_size
    current = getattr(pipe, "feature_extractor", None)
    if current is None or _crop_side(current) != size:  # the encoder's own input size
        pipe.register_modules(feature_extractor=CLIPImageProcessor(size=size, crop_size=size))
    try:
        pipe.load_ip_adapter(
            str(weights.parent), subfolder="", weight_name=weights.name, image_encoder_folder=None, local_files_only=True
        )
    except Exception as exc:
        raise ModelError(
            f"the IP-Adapter '{name}' does not fit this model (made for another base model, or not an "
            f"IP-Adapter): {_first_line(exc)}"
        ) from exc
    _check_embedding_size(pipe, name)


def style_embeddings(pipe, picture: str, guidance: float) -> list[torch.Tensor]:
    """The picture's IP-Adapter embeddings (negative and positive when guidance > 1), for every call."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(picture) as image:
            image = image.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise BadInputError(f"cannot read the style image '{picture}': {_first_line(exc)}") from None
    with torch.inference_mode():
        return pipe.prepare_ip_adapter_image_embeds(
            ip_adapter_image=[image], ip_adapter_image_embeds=None, device=pipe._execution_device,
            num_images_per_prompt=1, do_classifier_free_guidance=guidance > 1,
        )


def _encoder_folder(weights: Path) -> Path | None:
    for folder in (weights.parent / "image_encoder", weights.parent.parent / "image_encoder"):
        if (folder / "config.json").is_file():
            return folder
    return None


def _crop_side(processor) -> int | None:
    crop = getattr(processor, "crop_size", None)
    if isinstance(crop, dict):
        return crop.get("height") or crop.get("shortest_edge")
    return crop


def _check_embedding_size(pipe, name: str) -> None:
    """The adapter's projection must take what the encoder gives (else a shape error on the first frame)."""
    projection = getattr(pipe.unet, "encoder_hid_proj", None)
    layers = getattr(projection, "image_projection_layers", None) or []
    wanted = pipe.image_encoder.config.projection_dim
    for layer in layers:
        first = next((m for m in layer.modules() if isinstance(m, torch.nn.Linear)), None)
        if first is not None and first.in_features != wanted:
            raise ModelError(
                f"the IP-Adapter '{name}' expects image embeddings of size {first.in_features}, but its image "
                f"encoder gives {wanted}: they do not belong together"
            )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


__all__ = ["load_ip_adapter", "style_embeddings"]

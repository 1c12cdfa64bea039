"""The native output size of a diffusion model family, read from its configs without loading weights
(issue #10 item 13: SD 2 768-px and SDXL models must not default to SD 1.x's 512)."""

from __future__ import annotations

import json
from pathlib import Path


def native_side(pipe=None, model: str = "") -> int:
    """The longest side a model family was trained at: the UNet's sample size times the VAE's downscale
    (SD 1.x 512, SD 2 768-px models 768, SDXL 1024); from the loaded pipeline, else from the model's
    config files without loading weights; 512 when neither tells."""
    if pipe is not None and getattr(pipe, "unet", None) is not None:
        return _side(pipe.unet.config.get("sample_size"), getattr(pipe, "vae_scale_factor", 8))
    folder = _config_folder_of(model)
    if folder is not None:
        try:
            unet = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
            vae = json.loads((folder / "vae" / "config.json").read_text(encoding="utf-8"))
            return _side(unet.get("sample_size"), 2 ** (len(vae.get("block_out_channels", [0] * 4)) - 1))
        except (OSError, ValueError):
            return 512
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".safetensors":
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                keys = set(f.keys())
        except Exception:
            return 512
        if any(k.startswith("conditioner.embedders.1.") for k in keys):
            return 1024  # SDXL
        if any(k.startswith("cond_stage_model.model.") for k in keys):
            return 768  # SD 2.x (OpenCLIP text encoder); its 512-px base variant is rarer
    return 512


def _side(sample_size, scale: int) -> int:
    if isinstance(sample_size, (list, tuple)):
        sample_size = max(sample_size)
    return int(sample_size) * int(scale) if isinstance(sample_size, (int, float)) and sample_size else 512


def _config_folder_of(model: str) -> Path | None:
    """The folder whose unet/ and vae/ configs describe `model` (folder, hub snapshot, single-file config)."""
    if not model:
        return None
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    from pipeline.engines.diffusion_models import _HUB_ID, find_single_file_config

    if path.is_file():
        return find_single_file_config(path)
    if _HUB_ID.match(model):
        from huggingface_hub import constants

        from pipeline.model_identity import hub_commit

        commit = hub_commit(model)
        snapshot = Path(constants.HF_HUB_CACHE) / ("models--" + model.replace("/", "--")) / "snapshots" / str(commit)
        return snapshot if commit and snapshot.is_dir() else None
    return None

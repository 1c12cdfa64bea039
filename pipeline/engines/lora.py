"""LoRAs on a loaded diffusers pipeline: load_lora_weights once per file (peft), weights per call.

A LoRA is a `.safetensors` file in diffusers' layout (`unet.down_blocks...lora_A.weight`, what
`save_lora_weights` writes) or kohya's (`lora_unet_down_blocks_...lora_down.weight`, what most
community LoRAs use; diffusers converts it), a folder holding one (`pytorch_lora_weights.safetensors`
first), or a hub id (`org/name` or `org/name/file.safetensors`). Changing a weight is a
`set_adapters` call, never a reload. LCM-LoRA and TCD-LoRA are LoRAs like any other: use them with
the `lcm` / `tcd` scheduler, 4-8 steps and guidance 1-2.
"""

from __future__ import annotations

import logging

from pipeline.conditioning import LoraSpec
from pipeline.engines.model_files import resolve_local, weights_in
from pipeline.errors import CancelledError, ModelError

log = logging.getLogger(__name__)
DIFFUSERS_LORA_NAME = "pytorch_lora_weights.safetensors"


def adapter_name(index: int) -> str:
    return f"vdiff_lora_{index}"


def load_loras(pipe, loras: tuple[LoraSpec, ...], allow_pickle: bool, cancel=None) -> list[str]:
    """Load every LoRA into `pipe` as its own adapter and set their weights; returns the adapter names.

    ModelError with one sentence for a missing or pickle file, a file that is not a LoRA, or one made
    for another base model (its layers do not fit this model's).
    """
    if not loras:
        return []
    if not hasattr(pipe, "load_lora_weights"):
        raise ModelError(f"{type(pipe).__name__} models take no LoRA")
    names = []
    for index, lora in enumerate(loras):
        if cancel is not None and cancel.cancelled:
            raise CancelledError("loading the model was cancelled")
        path = resolve_local(lora.path, "LoRA", allow_pickle)
        if path.is_dir():
            path = weights_in(path, "LoRA", allow_pickle, preferred=(DIFFUSERS_LORA_NAME,))
        name = adapter_name(index)
        try:
            pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=name, local_files_only=True)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(
                f"the LoRA '{lora.path}' does not fit this model (made for another base model, or not a LoRA): "
                f"{_first_line(exc)}"
            ) from exc
        if not _adapter_loaded(pipe, name):
            raise ModelError(
                f"the LoRA '{lora.path}' holds no layers this model has: it was made for another base model "
                "(SD 1.5, SD 2 and SDXL LoRAs do not mix) or is not a LoRA"
            )
        names.append(name)
    set_lora_weights(pipe, loras)
    return names


def set_lora_weights(pipe, loras: tuple[LoraSpec, ...]) -> None:
    """The per-call part: each adapter's weight (set_adapters), no reload."""
    if loras:
        pipe.set_adapters([adapter_name(i) for i in range(len(loras))], [lora.weight for lora in loras])


def _adapter_loaded(pipe, name: str) -> bool:
    try:
        return any(name in names for names in pipe.get_list_adapters().values())
    except Exception:  # no peft layers at all
        return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]

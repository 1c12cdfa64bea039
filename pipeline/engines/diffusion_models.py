"""Find, load and place a diffusion model for img2img, offline-first and without running untrusted code.

`model` is one of:
- a diffusers folder (holds model_index.json): loaded from disk only, safetensors weights only;
- a single `.safetensors` checkpoint in the original Stable Diffusion layout. Its diffusers configs
  (model_index.json, unet/config.json, tokenizer/, scheduler/, no weights needed) come from, in order:
  the `config` argument, a folder beside the file named like it without the extension
  (`dreamshaper.safetensors` + `dreamshaper/`), a `config/` folder beside it. With none of these,
  diffusers guesses the base model and takes its configs from the Hugging Face cache, fetching them
  when online;
- a hub id such as `org/name`: from the Hugging Face cache, downloaded when online.

Pickle files (.ckpt, .bin, .pt, .pth, or a folder whose weights are only .bin) can run code when
loaded, so they are refused unless allow_pickle. trust_remote_code is never enabled.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import sys
from pathlib import Path

import torch

from pipeline.engines.diffusion_editing import EDIT_PIPELINE_CLASSES, task_pipeline
from pipeline.engines.model_files import check_config_folder, load_components, read_index, refuse_code
from pipeline.errors import BadInputError, CancelledError, ModelError

log = logging.getLogger(__name__)
PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl")
# name -> (diffusers class, from_config overrides)
SCHEDULERS = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "lcm": ("LCMScheduler", {}),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "dpm++-karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
    "tcd": ("TCDScheduler", {}),  # with a TCD LoRA: few steps, guidance about 1
}
SCHEDULER_NAMES = ("default", *SCHEDULERS)
TRUSTED_LIBRARIES = {"diffusers", "transformers"}  # model components from anywhere else would be code from the folder
BIG_FRAME_PIXELS = 1024 * 1024  # above this the CPU decodes the VAE in tiles to bound its memory
GIB = 1024**3
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_HUB_ID_PATH = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?$")  # org/name or org/name/path/in/repo


def resolve_device(device: str) -> tuple[str, torch.dtype]:
    """'auto' -> CUDA when available, else CPU in fp32. 'cuda' without CUDA is a BadInputError.

    On CUDA: bf16 where the GPU runs it natively (Ampere and later: fp16's speed without its overflow
    in the VAE), else fp16; VDIFF_CUDA_DTYPE=fp16|bf16 overrides.
    """
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise BadInputError("device 'cuda' was chosen but no CUDA GPU is available to PyTorch; use auto or cpu")
    if device not in ("auto", "cpu", "cuda"):
        raise BadInputError(f"unknown device '{device}'; use auto, cpu or cuda")
    if device == "cuda" or (device == "auto" and cuda):
        return "cuda", cuda_dtype()
    return "cpu", gpu_path_dtype() if gpu_path_on_cpu() else torch.float32


GPU_PATH_ENV = "VDIFF_CPU_GPU_PATH"  # "1": CPU runs take the CUDA path's dtype, layout and batching (tests)


def gpu_path_on_cpu() -> bool:
    """Whether CPU runs take the CUDA path: its dtype (bf16), channels-last models, SDPA attention and
    batched frames, so that a CPU test catches a dtype, layout or device mismatch of that path. Only
    what needs CUDA itself (pinned memory, cuDNN, the CUDA dtype probe) stays GPU-only."""
    return os.environ.get(GPU_PATH_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def gpu_path_dtype() -> torch.dtype:
    """The CUDA path's dtype on a CPU: bf16 (what current GPUs get), or VDIFF_CUDA_DTYPE=fp16."""
    return torch.float16 if os.environ.get("VDIFF_CUDA_DTYPE", "").strip().lower() in ("fp16", "float16") \
        else torch.bfloat16


def cuda_dtype() -> torch.dtype:
    asked = os.environ.get("VDIFF_CUDA_DTYPE", "").strip().lower()
    if asked in ("fp16", "float16"):
        return torch.float16
    if asked in ("bf16", "bfloat16"):
        return torch.bfloat16
    try:
        native = torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch < 2.3 has no including_emulation
        native = torch.cuda.get_device_capability()[0] >= 8
    return torch.bfloat16 if native else torch.float16


def dtype_label(dtype: torch.dtype) -> str:
    return {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}.get(dtype, str(dtype))


def check_scheduler(name: str) -> None:
    if name not in SCHEDULER_NAMES:
        raise BadInputError(f"unknown scheduler '{name}'; choose one of {', '.join(SCHEDULER_NAMES)}")


def load_img2img_pipeline(
    model: str,
    device: str,
    dtype: torch.dtype,
    allow_pickle: bool = False,
    scheduler: str = "default",
    low_memory: bool = False,
    config: str | None = None,
    safety_checker: bool = False,
    cancel=None,
    on_progress=None,
    place: bool = True,
):
    """Load `model` as an img2img DiffusionPipeline on `device` ('cpu' or 'cuda', see resolve_device);
    inpainting and InstructPix2Pix models load as those pipelines (diffusion_editing.task_pipeline).

    Folders and hub snapshots load one component at a time: `cancel` (a CancelToken) is checked and
    on_progress(component, done, total) called between components. The model's NSFW safety checker is
    left out unless `safety_checker` (docs/models.md). Raises ModelError with one sentence when the
    model is missing, incomplete, not a model, not cached while offline, ships code, or is a pickle
    file without allow_pickle; BadInputError for an unknown or unfit scheduler; CancelledError.
    """
    check_scheduler(scheduler)
    _quiet_progress_bars()
    path = Path(model).expanduser()
    options = dict(dtype=dtype, allow_pickle=allow_pickle, safety_checker=safety_checker, cancel=cancel,
                   on_progress=on_progress)
    try:
        if path.is_dir():
            pipe = _load_folder(path, **options)
        elif path.is_file():
            pipe = _load_single_file(path, config=config, **options)
        elif _HUB_ID.match(model) and not model.startswith("."):
            pipe = _load_folder(hub_snapshot(model, allow_pickle), **options)
        else:
            raise ModelError(
                f"model '{model}' not found: give a diffusers folder, a .safetensors file or a hub id (org/name)"
            )
    except (ModelError, BadInputError, CancelledError, torch.OutOfMemoryError):
        raise
    except Exception as exc:  # diffusers reports broken files with many error types; the user needs one sentence
        raise ModelError(f"model '{model}' could not be loaded: {_first_line(exc)}") from exc
    pipe = task_pipeline(pipe)  # img2img, inpainting or InstructPix2Pix, as the model's UNet says
    set_scheduler(pipe, scheduler)
    pipe.set_progress_bar_config(disable=True)
    if place:  # else the caller adds LoRAs, adapters or ControlNets first, then calls place_pipeline
        place_pipeline(pipe, device, low_memory)
    return pipe


def _load_folder(folder: Path, dtype, allow_pickle: bool, safety_checker: bool, cancel, on_progress):
    from diffusers import AutoPipelineForImage2Image

    index = folder / "model_index.json"
    if not index.is_file():
        raise ModelError(f"'{folder}' is not a diffusers model folder: it has no model_index.json")
    pickled = _check_components(folder, index)
    if pickled and not allow_pickle:
        raise ModelError(
            f"the weights of {', '.join(pickled)} in '{folder}' are pickle (.bin) files, which can run code when "
            "loaded; convert them to .safetensors or allow pickle checkpoints explicitly"
        )
    entries = read_index(folder)
    skip = set() if safety_checker else {"safety_checker"}
    use_safetensors = None if pickled else True
    components = load_components(folder, entries, dtype, use_safetensors, skip, cancel, on_progress)
    if "requires_safety_checker" in entries and not safety_checker:
        components["requires_safety_checker"] = False
    if safety_checker and components.get("safety_checker") is None:
        log.warning("'%s' has no safety checker; frames are not checked", folder)
    loader = AutoPipelineForImage2Image
    if entries.get("_class_name") in EDIT_PIPELINE_CLASSES:  # inpainting and InstructPix2Pix models load as themselves
        loader = _folder_pipeline_class(folder)
    return loader.from_pretrained(
        str(folder), **components, **_dtype_kwargs(dtype), local_files_only=True, use_safetensors=use_safetensors
    )


def hub_snapshot(repo_id: str, allow_pickle: bool = False) -> Path:
    """The cached snapshot folder refs/main names for `repo_id` (no network); when not cached and online,
    the app's checked download (pipeline.hub) fetches what the loader reads first. Either way the
    folder then gets the same checks as a local folder."""
    from huggingface_hub import constants

    from pipeline.model_identity import hub_commit

    commit = hub_commit(repo_id)
    snapshot = Path(constants.HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--")) / "snapshots" / str(commit)
    if commit and (snapshot / "model_index.json").is_file():
        return snapshot
    if _offline():
        raise _not_cached(repo_id)
    from pipeline.hub import download_model

    return download_model(repo_id, allow_pickle=allow_pickle)


def trusted_library(library) -> bool:
    """Components may come from diffusers, transformers or one of diffusers' own pipeline modules
    (Stable Diffusion 1.5 names its safety checker's library "stable_diffusion"); anything else would be
    code shipped with the model."""
    from diffusers import pipelines

    return library in TRUSTED_LIBRARIES or (isinstance(library, str) and hasattr(pipelines, library))


def check_pipeline_class(where: str, name) -> None:
    """Refuse a model_index.json whose pipeline is not one of diffusers' own classes."""
    import diffusers

    if not isinstance(name, str) or not hasattr(diffusers, name):
        raise ModelError(f"'{where}' asks for a custom pipeline class {name!r}; vdiff never runs code shipped with a model")


def check_component_library(where: str, component: str, library) -> None:
    """Refuse a component from a library that is not trusted (see trusted_library)."""
    if not trusted_library(library):
        raise ModelError(
            f"'{where}' asks for the component '{component}' from '{library}', which is not diffusers or "
            "transformers; vdiff never runs code shipped with a model"
        )


def _check_components(folder: Path, index: Path) -> list[str]:
    """Raise ModelError when a component the index names is missing; return those with only pickle weights."""
    refuse_code(folder)
    entries = read_index(folder)
    check_pipeline_class(str(folder), entries.get("_class_name"))
    pickled = []
    for name, value in entries.items():
        if name.startswith("_") or not isinstance(value, list) or value[0] is None:
            continue
        check_component_library(str(folder), name, value[0])
        component = folder / name
        if not component.is_dir():
            raise ModelError(f"the model folder '{folder}' is incomplete: the '{name}' folder is missing")
        if not (component / "config.json").is_file():
            continue  # schedulers, tokenizers and image processors hold no weights
        safe = list(component.glob("*.safetensors"))
        unsafe = [p for p in component.iterdir() if p.suffix in PICKLE_SUFFIXES]
        if not safe and not unsafe:
            raise ModelError(f"the model folder '{folder}' is incomplete: '{name}' has no weights file")
        if not safe:
            pickled.append(name)
    return pickled


def _load_single_file(path: Path, dtype, allow_pickle: bool, config: str | None, safety_checker: bool, cancel,
                      on_progress):
    import diffusers

    if path.suffix in PICKLE_SUFFIXES and not allow_pickle:
        raise ModelError(
            f"'{path.name}' is a pickle checkpoint, which can run code when loaded; use a .safetensors file "
            "or allow pickle checkpoints explicitly"
        )
    if path.suffix not in (".safetensors", *PICKLE_SUFFIXES):
        raise ModelError(f"'{path.name}' is not a model file: expected .safetensors (or a diffusers folder)")
    config_folder = find_single_file_config(path, config)
    if config_folder is None:
        pipeline_class = _guess_single_file_class(path)
        kwargs = {}
    else:
        check_config_folder(config_folder, allow_pickle)
        pipeline_class = _folder_pipeline_class(config_folder)
        kwargs = {"config": str(config_folder)}
    if not hasattr(pipeline_class, "from_single_file"):
        raise ModelError(
            f"{pipeline_class.__name__} models cannot be loaded from a single file; use a diffusers folder"
        )
    if not safety_checker and "safety_checker" in inspect.signature(pipeline_class.__init__).parameters:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    if cancel is not None and cancel.cancelled:
        raise CancelledError("loading the model was cancelled")
    if on_progress is not None:
        on_progress(path.name, 0, 1)
    try:
        pipe = pipeline_class.from_single_file(
            str(path), **_dtype_kwargs(dtype), local_files_only=config_folder is not None or _offline(), **kwargs
        )
    except Exception as exc:
        if config_folder is None and (_offline() or _is_connection_error(exc)):
            raise ModelError(
                f"'{path.name}' needs its diffusers configs: put them in a folder named '{path.stem}' beside it "
                "(model_index.json, unet/config.json, ...), or connect once so the base model's configs are cached"
            ) from exc
        raise
    if on_progress is not None:
        on_progress("", 1, 1)
    return pipe


def find_single_file_config(path: Path, config: str | None = None) -> Path | None:
    """The diffusers config folder for a single-file checkpoint (see the module docstring), or None."""
    if config:
        folder = Path(config).expanduser()
        if not (folder / "model_index.json").is_file():
            raise ModelError(f"the config '{config}' is not a diffusers folder: it has no model_index.json")
        return folder
    for folder in (path.with_suffix(""), path.parent / "config"):
        if (folder / "model_index.json").is_file():
            return folder
    return None


def _folder_pipeline_class(folder: Path):
    import diffusers

    name = json.loads((folder / "model_index.json").read_text(encoding="utf-8")).get("_class_name", "")
    pipeline_class = getattr(diffusers, name, None)
    if pipeline_class is None:
        raise ModelError(f"'{folder}' names an unknown pipeline '{name}' in model_index.json")
    return pipeline_class


def _guess_single_file_class(path: Path):
    """SDXL when the checkpoint has SDXL's second text encoder, otherwise Stable Diffusion 1/2."""
    import diffusers

    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            if any(key.startswith("conditioner.embedders.1.") for key in f.keys()):
                return diffusers.StableDiffusionXLPipeline
    return diffusers.StableDiffusionPipeline


def _not_cached(repo_id: str) -> ModelError:
    return ModelError(
        f"the model '{repo_id}' is not in the Hugging Face cache and the hub cannot be reached: connect to "
        "the internet once to download it, or choose a local diffusers folder or .safetensors file"
    )


def _dtype_kwargs(dtype: torch.dtype) -> dict:
    import diffusers
    from packaging.version import Version

    # diffusers 0.42 renamed torch_dtype to dtype and warns on the old name; older releases know only torch_dtype
    name = "dtype" if Version(diffusers.__version__) >= Version("0.42") else "torch_dtype"
    return {name: dtype}


def _offline() -> bool:
    from huggingface_hub import constants

    # read the environment now: huggingface_hub reads HF_HUB_OFFLINE only once, at import
    values = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return constants.HF_HUB_OFFLINE or any(v.upper() in ("1", "ON", "YES", "TRUE") for v in values)


def _is_connection_error(exc: BaseException) -> bool:
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    while exc is not None:
        if isinstance(exc, (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError, TimeoutError)):
            return True
        name = type(exc).__name__
        if "Connect" in name or "Timeout" in name:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def set_scheduler(pipe, name: str) -> None:
    """Swap the pipeline's scheduler by name, keeping the model's noise schedule ('default' keeps it all)."""
    check_scheduler(name)
    if name == "default":
        return
    import diffusers

    class_name, overrides = SCHEDULERS[name]
    current = type(pipe.scheduler).__name__
    if "FlowMatch" in current or "Flow" in str(pipe.scheduler.config.get("_class_name", "")):
        raise BadInputError(
            f"the scheduler '{name}' does not fit this model: it is a flow-matching model ({current}), which the "
            "noise-prediction schedulers cannot drive; use the scheduler 'default'"
        )
    prediction = pipe.scheduler.config.get("prediction_type", "epsilon")
    if prediction not in ("epsilon", "v_prediction", "sample"):
        raise BadInputError(f"the scheduler '{name}' does not fit this model's '{prediction}' prediction; use 'default'")
    try:
        pipe.scheduler = getattr(diffusers, class_name).from_config(pipe.scheduler.config, **overrides)
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise BadInputError(f"the scheduler '{name}' does not fit this model: {_first_line(exc)}") from None


def place_pipeline(pipe, device: str, low_memory: bool = False) -> None:
    """Move the pipeline to `device`; on CUDA use the low-memory settings when asked or when free memory
    looks too small for the weights plus working room."""
    if device == "cuda" and not low_memory and not _fits_on_gpu(pipe):
        low_memory = True
    if not low_memory:
        try:
            pipe.to(device)
            if device == "cuda" or gpu_path_on_cpu():
                tune_for_cuda(pipe)
            return
        except torch.OutOfMemoryError:
            pass  # the free-memory estimate was optimistic: offload instead
    use_low_memory(pipe, device)


def tune_for_cuda(pipe) -> None:
    """Channels-last UNet and VAE (what cuDNN's tensor-core convolutions want), PyTorch's SDPA attention,
    cuDNN autotuning (a render keeps one frame size), TF32 for what stays in fp32."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    for name in ("unet", "vae"):
        module = getattr(pipe, name, None)
        if isinstance(module, torch.nn.Module):
            module.to(memory_format=torch.channels_last)
    unet = getattr(pipe, "unet", None)
    adapters = unet is not None and any("IPAdapter" in type(p).__name__ for p in unet.attn_processors.values())
    if unet is not None and hasattr(unet, "set_attn_processor") and not adapters:  # keep IP-Adapter processors
        try:
            unet.set_attn_processor(AttnProcessor2_0())  # SDPA (flash / memory-efficient kernels)
        except Exception as exc:  # e.g. a UNet with added-KV attention: keep its own processors
            log.debug("kept the UNet's attention processors: %s", exc)


def compile_unet(pipe) -> None:
    """torch.compile the UNet in place (the module keeps its type, so diffusers still sees a UNet).
    Compiling happens on the first call: seconds on a GPU, minutes on a CPU."""
    unet = getattr(pipe, "unet", None)
    if unet is None:
        raise ModelError("torch.compile is set but this model has no UNet to compile")
    mode = "max-autotune-no-cudagraphs" if unet.device.type == "cuda" else None
    unet.compile(mode=mode, fullgraph=False, dynamic=False)


TINY_AUTOENCODERS = {"StableDiffusionXL": "madebyollin/taesdxl", "StableDiffusion": "madebyollin/taesd"}


def load_tiny_autoencoder(pipe, device: str, dtype: torch.dtype):
    """A tiny distilled autoencoder (diffusers AutoencoderTiny, TAESD) for quick previews, or None.

    VDIFF_TINY_VAE names one (a folder or hub id); otherwise TAESD/TAESDXL for the pipeline's family.
    Taken from disk or the Hugging Face cache, downloaded only when online; its latent size must match
    the pipeline's autoencoder. Never used for export: only previews decode with it.
    """
    from diffusers import AutoencoderTiny

    name = os.environ.get("VDIFF_TINY_VAE", "").strip()
    if not name:
        family = type(pipe).__name__
        name = next((repo for prefix, repo in TINY_AUTOENCODERS.items() if family.startswith(prefix)), "")
    if not name:
        return None
    kwargs = _dtype_kwargs(dtype)
    try:
        try:
            tiny = AutoencoderTiny.from_pretrained(name, local_files_only=True, use_safetensors=True, **kwargs)
        except Exception:
            if Path(name).expanduser().is_dir() or _offline():
                raise
            tiny = AutoencoderTiny.from_pretrained(name, use_safetensors=True, **kwargs)
    except Exception as exc:
        log.info("previews use the full autoencoder: no tiny autoencoder '%s' (%s)", name, _first_line(exc))
        return None
    vae = getattr(pipe, "vae", None)
    if vae is None or tiny.config.latent_channels != vae.config.latent_channels:
        log.info("previews use the full autoencoder: '%s' does not fit this model's latents", name)
        return None
    tiny.to(device)
    if device == "cuda":
        tiny.to(memory_format=torch.channels_last)
    return tiny.eval()


def uses_low_memory(pipe) -> bool:
    """Whether use_low_memory() has been applied (tile_big_frames alone does not count)."""
    return bool(getattr(pipe, "_all_hooks", None)) or bool(getattr(getattr(pipe, "vae", None), "use_slicing", False))


def use_low_memory(pipe, device: str) -> None:
    """Trade speed for memory: model CPU offload on CUDA, VAE slicing and tiling, attention slicing on CPU."""
    if device == "cuda":
        torch.cuda.empty_cache()
        if not getattr(pipe, "_all_hooks", None):  # offload hooks not installed yet
            pipe.enable_model_cpu_offload()
    else:
        pipe.to(device)
        pipe.enable_attention_slicing()  # never on CUDA: scaled-dot-product attention is leaner there
    vae = getattr(pipe, "vae", None)
    for method in ("enable_slicing", "enable_tiling"):
        if hasattr(vae, method):
            getattr(vae, method)()


def tile_big_frames(pipe, device: str, width: int, height: int) -> None:
    """On the CPU, decode frames over BIG_FRAME_PIXELS in VAE tiles so memory stays bounded."""
    vae = getattr(pipe, "vae", None)
    if device == "cpu" and width * height > BIG_FRAME_PIXELS and hasattr(vae, "enable_tiling"):
        vae.enable_tiling()


def _fits_on_gpu(pipe) -> bool:
    free, _total = torch.cuda.mem_get_info()
    weights = sum(
        p.numel() * p.element_size()
        for component in pipe.components.values()
        if isinstance(component, torch.nn.Module)
        for p in component.parameters()
    )
    room = max(1.5 * GIB, 0.5 * weights)  # activations and the VAE decode at 512-1024 px
    return free > weights + room


def _quiet_progress_bars() -> None:
    """Loading bars are noise in logs, and tqdm fails outright in windowed builds, which have no stderr."""
    import diffusers.utils.logging
    import transformers.utils.logging

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    if sys.stderr is None:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]

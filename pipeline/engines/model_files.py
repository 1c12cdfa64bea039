"""What vdiff checks in a model's files before diffusers sees them, and loading a folder one component
at a time (so a load can be cancelled and show progress between components).

The same checks run on every way a model arrives: a diffusers folder, a hub snapshot in the Hugging
Face cache, and the config folder of a single-file checkpoint (issue #10 item 9):
- no Python file anywhere in it (diffusers 0.35-0.37 imported `<component>/<library>.py` and a root
  `None.py` from a local folder without asking; vdiff never runs code shipped with a model);
- the pipeline class and every component's library are diffusers' or transformers' own;
- pickle weights (.bin, .ckpt, ...) only with allow_pickle.
"""

from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path
from typing import Callable

from pipeline.errors import CancelledError, ModelError

log = logging.getLogger(__name__)
CODE_SUFFIXES = (".py", ".pyc", ".pyo", ".pyd", ".so", ".dll", ".dylib")
PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl")
LoadProgress = Callable[[str, int, int], None]  # (component, done, total)


def refuse_code(folder: Path, what: str = "model folder") -> None:
    """ModelError when any code file lies anywhere under `folder`."""
    found = sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if p.suffix in CODE_SUFFIXES)
    if found:
        shown = ", ".join(found[:3]) + (" …" if len(found) > 3 else "")
        raise ModelError(
            f"the {what} '{folder}' contains code ({shown}); vdiff never runs code shipped with a model: "
            "remove those files or use a model without them"
        )


def read_index(folder: Path) -> dict:
    index = Path(folder) / "model_index.json"
    try:
        return json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"'{index}' is damaged: {str(exc).splitlines()[0] if str(exc) else exc}") from None


def check_config_folder(folder: Path, allow_pickle: bool) -> None:
    """The checks for a single-file checkpoint's diffusers config folder (its weights are optional)."""
    from pipeline.engines.diffusion_models import check_component_library, check_pipeline_class

    refuse_code(folder, "config folder")
    entries = read_index(folder)
    check_pipeline_class(str(folder), entries.get("_class_name"))
    for name, value in entries.items():
        if not name.startswith("_") and isinstance(value, list) and value and value[0] is not None:
            check_component_library(str(folder), name, value[0])
    pickled = sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if p.suffix in PICKLE_SUFFIXES)
    if pickled and not allow_pickle:
        raise ModelError(
            f"the config folder '{folder}' holds pickle files ({', '.join(pickled[:3])}), which can run code when "
            "loaded; remove them (the configs need no weights) or allow pickle checkpoints explicitly"
        )


# components that hold weights, loaded one by one; the rest (tokenizers, schedulers, image processors)
# are light and left to the pipeline's own from_pretrained
HEAVY_LIBRARIES = ("diffusers", "transformers")


def load_components(
    folder: Path,
    entries: dict,
    dtype,
    use_safetensors: bool | None,
    skip: set[str],
    cancel=None,
    on_progress: LoadProgress | None = None,
) -> dict:
    """Load the weight-holding components of a checked diffusers folder, one at a time, checking
    `cancel` before each and reporting (name, done, total). Components in `skip` become None."""
    heavy = []
    for name, value in sorted(entries.items()):
        if name.startswith("_") or not isinstance(value, list) or len(value) != 2 or None in value:
            continue
        if (Path(folder) / name / "config.json").is_file():
            heavy.append((name, value[0], value[1]))
    loaded: dict = {name: None for name in skip if name in entries}
    todo = [item for item in heavy if item[0] not in skip]
    for done, (name, library, class_name) in enumerate(todo):
        if cancel is not None and cancel.cancelled:
            raise CancelledError("loading the model was cancelled")
        if on_progress is not None:
            on_progress(name, done, len(todo))
        component_class = _component_class(library, class_name)
        kwargs = _dtype_kwargs_for(component_class, dtype) if _is_torch_module(component_class) else {}
        if use_safetensors is not None:
            kwargs["use_safetensors"] = use_safetensors
        loaded[name] = component_class.from_pretrained(str(Path(folder) / name), local_files_only=True, **kwargs)
    if cancel is not None and cancel.cancelled:
        raise CancelledError("loading the model was cancelled")
    if on_progress is not None:
        on_progress("", len(todo), len(todo))
    return loaded


def _component_class(library: str, class_name: str):
    """The class from diffusers, transformers or one of diffusers' pipeline modules (already trusted)."""
    module = importlib.import_module(library if library in HEAVY_LIBRARIES else f"diffusers.pipelines.{library}")
    component_class = getattr(module, class_name, None)
    if component_class is None:
        raise ModelError(f"the component class '{class_name}' is not in {library}: the model needs another version")
    return component_class


def _is_torch_module(component_class) -> bool:
    import torch

    return isinstance(component_class, type) and issubclass(component_class, torch.nn.Module)


def _dtype_kwargs_for(component_class, dtype) -> dict:
    from diffusers import ModelMixin

    from pipeline.engines.diffusion_models import _dtype_kwargs

    return _dtype_kwargs(dtype) if issubclass(component_class, ModelMixin) else transformers_dtype_kwargs(dtype)


def transformers_dtype_kwargs(dtype) -> dict:
    """transformers >= 4.56 names it dtype (torch_dtype warns in 5.x)."""
    import transformers
    from packaging.version import Version

    return {"dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype": dtype}


def resolve_local(name: str, what: str, allow_pickle: bool, patterns: tuple[str, ...] = ("*.json", "*.safetensors")) -> Path:
    """A local file or folder for `name`: as given when it exists; a hub id (`org/name[/path/in/repo]`) from
    the Hugging Face cache (refs/main's snapshot), fetched when online. Refuses code in a folder and
    pickle files without allow_pickle."""
    from pipeline.engines.diffusion_models import _HUB_ID_PATH, _not_cached, _offline
    from pipeline.model_identity import hub_commit

    path = Path(name).expanduser()
    if not path.exists() and _HUB_ID_PATH.match(name) and not name.startswith("."):
        parts = name.split("/")
        repo_id, inner = "/".join(parts[:2]), "/".join(parts[2:])
        from huggingface_hub import constants

        commit = hub_commit(repo_id)
        snapshot = Path(constants.HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--")) / "snapshots" / str(commit)
        if not (commit and snapshot.is_dir()):
            if _offline():
                raise _not_cached(repo_id)
            from huggingface_hub import snapshot_download

            snapshot = Path(snapshot_download(repo_id, allow_patterns=list(patterns)))
        path = snapshot / inner if inner else snapshot
    if not path.exists():
        raise ModelError(f"the {what} '{name}' was not found: give a file, a folder or a hub id (org/name)")
    if path.is_dir():
        refuse_code(path, f"{what} folder")
    elif path.suffix in PICKLE_SUFFIXES and not allow_pickle:
        raise ModelError(
            f"the {what} '{path.name}' is a pickle file, which can run code when loaded; use a .safetensors file "
            "or allow pickle checkpoints explicitly"
        )
    elif path.suffix not in (".safetensors", *PICKLE_SUFFIXES):
        raise ModelError(f"the {what} '{path.name}' is not a weights file: expected .safetensors")
    return path


def weights_in(folder: Path, what: str, allow_pickle: bool, preferred: tuple[str, ...] = ()) -> Path:
    """The one weights file of a folder (a preferred name first); pickle only with allow_pickle."""
    for name in preferred:
        if (folder / name).is_file():
            return folder / name
    safe = sorted(folder.glob("*.safetensors"))
    if len(safe) == 1:
        return safe[0]
    if len(safe) > 1:
        raise ModelError(
            f"the {what} folder '{folder}' holds several .safetensors files ({', '.join(p.name for p in safe[:3])}); "
            "name the file itself"
        )
    pickled = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickled and not allow_pickle:
        raise ModelError(
            f"the {what} in '{folder}' is a pickle file ({pickled[0].name}), which can run code when loaded; "
            "use a .safetensors file or allow pickle checkpoints explicitly"
        )
    if pickled:
        return pickled[0]
    raise ModelError(f"the {what} folder '{folder}' holds no weights file (.safetensors)")

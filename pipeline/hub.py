"""Download a diffusers model from the Hugging Face hub into the standard cache, with byte-level progress.

The files land where `from_pretrained` looks (HF_HUB_CACHE, models--org--name/snapshots/<commit>), so
load_img2img_pipeline finds the model afterwards with local_files_only. Only what the img2img loader
reads is fetched: model_index.json and, for each component the index names, its config, tokenizer and
scheduler files and its plain (non-variant) safetensors weights. Pickle weights only with allow_pickle;
root-level single-file checkpoints, other variants and other frameworks' weights are skipped.

A download is all or nothing for the loader: component files go into the commit's snapshot first, and
model_index.json at the requested revision last, which is what writes refs/main. A cancelled or failed
download keeps the whole files it got (the next download skips them) but is not a cached model.
"""

from __future__ import annotations

import errno
import json
import re
import shutil
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from pipeline.errors import CancelledError, ModelError, OutputError
from pipeline.events import CancelToken

INDEX = "model_index.json"
CONFIG_SUFFIXES = (".json", ".txt", ".model")  # configs, tokenizers (vocab, merges, sentencepiece), schedulers
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")
CHUNK_BYTES = 1024 * 1024  # huggingface_hub reads 10 MB per chunk: a slow link would leave the bar still for long
REQUEST_TIMEOUT_S = 20
_SHARD = re.compile(r"-\d{5}-of-\d{5}$")  # diffusion_pytorch_model-00001-of-00002.safetensors

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class DownloadPlan:
    """The files to fetch for `repo_id` at `commit` (what `revision` pointed to when planned)."""

    repo_id: str
    revision: str
    commit: str
    files: tuple[tuple[str, int], ...]  # (path in the repo, size in bytes), model_index.json last

    @property
    def total(self) -> int:
        return sum(size for _, size in self.files)


def plan_download(
    repo_id: str, revision: str = "main", allow_pickle: bool = False, endpoint: str | None = None
) -> DownloadPlan:
    """List the files diffusers needs to load `repo_id` as an img2img pipeline, with their sizes.

    Fetches the file list and model_index.json (into the cache). Raises ModelError with one sentence
    when the repo is unknown, gated, not a diffusers pipeline, asks for code, or has only pickle weights
    without allow_pickle; ModelError when the hub cannot be reached.
    """
    from huggingface_hub import HfApi, hf_hub_download

    _refuse_offline(repo_id)
    with _hub_errors(repo_id, endpoint):
        info = HfApi(endpoint=endpoint).model_info(
            repo_id, revision=revision, files_metadata=True, timeout=REQUEST_TIMEOUT_S
        )
        sizes = {s.rfilename: (s.lfs.size if s.lfs else s.size) or 0 for s in info.siblings or []}
        if INDEX not in sizes:
            raise ModelError(
                f"'{repo_id}' is not a diffusers model: it has no {INDEX}; download a single .safetensors file "
                "from it and choose that file instead"
            )
        index_path = hf_hub_download(repo_id, INDEX, revision=info.sha, endpoint=endpoint)
    try:
        index = json.loads(Path(index_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"the {INDEX} of '{repo_id}' is damaged: {_first_line(exc)}") from None
    files = needed_files(repo_id, index, sizes, allow_pickle)
    return DownloadPlan(repo_id, revision, info.sha, tuple((name, sizes[name]) for name in files))


def needed_files(repo_id: str, index: dict, sizes: dict[str, int], allow_pickle: bool = False) -> list[str]:
    """The repo files the img2img loader reads for this model_index.json, model_index.json last."""
    # the loader's rules (importing it loads torch: lazily)
    from pipeline.engines.diffusion_models import check_component_library, check_pipeline_class

    check_pipeline_class(repo_id, index.get("_class_name"))
    files = []
    for component, value in index.items():
        if component.startswith("_") or not isinstance(value, list) or len(value) != 2 or None in value:
            continue  # flags such as requires_safety_checker, and components the model does without
        check_component_library(repo_id, component, value[0])
        inside = [name for name in sizes if name.rpartition("/")[0] == component]
        if not inside:
            raise ModelError(f"'{repo_id}' on the hub is incomplete: it has no '{component}' folder")
        files += _component_files(repo_id, component, inside, allow_pickle)
    return sorted(files) + [INDEX]


def _component_files(repo_id: str, component: str, inside: list[str], allow_pickle: bool) -> list[str]:
    weights = _plain(inside, ".safetensors")
    if not weights:
        pickled = _plain(inside, ".bin")
        if pickled and allow_pickle:
            weights = pickled
        elif pickled:
            raise ModelError(
                f"the weights of '{component}' in '{repo_id}' are pickle (.bin) files, which can run code when "
                "loaded; choose a model with .safetensors weights or allow pickle checkpoints explicitly"
            )
        elif any(_is_weights(name) for name in inside) or f"{component}/config.json" in inside:
            raise ModelError(
                f"'{repo_id}' has no plain .safetensors weights for '{component}' (only other formats or variants "
                "such as fp16), which vdiff cannot load"
            )
    shard_index = {_SHARD.sub("", Path(name).stem) + Path(name).suffix + ".index.json" for name in weights}
    configs = [
        name for name in inside
        if name.endswith(CONFIG_SUFFIXES) and (".index." not in name or Path(name).name in shard_index)
    ]
    return weights + configs


def _plain(names: list[str], suffix: str) -> list[str]:
    """Weights files without a variant: model.safetensors, diffusion_pytorch_model-00001-of-00002.safetensors."""
    return [n for n in names if n.endswith(suffix) and "." not in Path(n).name[: -len(suffix)]]


def _is_weights(name: str) -> bool:
    return name.endswith((".safetensors", ".msgpack", ".h5", ".onnx", ".onnx_data", ".gguf", *PICKLE_SUFFIXES))


def download_model(
    repo_id: str,
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    revision: str = "main",
    allow_pickle: bool = False,
    endpoint: str | None = None,
) -> Path:
    """Download what plan_download lists into the Hugging Face cache; return the snapshot folder.

    on_progress(done_bytes, total_bytes) is called from the downloading thread (and, for Xet transfers,
    from huggingface_hub's progress thread), never decreasing, last with done == total. Files already
    cached count as done at once. Raises CancelledError when `cancel` is set (checked between files and,
    for plain HTTP transfers, every CHUNK_BYTES), ModelError for the hub's refusals and an unreachable
    hub, OutputError when the cache cannot be written (full disk, no permission).
    """
    from huggingface_hub import constants, hf_hub_download

    cancel = cancel or CancelToken()
    plan = plan_download(repo_id, revision, allow_pickle, endpoint)
    progress = _Progress(plan.total, on_progress, cancel)
    cache = Path(constants.HF_HUB_CACHE)
    # plan_download fetched model_index.json into the snapshot; it is fetched again last, at `revision`
    missing = [(n, size) for n, size in plan.files if n != INDEX and not _in_snapshot(cache, repo_id, plan.commit, n)]
    progress.add_file(plan.total - sum(size for _, size in missing))
    _check_free_space(cache, repo_id, sum(size for _, size in missing))
    # smaller reads keep the bar moving and make cancel prompt; a module constant, read on each download
    constants.DOWNLOAD_CHUNK_SIZE = min(constants.DOWNLOAD_CHUNK_SIZE, CHUNK_BYTES)
    bar_class = progress.bar_class()
    with _hub_errors(repo_id, endpoint):
        for name, size in missing:
            progress.check_cancel()
            hf_hub_download(repo_id, name, revision=plan.commit, endpoint=endpoint, tqdm_class=bar_class)
            progress.add_file(size)
        progress.check_cancel()
        # last: at the named revision, so refs/<revision> points at a complete snapshot
        index_path = Path(hf_hub_download(repo_id, INDEX, revision=revision, endpoint=endpoint))
    if index_path.parent.name != plan.commit:
        raise ModelError(f"'{repo_id}' changed on the hub during the download; download it again")
    progress.finish()
    return index_path.parent


def is_cached(repo_id: str, revision: str = "main") -> bool:
    """Whether the Hugging Face cache holds a complete diffusers model for `repo_id` (no network).

    Complete means refs/<revision> names a snapshot with model_index.json, a folder for every component
    it names, and a weights file in each component that has a config.json.
    """
    from huggingface_hub import constants

    repo = _repo_folder(Path(constants.HF_HUB_CACHE), repo_id)
    try:
        commit = (repo / "refs" / revision).read_text(encoding="utf-8").strip()
        snapshot = repo / "snapshots" / commit
        index = json.loads((snapshot / INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    for component, value in index.items():
        if component.startswith("_") or not isinstance(value, list) or None in value:
            continue
        folder = snapshot / component
        if not folder.is_dir():
            return False
        if (folder / "config.json").is_file() and not any(
            p.is_file() for p in folder.iterdir() if p.suffix in (".safetensors", *PICKLE_SUFFIXES)
        ):
            return False
    return True


def offline() -> bool:
    """Whether huggingface_hub is switched off (HF_HUB_OFFLINE), read now as the loader does."""
    import os

    from huggingface_hub import constants

    values = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return constants.HF_HUB_OFFLINE or any(v.upper() in ("1", "ON", "YES", "TRUE") for v in values)


class _Progress:
    """Bytes of whole files plus the current file's bytes, reported only when they grow."""

    def __init__(self, total: int, on_progress: ProgressCallback | None, cancel: CancelToken):
        self.total, self._on_progress, self._cancel = total, on_progress, cancel
        self._files = self._current = self._reported = 0
        self._lock = threading.Lock()
        self._thread = threading.current_thread()
        self._started = False

    def add_file(self, size: int) -> None:
        with self._lock:
            self._files += size
            self._current = 0
        self._report()

    def add_bytes(self, n: int) -> None:
        with self._lock:
            self._current += n  # negative when huggingface_hub restarts a file whose resume the server refused
        self._report()
        if threading.current_thread() is self._thread:  # an exception on Xet's progress thread stops nothing
            self.check_cancel()

    def check_cancel(self) -> None:
        if self._cancel.cancelled:
            raise CancelledError("the download was cancelled")

    def finish(self) -> None:
        with self._lock:
            self._files, self._current = self.total, 0
        self._report()

    def _report(self) -> None:
        with self._lock:
            done = min(self.total, self._files + max(0, self._current))
            if self._started and done <= self._reported:
                return
            self._started, self._reported = True, done
        if self._on_progress is not None:
            self._on_progress(done, self.total)

    def bar_class(self) -> type:
        progress = self

        class Bar:
            """What huggingface_hub asks of a tqdm bar; update() gets each chunk written to the file."""

            def __init__(self, *args, **kwargs):
                self.n, self.total = 0, kwargs.get("total")

            def update(self, n: int = 1) -> None:
                self.n += n
                progress.add_bytes(n)

            def update_transfer(self, n: int) -> None:
                pass  # Xet's network bytes: the file's bytes arrive through update()

            def set_postfix_str(self, *args, **kwargs) -> None:
                pass

            set_transfer_postfix_str = set_postfix_str

            def refresh(self) -> None:
                pass

            def close(self) -> None:
                pass

            def __enter__(self):
                return self

            def __exit__(self, *exc) -> None:
                pass

        return Bar


def _repo_folder(cache: Path, repo_id: str) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--"))


def _in_snapshot(cache: Path, repo_id: str, commit: str, name: str) -> bool:
    return (_repo_folder(cache, repo_id) / "snapshots" / commit / name).is_file()


def _check_free_space(cache: Path, repo_id: str, needed: int) -> None:
    folder = cache
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < needed:
        raise OutputError(
            f"not enough disk space for '{repo_id}': it needs {needed / 1e9:.1f} GB and {cache} has "
            f"{free / 1e9:.1f} GB free; free some space or point HF_HOME at a bigger disk"
        )


def _refuse_offline(repo_id: str) -> None:
    if offline():
        raise ModelError(
            f"cannot download '{repo_id}': the Hugging Face hub is switched off here (HF_HUB_OFFLINE is set); "
            "unset it to download, or choose a local diffusers folder or .safetensors file"
        )


@contextmanager
def _hub_errors(repo_id: str, endpoint: str | None) -> Iterator[None]:
    """Turn huggingface_hub's and the network's errors into one sentence the user can act on."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError, HfHubHTTPError, RemoteEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError,
    )

    try:
        yield
    except (CancelledError, ModelError, OutputError):
        raise
    except GatedRepoError as exc:
        raise ModelError(
            f"'{repo_id}' is gated: accept its terms on its Hugging Face page and log in (hf auth login), "
            "then download again"
        ) from exc
    except RepositoryNotFoundError as exc:
        raise ModelError(
            f"there is no model '{repo_id}' on the Hugging Face hub (or it is private): check the id"
        ) from exc
    except RevisionNotFoundError as exc:
        raise ModelError(f"'{repo_id}' has no such revision on the Hugging Face hub") from exc
    except Exception as exc:
        if _is_connection_error(exc):
            raise ModelError(
                f"cannot reach the Hugging Face hub ({endpoint or constants.ENDPOINT}) to download '{repo_id}', "
                "and it is not in the local cache: check the internet connection, or choose a local diffusers "
                "folder or .safetensors file"
            ) from exc
        if isinstance(exc, RemoteEntryNotFoundError):
            raise ModelError(f"a file of '{repo_id}' vanished from the hub during the download; try again") from exc
        if isinstance(exc, HfHubHTTPError):
            raise ModelError(f"the Hugging Face hub refused '{repo_id}': {_first_line(exc)}") from exc
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OutputError(
                f"the disk holding the Hugging Face cache ({constants.HF_HUB_CACHE}) filled up while downloading "
                f"'{repo_id}'; free some space and download again"
            ) from exc
        if isinstance(exc, (PermissionError, OSError)) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise OutputError(
                f"cannot write to the Hugging Face cache ({constants.HF_HUB_CACHE}): {_first_line(exc)}"
            ) from exc
        raise ModelError(f"downloading '{repo_id}' failed: {_first_line(exc)}") from exc


def _is_connection_error(exc: BaseException | None) -> bool:
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    while exc is not None:
        if isinstance(exc, (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError, TimeoutError)):
            return True
        name = type(exc).__name__  # httpx's ConnectError, ReadTimeout, RemoteProtocolError ...
        if "Connect" in name or "Timeout" in name or "Protocol" in name or "Network" in name:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return next((line for line in text.splitlines() if line.strip()), text)

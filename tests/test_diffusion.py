"""The diffusion engine on tiny random-weight Stable Diffusion models, loaded the way a user's model is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import tiny_models  # beside this file; pytest puts the tests folder on sys.path

from pipeline.engines.base import FrameContext
from pipeline.engines.diffusion import DiffusionEngine
from pipeline.engines.diffusion_models import SCHEDULERS, load_img2img_pipeline, set_scheduler
from pipeline.errors import BadInputError, CancelledError, ModelError, OutOfMemoryError
from pipeline.events import CancelToken
from pipeline.request import StyleParams

pytestmark = pytest.mark.diffusion


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_single_file(models_dir) -> Path:
    return tiny_models.make_tiny_sd_single_file(models_dir / "single" / "tiny-sd.safetensors")


@pytest.fixture(scope="session")
def tiny_bin_folder(models_dir) -> Path:
    return tiny_models.make_tiny_sd_folder(models_dir / "tiny-sd-bin", safe_serialization=False)


@pytest.fixture(scope="session")
def tiny_ckpt(models_dir) -> Path:
    return tiny_models.make_pickle_checkpoint(models_dir / "ckpt" / "tiny-sd.ckpt")


def make_engine(model: Path, **changes) -> DiffusionEngine:
    values = dict(engine="diffusion", model=str(model), prompt="a red fox, oil painting")
    values.update(steps=4, strength=0.75, seed=3)
    values.update(changes)
    engine = DiffusionEngine(StyleParams(**values).validate())
    engine.prepare()
    return engine


def render(engine: DiffusionEngine, frame: np.ndarray, **ctx) -> np.ndarray:
    return engine.process(frame, FrameContext(index=0, **ctx))


# --- loading the ways a user keeps models ---


def test_folder_model_restyles_a_frame_at_the_source_size(tiny_folder, frame):
    engine = make_engine(tiny_folder)
    assert type(engine._pipe).__name__ == "StableDiffusionImg2ImgPipeline"  # the folder names StableDiffusionPipeline
    out = render(engine, frame)
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    assert engine.device == "cpu"
    assert np.abs(out.astype(int) - frame).mean() > 5  # random weights: the frame really went through the model
    engine.close()


def test_single_file_checkpoint_loads_the_same_model_as_the_folder(tiny_folder, tiny_single_file, frame):
    from_folder = load_img2img_pipeline(str(tiny_folder), "cpu", torch.float32)
    from_file = load_img2img_pipeline(str(tiny_single_file), "cpu", torch.float32)
    for name in ("unet", "vae", "text_encoder"):
        a, b = getattr(from_folder, name).state_dict(), getattr(from_file, name).state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert render(make_engine(tiny_single_file), frame).tobytes() == render(make_engine(tiny_folder), frame).tobytes()


def test_single_file_takes_an_explicit_config_folder(tiny_single_file, tmp_path):
    moved = tmp_path / "elsewhere.safetensors"
    moved.write_bytes(tiny_single_file.read_bytes())
    pipe = load_img2img_pipeline(str(moved), "cpu", torch.float32, config=str(tiny_single_file.with_suffix("")))
    assert type(pipe).__name__ == "StableDiffusionImg2ImgPipeline"


def test_output_size_keeps_the_aspect_in_multiples_of_eight(tiny_folder):
    engine = DiffusionEngine(StyleParams(engine="diffusion", model=str(tiny_folder)))
    assert engine.output_size(64, 48) == (64, 48)  # smaller than 512: source size
    assert engine.output_size(1920, 1080) == (512, 288)  # larger: 512 on the long side by default
    assert engine.output_size(1000, 750) == (512, 384)
    assert engine.output_size(61, 45) == (56, 40)  # rounded down to multiples of 8
    sized = DiffusionEngine(StyleParams(engine="diffusion", model=str(tiny_folder), max_side=768))
    assert sized.output_size(1920, 1080) == (768, 432)


def test_a_large_frame_comes_out_at_max_side(tiny_folder, frame):
    big = np.repeat(np.repeat(frame, 2, axis=0), 2, axis=1)  # 128x96
    out = render(make_engine(tiny_folder, max_side=64), big)
    assert out.shape == (48, 64, 3)


# --- determinism, progress and cancelling ---


def test_same_seed_gives_the_same_frame_and_another_seed_a_different_one(tiny_folder, frame):
    engine = make_engine(tiny_folder, seed=7)
    first, again = render(engine, frame), render(engine, frame)
    assert first.tobytes() == again.tobytes()  # the generator is re-seeded for every frame
    other = render(make_engine(tiny_folder, seed=8), frame)
    assert np.abs(other.astype(int) - first).mean() > 1


def test_denoising_steps_are_reported_in_order(tiny_folder, frame):
    steps = []
    render(make_engine(tiny_folder, steps=4, strength=0.5), frame, on_step=lambda s, n: steps.append((s, n)))
    assert steps == [(1, 2), (2, 2)]  # img2img runs int(steps * strength) steps
    steps.clear()
    render(make_engine(tiny_folder, steps=4, strength=1.0), frame, on_step=lambda s, n: steps.append((s, n)))
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_cancelling_between_steps_stops_the_frame(tiny_folder, frame):
    engine = make_engine(tiny_folder, steps=10, strength=1.0)
    unet_calls = []
    engine._pipe.unet.register_forward_hook(lambda *args: unet_calls.append(1))
    token, steps = CancelToken(), []

    def on_step(step, total):
        steps.append(step)
        if step == 3:
            token.cancel()

    with pytest.raises(CancelledError):
        render(engine, frame, cancel=token, on_step=on_step)
    assert steps == [1, 2, 3]
    assert len(unet_calls) == 3  # no UNet call after the cancel
    unet_calls.clear()
    render(engine, frame)  # the engine is still usable after a cancel
    assert len(unet_calls) == 10


def test_a_cancelled_token_stops_before_the_first_step(tiny_folder, frame):
    engine = make_engine(tiny_folder)
    token = CancelToken()
    token.cancel()
    with pytest.raises(CancelledError):
        render(engine, frame, cancel=token)


# --- refusing pickle and reporting broken models ---


def test_pickle_checkpoint_is_refused_without_opt_in(tiny_ckpt):
    with pytest.raises(ModelError, match="pickle"):
        make_engine(tiny_ckpt)


def test_pickle_checkpoint_loads_with_opt_in(tiny_ckpt, frame):
    assert render(make_engine(tiny_ckpt, allow_pickle=True), frame).shape == (48, 64, 3)


def test_folder_with_only_bin_weights_is_refused_without_opt_in(tiny_bin_folder, frame):
    assert not list(tiny_bin_folder.rglob("*.safetensors"))
    with pytest.raises(ModelError, match="pickle"):
        make_engine(tiny_bin_folder)
    assert render(make_engine(tiny_bin_folder, allow_pickle=True), frame).shape == (48, 64, 3)


def test_folder_that_is_not_a_model_is_a_model_error(tmp_path):
    (tmp_path / "holiday.mp4").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a diffusers model folder.*model_index.json"):
        make_engine(tmp_path)


def test_missing_weights_file_is_a_model_error(tiny_folder, tmp_path):
    broken = tiny_models.copy_model_folder(tiny_folder, tmp_path / "broken")
    next((broken / "unet").glob("*.safetensors")).unlink()
    with pytest.raises(ModelError, match="incomplete.*unet"):
        make_engine(broken)


def test_missing_component_folder_is_a_model_error(tiny_folder, tmp_path):
    broken = tiny_models.copy_model_folder(tiny_folder, tmp_path / "broken")
    for path in (broken / "text_encoder").iterdir():
        path.unlink()
    (broken / "text_encoder").rmdir()
    with pytest.raises(ModelError, match="incomplete.*text_encoder"):
        make_engine(broken)


def test_corrupt_weights_file_is_a_model_error(tiny_folder, tmp_path):
    broken = tiny_models.copy_model_folder(tiny_folder, tmp_path / "broken")
    weights = next((broken / "vae").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:1000])  # a download cut short
    with pytest.raises(ModelError, match="could not be loaded"):
        make_engine(broken)


def test_missing_path_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        make_engine(tmp_path / "nowhere" / "model.safetensors")


def test_cached_hub_model_loads_offline(tiny_folder, frame, monkeypatch, tmp_path):
    from huggingface_hub import constants

    tiny_models.put_in_hub_cache(tiny_folder, tmp_path / "hub", "vdiff-tests/tiny-sd")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert render(make_engine("vdiff-tests/tiny-sd"), frame).shape == (48, 64, 3)


def test_uncached_hub_model_offline_is_a_model_error(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="not in the Hugging Face cache.*connect"):
        make_engine("vdiff-tests/no-such-model")


# --- bad parameters ---


def test_too_few_steps_for_the_strength_is_a_bad_input(tiny_folder):
    with pytest.raises(BadInputError, match="at least 4 steps"):
        DiffusionEngine(StyleParams(engine="diffusion", model=str(tiny_folder), steps=3, strength=0.3))
    DiffusionEngine(StyleParams(engine="diffusion", model=str(tiny_folder), steps=1, strength=1.0))  # SD-Turbo style


def test_unknown_scheduler_is_a_bad_input(tiny_folder):
    with pytest.raises(BadInputError, match="unknown scheduler 'warp'"):
        DiffusionEngine(StyleParams(engine="diffusion", model=str(tiny_folder), scheduler="warp"))


def test_named_schedulers_replace_the_models_scheduler(tiny_folder, frame):
    pipe = load_img2img_pipeline(str(tiny_folder), "cpu", torch.float32)
    for name, (class_name, _overrides) in SCHEDULERS.items():
        set_scheduler(pipe, name)
        assert type(pipe.scheduler).__name__ == class_name
        assert pipe.scheduler.config.beta_schedule == "scaled_linear"  # the model's noise schedule is kept
    assert render(make_engine(tiny_folder, scheduler="euler-a"), frame).shape == (48, 64, 3)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_bad_input(tiny_folder):
    with pytest.raises(BadInputError, match="no CUDA GPU"):
        make_engine(tiny_folder, device="cuda")


# --- running out of memory ---


def _unet_running_out_of_memory(engine: DiffusionEngine, times: int) -> list:
    """Make the next `times` UNet calls raise torch.OutOfMemoryError; return the list of failures."""
    unet = engine._pipe.unet
    real_forward, failures = unet.forward, []

    def forward(*args, **kwargs):
        if len(failures) < times:
            failures.append(1)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_forward(*args, **kwargs)

    unet.forward = forward
    return failures


def test_out_of_memory_retries_the_frame_with_low_memory_settings(tiny_folder, frame):
    expected = render(make_engine(tiny_folder), frame)
    engine = make_engine(tiny_folder)
    failures = _unet_running_out_of_memory(engine, times=1)
    out = render(engine, frame)
    assert failures == [1]
    assert out.shape == expected.shape and out.dtype == np.uint8
    assert engine._pipe.vae.use_tiling and engine._pipe.vae.use_slicing
    assert "low memory" in engine.device


def test_out_of_memory_twice_is_an_out_of_memory_error(tiny_folder, frame):
    engine = make_engine(tiny_folder)
    failures = _unet_running_out_of_memory(engine, times=10**6)
    with pytest.raises(OutOfMemoryError, match="ran out of memory.*max side"):
        render(engine, frame)
    assert len(failures) == 2  # the first try and one retry, no more

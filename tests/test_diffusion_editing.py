"""Diffusion content editing with tiny random-weight pipelines loaded through the user's path:
InstructPix2Pix and inpainting models, region masks for any model, prompt/strength/seed schedules."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from pipeline import tiny_models
from pipeline.engines import FrameContext, create_engine
from pipeline.engines.diffusion_editing import INPAINT, INSTRUCT, PromptSchedule
from pipeline.footage import moving_object_frames, write_frames
from pipeline.request import StyleParams

pytestmark = pytest.mark.diffusion
VDIFF = [sys.executable, "-m", "pipeline"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("edit-models")
    return {
        "img2img": tiny_models.make_tiny_sd_folder(folder / "tiny-sd"),
        "instruct": tiny_models.make_tiny_edit_folder(folder / "tiny-pix2pix", "instruct"),
        "inpaint": tiny_models.make_tiny_edit_folder(folder / "tiny-inpaint", "inpaint"),
    }


@pytest.fixture(scope="module")
def source():
    frame, mask = next(iter(moving_object_frames(1, 64, 48)))
    return frame, mask


def stylize(params: StyleParams, frame: np.ndarray, index: int = 0, mask=None) -> np.ndarray:
    engine = create_engine(params)
    engine.prepare()
    try:
        return engine.process(frame, FrameContext(index=index, mask=mask))
    finally:
        engine.close()


def tiny(model, **changes) -> StyleParams:
    base = dict(engine="diffusion", model=str(model), prompt="make it winter", steps=4, strength=0.75,
                guidance=3.0, seed=3, temporal_flow=False, cross_frame_attention=False, color_anchor=False)
    return StyleParams(**{**base, **changes})


def test_an_instructpix2pix_model_is_recognised_and_takes_the_image_guidance(models, source):
    frame, _ = source
    engine = create_engine(tiny(models["instruct"]))
    engine.prepare()
    try:
        assert engine.role == INSTRUCT
        assert type(engine._pipe).__name__ == "StableDiffusionInstructPix2PixPipeline"
    finally:
        engine.close()
    low = stylize(tiny(models["instruct"], image_guidance=1.0), frame)
    high = stylize(tiny(models["instruct"], image_guidance=3.0), frame)
    again = stylize(tiny(models["instruct"], image_guidance=3.0), frame)
    assert low.shape == frame.shape
    assert np.abs(low.astype(int) - high).mean() > 0.5  # the image guidance changes the pixels
    assert np.array_equal(high, again)  # shared noise: the same frame, the same output


def test_an_instruction_edit_renders_from_the_command_line(models, tmp_path):
    clip = write_frames(tmp_path / "clip.mp4", (f for f, _ in moving_object_frames(4, 64, 48)))
    out = tmp_path / "winter.mp4"
    done = subprocess.run([*VDIFF, "render", clip, "-o", out, "--engine", "diffusion", "--model", models["instruct"],
                           "--prompt", "make it winter", "--image-guidance", "1.5", "--steps", "2", "--no-cache"],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert out.is_file() and "4 frames" in done.stdout


def test_an_inpainting_model_edits_inside_the_mask_only(models, source):
    frame, mask = source
    params = tiny(models["inpaint"], strength=1.0)
    engine = create_engine(params)
    engine.prepare()
    try:
        assert engine.role == INPAINT
    finally:
        engine.close()
    inside = stylize(params, frame, mask=mask)
    other = stylize(params, frame, mask=np.roll(mask, 20, axis=1))
    assert inside.shape == frame.shape
    assert np.abs(inside.astype(int) - other).mean() > 0.5  # the mask reaches the model


def test_any_model_keeps_the_source_latents_outside_the_mask(models, source):
    """img2img models blend their latents with the source's after every step (diffusion_editing.LatentMask):
    with a mask that edits nothing the output is the VAE's own copy of the source, whatever the prompt."""
    frame, _ = source
    nothing = np.zeros(frame.shape[:2], np.float32)
    everything = np.ones(frame.shape[:2], np.float32)
    params = tiny(models["img2img"])
    kept_a = stylize(params, frame, mask=nothing)
    kept_b = stylize(params.replace(prompt="a volcano", seed=9), frame, mask=nothing)
    edited = stylize(params, frame, mask=everything)
    unmasked = stylize(params, frame)
    assert np.abs(kept_a.astype(int) - kept_b).max() <= 2  # nothing of the prompt or noise got through
    assert np.abs(edited.astype(int) - unmasked).max() <= 2  # an all-white mask is a plain img2img
    assert np.abs(kept_a.astype(int) - unmasked).mean() > 1


def test_a_prompt_schedule_blends_the_embeddings_between_keys(models, source):
    frame, _ = source
    keys = ((0, "a forest in winter"), (10, "a forest in summer"))
    engine = create_engine(tiny(models["img2img"], prompt_keys=keys))
    engine.prepare()
    try:
        schedule = PromptSchedule(keys, engine._encode_prompt)
        a, b, half = schedule.at(0), schedule.at(10), schedule.at(5)
        expected = 0.5 * (a["prompt_embeds"] + b["prompt_embeds"])
        assert torch.allclose(half["prompt_embeds"], expected, atol=1e-6)
        assert not torch.allclose(a["prompt_embeds"], b["prompt_embeds"])
    finally:
        engine.close()
    # frame 0 of the schedule is the first key's prompt; frame 10 the second's
    scheduled = tiny(models["img2img"], prompt_keys=keys)
    assert np.array_equal(stylize(scheduled, frame, 0), stylize(tiny(models["img2img"], prompt=keys[0][1]), frame, 0))
    assert np.array_equal(stylize(scheduled, frame, 10), stylize(tiny(models["img2img"], prompt=keys[1][1]), frame, 10))


def test_strength_and_seed_schedules_give_each_frame_its_value(models, source):
    frame, _ = source
    model = models["img2img"]
    scheduled = tiny(model, strength=0.5, strength_keys=((0, 0.5), (8, 1.0)), seed_keys=((0, 3), (4, 11)))
    # frame 8: strength 1.0 and seed 11, exactly as constant settings give
    assert np.array_equal(stylize(scheduled, frame, 8), stylize(tiny(model, strength=1.0, seed=11), frame, 8))
    # frame 2: strength 0.625 (interpolated), seed 3 (held)
    assert np.array_equal(stylize(scheduled, frame, 2), stylize(tiny(model, strength=0.625, seed=3), frame, 2))


def test_a_schedule_on_the_command_line_is_resolved_and_rendered(models, tmp_path):
    clip = write_frames(tmp_path / "clip.mp4", (f for f, _ in moving_object_frames(6, 64, 48)))
    still = tmp_path / "mask.png"
    cv2.imwrite(str(still), np.full((48, 64), 255, np.uint8)[:, :32].repeat(2, axis=1))
    out = tmp_path / "out.mp4"
    done = subprocess.run([*VDIFF, "render", clip, "-o", out, "--engine", "diffusion", "--model", models["img2img"],
                           "--prompt", "0:winter", "--prompt", "0.2s:summer", "--strength", "0:0.5", "--strength", "5:0.75",
                           "--steps", "4", "--mask", still, "--no-cache"], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert "6 frames" in done.stdout

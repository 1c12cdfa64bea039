"""Issue #12: LoRA, ControlNet, IP-Adapter, schedulers and a model that stays loaded, on tiny random-weight
models saved to disk and loaded through the user's path (folders and single files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tiny_models

from pipeline import tiny_conditioning as tc
from pipeline.cli import main
from pipeline.engines.base import FrameContext
from pipeline.engines.controls import ControlImages
from pipeline.engines.diffusion import DiffusionEngine
from pipeline.engines.diffusion_models import load_img2img_pipeline, set_scheduler
from pipeline.errors import BadInputError, CancelledError, ModelError
from pipeline.events import CancelToken, Finished
from pipeline.render import render_frames
from pipeline.request import RenderRequest, StyleParams
from pipeline.sample import make_sample_clip

pytestmark = pytest.mark.diffusion


@pytest.fixture(scope="session")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("conditioning")


@pytest.fixture(scope="session")
def unet():
    return tiny_models.make_tiny_sd_pipeline().unet


@pytest.fixture(scope="session")
def xl(root) -> Path:
    return tc.make_tiny_sdxl_folder(root / "tiny-sdxl")


@pytest.fixture(scope="session")
def xl_unet(xl):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(str(xl / "unet"))


@pytest.fixture(scope="session")
def style_picture(root) -> Path:
    import cv2

    path = root / "style.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    return path


def params(model, **changes) -> StyleParams:
    values = dict(engine="diffusion", model=str(model), prompt="a red fox", steps=2, strength=1.0, seed=3,
                  cross_frame_attention=False)
    values.update(changes)
    return StyleParams(**values).validate()


def prepared(model, **changes) -> DiffusionEngine:
    engine = DiffusionEngine(params(model, **changes))
    engine.prepare()
    return engine


def out(engine: DiffusionEngine, frame, index: int = 0) -> np.ndarray:
    return engine.process(frame, FrameContext(index=index))


def differ(a, b) -> float:
    return float(np.abs(a.astype(int) - b).mean())


@pytest.fixture(scope="session")
def plain(tiny_folder, frame) -> np.ndarray:
    return out(prepared(tiny_folder), frame)


# --- LoRA ---


@pytest.fixture(scope="session")
def lora_folder(root, unet) -> Path:
    return tc.make_tiny_lora(unet, root / "lora-diffusers")


@pytest.fixture(scope="session")
def lora_kohya(root, unet) -> Path:
    return tc.make_tiny_lora(unet, root / "lora-kohya.safetensors", kohya=True)


def test_a_lora_folder_and_a_kohya_file_change_the_output_alike(tiny_folder, frame, plain, lora_folder, lora_kohya):
    from_folder = out(prepared(tiny_folder, loras=[{"path": str(lora_folder)}]), frame)
    from_kohya = out(prepared(tiny_folder, loras=[{"path": str(lora_kohya)}]), frame)
    assert differ(from_folder, plain) > 2  # the LoRA reached the pixels
    assert differ(from_folder, from_kohya) < 0.5  # the same LoRA in both layouts


def test_lora_weight_and_prompt_are_per_call_settings(tiny_folder, frame, plain, lora_kohya):
    engine = prepared(tiny_folder, loras=[{"path": str(lora_kohya), "weight": 1.0}])
    pipe, prompt = engine._pipe, engine._prompt_kwargs
    weighted = out(engine, frame)
    assert engine.update(engine.params.replace(loras=[{"path": str(lora_kohya), "weight": 0.0}], seed=3))
    assert engine._pipe is pipe and engine.loads == 1 and engine._prompt_kwargs is prompt  # nothing reloaded
    assert differ(out(engine, frame), plain) < 0.5  # weight 0: the base model's frame
    assert engine.update(engine.params.replace(prompt="a blue whale"))
    assert engine._prompt_kwargs is not prompt and engine.loads == 1  # only the prompt was encoded again
    assert differ(weighted, plain) > 2
    assert not engine.update(engine.params.replace(loras=()))  # the set of LoRAs is a load setting


def test_a_lora_for_another_base_model_is_a_clear_message(root, tiny_folder, xl_unet):
    other = tc.make_tiny_lora(xl_unet, root / "xl-lora")
    with pytest.raises(ModelError, match="LoRA .* (does not fit|holds no layers)"):
        prepared(tiny_folder, loras=[{"path": str(other)}])


def test_a_file_that_is_not_a_lora_is_a_clear_message(tiny_folder, tmp_path):
    bad = tmp_path / "holiday.safetensors"
    bad.write_bytes(b"not weights at all" * 10)
    with pytest.raises(ModelError, match="LoRA"):
        prepared(tiny_folder, loras=[{"path": str(bad)}])
    with pytest.raises(ModelError, match="LoRA .*not found"):
        prepared(tiny_folder, loras=[{"path": str(tmp_path / "missing.safetensors")}])


# --- ControlNet ---


@pytest.fixture(scope="session")
def net_folder(root, unet) -> Path:
    return tc.make_tiny_controlnet(unet, root / "net-canny")


@pytest.fixture(scope="session")
def net_file(root, unet) -> Path:
    return tc.make_tiny_controlnet(unet, root / "nets" / "tile.safetensors", seed=1, single_file=True)


def test_a_controlnet_folder_and_a_single_file_change_the_output(tiny_folder, frame, plain, net_folder, net_file):
    engine = prepared(tiny_folder, controlnets=[{"model": str(net_folder), "control": "canny"}])
    assert type(engine._pipe).__name__ == "StableDiffusionControlNetImg2ImgPipeline"
    canny = out(engine, frame)
    tile = out(prepared(tiny_folder, controlnets=[{"model": str(net_file), "control": "tile"}]), frame)
    assert differ(canny, plain) > 2 and differ(tile, plain) > 2 and differ(canny, tile) > 1
    pipe = engine._pipe
    assert engine.update(engine.params.replace(controlnets=[{"model": str(net_folder), "control": "canny", "scale": 0.3}]))
    assert engine._pipe is pipe and differ(out(engine, frame), canny) > 0.5  # the scale is per call


def test_several_controlnets_at_once(tiny_folder, frame, net_folder, net_file):
    both = [{"model": str(net_folder), "control": "canny"}, {"model": str(net_file), "control": "tile", "scale": 0.5,
                                                             "start": 0.0, "end": 0.5}]
    engine = prepared(tiny_folder, controlnets=both)
    assert type(engine._pipe.controlnet).__name__ == "MultiControlNetModel"
    one = out(prepared(tiny_folder, controlnets=both[:1]), frame)
    assert differ(out(engine, frame), one) > 0.5


def test_a_tiny_sdxl_model_with_a_controlnet(root, xl, xl_unet, frame):
    net = tc.make_tiny_controlnet(xl_unet, root / "xl-net")
    engine = prepared(xl, controlnets=[{"model": str(net), "control": "canny"}])
    assert type(engine._pipe).__name__ == "StableDiffusionXLControlNetImg2ImgPipeline"
    assert differ(out(engine, frame), out(prepared(xl), frame)) > 1


def test_a_controlnet_for_another_base_model_is_a_clear_message(root, tiny_folder, xl_unet, tmp_path):
    net = tc.make_tiny_controlnet(xl_unet, root / "xl-net-2")
    with pytest.raises(ModelError, match="ControlNet .* made for another base model"):
        prepared(tiny_folder, controlnets=[{"model": str(net)}])
    broken = tmp_path / "net.safetensors"
    broken.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="ControlNet"):
        prepared(tiny_folder, controlnets=[{"model": str(broken)}])


def test_control_images_are_computed_once_per_frame_and_cached(frame):
    controls = ControlImages()
    edges = controls.image("canny", frame)
    assert edges.shape == frame.shape and set(np.unique(edges)) <= {0, 255} and edges.max() == 255
    assert controls.image("canny", frame.copy()) is edges and controls.computed == 1  # same content: cached
    tile = controls.image("tile", frame)
    assert controls.computed == 2 and 0 < differ(tile, frame) < 30  # blurred, not replaced
    controls.image("canny", np.roll(frame, 5, axis=1))
    assert controls.computed == 3


def test_the_depth_control_runs_a_transformers_depth_model_the_user_has(root, frame, tmp_path):
    folder = tc.make_tiny_depth_model(root / "dpt")
    controls = ControlImages(annotator=str(folder))
    controls.check(("depth",))
    depth = controls.image("depth", frame)
    assert depth.shape == frame.shape and depth.dtype == np.uint8
    (tmp_path / "dpt").mkdir()
    (tmp_path / "dpt" / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="depth model .* could not be loaded"):
        ControlImages(annotator=str(tmp_path / "dpt")).check(("depth",))


def test_controlnet_and_lora_from_the_hub_cache_offline(tiny_folder, frame, plain, net_folder, lora_folder, tmp_path,
                                                          monkeypatch):
    from huggingface_hub import constants

    tiny_models.put_in_hub_cache(net_folder, tmp_path / "hub", "vdiff-tests/net")
    tiny_models.put_in_hub_cache(lora_folder, tmp_path / "hub", "vdiff-tests/lora")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    engine = prepared(tiny_folder, controlnets=[{"model": "vdiff-tests/net"}],
                      loras=[{"path": "vdiff-tests/lora/pytorch_lora_weights.safetensors"}])
    assert differ(out(engine, frame), plain) > 2
    with pytest.raises(ModelError, match="not in the Hugging Face cache"):
        prepared(tiny_folder, controlnets=[{"model": "vdiff-tests/absent"}])


def test_learned_preprocessors_without_their_model_are_a_clear_message(frame):
    with pytest.raises(BadInputError, match="depth control needs a depth-estimation model.*--annotator"):
        ControlImages().check(("depth",))
    with pytest.raises(BadInputError, match="lineart control needs"):
        ControlImages().check(("lineart",))


# --- IP-Adapter ---


@pytest.fixture(scope="session")
def ip_file(root, unet) -> Path:
    return tc.make_tiny_ip_adapter(unet, root / "ip" / "ip-adapter_tiny.safetensors")


def test_an_ip_adapter_makes_the_picture_the_style_with_one_embedding_per_render(tiny_folder, frame, plain, ip_file,
                                                                                style_picture, tmp_path):
    engine = prepared(tiny_folder, ip_adapter=str(ip_file), style_image=str(style_picture), ip_adapter_scale=1.0)
    styled = out(engine, frame)
    assert differ(styled, plain) > 2
    clip = make_sample_clip(tmp_path / "c.mp4", frames=3, width=64, height=48, fps=12)
    events = list(render_frames(RenderRequest(clip, engine.params, 0, 3, use_cache=False), engine=engine))
    assert isinstance(events[-1], Finished) and events[-1].rendered == 3
    assert engine._conditioning.embedding_runs == 1  # the picture was encoded once, for every frame
    assert engine.update(engine.params.replace(ip_adapter_scale=0.0))
    assert engine.loads == 1 and differ(out(engine, frame), plain) < 0.5  # scale 0: no style, no reload


def test_an_ip_adapter_folder_loads_too(tiny_folder, frame, ip_file, style_picture):
    engine = prepared(tiny_folder, ip_adapter=str(ip_file.parent), style_image=str(style_picture))
    assert engine._pipe.image_encoder is not None


def test_a_mismatched_or_incomplete_ip_adapter_is_a_clear_message(root, tiny_folder, unet, style_picture, tmp_path):
    wrong = tc.make_tiny_ip_adapter(unet, root / "ip-16" / "ip.safetensors", embed_dim=16)
    with pytest.raises(ModelError, match="IP-Adapter .*(expects image embeddings|does not fit)"):
        prepared(tiny_folder, ip_adapter=str(wrong), style_image=str(style_picture))
    lonely = tmp_path / "alone" / "ip.safetensors"
    lonely.parent.mkdir()
    lonely.write_bytes((root / "ip-16" / "ip.safetensors").read_bytes())
    with pytest.raises(ModelError, match="needs its image encoder"):
        prepared(tiny_folder, ip_adapter=str(lonely), style_image=str(style_picture))
    with pytest.raises(BadInputError, match="needs a style image"):
        params(tiny_folder, ip_adapter=str(wrong))


# --- schedulers, cancelling a load ---


@pytest.mark.parametrize("name, class_name", [("unipc", "UniPCMultistepScheduler"),
                                              ("dpm++-karras", "DPMSolverMultistepScheduler"),
                                              ("tcd", "TCDScheduler")])
def test_new_schedulers(tiny_folder, name, class_name):
    pipe = load_img2img_pipeline(str(tiny_folder), "cpu", __import__("torch").float32)
    set_scheduler(pipe, name)
    assert type(pipe.scheduler).__name__ == class_name
    if name == "dpm++-karras":
        assert pipe.scheduler.config.use_karras_sigmas


def test_a_scheduler_that_does_not_fit_the_model_is_a_clear_message(tiny_folder):
    from diffusers import FlowMatchEulerDiscreteScheduler

    pipe = load_img2img_pipeline(str(tiny_folder), "cpu", __import__("torch").float32)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler()  # what SD3 and Flux models ship
    with pytest.raises(BadInputError, match="does not fit this model.*flow-matching"):
        set_scheduler(pipe, "unipc")


def test_a_model_load_can_be_cancelled_between_components(tiny_folder):
    token, seen = CancelToken(), []

    def on_progress(component, done, total):
        seen.append((component, done, total))
        if done == 1:
            token.cancel()

    engine = DiffusionEngine(params(tiny_folder))
    engine.on_load_progress = on_progress
    with pytest.raises(CancelledError):
        engine.prepare(token)
    assert [c for c, _, _ in seen] == ["text_encoder", "unet"] and seen[0][2] == 3  # text_encoder, unet, vae
    assert engine._pipe is None


# --- the command line ---


def test_cli_renders_with_a_controlnet_a_lora_and_an_ip_adapter(tiny_folder, net_folder, lora_kohya, ip_file, style_picture,
                                                                tmp_path):
    clip = make_sample_clip(tmp_path / "c.mp4", frames=2, width=64, height=48, fps=12)
    output = tmp_path / "out.mp4"
    code = main(["render", str(clip), "-o", str(output), "--engine", "diffusion", "--model", str(tiny_folder),
                 "--steps", "2", "--strength", "1", "--controlnet", f"{net_folder}:0.8", "--control", "canny",
                 "--lora", f"{lora_kohya}:0.8", "--style-image", str(style_picture), "--ip-adapter", str(ip_file),
                 "--quiet", "--no-cache"])
    assert code == 0 and output.is_file()


def test_cli_mismatched_controlnet_is_one_line_and_exit_2(tiny_folder, root, xl_unet, tmp_path, capsys):
    net = tc.make_tiny_controlnet(xl_unet, root / "xl-net-cli")
    clip = make_sample_clip(tmp_path / "c.mp4", frames=2, width=64, height=48, fps=12)
    code = main(["render", str(clip), "-o", str(tmp_path / "o.mp4"), "--engine", "diffusion", "--model", str(tiny_folder),
                 "--steps", "2", "--controlnet", str(net), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "made for another base model" in err
    assert not (tmp_path / "o.mp4").exists()


def test_cli_conditioning_flags_pair_up_in_order(tiny_folder):
    from pipeline.cli import build_parser, params_from_args

    args = build_parser().parse_args([
        "render", "in.mp4", "-o", "o.mp4", "--engine", "diffusion", "--model", str(tiny_folder),
        "--controlnet", "org/canny:0.7", "--controlnet", "C:/nets/tile", "--control", "canny", "--control", "tile",
        "--control-end", "0.6", "--lora", "a.safetensors:0.8", "--lora", "org/b"])
    p = params_from_args(args)
    assert [(n.model, n.control, n.scale, n.end) for n in p.controlnets] == [
        ("org/canny", "canny", 0.7, 0.6), ("C:/nets/tile", "tile", 1.0, 0.6)]
    assert [(lora.path, lora.weight) for lora in p.loras] == [("a.safetensors", 0.8), ("org/b", 1.0)]
    bad = build_parser().parse_args(["render", "in.mp4", "-o", "o.mp4", "--engine", "diffusion", "--model", "x/y",
                                     "--control", "canny"])
    with pytest.raises(BadInputError, match="--control needs a --controlnet"):
        params_from_args(bad)


def test_cli_style_image_for_diffusion_without_an_ip_adapter_is_exit_2(tiny_folder, style_picture, tmp_path, capsys):
    clip = make_sample_clip(tmp_path / "c.mp4", frames=2, width=64, height=48, fps=12)
    code = main(["render", str(clip), "-o", str(tmp_path / "o.mp4"), "--engine", "diffusion", "--model", str(tiny_folder),
                 "--style-image", str(style_picture)])
    assert code == 2 and "needs an IP-Adapter" in capsys.readouterr().err


# --- closing frees the model without a cycle collection ---


def close_counting_collections(engine: DiffusionEngine) -> tuple[list[str], int]:
    """Close `engine` with automatic collection off: (what of its model is left alive, collections asked for)."""
    import gc
    import weakref

    from pipeline.garbage import set_garbage_collector

    pipe = engine._pipe
    parts = {name: weakref.ref(getattr(pipe, name)) for name in ("unet", "vae", "text_encoder")}
    parts["pipeline"] = weakref.ref(pipe)
    if getattr(pipe, "controlnet", None) is not None:
        parts["controlnet"] = weakref.ref(pipe.controlnet)
    del pipe
    gc.collect()
    gc.disable()
    asked = []
    previous = set_garbage_collector(lambda: asked.append(1))
    try:
        engine.close()
        alive = [name for name, ref in parts.items() if ref() is not None]
    finally:
        set_garbage_collector(previous)
        gc.enable()
    return alive, len(asked)


@pytest.mark.parametrize("setting", ["cross-frame attention", "controlnet", "lora", "ip-adapter"])
def test_closing_the_engine_frees_the_model_by_reference_counting_alone(setting, tiny_folder, frame, net_folder,
                                                                         lora_kohya, ip_file, style_picture):
    # a model held by a reference cycle waits for a full collection, ~0.5 s on the app's GUI thread
    changes = {"cross-frame attention": dict(cross_frame_attention=True),
               "controlnet": dict(controlnets=[{"model": str(net_folder), "control": "canny"}]),
               "lora": dict(loras=[{"path": str(lora_kohya)}]),
               "ip-adapter": dict(ip_adapter=str(ip_file), style_image=str(style_picture))}[setting]
    engine = prepared(tiny_folder, **changes)
    out(engine, frame, 0), out(engine, frame, 1)
    assert close_counting_collections(engine) == ([], 0)  # freed at once, and no collection asked for


def test_a_model_a_cycle_still_holds_is_collected_at_close(tiny_folder, frame):
    import gc

    engine = prepared(tiny_folder)
    out(engine, frame)
    engine._pipe.unet.held_by = [engine._pipe]  # as a hook or a cache of a library's might
    alive, asked = close_counting_collections(engine)
    assert "unet" in alive and asked == 1
    gc.collect()

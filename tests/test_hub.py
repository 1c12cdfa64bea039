"""Downloading a hub model into the Hugging Face cache, against a fake hub on 127.0.0.1.

The tiny model is served the way the hub lays out a real one, with the files the loader must not
fetch beside it (a root single-file checkpoint, fp16 and pickle variants, Flax weights, code). After a
download, the model loads through load_img2img_pipeline offline, as the user's code path does.
"""

import json
import threading

import pytest
import torch

from fake_hub import COMMIT, FakeHub, closed_port_url, go_offline, use_hub
from pipeline import hub
from pipeline.errors import CancelledError, ModelError
from pipeline.events import CancelToken
from pipeline.tiny_models import make_tiny_sd_folder

pytestmark = [pytest.mark.diffusion, pytest.mark.timeout(120)]

REPO = "org/tiny"
SKIPPED = {  # in the repo, not needed by the img2img loader
    "README.md": b"# tiny\n",
    ".gitattributes": b"*.safetensors filter=lfs\n",
    "tiny-sd.safetensors": b"\0" * 4096,
    "tiny-sd.ckpt": b"\0" * 4096,
    "unet/diffusion_pytorch_model.fp16.safetensors": b"\0" * 2048,
    "unet/diffusion_pytorch_model.bin": b"\0" * 2048,
    "vae/diffusion_flax_model.msgpack": b"\0" * 2048,
    "text_encoder/pytorch_model.bin": b"\0" * 2048,
    "unet/pipeline.py": b"import os\n",
}


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return make_tiny_sd_folder(tmp_path_factory.mktemp("hub-model") / "tiny")


@pytest.fixture
def fake_hub(tiny_folder, tmp_path, monkeypatch):
    server = FakeHub()
    server.add_folder(REPO, tiny_folder, SKIPPED)
    server.slow[(REPO, "unet/diffusion_pytorch_model.safetensors")] = 0.01  # about 6 MB/s: progress within it
    use_hub(monkeypatch, server.start(), tmp_path / "hub")
    yield server
    server.stop()


def needed(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_plan_lists_exactly_what_the_loader_reads(fake_hub, tiny_folder):
    plan = hub.plan_download(REPO)
    names = [name for name, _ in plan.files]
    assert sorted(names) == needed(tiny_folder)
    assert names[-1] == "model_index.json"
    assert plan.commit == COMMIT
    assert plan.total == sum((tiny_folder / name).stat().st_size for name in names)
    assert not any("resolve" in path and "safetensors" in path for _, path in fake_hub.requests)  # only the index


def test_a_stable_diffusion_1_5_listing_gives_its_safetensors_components_only():
    sizes = dict.fromkeys([
        "model_index.json", "README.md", "v1-5-pruned.safetensors", "v1-5-pruned.ckpt",
        "feature_extractor/preprocessor_config.json",
        "safety_checker/config.json", "safety_checker/model.safetensors", "safety_checker/model.fp16.safetensors",
        "safety_checker/pytorch_model.bin", "scheduler/scheduler_config.json",
        "text_encoder/config.json", "text_encoder/model.safetensors", "text_encoder/flax_model.msgpack",
        "tokenizer/merges.txt", "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json",
        "tokenizer/vocab.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors.index.json",
        "unet/diffusion_pytorch_model-00001-of-00002.safetensors",
        "unet/diffusion_pytorch_model-00002-of-00002.safetensors",
        "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
        "unet/diffusion_pytorch_model.fp16-00001-of-00001.safetensors", "unet/diffusion_pytorch_model.bin.index.json",
        "unet/diffusion_pytorch_model.non_ema.safetensors",
        "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
    ], 1)
    index = {
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.6.0",
        "feature_extractor": ["transformers", "CLIPImageProcessor"],
        "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],  # diffusers' own module
        "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"], "requires_safety_checker": True,
    }
    assert hub.needed_files("org/sd15", index, sizes) == [
        "feature_extractor/preprocessor_config.json",
        "safety_checker/config.json", "safety_checker/model.safetensors",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json", "text_encoder/model.safetensors",
        "tokenizer/merges.txt", "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json",
        "tokenizer/vocab.json",
        "unet/config.json", "unet/diffusion_pytorch_model-00001-of-00002.safetensors",
        "unet/diffusion_pytorch_model-00002-of-00002.safetensors",
        "unet/diffusion_pytorch_model.safetensors.index.json",
        "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
        "model_index.json",
    ]


def test_download_reports_byte_progress_and_the_model_loads_offline(fake_hub, tiny_folder, monkeypatch):
    from pipeline.engines.diffusion_models import load_img2img_pipeline

    assert not hub.is_cached(REPO)
    reports = []
    snapshot = hub.download_model(REPO, lambda done, total: reports.append((done, total)))
    total = hub.plan_download(REPO).total
    dones = [done for done, _ in reports]
    assert dones == sorted(set(dones)) and dones[-1] == total and {t for _, t in reports} == {total}
    assert len(dones) >= 8  # file by file, and inside the slow 4 MB file every megabyte
    assert snapshot.name == COMMIT and (snapshot / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert hub.is_cached(REPO)
    assert not any(name in path for path in fake_hub.downloads() for name in SKIPPED)
    fake_hub.stop()
    go_offline(monkeypatch)
    pipe = load_img2img_pipeline(REPO, "cpu", torch.float32)
    from safetensors.torch import load_file

    weights = load_file(str(tiny_folder / "vae" / "diffusion_pytorch_model.safetensors"))
    key, value = next(iter(weights.items()))
    assert torch.equal(pipe.vae.state_dict()[key], value)


def test_cancel_mid_file_leaves_no_model_the_loader_accepts_and_resumes(fake_hub, monkeypatch, tmp_path):
    from pipeline.engines.diffusion_models import load_img2img_pipeline

    plan = hub.plan_download(REPO)
    in_order = [size for _, size in plan.files[-1:] + plan.files[:-1]]  # the plan's index is cached first
    boundaries = {sum(in_order[:i]) for i in range(len(in_order) + 1)}
    cancel, reports = CancelToken(), []

    def on_progress(done, total):
        reports.append(done)
        if done not in boundaries:  # inside a file: the slow 4 MB UNet weights, the first file over 1 MB
            cancel.cancel()

    with pytest.raises(CancelledError):
        hub.download_model(REPO, on_progress, cancel)
    assert cancel.cancelled and reports[-1] < plan.total
    repo = tmp_path / "hub" / "models--org--tiny"
    assert not list(repo.rglob("*.incomplete")), "a partial file was left in the cache"
    assert not (repo / "snapshots" / COMMIT / "unet" / "diffusion_pytorch_model.safetensors").exists()
    assert not (repo / "refs" / "main").exists() and not hub.is_cached(REPO)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="not in the Hugging Face cache"):
        load_img2img_pipeline(REPO, "cpu", torch.float32)
    monkeypatch.delenv("HF_HUB_OFFLINE")

    fake_hub.requests.clear()
    hub.download_model(REPO)
    fetched = {path.split(f"/resolve/{COMMIT}/")[-1] for path in fake_hub.downloads()}
    assert fetched == {"unet/diffusion_pytorch_model.safetensors", "vae/config.json",
                       "vae/diffusion_pytorch_model.safetensors"}  # whole files are kept: it resumes
    go_offline(monkeypatch)
    assert hub.is_cached(REPO)
    load_img2img_pipeline(REPO, "cpu", torch.float32)


def test_unknown_repo_is_a_model_error(fake_hub):
    with pytest.raises(ModelError, match="there is no model 'nobody/nothing' on the Hugging Face hub"):
        hub.download_model("nobody/nothing")


def test_gated_repo_says_to_accept_the_terms(fake_hub, tiny_folder):
    fake_hub.add_folder("org/gated", tiny_folder)
    fake_hub.gated.add("org/gated")
    with pytest.raises(ModelError, match="gated: accept its terms"):
        hub.download_model("org/gated")


def test_pickle_only_weights_are_refused_unless_allowed(fake_hub, tiny_folder):
    files = fake_hub.add_folder("org/pickled", tiny_folder)
    files["unet/diffusion_pytorch_model.bin"] = files.pop("unet/diffusion_pytorch_model.safetensors")
    with pytest.raises(ModelError, match="'unet'.*pickle"):
        hub.plan_download("org/pickled")
    names = [name for name, _ in hub.plan_download("org/pickled", allow_pickle=True).files]
    assert "unet/diffusion_pytorch_model.bin" in names and "text_encoder/pytorch_model.bin" not in names


def test_component_from_elsewhere_is_refused(fake_hub, tiny_folder):
    files = fake_hub.add_folder("org/custom", tiny_folder)
    index = json.loads(files["model_index.json"])
    index["unet"] = ["my_package", "MyUNet"]
    files["model_index.json"] = json.dumps(index).encode()
    with pytest.raises(ModelError, match="never runs code"):
        hub.plan_download("org/custom")


def test_unreachable_hub_is_a_model_error(monkeypatch, tmp_path):
    use_hub(monkeypatch, closed_port_url(), tmp_path / "hub")
    with pytest.raises(ModelError, match="cannot reach the Hugging Face hub .* to download 'org/tiny'"):
        hub.download_model(REPO)


def test_offline_mode_says_how_to_download(monkeypatch, tmp_path):
    use_hub(monkeypatch, closed_port_url(), tmp_path / "hub")
    go_offline(monkeypatch)
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE"):
        hub.download_model(REPO)


def test_download_from_another_thread_is_cancelled_between_files(fake_hub):
    cancel = CancelToken()
    cancel.cancel()
    errors = []
    thread = threading.Thread(target=lambda: _catch(errors, hub.download_model, REPO, None, cancel))
    thread.start()
    thread.join(30)
    assert isinstance(errors[0], CancelledError)
    assert fake_hub.downloads() == [f"/{REPO}/resolve/{COMMIT}/model_index.json"]  # the plan's index only


def _catch(errors, fn, *args):
    try:
        fn(*args)
    except Exception as exc:
        errors.append(exc)


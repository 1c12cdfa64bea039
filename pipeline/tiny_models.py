"""Tiny Stable Diffusion img2img models with random weights, written to disk the ways users keep models.

The configs follow diffusers' own img2img tests: a few hundred kilobytes of weights, a step takes
milliseconds on a CPU. The tests, the benchmarks and the packaged app's self-test all use them, so that
the user's loading code path runs without any download. Every builder takes the path to write and
returns it, so session fixtures can build each model once with tmp_path_factory.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

def make_tiny_sd_pipeline():
    """A StableDiffusionPipeline (the class hub models name) with seeded random weights, no safety checker;
    the loader turns it into the img2img pipeline as it does a user's model."""
    import tempfile

    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        sample_size=32,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=77,
            vocab_size=1000,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    with tempfile.TemporaryDirectory() as folder:
        tokenizer = _make_tiny_tokenizer(Path(folder))
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _make_tiny_tokenizer(folder: Path):
    """A byte-level CLIP tokenizer whose vocabulary is every single byte, with and without end-of-word."""
    from transformers import CLIPTokenizer

    # the byte-to-unicode table of GPT-2/CLIP BPE: printable bytes map to themselves, the rest above 255
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for byte in range(256):
        if byte in printable:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    tokens = ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    # transformers 5 builds an empty tokenizer from vocab_file/merges_file arguments; from_pretrained reads them
    tokenizer = CLIPTokenizer.from_pretrained(str(folder), model_max_length=77)
    ids = tokenizer("a red fox").input_ids
    assert len(ids) > 2 and tokenizer.unk_token_id not in ids[1:-1], f"tiny tokenizer is broken: {ids}"
    return tokenizer


def make_tiny_sd_folder(path: Path, safe_serialization: bool = True) -> Path:
    """A diffusers folder (model_index.json, unet/, vae/, ...); .bin weights when not safe_serialization."""
    path = Path(path)
    make_tiny_sd_pipeline().save_pretrained(path, safe_serialization=safe_serialization)
    if not safe_serialization:
        _resave_as_pickle(path)
    return path


def _resave_as_pickle(folder: Path) -> None:
    """transformers 5 writes safetensors whatever it is asked; old checkpoints hold pytorch_model.bin."""
    from safetensors.torch import load_file

    for weights in folder.rglob("model.safetensors"):
        torch.save(load_file(str(weights)), weights.with_name("pytorch_model.bin"))
        weights.unlink()


def make_tiny_sd_single_file(path: Path) -> Path:
    """An original-layout (LDM) .safetensors checkpoint plus its diffusers configs in a sibling folder
    named like the file without the extension, which is where load_img2img_pipeline looks."""
    from safetensors.torch import save_file

    path = Path(path)
    pipe = make_tiny_sd_pipeline()
    state = {k: v.contiguous() for k, v in diffusers_to_ldm_state_dict(pipe).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    write_config_folder(pipe, path.with_suffix(""))
    return path


def make_pickle_checkpoint(path: Path) -> Path:
    """An original-layout checkpoint written with torch.save (a .ckpt or .bin), with its config folder."""
    path = Path(path)
    pipe = make_tiny_sd_pipeline()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": diffusers_to_ldm_state_dict(pipe)}, path)
    write_config_folder(pipe, path.with_suffix(""))
    return path


def write_config_folder(pipe, folder: Path) -> Path:
    """The pipeline's diffusers folder without its weights: what from_single_file needs offline."""
    folder = Path(folder)
    pipe.save_pretrained(folder, safe_serialization=True)
    for weights in list(folder.rglob("*.safetensors")) + list(folder.rglob("*.bin")):
        weights.unlink()
    return folder


def copy_model_folder(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return Path(target)


def put_in_hub_cache(folder: Path, cache_dir: Path, repo_id: str) -> Path:
    """Lay a model folder out as a Hugging Face cache entry (refs/main -> snapshots/<commit>), as a download would."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit, encoding="utf-8")
    return repo


# --- diffusers -> original Stable Diffusion (LDM) key names, the inverse of diffusers' single-file loader ---

_RESNET_TO_LDM = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
)
_UNET_TOP_LEVEL = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_VAE_ATTENTION_TO_LDM = (
    ("group_norm", "norm"),
    ("to_q", "q"),
    ("to_k", "k"),
    ("to_v", "v"),
    ("to_out.0", "proj_out"),
)


def diffusers_to_ldm_state_dict(pipe) -> dict[str, torch.Tensor]:
    """One state dict with the UNet, VAE and CLIP text encoder under their original checkpoint names."""
    ldm = {}
    for key, value in pipe.unet.state_dict().items():
        ldm["model.diffusion_model." + _unet_key_to_ldm(key, pipe.unet.config)] = value
    for key, value in pipe.vae.state_dict().items():
        ldm["first_stage_model." + _vae_key_to_ldm(key, len(pipe.vae.config.up_block_types))] = value
    for key, value in pipe.text_encoder.state_dict().items():
        # transformers >= 5.6 flattened CLIPTextModel; the original checkpoints keep the text_model prefix
        name = key if key.startswith("text_model.") else "text_model." + key
        ldm["cond_stage_model.transformer." + name] = value
    return ldm


def _rename(rest: str, table) -> str:
    for new, old in table:
        rest = rest.replace(new, old)
    return rest


def _unet_key_to_ldm(key: str, config) -> str:
    parts = key.split(".")
    per_block = config.layers_per_block + 1  # resnets plus the down/up sampler slot
    if parts[0] in ("down_blocks", "up_blocks"):
        block, kind, layer, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
        if parts[0] == "down_blocks":
            if kind == "downsamplers":  # downsampler sits in the slot after the block's resnets
                return f"input_blocks.{1 + block * per_block + config.layers_per_block}.0.op.{rest[len('conv.'):]}"
            index, sub = 1 + block * per_block + layer, "input_blocks"
        else:
            if kind == "upsamplers":  # after the resnet (and the attention when the block has one)
                index = block * per_block + config.layers_per_block
                slot = 2 if config.up_block_types[block].startswith("CrossAttn") else 1
                return f"output_blocks.{index}.{slot}.{rest}"
            index, sub = block * per_block + layer, "output_blocks"
        if kind == "resnets":
            return f"{sub}.{index}.0.{_rename(rest, _RESNET_TO_LDM)}"
        return f"{sub}.{index}.1.{rest}"  # attentions keep their diffusers names
    if parts[0] == "mid_block":
        kind, layer, rest = parts[1], int(parts[2]), ".".join(parts[3:])
        if kind == "resnets":
            return f"middle_block.{layer * 2}.{_rename(rest, _RESNET_TO_LDM)}"
        return f"middle_block.1.{rest}"
    module, name = key.rsplit(".", 1)
    return f"{_UNET_TOP_LEVEL[module]}.{name}"


def _vae_key_to_ldm(key: str, num_up_blocks: int) -> str:
    key = key.replace("conv_norm_out", "norm_out")
    parts = key.split(".")
    if len(parts) < 3 or parts[1] not in ("down_blocks", "up_blocks", "mid_block"):
        return key  # conv_in, conv_out, quant_conv, post_quant_conv, norm_out
    coder = parts[0]
    if parts[1] == "mid_block":
        kind, layer, rest = parts[2], int(parts[3]), ".".join(parts[4:])
        if kind == "resnets":
            return f"{coder}.mid.block_{layer + 1}.{rest.replace('conv_shortcut', 'nin_shortcut')}"
        return f"{coder}.mid.attn_1.{_rename(rest, _VAE_ATTENTION_TO_LDM)}"
    block, kind, layer, rest = int(parts[2]), parts[3], parts[4], ".".join(parts[5:])
    if parts[1] == "down_blocks":
        prefix = f"{coder}.down.{block}"
        sampler = "downsample"
    else:  # the original decoder numbers its up blocks from the lowest resolution
        prefix = f"{coder}.up.{num_up_blocks - 1 - block}"
        sampler = "upsample"
    if kind in ("downsamplers", "upsamplers"):
        return f"{prefix}.{sampler}.{rest}"
    return f"{prefix}.block.{layer}.{rest.replace('conv_shortcut', 'nin_shortcut')}"


def make_tiny_edit_folder(path: Path, role: str) -> Path:
    """A tiny InstructPix2Pix ('instruct': a UNet with 8 input channels) or inpainting ('inpaint': 9)
    diffusers folder, saved under its own pipeline class as such models are published."""
    import diffusers
    from diffusers import UNet2DConditionModel

    channels, name = {"instruct": (8, "StableDiffusionInstructPix2PixPipeline"),
                      "inpaint": (9, "StableDiffusionInpaintPipeline")}[role]
    base = make_tiny_sd_pipeline()
    torch.manual_seed(1)
    unet = UNet2DConditionModel.from_config({**base.unet.config, "in_channels": channels})
    pipe = getattr(diffusers, name)(**{**base.components, "unet": unet}, requires_safety_checker=False)
    pipe.save_pretrained(Path(path))
    return Path(path)

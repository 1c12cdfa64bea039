"""Tiny random-weight ControlNets, LoRAs, IP-Adapters, an SDXL pipeline and a safety checker, written to
disk the ways users keep them (see pipeline.tiny_models for the base model). For tests and benchmarks:
every builder takes the path to write and returns it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from pipeline.tiny_models import _make_tiny_tokenizer, make_tiny_sd_pipeline


def make_tiny_controlnet(unet, path: Path, seed: int = 0, single_file: bool = False) -> Path:
    """A ControlNetModel.from_unet(unet) with random (not zero) output convolutions, so it changes pixels.
    A diffusers folder, or with single_file a `NAME.safetensors` plus `NAME/config.json`."""
    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    # one stride-2 step in the control embedding: the tiny VAE downsamples by 2, not 8
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32))
    with torch.no_grad():  # from_unet zero-initializes the residual projections: a fresh net would do nothing
        for name, param in net.named_parameters():
            if "zero_conv" in name or "controlnet_down_blocks" in name or "controlnet_mid_block" in name:
                param.normal_(0, 0.3)
    path = Path(path)
    if not single_file:
        net.save_pretrained(path, safe_serialization=True)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    config = path.with_suffix("")
    config.mkdir(parents=True, exist_ok=True)
    (config / "config.json").write_text(json.dumps(dict(net.config)), encoding="utf-8")
    return path


def make_tiny_lora(unet, path: Path, seed: int = 0, kohya: bool = False) -> Path:
    """A LoRA made with peft on the UNet's attention projections, saved by diffusers' save_lora_weights
    (`path` a folder) or, with kohya, converted to kohya's key names (`path` a .safetensors file)."""
    import copy

    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import load_file, save_file

    torch.manual_seed(seed)
    unet = copy.deepcopy(unet)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                init_lora_weights=False))
    layers = get_peft_model_state_dict(unet)
    with torch.no_grad():
        layers = {k: v * 4.0 for k, v in layers.items()}  # strong enough to move a 4-step render visibly
    path = Path(path)
    folder = path.parent / (path.stem + "-diffusers") if kohya else path
    StableDiffusionPipeline.save_lora_weights(str(folder), unet_lora_layers=layers, safe_serialization=True)
    if not kohya:
        return path
    state = load_file(str(folder / "pytorch_lora_weights.safetensors"))
    kohya_state = {}
    for key, value in state.items():
        module, _, kind = key.removeprefix("unet.").rpartition(".lora_")
        base = "lora_unet_" + module.replace(".", "_")
        kohya_state[f"{base}.{'lora_down' if kind.startswith('A') else 'lora_up'}.weight"] = value
        kohya_state[f"{base}.alpha"] = torch.tensor(4.0)
    save_file(kohya_state, str(path))
    return path


def make_tiny_ip_adapter(unet, path: Path, seed: int = 0, embed_dim: int = 32) -> Path:
    """`path` (a .safetensors file with image_proj.* and ip_adapter.* weights, h94's layout) and an
    `image_encoder/` folder beside it holding a tiny CLIPVisionModelWithProjection."""
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, projection_dim=embed_dim, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        image_size=32, patch_size=4,
    ))
    encoder.save_pretrained(path.parent / "image_encoder", safe_serialization=True)
    config = unet.config
    tokens, cross = 4, config.cross_attention_dim
    state = {
        "image_proj.proj.weight": torch.randn(tokens * cross, 32) * 0.5,  # takes the encoder's 32-d embedding
        "image_proj.proj.bias": torch.zeros(tokens * cross),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = config.block_out_channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(config.block_out_channels))[int(name[len("up_blocks.")])]
        else:
            hidden = config.block_out_channels[int(name[len("down_blocks.")])]
        state[f"ip_adapter.{key_id}.to_k_ip.weight"] = torch.randn(hidden, cross) * 0.5
        state[f"ip_adapter.{key_id}.to_v_ip.weight"] = torch.randn(hidden, cross) * 0.5
        key_id += 2
    save_file(state, str(path))
    return path


def make_tiny_sdxl_folder(path: Path) -> Path:
    """A tiny StableDiffusionXLPipeline (two text encoders, text-time embeddings) as a diffusers folder."""
    import tempfile

    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 1), projection_class_embeddings_input_dim=80,
        cross_attention_dim=64,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4, sample_size=32,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"), up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    )
    text_config = CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=77, vocab_size=1000, projection_dim=32,
    )
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    with tempfile.TemporaryDirectory() as folder:
        tokenizer = _make_tiny_tokenizer(Path(folder))
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=CLIPTextModel(text_config), text_encoder_2=CLIPTextModelWithProjection(text_config),
        tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet, scheduler=scheduler,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return Path(path)


def make_tiny_sd_folder_with_safety_checker(path: Path, flags_everything: bool = True) -> Path:
    """The tiny SD model with a tiny NSFW safety checker and its feature extractor; with flags_everything
    its concept thresholds are below any cosine similarity, so it flags every frame."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    torch.manual_seed(0)
    pipe = make_tiny_sd_pipeline()
    checker = StableDiffusionSafetyChecker(CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                         vocab_size=1000),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                           image_size=32, patch_size=4),
        projection_dim=32,
    ))
    if flags_everything:
        with torch.no_grad():
            checker.concept_embeds_weights.fill_(-2.0)
            checker.special_care_embeds_weights.fill_(-2.0)
    pipe.register_modules(safety_checker=checker, feature_extractor=CLIPImageProcessor(size=32, crop_size=32))
    pipe.register_to_config(requires_safety_checker=True)
    pipe.save_pretrained(path, safe_serialization=True)
    return Path(path)


def make_tiny_depth_model(path: Path) -> Path:
    """A tiny random-weight DPTForDepthEstimation with its image processor: a transformers
    depth-estimation folder such as Intel/dpt-hybrid-midas, for the depth control."""
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    torch.manual_seed(0)
    config = DPTConfig(
        hidden_size=32, num_hidden_layers=4, backbone_out_indices=[0, 1, 2, 3], num_attention_heads=4,
        intermediate_size=37, image_size=32, patch_size=8, neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16,
        reassemble_factors=[4, 2, 1, 0.5], is_hybrid=False,
    )
    DPTForDepthEstimation(config).save_pretrained(path, safe_serialization=True)
    DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False).save_pretrained(path)
    return Path(path)

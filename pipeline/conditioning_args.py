"""The `vdiff render/preview` options of diffusion conditioning (ControlNet, LoRA, IP-Adapter) and the
StyleParams fields they give."""

from __future__ import annotations

import argparse


def add_conditioning_options(parser: argparse.ArgumentParser) -> None:
    from pipeline.conditioning import CONTROL_TYPES

    c = parser.add_argument_group("diffusion conditioning: ControlNet, LoRA, IP-Adapter (files: docs/models.md)")
    c.add_argument("--controlnet", action="append", default=[], metavar="ID|PATH[:SCALE]",
                   help="a ControlNet (folder, hub id or .safetensors) and its scale (default 1.0); repeatable")
    c.add_argument("--control", action="append", default=[], choices=CONTROL_TYPES,
                   help="the preprocessor of each --controlnet, in order (one value applies to all; default canny): "
                   "canny and tile need no weights, depth needs --annotator")
    c.add_argument("--control-start", action="append", default=[], type=float, metavar="F",
                   help="fraction of the steps where each ControlNet starts guiding (default 0)")
    c.add_argument("--control-end", action="append", default=[], type=float, metavar="F",
                   help="... and where it stops (default 1)")
    c.add_argument("--annotator", "--depth-model", default="", metavar="ID|PATH",
                   help="the model of a learned preprocessor: a transformers depth-estimation model for depth")
    c.add_argument("--lora", action="append", default=[], metavar="ID|PATH[:WEIGHT]",
                   help="a LoRA (.safetensors in diffusers or kohya layout, a folder or a hub id) and its weight "
                   "(default 1.0); repeatable. LCM-LoRA: add --scheduler lcm --steps 4 --guidance 1.5")
    c.add_argument("--ip-adapter", default="", metavar="ID|PATH[:SCALE]",
                   help="an IP-Adapter (.safetensors with an image_encoder/ folder beside it) and its scale "
                   "(default 0.6): --style-image becomes the style of every frame")
    c.add_argument("--safety-checker", action="store_true",
                   help="run the model's NSFW safety checker: flagged frames come out black, with a warning naming them "
                   "(off by default)")


def conditioning_from_args(args) -> dict:
    """The StyleParams fields of the conditioning options (BadInputError for a mismatched count)."""
    from pipeline.conditioning import ControlNetSpec, LoraSpec, split_scale
    from pipeline.errors import BadInputError

    nets = []
    count = len(args.controlnet)
    for flag, values in (("--control", args.control), ("--control-start", args.control_start),
                         ("--control-end", args.control_end)):
        if len(values) > 1 and len(values) != count:
            raise BadInputError(f"give {flag} once for all ControlNets or once per --controlnet ({count})")
        if values and not count:
            raise BadInputError(f"{flag} needs a --controlnet")

    def nth(values, i, default):
        return values[i] if len(values) > 1 else (values[0] if values else default)

    for i, spec in enumerate(args.controlnet):
        model, scale = split_scale(spec, 1.0, "--controlnet")
        nets.append(ControlNetSpec(model, nth(args.control, i, "canny"), scale, nth(args.control_start, i, 0.0),
                                   nth(args.control_end, i, 1.0)))
    loras = [LoraSpec(*split_scale(spec, 1.0, "--lora")) for spec in args.lora]
    ip_adapter, ip_scale = split_scale(args.ip_adapter, 0.6, "--ip-adapter") if args.ip_adapter else ("", 0.6)
    return dict(controlnets=tuple(nets), loras=tuple(loras), ip_adapter=ip_adapter, ip_adapter_scale=ip_scale,
                annotator=args.annotator, safety_checker=args.safety_checker)

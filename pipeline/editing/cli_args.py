"""The content-editing options of `vdiff render/preview` (masks, image guidance) and the prompt,
strength and seed values or schedules they give, positions resolved against the probed source."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_editing_options(parser: argparse.ArgumentParser) -> None:
    e = parser.add_argument_group("content editing (docs/editing.md)")
    e.add_argument("--mask", metavar="PATH",
                   help="edit only where the mask is white: an image (one mask for the range), or a video or a "
                   "folder of PNGs (a mask per source frame); outside it the output is the source")
    e.add_argument("--mask-at", action="append", default=[], metavar="FRAME:PNG",
                   help="a mask painted on one frame, carried along the source's motion to the rest of the "
                   "range; repeat to re-anchor it on later frames (e.g. --mask-at 0:a.png --mask-at 90:b.png)")
    e.add_argument("--mask-feather", type=float, default=3.0, metavar="PX",
                   help="soft edge of the composite with the source, in output pixels (default: 3)")
    e.add_argument("--image-guidance", type=float, default=1.5, metavar="F",
                   help="diffusion, InstructPix2Pix models (prompt: an instruction such as 'make it winter'): "
                   "how closely to keep to the source frame (default: 1.5)")


def editing_params(args, info) -> dict:
    """prompt/strength/seed (constants or schedules), masks and image guidance from the command line."""
    from pipeline.editing.schedule import parse_keys, split_key
    from pipeline.errors import BadInputError
    from pipeline.request import parse_position

    def to_frame(text: str) -> int:
        if info is None:
            return int(text) if text.isdigit() else 0
        return parse_position(text, float(info.fps), info.frame_count, info)

    def scheduled(texts, kind, default):
        if not texts:
            return default, ()
        if len(texts) == 1 and split_key(texts[0])[0] is None:
            return parse_keys(texts, to_frame, kind)[0][1], ()
        keys = parse_keys(texts, to_frame, kind)
        return keys[0][1], keys

    prompt, prompt_keys = scheduled(args.prompt, str, "")
    strength, strength_keys = scheduled(args.strength, float, 0.5 if args.engine == "diffusion" else 1.0)
    seed, seed_keys = scheduled(args.seed, int, 0)
    if strength_keys and args.engine != "diffusion":
        raise BadInputError("a strength that changes over time needs --engine diffusion")
    anchors = []
    for text in args.mask_at:
        position, path = split_key(text)
        if position is None or not path:
            raise BadInputError(f"--mask-at takes FRAME:PNG (e.g. 0:mask.png), got '{text}'")
        if not Path(path).is_file():
            raise BadInputError(f"mask not found: {path}")
        anchors.append((to_frame(position), str(Path(path).resolve())))
    if args.mask and not Path(args.mask).exists():
        raise BadInputError(f"mask not found: {args.mask}")
    return {
        "prompt": prompt, "prompt_keys": prompt_keys, "strength": strength, "strength_keys": strength_keys,
        "seed": seed, "seed_keys": seed_keys, "mask": str(Path(args.mask).resolve()) if args.mask else None,
        "mask_anchors": tuple(sorted(anchors)), "mask_feather": args.mask_feather,
        "image_guidance": args.image_guidance,
    }

"""The `vdiff render --cluster` options and their checks (Ray is imported only when --cluster is given)."""

from __future__ import annotations

import argparse


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    from pipeline.cluster.chunks import MAX_CHUNK_FRAMES, SEAM_OVERLAP

    g = parser.add_argument_group("distributed rendering (the vdiff[cluster] extra; see docs/distributed.md)")
    g.add_argument("--cluster", metavar="ADDRESS",
                   help="render on a Ray cluster: auto, HOST:PORT (a head started with `ray start --head`), "
                   "ray://HOST:10001, or local (Ray started here for the render: one engine per GPU, else per CPU core)")
    g.add_argument("--cluster-workers", type=int, default=None, metavar="N",
                   help="use at most N workers (default: one per GPU of the cluster, else one per CPU core)")
    g.add_argument("--chunk-frames", type=int, default=MAX_CHUNK_FRAMES, metavar="N",
                   help=f"the longest run of frames a worker renders at once (default: {MAX_CHUNK_FRAMES}; the last chunks are shorter)")
    g.add_argument("--frame-codec", choices=("lz4", "png", "zlib", "raw"), default="lz4",
                   help="how frames travel back: lz4 (default), png (smallest, slowest: slow links), zlib, raw (fast links)")
    g.add_argument("--seam-overlap", type=int, default=SEAM_OVERLAP, metavar="N",
                   help=f"frames a worker renders before its chunk so its temporal state matches (default: {SEAM_OVERLAP})")


def cluster_address(args) -> str | None:
    """The checked --cluster address, or None to render here."""
    from pipeline.errors import BadInputError

    if args.cluster is None:
        return None
    from pipeline.cluster.address import parse_address, ray_available, why_unavailable

    if args.no_cache:
        raise BadInputError("--cluster needs the frame cache (frames come back through it): drop --no-cache")
    if args.chunk_frames < 1 or args.seam_overlap < 0 or (args.cluster_workers is not None and args.cluster_workers < 1):
        raise BadInputError("--chunk-frames and --cluster-workers must be at least 1, --seam-overlap at least 0")
    if not ray_available():
        raise BadInputError(why_unavailable())
    return parse_address(args.cluster)

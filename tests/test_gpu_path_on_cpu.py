"""The CUDA path of the diffusion engine, run on the CPU (VDIFF_CPU_GPU_PATH=1): the same dtype (bf16), the
same channels-last models and SDPA attention, the same batching, through the same code; only what needs CUDA
itself (pinned memory, cuDNN) is left out. A dtype, layout or device mismatch on that path fails here.
Tiny random-weight components saved to a folder and loaded through the user's path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.engines import FrameContext, create_engine
from pipeline.engines.diffusion import CUDA_BATCH_FRAMES
from pipeline.engines.diffusion_models import GPU_PATH_ENV
from pipeline.events import Finished, FrameReady
from pipeline.render import render_frames
from pipeline.request import RenderRequest, StyleParams
from pipeline.video import VideoReader

pytestmark = pytest.mark.diffusion


@pytest.fixture
def gpu_path(monkeypatch):
    monkeypatch.setenv(GPU_PATH_ENV, "1")


def _params(model, **changes) -> StyleParams:
    values = dict(engine="diffusion", model=str(model), prompt="a fox", steps=4, strength=0.5, max_side=64,
                  device="cpu", keyframe_interval=1)  # every frame: batching is what is tested
    values.update(changes)
    return StyleParams(**values)


def test_the_gpu_path_loads_bf16_channels_last_models_with_sdpa(tiny_folder, gpu_path):
    from diffusers.models.attention_processor import AttnProcessor2_0

    engine = create_engine(_params(tiny_folder, cross_frame_attention=False))  # which installs its own processors
    engine.prepare()
    pipe = engine._pipe
    assert engine.device == "cpu (bf16)"
    for name in ("unet", "vae", "text_encoder"):
        assert next(getattr(pipe, name).parameters()).dtype == torch.bfloat16, name
    convs = [m for m in list(pipe.unet.modules()) + list(pipe.vae.modules()) if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs
                         if c.kernel_size != (1, 1))
    assert {type(p) for p in pipe.unet.attn_processors.values()} == {AttnProcessor2_0}
    assert engine.batch_frames == CUDA_BATCH_FRAMES and engine.frame_workers == 1


def test_a_bf16_batch_gives_each_frame_as_alone_and_near_the_fp32_frames(tiny_folder, sample_clip, monkeypatch):
    with VideoReader(sample_clip) as reader:
        frames = [reader.frame(i) for i in (2, 8, 14)]
    params = _params(tiny_folder, shared_noise=False, temporal_flow=False, cross_frame_attention=False)
    full = create_engine(params)
    full.prepare()
    exact = [full.process(f, FrameContext(i)) for f, i in zip(frames, (2, 8, 14))]
    monkeypatch.setenv(GPU_PATH_ENV, "1")
    engine = create_engine(params)
    engine.prepare()
    batch = engine.process_batch(frames, [FrameContext(i) for i in (2, 8, 14)])
    alone = [engine.process(f, FrameContext(i)) for f, i in zip(frames, (2, 8, 14))]
    assert [b.shape for b in batch] == [(32, 64, 3)] * 3 and all(b.dtype == np.uint8 for b in batch)
    assert not np.array_equal(batch[0], batch[1])
    assert all(np.abs(b.astype(int) - a).mean() < 2.0 for b, a in zip(batch, alone))  # bf16 batch vs alone
    assert all(np.abs(b.astype(int) - x).mean() < 12.0 for b, x in zip(batch, exact))  # bf16 vs fp32


def test_a_default_render_runs_the_gpu_path_with_every_temporal_feature(tiny_folder, sample_clip, gpu_path):
    params = _params(tiny_folder)  # flow propagation, colour anchoring, shared noise, cross-frame attention: on
    events = list(render_frames(RenderRequest(sample_clip, params, 0, 4, use_cache=False)))
    assert isinstance(events[-1], Finished), events[-1]
    frames = [e for e in events if isinstance(e, FrameReady)]
    assert [e.index for e in frames] == [0, 1, 2, 3]
    assert all(e.image.shape == (32, 64, 3) and e.image.dtype == np.uint8 for e in frames)
    assert events[0].device == "cpu (bf16)"


def test_independent_frames_of_a_render_go_through_the_unet_in_batches(tiny_folder, sample_clip, gpu_path, monkeypatch):
    from pipeline.engines.diffusion import DiffusionEngine

    sizes = []
    real = DiffusionEngine.process_batch

    def record(self, frames, contexts):
        sizes.append(len(frames))
        return real(self, frames, contexts)

    monkeypatch.setattr(DiffusionEngine, "process_batch", record)
    params = _params(tiny_folder, temporal_flow=False, cross_frame_attention=False, color_anchor=False)
    events = list(render_frames(RenderRequest(sample_clip, params, 0, 6, use_cache=False)))
    assert isinstance(events[-1], Finished), events[-1]
    assert sizes == [CUDA_BATCH_FRAMES, 6 - CUDA_BATCH_FRAMES]

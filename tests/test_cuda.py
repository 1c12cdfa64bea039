"""The CUDA path itself: skipped without a GPU (CI has none), run on a lent GPU machine. What can run on
the CPU with the same dtypes and layouts is in test_gpu_path_on_cpu.py; these check what needs CUDA:
pinned transfers, cuDNN's channels-last convolutions, the native bf16 probe, a whole render on the GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.engines import FrameContext, create_engine
from pipeline.engines.diffusion_models import cuda_dtype
from pipeline.events import Finished, FrameReady
from pipeline.render import render_frames
from pipeline.request import RenderRequest, StyleParams
from pipeline.video import VideoReader

pytestmark = [pytest.mark.diffusion, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _params(model, **changes) -> StyleParams:
    values = dict(engine="diffusion", model=str(model), prompt="a fox", steps=4, strength=0.5, max_side=64,
                  device="cuda", keyframe_interval=1)
    values.update(changes)
    return StyleParams(**values)


def test_a_cuda_batch_gives_each_frame_as_alone_in_the_native_dtype(tiny_folder, sample_clip):
    with VideoReader(sample_clip) as reader:
        frames = [reader.frame(i) for i in (2, 8, 14)]
    engine = create_engine(_params(tiny_folder, shared_noise=False, temporal_flow=False, cross_frame_attention=False))
    engine.prepare()
    dtype = cuda_dtype()
    assert next(engine._pipe.unet.parameters()).dtype == dtype and next(engine._pipe.unet.parameters()).is_cuda
    assert engine.device == f"cuda ({'bf16' if dtype == torch.bfloat16 else 'fp16'})"
    batch = engine.process_batch(frames, [FrameContext(i) for i in (2, 8, 14)])
    alone = [engine.process(f, FrameContext(i)) for f, i in zip(frames, (2, 8, 14))]
    assert [b.shape for b in batch] == [(32, 64, 3)] * 3 and all(b.dtype == np.uint8 for b in batch)
    assert not np.array_equal(batch[0], batch[1])
    assert all(np.abs(b.astype(int) - a).mean() < 2.0 for b, a in zip(batch, alone))
    engine.close()


def test_a_default_cuda_render_runs_every_temporal_feature(tiny_folder, sample_clip):
    events = list(render_frames(RenderRequest(sample_clip, _params(tiny_folder), 0, 6, use_cache=False)))
    assert isinstance(events[-1], Finished), events[-1]
    frames = [e for e in events if isinstance(e, FrameReady)]
    assert [e.index for e in frames] == list(range(6))
    assert all(e.image.shape == (32, 64, 3) and e.image.dtype == np.uint8 for e in frames)
    assert events[0].device.startswith("cuda (")
    assert len({e.image.tobytes() for e in frames}) > 1

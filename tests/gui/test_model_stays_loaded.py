"""Issue #12: the worker keeps the diffusion model loaded across per-call edits (a test counts loads), and
a load shows its progress component by component."""

from __future__ import annotations

import numpy as np
import pytest
import tiny_models

from pipeline.cache import FrameCache
from pipeline.request import StyleParams
from pipeline.video import probe
from vdiff_gui.render_worker import RenderWorker

pytestmark = [pytest.mark.gui, pytest.mark.diffusion, pytest.mark.timeout(600)]


def test_per_call_edits_update_the_preview_without_reloading_the_model(qtbot, small_clip, tmp_path, monkeypatch):
    from pipeline.engines import diffusion

    loads = []
    real_load = diffusion.load_img2img_pipeline

    def counting_load(*args, **kwargs):  # a spy: the real loader runs
        loads.append(args[0])
        return real_load(*args, **kwargs)

    monkeypatch.setattr(diffusion, "load_img2img_pipeline", counting_load)
    model = tiny_models.make_tiny_sd_folder(tmp_path / "tiny-sd")
    worker = RenderWorker(cache=FrameCache(tmp_path / "cache", max_bytes=10**9))
    messages, arrived = [], []
    worker.loading_changed.connect(messages.append)
    worker.preview_ready.connect(lambda index, image, cached, params: arrived.append((params, image)))
    worker.start()
    try:
        info = probe(small_clip)
        base = StyleParams(engine="diffusion", model=str(model), prompt="a fox", steps=2, strength=1.0,
                           guidance=1.0, max_side=64)
        edits = [base, base.replace(prompt="a red fox, oil painting"), base.replace(seed=5),
                 base.replace(strength=0.5, steps=4), base.replace(guidance=3.0, negative_prompt="blurry")]
        images = []
        for params in edits:
            worker.submit_preview(info, params, 0)
            qtbot.waitUntil(lambda: bool(arrived) and arrived[-1][0] == params, timeout=120000)
            images.append(arrived[-1][1])
        assert loads == [str(model)]  # one load for five previews
        for earlier, later in zip(images, images[1:]):
            assert np.abs(earlier.astype(int) - later).mean() > 0.5  # each edit reached the pixels
        assert any("loading the model: unet" in m for m in messages)
        worker.submit_preview(info, base.replace(scheduler="ddim"), 0)  # a load setting: this one reloads
        qtbot.waitUntil(lambda: arrived[-1][0].scheduler == "ddim", timeout=120000)
        assert loads == [str(model), str(model)]
    finally:
        worker.stop()

"""What cyclic collections cost the GUI thread once the app and the engines' libraries are loaded.

    python bench/gc_pause.py        # prints the figures; writes bench/results/gc-pause.json

The app collects cyclic garbage on the GUI thread only (vdiff_gui/garbage.py): a collection on a worker
thread deletes Qt objects off the GUI thread. Timed with what a session holds after a diffusion preview
(the window; torch, transformers and diffusers imported), side by side in one process:
- a full collection with nothing frozen: what Python made when its long-lived objects grew by a quarter;
- GuiGarbageCollector's step after a library's import: everything frozen, no scan;
- a full collection after it (the frozen objects skipped), and generations 0 and 1;
- the thorough collection the pipeline asks for when an engine closes (unfreeze, collect, freeze);
- a tiny diffusion engine's close (cross-frame attention on) on the GUI thread: its model freed by reference
  counting (now), and the same with a reference cycle holding the model (what every close cost before the
  ninth session, when cross-frame attention's hook made that cycle): the close then asks for the thorough
  collection.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROUNDS = 5


def timed(generation: int) -> list[float]:
    times = []
    for _ in range(ROUNDS):
        began = time.perf_counter()
        gc.collect(generation)
        times.append((time.perf_counter() - began) * 1000)
    return times


def main() -> dict:
    sys.path.insert(0, str(ROOT))
    from scrub import open_window

    app, loop, window = open_window("vdiff-gc-")
    for name in ("torch", "transformers", "diffusers"):  # what the diffusion engine imports
        importlib.import_module(name)
    getattr(sys.modules["diffusers"], "StableDiffusionImg2ImgPipeline")  # diffusers imports its parts lazily

    app.processEvents()
    from vdiff_gui.garbage import GuiGarbageCollector

    collector = GuiGarbageCollector()
    gc.unfreeze()
    result = {"tracked_objects": len(gc.get_objects()), "automatic_collection_on": gc.isenabled()}
    full = timed(2)
    result["full_ms_median"], result["full_ms_max"] = round(statistics.median(full), 1), round(max(full), 1)
    began = time.perf_counter()
    collector._freeze()
    result["freeze_ms"] = round((time.perf_counter() - began) * 1000, 1)
    result["frozen_objects"] = gc.get_freeze_count()
    for generation in (2, 1, 0):
        times = timed(generation)
        name = "full_after_freeze" if generation == 2 else f"gen{generation}"
        result[f"{name}_ms_median"], result[f"{name}_ms_max"] = round(statistics.median(times), 2), round(max(times), 2)
    thorough = []
    for _ in range(ROUNDS):
        began = time.perf_counter()
        collector.collect_from_any_thread()  # on this, the GUI thread: at once
        thorough.append((time.perf_counter() - began) * 1000)
    result["thorough_ms_median"] = round(statistics.median(thorough), 1)
    result.update(engine_closes(collector))
    window.shutdown()
    return result


def engine_closes(collector) -> dict:
    """A tiny diffusion engine's close() on the GUI thread, its model freed by reference counting and held
    by a cycle, alternated; the collector installed as the app installs it."""
    import tempfile

    import numpy as np

    from pipeline.engines import FrameContext, create_engine
    from pipeline.request import StyleParams
    from pipeline.tiny_models import make_tiny_sd_folder

    folder = make_tiny_sd_folder(Path(tempfile.mkdtemp(prefix="vdiff-gc-model-")) / "tiny")
    params = StyleParams(engine="diffusion", model=str(folder), steps=2, strength=0.5, max_side=64,
                         cross_frame_attention=True)
    times: dict[str, list[float]] = {"freed": [], "held by a cycle": []}
    collector.start()
    try:
        for _ in range(ROUNDS):
            for case in times:
                engine = create_engine(params)
                engine.prepare()
                engine.process(np.zeros((64, 64, 3), np.uint8), FrameContext(index=0))
                if case == "held by a cycle":
                    engine._pipe.unet.held_by = [engine._pipe]
                collector._freeze()  # as after the model's load in the app
                began = time.perf_counter()
                engine.close()
                times[case].append((time.perf_counter() - began) * 1000)
    finally:
        collector.stop()
    return {"engine_close_freed_ms_median": round(statistics.median(times["freed"]), 1),
            "engine_close_held_by_a_cycle_ms_median": round(statistics.median(times["held by a cycle"]), 1)}


if __name__ == "__main__":
    figures = main()
    for name, value in figures.items():
        print(f"{name}: {value}")
    out = ROOT / "bench" / "results" / "gc-pause.json"
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {out}")

"""Jobs: a queue that runs renders and exports one after another, a history, the job list, the flicker graph."""

import pytest
from gui_helpers import open_clip
from PySide6.QtCore import QPoint, Qt

from pipeline.request import RenderRequest

pytestmark = pytest.mark.gui


def test_a_render_and_an_export_queue_behind_the_running_job(window, qtbot, small_clip, tmp_path):
    open_clip(qtbot, window, small_clip)
    window.worker.pause()  # the first job holds before its first frame while the others are queued
    with qtbot.waitSignal(window.worker.render_started, timeout=10000):
        first = window.jobs.render_range()
    window.state.set_range(0, 5)
    second = window.jobs.render_range()
    dialog = window.open_export_dialog()
    dialog.path.setText(str(tmp_path / "queued.mp4"))
    dialog.accept()
    assert [job.state for job in window.jobs.jobs()] == ["rendering", "queued", "queued"]
    third = window.jobs.queue[-1]
    assert (first.kind, second.kind, third.kind) == ("render", "render", "export")
    assert len({first.id, second.id, third.id}) == 3
    assert window.jobs_dock.isVisible() and window.render_bar.queued.text() == "2 queued"
    tree = window.job_list.tree
    assert tree.topLevelItemCount() == 3 and tree.topLevelItem(2).text(1) == "export"
    # a queued job can be taken out; it ends in the history as cancelled and never runs
    window.jobs.cancel_job(second.id)
    assert second.state == "cancelled" and second not in window.jobs.queue
    with qtbot.waitSignal(window.jobs.export_done, timeout=30000):
        window.worker.resume()
    qtbot.waitUntil(lambda: not window.jobs.busy)
    assert [job.id for job in window.jobs.history] == [second.id, first.id, third.id]
    assert first.state == "finished" and third.state == "finished" and third.verified is True
    assert (tmp_path / "queued.mp4").exists()
    window.job_list.refresh()
    rows = {tree.topLevelItem(i).text(0): tree.topLevelItem(i) for i in range(tree.topLevelItemCount())}
    assert rows[str(third.id)].text(2) == "verified ✓" and rows[str(second.id)].text(2) == "cancelled"
    tree.setCurrentItem(rows[str(third.id)])
    assert window.job_list.folder_button.isEnabled() and not window.job_list.cancel_button.isEnabled()


def test_a_failed_job_keeps_its_message_and_the_queue_goes_on(window, qtbot, small_clip):
    open_clip(qtbot, window, small_clip)
    info = window.state.info
    window.worker.pause()
    with qtbot.waitSignal(window.worker.render_started, timeout=10000):
        window.jobs.submit(RenderRequest(info.path, window.state.params, 0, 4))
    bad = window.jobs.submit(RenderRequest(info.path, window.state.params, 40, 44))  # outside the clip
    good = window.jobs.submit(RenderRequest(info.path, window.state.params, 4, 8))
    with qtbot.waitSignal(window.jobs.failed, timeout=20000):
        window.worker.resume()
    qtbot.waitUntil(lambda: good.state == "finished", timeout=20000)
    assert bad.state == "failed" and "outside the clip" in bad.message
    assert window.banner.isVisible() and "Render failed" in window.banner.label.text()


def test_the_flicker_graph_shows_each_frame_beside_the_source_and_a_click_jumps(window, qtbot, small_clip):
    open_clip(qtbot, window, small_clip)
    graph = window.flicker_graph
    assert graph.isVisible() and not graph.values
    window.state.set_range(2, 11)
    measured = []
    window.worker.flicker_measured.connect(lambda index, render, source: measured.append(index))
    with qtbot.waitSignal(window.worker.render_finished, timeout=20000):
        window.jobs.render_range()
    qtbot.waitUntil(lambda: len(graph.values) == len(window.worker.flicker_pairs) > 0)
    sampled = [first + 1 for first in window.worker.flicker_pairs]  # the sampler's pairs (first, first + 1)
    assert sorted(graph.values) == sorted(measured) == sorted(sampled)  # frame i: from i-1 to i
    assert set(sampled) <= set(range(3, 12))
    assert all(render >= 0 and source >= 0 for render, source in graph.values.values())
    # the graph's mean is the meter's number
    mean = sum(render for render, _ in graph.values.values()) / len(graph.values)
    assert abs(mean - window.render_bar.score) < 1e-9
    worst = graph.worst()
    qtbot.mouseClick(graph, Qt.MouseButton.LeftButton, pos=QPoint(int(window.timeline.x_of(worst + 0.5)), graph.height() // 2))
    assert window.state.frame == worst
    window.state.edit(style="3")  # another look: the old numbers no longer apply
    assert not graph.values

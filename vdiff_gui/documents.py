"""Opening clips and projects, saving projects, recent files: asyncio tasks in the Qt loop.

A clip is probed off the GUI thread; only when the probe succeeded does anything change, so a bad
file or a bad project leaves the window as it was (and nothing is overwritten).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from pipeline.errors import VdiffError
from pipeline.video import VideoInfo, probe
from vdiff_gui.images import array_to_qimage
from vdiff_gui.project_file import SUFFIX, Project, ProjectFileError, load_project, save_project
from vdiff_gui.project_state import ProjectState
from vdiff_gui.settings import AppSettings
from vdiff_gui.tasks import run_blocking, start_task
from vdiff_gui.thumbnails import read_thumbnails
from vdiff_gui.widgets.timeline import THUMB_HEIGHT, TimelineWidget

log = logging.getLogger(__name__)


class DocumentController(QObject):
    clip_opened = Signal(object)  # VideoInfo
    project_opened = Signal(str)
    project_saved = Signal(str)
    error_raised = Signal(str)

    def __init__(self, state: ProjectState, settings: AppSettings, timeline: TimelineWidget, parent: QObject | None = None):
        super().__init__(parent)
        self.state, self.settings, self.timeline = state, settings, timeline
        self.project_path: Path | None = None
        self._thumbnail_task: asyncio.Task | None = None

    def open_path(self, path: str | Path) -> asyncio.Task | None:
        """A .vdiff file opens as a project, anything else as a video."""
        path = Path(path)
        if path.suffix.lower() == SUFFIX:
            return self.open_project(path)
        return self.open_clip(path)

    def open_clip(self, path: str | Path) -> asyncio.Task:
        return start_task(self._open_clip(Path(path)))

    async def _open_clip(self, path: Path, project: Project | None = None, project_path: Path | None = None) -> VideoInfo | None:
        try:
            info = await run_blocking(probe, path)
        except VdiffError as exc:
            self.error_raised.emit(f"Cannot open the video: {exc}")
            return None
        if project is not None:
            self.state.reset_params(project.params)
        self.state.set_clip(info)
        if project is not None:
            last = info.frame_count - 1
            out = last if project.out_point is None else min(project.out_point, last)
            self.state.set_range(min(project.in_point, last), out)
            self.state.set_frame(min(project.frame, last))
        self.project_path = project_path
        self.settings.add_recent_file(project_path or path)
        self._start_thumbnails(info)
        self.clip_opened.emit(info)
        if project_path is not None:
            self.project_opened.emit(str(project_path))
        return info

    def open_project(self, path: str | Path) -> asyncio.Task | None:
        """Check the project file first: a malformed one gives a message and changes nothing."""
        path = Path(path)
        try:
            project = load_project(path)
        except ProjectFileError as exc:
            self.error_raised.emit(f"Cannot open the project: {exc}")
            return None
        if not project.source.exists():
            self.error_raised.emit(
                f"Cannot open the project: its video {project.source} is missing; put it back or open the video itself"
            )
            return None
        return start_task(self._open_clip(project.source, project, path))

    def save_project(self, path: str | Path) -> Path | None:
        if self.state.info is None:
            self.error_raised.emit("Open a video before saving a project")
            return None
        project = Project(self.state.info.path.resolve(), self.state.params, self.state.in_point,
                          self.state.out_point, self.state.frame)
        try:
            saved = save_project(path, project)
        except ProjectFileError as exc:
            self.error_raised.emit(str(exc))
            return None
        self.project_path = saved
        self.state.mark_saved()
        self.settings.add_recent_file(saved)
        self.project_saved.emit(str(saved))
        return saved

    def close(self) -> None:
        if self._thumbnail_task is not None:
            self._thumbnail_task.cancel()

    # thumbnails
    def _start_thumbnails(self, info: VideoInfo) -> None:
        if self._thumbnail_task is not None:
            self._thumbnail_task.cancel()
        self._thumbnail_task = start_task(self._thumbnails(info))

    async def _thumbnails(self, info: VideoInfo) -> None:
        ratio = self.timeline.devicePixelRatioF()  # read at device pixels: sharp on a high-DPI screen
        try:
            arrays = await run_blocking(read_thumbnails, info, round(THUMB_HEIGHT * ratio))
        except VdiffError as exc:
            log.warning("no thumbnails for %s: %s", info.path.name, exc)
            return
        if self.state.info is info:
            images = [array_to_qimage(a) for a in arrays]
            for image in images:
                image.setDevicePixelRatio(ratio)
            self.timeline.set_thumbnails(images)

"""The main window: builds the widgets and controllers and wires them together. No logic of its own."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QElapsedTimer, Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget, QFileDialog, QHBoxLayout, QLabel, QMainWindow, QMessageBox, QSplitter, QToolButton, QVBoxLayout,
    QWidget,
)

from pipeline import __version__
from pipeline.cache import FrameCache
from pipeline.system import system_info
from pipeline.words import count
from vdiff_gui import tasks
from vdiff_gui.documents import DocumentController
from vdiff_gui.jobs import JobController
from vdiff_gui.presets import PresetStore
from vdiff_gui.preview import PreviewController
from vdiff_gui.project_state import ProjectState
from vdiff_gui.proxies import ProxyMaker
from vdiff_gui.render_worker import RenderWorker
from vdiff_gui.settings import AppSettings
from vdiff_gui.shortcuts import TypingGuard, shuttle_rate
from vdiff_gui.widgets.banner import MessageBanner
from vdiff_gui.widgets.compare_view import CompareView
from vdiff_gui.widgets.dialogs import about_text, ask_save_changes, confirm, export_done_box
from vdiff_gui.widgets.export_dialog import ExportDialog, history_entry
from vdiff_gui.widgets.flicker_graph import FlickerGraph
from vdiff_gui.widgets.job_list import JobList
from vdiff_gui.widgets.param_panel import ParamPanel
from vdiff_gui.widgets.player import PlaybackController
from vdiff_gui.widgets.render_bar import RenderBar
from vdiff_gui.widgets.timeline import TimelineWidget

log = logging.getLogger(__name__)

VIDEO_FILTER = "Videos (*.mp4 *.mov *.mkv *.avi *.webm *.m4v);;All files (*)"
PROJECT_FILTER = "vdiff projects (*.vdiff)"
CLOSE_WAIT_MS = 10_000  # closing waits this long for a render or a model load to stop, then goes anyway


class MainWindow(QMainWindow):
    auto_answer: bool | None = None  # answers "stop the render and close?" without asking (tests, scripts)
    auto_save_answer: str | None = None  # "save", "discard" or "cancel" for unsaved work (None: from auto_answer)

    def __init__(self, settings: AppSettings | None = None, cache: FrameCache | None = None):
        super().__init__()
        self.setObjectName("mainWindow")
        self.closing = False  # stopping the worker before the window closes ("closing…"); first: widgets report errors
        self.settings = settings or AppSettings()
        self.state = ProjectState(self.settings.params(), self)
        self.worker = RenderWorker(cache)
        self.banner = MessageBanner()
        self.compare = CompareView()
        self.timeline = TimelineWidget(self.state)
        self.flicker_graph = FlickerGraph(self.state, self.timeline)
        self.param_panel = ParamPanel(self.state, PresetStore(), lambda text: self.show_error(text))
        self.param_panel.region.set_frame_source(lambda: self.compare.before_view.image())  # masks are painted on it
        self.jobs = JobController(self.state, self.worker, self)
        self.jobs.cluster = self.settings.render_cluster()  # "Render on", as last chosen in the export settings
        self.render_bar = RenderBar(self.state, self.jobs)
        self.job_list = JobList(self.jobs)
        self.preview = PreviewController(self.state, self.worker, self.compare, self.timeline, self.show_error, self)
        self.preview.source_shown.connect(self.param_panel.controlnets.show_source)  # the control image preview
        self.playback = PlaybackController(self.state, self)
        self.documents = DocumentController(self.state, self.settings, self.timeline, self)
        self.proxies = ProxyMaker(self)  # scrubbing proxies, made in the background when a clip opens
        self.export_dialog: ExportDialog | None = None
        self.export_box: QMessageBox | None = None
        self.device = ""
        self._closed = False
        self._loading = ""  # what the worker is loading now
        self._close_timer = QTimer(self, interval=50)
        self._close_timer.timeout.connect(self._check_closed)
        self._close_clock = QElapsedTimer()
        self.typing_guard = TypingGuard(self).install()
        tasks.set_error_handler(self.show_error)
        self._build_actions()
        self._build_layout()
        self._build_menus()
        self._connect()
        self._restore()
        self.setAcceptDrops(True)
        self._update_title()
        self.worker.start()
        self.param_panel.style_grid.load_swatches()

    # construction
    def _action(self, name: str, text: str, slot, shortcut=None, checkable: bool = False) -> QAction:
        action = QAction(text, self)
        action.setObjectName(name)
        if shortcut is not None:
            action.setShortcuts(shortcut if isinstance(shortcut, list) else [QKeySequence(shortcut)])
        action.setCheckable(checkable)
        action.triggered.connect(slot)
        self.addAction(action)  # shortcuts work while the menu bar is hidden, too
        self.actions[name] = action
        return action

    def _build_actions(self) -> None:
        self.actions: dict[str, QAction] = {}
        s, a = self.state, self._action
        a("open", "&Open Video…", self.open_video_dialog, QKeySequence.StandardKey.Open)
        a("open_project", "Open &Project…", self.open_project_dialog, "Ctrl+Shift+O")
        a("save_project", "&Save Project", lambda: self.save_project_dialog(False), QKeySequence.StandardKey.Save)
        a("save_project_as", "Save Project &As…", lambda: self.save_project_dialog(True), "Ctrl+Shift+S")
        a("export", "&Export…", self.open_export_dialog, "Ctrl+E")
        a("quit", "&Quit", self.close, QKeySequence.StandardKey.Quit)
        a("render", "&Render In–Out", self.jobs.render_range, "Ctrl+R")
        a("cancel_render", "&Cancel Render", self.jobs.cancel, "Esc")
        a("pause_render", "&Pause / Resume Render", self.jobs.toggle_pause, "Ctrl+Shift+P")
        undo = s.undo_stack.createUndoAction(self, "&Undo")
        undo.setShortcut(QKeySequence.StandardKey.Undo)
        redo = s.undo_stack.createRedoAction(self, "&Redo")
        redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        for name, action in (("undo", undo), ("redo", redo)):
            action.setObjectName(name)
            self.addAction(action)
            self.actions[name] = action
        group = QActionGroup(self)
        for i, (mode, text) in enumerate((("side-by-side", "&Side by Side"), ("wipe", "&Wipe"), ("after", "&After Only"))):
            group.addAction(a(f"mode_{mode}", text, lambda _=False, m=mode: self.compare.set_mode(m), f"Ctrl+{i + 1}", True))
        zoom = QActionGroup(self)
        zoom.setExclusionPolicy(QActionGroup.ExclusionPolicy.ExclusiveOptional)  # 150% checks neither
        zoom.addAction(a("zoom_fit", "Zoom to &Fit", lambda: self.compare.set_fit(True), "Ctrl+0", True))
        zoom.addAction(a("zoom_100", "&100%", lambda: self.compare.set_fit(False), "Ctrl+Alt+0", True))
        self.actions["zoom_fit"].setChecked(True)
        a("zoom_in", "Zoom &In", lambda: self.compare.zoom_by(1), [QKeySequence.StandardKey.ZoomIn, QKeySequence("Ctrl+=")])
        a("zoom_out", "Zoom O&ut", lambda: self.compare.zoom_by(-1), QKeySequence.StandardKey.ZoomOut)
        a("timeline_zoom_in", "Zoom Timeline In", lambda: self.timeline.zoom_by(2), "=")
        a("timeline_zoom_out", "Zoom Timeline Out", lambda: self.timeline.zoom_by(0.5), "-")
        a("timeline_fit", "Whole Clip on the Timeline", self.timeline.zoom_to_fit, "Shift+Z")
        a("play", "&Play / Pause", self.playback.toggle, "Space")
        a("prev_frame", "Previous Frame", lambda: s.step(-1), "Left")
        a("next_frame", "Next Frame", lambda: s.step(1), "Right")
        a("back_second", "Back One Second", lambda: s.step_seconds(-1), "Shift+Left")
        a("forward_second", "Forward One Second", lambda: s.step_seconds(1), "Shift+Right")
        a("set_in", "Set &In Point", lambda: s.set_in_point(), "I")
        a("set_out", "Set &Out Point", lambda: s.set_out_point(), "O")
        a("clear_in_out", "&Clear In and Out", s.clear_range, "Alt+X")
        for key, name in (("J", "Play Backwards (J: faster)"), ("K", "Stop (K)"), ("L", "Play Forwards (L: faster)")):
            a(f"shuttle_{key.lower()}", name, lambda _=False, k=key: self.shuttle(k), key)
        a("go_start", "Go to Start", lambda: s.set_frame(0), "Home")
        a("go_end", "Go to End", lambda: s.set_frame(s.last_frame), "End")
        a("about", "&About vdiff", self.show_about)
        follow = a("follow_render", "&Follow Render", lambda checked: self.preview.set_follow_render(checked), None, True)
        follow.setChecked(self.preview.follow_render)
        follow.setToolTip("While a render runs, show each new frame; moving the playhead yourself turns this off")

    def _build_layout(self) -> None:
        toolbar = QWidget()
        row = QHBoxLayout(toolbar)
        row.setContentsMargins(0, 0, 0, 0)
        for name in ("mode_side-by-side", "mode_wipe", "mode_after", None, "zoom_fit", "zoom_100", None, "play",
                     "follow_render"):
            if name is None:
                row.addSpacing(16)
                continue
            button = QToolButton()
            button.setDefaultAction(self.actions[name])
            row.addWidget(button)
        self.zoom_label = QLabel("zoom: fit")
        self.zoom_label.setObjectName("zoomLabel")
        self.zoom_label.setToolTip("Zoom of the compare view: the wheel zooms, a drag pans; 100% is one source pixel per screen pixel")
        row.addWidget(self.zoom_label)
        self.shuttle_label = QLabel("")
        self.shuttle_label.setObjectName("shuttleLabel")
        row.addSpacing(16)
        row.addWidget(self.shuttle_label)
        self.dropped_label = QLabel("")  # frames playback could not show in time
        self.dropped_label.setObjectName("droppedLabel")
        self.dropped_label.setToolTip("Frames skipped during playback because they were not decoded in time")
        row.addSpacing(12)
        row.addWidget(self.dropped_label)
        row.addStretch(1)
        left = QWidget()
        column = QVBoxLayout(left)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(toolbar)
        column.addWidget(self.compare, 1)
        column.addWidget(self.timeline)
        column.addWidget(self.flicker_graph)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.param_panel)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setSizes([900, 380])
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(6, 6, 6, 0)
        layout.addWidget(self.banner)
        layout.addWidget(self.splitter, 1)
        layout.addWidget(self.render_bar)
        self.setCentralWidget(central)
        self.device_label = QLabel("device: not loaded")
        self.device_label.setObjectName("deviceLabel")
        self.clip_label = QLabel("")
        self.proxy_label = QLabel("")  # the scrubbing proxy being made in the background
        self.proxy_label.setObjectName("proxyLabel")
        self.proxy_label.setToolTip("Scrubbing and playback read a small all-intra copy of the clip once it is made;\n"
                                    "until then they read the original. Renders and exports always read the original.")
        self.statusBar().addWidget(self.clip_label, 1)
        self.statusBar().addPermanentWidget(self.proxy_label)
        self.statusBar().addPermanentWidget(self.device_label)
        self.jobs_dock = QDockWidget("Jobs", self)
        self.jobs_dock.setObjectName("jobsDock")
        self.jobs_dock.setWidget(self.job_list)
        self.jobs_dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetClosable | QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.jobs_dock)
        self.jobs_dock.hide()  # View ▸ Jobs; it shows itself when a second job is queued

    def _build_menus(self) -> None:
        bar, act = self.menuBar(), self.actions
        file = bar.addMenu("&File")
        file.addAction(act["open"])
        self.recent_menu = file.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        file.addSeparator()
        for name in ("open_project", "save_project", "save_project_as"):
            file.addAction(act[name])
        file.addSeparator()
        for name in ("render", "pause_render", "cancel_render", "export"):  # the menus stay File, Edit, View, Help
            file.addAction(act[name])
        file.addSeparator()
        file.addAction(act["quit"])
        edit = bar.addMenu("&Edit")
        edit.addAction(act["undo"])
        edit.addAction(act["redo"])
        view = bar.addMenu("&View")
        for names in (("mode_side-by-side", "mode_wipe", "mode_after"), ("zoom_fit", "zoom_100", "zoom_in", "zoom_out"),
                      ("timeline_zoom_in", "timeline_zoom_out", "timeline_fit"),
                      ("play", "shuttle_j", "shuttle_k", "shuttle_l", "prev_frame", "next_frame", "back_second",
                       "forward_second", "follow_render"),
                      ("set_in", "set_out", "clear_in_out", "go_start", "go_end")):
            for name in names:
                view.addAction(act[name])
            view.addSeparator()
        jobs_action = self.jobs_dock.toggleViewAction()
        jobs_action.setObjectName("show_jobs")
        jobs_action.setShortcut(QKeySequence("Ctrl+J"))
        self.actions["show_jobs"] = jobs_action
        view.addAction(jobs_action)
        bar.addMenu("&Help").addAction(act["about"])

    def _connect(self) -> None:
        w, jobs = self.worker, self.jobs
        w.device_changed.connect(self._on_device_changed)
        w.flicker_changed.connect(self.render_bar.show_flicker)
        w.render_started.connect(lambda *_: self.render_bar.clear_flicker())
        w.loading_changed.connect(self._on_loading_changed)
        w.flicker_measured.connect(self.flicker_graph.add)
        w.preview_failed.connect(lambda text, kind, *_: self.show_error(f"Preview failed: {text}", kind,
                                                                        topic="preview"))
        w.preview_ready.connect(self._on_preview_ready)
        jobs.submitted_while_idle.connect(lambda: self.banner.clear("render"))  # tried again: its outcome will show
        jobs.failed.connect(lambda text, kind: self.show_error(f"Render failed: {text}", kind, retry_render=True,
                                                               topic="render"))
        jobs.export_done.connect(self._on_export_done)
        self.render_bar.export_button.clicked.connect(self.open_export_dialog)
        jobs.state_changed.connect(self._on_job_state_changed)
        self.documents.error_raised.connect(self.show_error)
        self.param_panel.model.download_failed.connect(lambda text: self.show_error(f"Download failed: {text}"))
        self.param_panel.model.model_downloaded.connect(self._on_model_downloaded)
        self.documents.clip_opened.connect(self._on_clip_opened)
        self.documents.project_saved.connect(lambda _: self._update_title())
        self.playback.playing_changed.connect(self.preview.set_playing)
        self.playback.sound_unavailable.connect(lambda text: self.banner.show_message(text, "info"))
        self.preview.follow_changed.connect(self.actions["follow_render"].setChecked)
        self.preview.dropped_changed.connect(lambda n: self.dropped_label.setText(f"dropped {n}" if n else ""))
        self.state.clip_changed.connect(lambda _: self.proxy_label.setText(""))
        self.state.clip_changed.connect(self.proxies.start)
        self.proxies.proxy_ready.connect(self.preview.set_proxy)
        self.proxies.shots_scanned.connect(self.preview.prepare_while_idle)
        self.proxies.progress_changed.connect(lambda done, total: self.proxy_label.setText(f"scrub proxy {100 * done // total}%"))
        self.preview.proxy_changed.connect(lambda proxy: self.proxy_label.setText("scrub proxy ready" if proxy else ""))
        self.compare.mode_changed.connect(lambda mode: self.actions[f"mode_{mode}"].setChecked(True))
        self.compare.zoom_changed.connect(self._on_zoom_changed)
        self.playback.rate_changed.connect(lambda _: self._show_shuttle())
        self.playback.playing_changed.connect(lambda _: self._show_shuttle())
        self.state.undo_stack.cleanChanged.connect(self._on_clean_changed)
        jobs.jobs_changed.connect(self._on_jobs_changed)

    def shuttle(self, key: str) -> None:
        """J/K/L: play backwards, stop, play forwards; J or L again doubles the speed."""
        self.playback.set_rate(shuttle_rate(self.playback.rate, self.playback.playing, key))

    def _show_shuttle(self) -> None:
        rate = self.playback.rate
        shown = self.playback.playing and rate != 1.0
        self.shuttle_label.setText(("◀◀ " if rate < 0 else "▶▶ ") + f"{abs(rate):g}×" if shown else "")

    def _on_zoom_changed(self, zoom) -> None:
        self.actions["zoom_fit"].setChecked(zoom is None)
        self.actions["zoom_100"].setChecked(zoom == 1.0)
        self.zoom_label.setText("zoom: " + ("fit" if zoom is None else f"{zoom * 100:.0f}%"))

    def _on_loading_changed(self, text: str) -> None:
        self._loading = text
        if self.closing:
            return
        self.statusBar().showMessage(text) if text else self.statusBar().clearMessage()

    def _on_jobs_changed(self) -> None:
        if self.jobs.queue and not self.jobs_dock.isVisible():
            self.jobs_dock.show()  # a job waits: show where it is
            self.resizeDocks([self.jobs_dock], [150], Qt.Orientation.Vertical)  # a few rows, not half the window

    def _on_model_downloaded(self, repo_id: str) -> None:
        """A model that failed to load (not cached) is there now: load it again for the current frame."""
        self.worker.forget_failure()
        self.preview.show_current()

    def _restore(self) -> None:
        geometry = self.settings.geometry()
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1360, 860)
        splitter = self.settings.splitter_state()
        if splitter is not None:
            self.splitter.restoreState(splitter)
        self.compare.set_mode(self.settings.compare_mode())

    # reactions
    def show_error(self, text: str, kind: str = "error", retry_render: bool = False, topic: str = "") -> None:
        """Every error goes here: a non-modal banner; out of memory offers the lower-memory settings."""
        if self.closing:  # the "closing…" message stays; the worker's last words go to the log
            log.info("while closing: %s", text)
            return
        if kind == "out_of_memory":
            def retry() -> None:
                self.state.edit(low_memory=True)
                if retry_render:
                    self.jobs.retry(low_memory=True)
            self.banner.show_message(f"{text}\nLower-memory settings are slower but need much less memory.",
                                     "warning", [("Use lower memory and retry", retry)], topic)
        else:
            self.banner.show_message(text, "error", topic=topic)

    def _on_preview_ready(self, index: int, image, from_cache: bool, params) -> None:
        if params == self.state.params:  # the window's settings preview now: their failure is past
            self.banner.clear("preview")

    def _on_device_changed(self, device: str) -> None:
        self.device = device
        self.device_label.setText(f"device: {device}")

    def _on_clip_opened(self, info) -> None:
        self.banner.hide()
        self.compare.source_width = info.width
        audio = "audio" if info.has_audio else "no audio"
        self.clip_label.setText(f"{info.path.name} · {info.width}×{info.height} · {float(info.fps):.3g} fps · "
                                f"{count(info.frame_count, 'frame')} · {info.duration:.2f} s · {audio}")
        self._update_title()

    def _on_job_state_changed(self, job_state: str) -> None:
        if job_state == "idle":
            self.preview.render_ended()

    def _on_render_target_changed(self, cluster: str | None) -> None:
        self.jobs.cluster = cluster  # Render in–out goes where Export does

    def _on_export_done(self, result: dict) -> None:
        self.settings.add_export(history_entry(result))
        self.export_box = export_done_box(self, result)

    def _on_clean_changed(self, clean: bool) -> None:
        if not self._closed:
            self._update_title()

    def _update_title(self) -> None:
        """`vdiff 0.x — clip.mp4[*]`: Qt shows the [*] as "*" (or the platform's mark) while modified."""
        name = self.documents.project_path or self.state.clip_path
        title = f"vdiff {__version__}" + (f" — {Path(name).name}[*]" if name else "")
        self.setWindowTitle(title + (" — closing…" if self.closing else ""))
        self.setWindowModified(self.state.modified)

    # file commands
    def open_video_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open video", self.settings.last_folder("video"), VIDEO_FILTER)
        if path:
            self.settings.set_last_folder("video", path)
            self.documents.open_clip(path)

    def open_project_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open project", self.settings.last_folder("project"), PROJECT_FILTER)
        if path:
            self.settings.set_last_folder("project", path)
            self.documents.open_project(path)

    def save_project_dialog(self, ask: bool) -> bool:
        """Save the project (asking where when `ask` or it has no file yet); whether it was saved."""
        path = self.documents.project_path
        if ask or path is None:
            default = self.state.clip_path.with_suffix(".vdiff") if self.state.clip_path else Path("project.vdiff")
            folder = self.settings.last_folder("project")
            if folder:
                default = Path(folder) / default.name
            path, _ = QFileDialog.getSaveFileName(self, "Save project", str(default), PROJECT_FILTER)
        if not path:
            return False
        self.settings.set_last_folder("project", path)
        return self.documents.save_project(path) is not None

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in self.settings.recent_files():
            self.recent_menu.addAction(path, lambda p=path: self.documents.open_path(p))
        if self.recent_menu.isEmpty():
            self.recent_menu.addAction("(none)").setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear Recent", self.settings.clear_recent_files)

    def open_export_dialog(self) -> ExportDialog | None:
        """Open the (non-modal) export dialog; accepting it starts the export, or queues it behind a running job."""
        if self.state.info is None:
            return None
        dialog = ExportDialog(self.state.info, self.state.params, self.state.in_point, self.state.out_point, self,
                              settings=self.settings)
        dialog.render_on.changed.connect(self._on_render_target_changed)
        dialog.accepted.connect(lambda: self.jobs.submit(dialog.request()))
        dialog.open()
        self.export_dialog = dialog
        return dialog

    def show_about(self) -> None:
        tasks.start_task(self._show_about())

    async def _show_about(self) -> None:
        info = await tasks.run_blocking(system_info)  # imports torch: off the GUI thread
        box = QMessageBox(QMessageBox.Icon.NoIcon, "About vdiff", about_text(info, self.device),
                          QMessageBox.StandardButton.Close, self)
        box.setWindowIcon(self.windowIcon())
        box.setIconPixmap(self.windowIcon().pixmap(64, 64))
        box.setObjectName("aboutBox")
        box.open()
        self.about_box = box

    # drag and drop
    def dragEnterEvent(self, event) -> None:
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        files = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if files:
            event.acceptProposedAction()
            self.documents.open_path(files[0])

    # closing
    def closeEvent(self, event) -> None:
        if self._closed:
            event.accept()
            return
        if self.closing:  # already stopping the worker: the window closes when it has
            event.ignore()
            return
        if self.jobs.busy and not confirm(self, "Stop the render?",
                                          "A render is running. Stop it and close? Frames rendered so far stay in "
                                          "the cache; a partly written export is removed.", self.auto_answer):
            event.ignore()
            return
        if self.state.modified and not self._settle_unsaved_work():
            event.ignore()
            return
        if self.jobs.busy or self._loading or self.worker.rendering:
            event.ignore()
            self._begin_closing()
            return
        self.shutdown()
        event.accept()

    def _settle_unsaved_work(self) -> bool:
        """Ask about unsaved edits: saved or discarded (True), or the close is cancelled (False)."""
        auto = self.auto_save_answer or {True: "discard", False: "cancel"}.get(self.auto_answer)
        name = Path(self.documents.project_path or self.state.clip_path or "The project").name
        answer = ask_save_changes(self, name, auto)
        if answer == "save":
            return self.save_project_dialog(False)
        return answer == "discard"

    def _begin_closing(self) -> None:
        """Stop the worker without blocking: the window says "closing…" and closes once it has stopped."""
        self.closing = True
        self.jobs.clear_queue()
        what = "the render" if self.jobs.busy else ("loading " + self._loading.removeprefix("loading ")) if self._loading else "the worker"
        self.banner.show_message(f"Closing… waiting for {what} to stop", "info")
        self.statusBar().showMessage("closing…")
        self.centralWidget().setEnabled(False)
        self.menuBar().setEnabled(False)
        self._update_title()
        self.worker.request_stop()
        self._close_clock.start()
        self._close_timer.start()

    def _check_closed(self) -> None:
        if self.worker.isRunning() and self._close_clock.elapsed() < CLOSE_WAIT_MS:
            return
        self._close_timer.stop()
        self.shutdown(max(100, CLOSE_WAIT_MS - self._close_clock.elapsed()))
        self.close()

    def shutdown(self, timeout_ms: int | None = None) -> None:
        """Save the settings, stop playback, stop and join the worker (waiting at most `timeout_ms` when
        given: closing waited already). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._close_timer.stop()
        self.typing_guard.remove()
        tasks.set_error_handler(None)
        self.playback.stop()
        self.settings.set_geometry(self.saveGeometry())
        self.settings.set_splitter_state(self.splitter.saveState())
        self.settings.set_compare_mode(self.compare.mode)
        self.settings.set_params(self.state.params)
        self.settings.sync()
        self.param_panel.model.cancel_download()
        self.proxies.cancel(wait_s=5.0)
        if not self.worker.stop(timeout_ms):
            log.warning("the worker did not stop within %d ms (a model load?); it ends with the process", CLOSE_WAIT_MS)
        self.preview.close()
        self.documents.close()

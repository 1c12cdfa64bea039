"""Export…: format, quality, size, audio, range and output path, turned into one RenderRequest.

A bad choice is reported inside the dialog (which stays open); an existing file is overwritten only
after a yes. The choices and the folder are remembered for the next export, and the past exports are
listed with their verification and a "Show in folder" button.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
    QLineEdit, QListWidget, QListWidgetItem, QPushButton, QRadioButton, QSpinBox, QVBoxLayout, QWidget,
)

from pipeline.errors import VdiffError
from pipeline.request import OutputSpec, RenderRequest, StyleParams
from pipeline.video import VideoInfo
from pipeline.video.writer import check_output_path
from pipeline.words import count
from vdiff_gui.widgets.dialogs import confirm, verification_lines

# label, codec, file suffix ("" for a PNG folder)
FORMATS = (
    ("MP4 · H.264", "h264", ".mp4"),
    ("MP4 · H.265", "h265", ".mp4"),
    ("MOV · ProRes 422 HQ", "prores", ".mov"),
    ("PNG sequence (folder)", "png", ""),
)


def default_output(source: Path, suffix: str, folder: str = "") -> Path:
    """<clip>-vdiff<suffix> beside the clip, or in `folder` (the last export's) when given."""
    name = f"{source.stem}-vdiff{suffix}"
    return Path(folder) / name if folder else source.with_name(name)


def folder_of(output: str | Path) -> Path:
    """The folder "Show in folder" opens: a PNG sequence's own folder, else the file's."""
    output = Path(output)
    return output if output.is_dir() else output.parent


def history_entry(result: dict) -> dict:
    """What the past-exports list keeps of a finished export (pipeline.events.Finished as a dict)."""
    verification = result.get("verification") or {}
    return {"output": str(result.get("output") or ""), "when": time.time(), "frames": result.get("total", 0),
            "ok": bool(verification.get("ok")), "checks": verification_lines(verification)}


def existing_output(spec: OutputSpec) -> bool:
    """Whether writing `spec` replaces a file (a PNG folder that is not empty needs the "replace the
    frame_*.png files" box instead, which check_output_path asks for)."""
    return spec.codec != "png" and Path(spec.path).exists()


class ExportDialog(QDialog):
    auto_answer: bool | None = None  # answers "overwrite?" without asking (tests, scripts)

    def __init__(self, info: VideoInfo, params: StyleParams, in_point: int, out_point: int, parent: QWidget | None = None,
                 settings=None):
        super().__init__(parent)
        self.setObjectName("exportDialog")
        self.setWindowTitle("Export")
        self.info, self.params = info, params
        self.in_point, self.out_point = in_point, out_point
        self.settings = settings
        self.auto_answer = getattr(parent, "auto_answer", None)
        self.format = QComboBox()
        for label, codec, _ in FORMATS:
            self.format.addItem(label, codec)
        self.crf = QSpinBox()
        self.crf.setRange(0, 51)
        self.crf.setValue(18)
        self.crf.setToolTip("Constant rate factor: lower is better quality and bigger files (18 looks lossless)")
        self.max_side = QSpinBox()
        self.max_side.setRange(0, 8192)
        self.max_side.setSingleStep(64)
        self.max_side.setSuffix(" px")
        self.max_side.setSpecialValueText("source size")
        self.max_side.setValue(params.max_side)
        self.max_side.setToolTip("The longer side of the output; a size other than the preview's renders every frame again")
        self.audio = QCheckBox("copy the clip's audio")
        self.audio.setChecked(info.has_audio)
        self.overwrite = QCheckBox("replace the frame_*.png files in a folder that is not empty")
        self.overwrite.setObjectName("exportOverwrite")
        self.overwrite.setToolTip("Only frame_*.png files are replaced; nothing else in the folder is touched")
        self.range_in_out = QRadioButton(f"in to out: frames {in_point}–{out_point} ({out_point - in_point + 1})")
        self.range_all = QRadioButton(f"whole clip: {count(info.frame_count, 'frame')}")
        self.range_in_out.setChecked(True)
        folder = settings.last_folder("export") if settings is not None else ""
        self.path = QLineEdit(str(default_output(info.path, ".mp4", folder)))
        self.path.setObjectName("exportPath")
        self.path.setMinimumWidth(360)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        path_row = QWidget()
        row = QHBoxLayout(path_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.path, 1)
        row.addWidget(browse)
        ranges = QWidget()
        box = QVBoxLayout(ranges)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(self.range_in_out)
        box.addWidget(self.range_all)
        form = QFormLayout()
        form.addRow("Format", self.format)
        form.addRow("Quality (CRF)", self.crf)
        form.addRow("Size (max side)", self.max_side)
        form.addRow("Audio", self.audio)
        form.addRow("Range", ranges)
        form.addRow("Output", path_row)
        form.addRow("", self.overwrite)
        self.error = QLabel("")
        self.error.setObjectName("exportError")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #ff8a80; font-weight: bold;")
        self.error.hide()
        self.render_on = None  # "Render on: this machine / Ray cluster", when the app's settings are given
        if settings is not None:
            from vdiff_gui.widgets.render_target import RenderTargetRow

            self.render_on = RenderTargetRow(settings)
            form.addRow("Render on", self.render_on)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(self._build_history())
        layout.addWidget(buttons)
        self.format.currentIndexChanged.connect(self._on_format_changed)
        self.path.textEdited.connect(lambda _: self.show_error(""))
        self._restore_choices()
        self._on_format_changed()

    # remembered choices and past exports
    def _restore_choices(self) -> None:
        choices = self.settings.export_settings() if self.settings is not None else {}
        if self.format.findData(choices.get("codec")) >= 0:
            self.set_format(choices["codec"])
        if isinstance(choices.get("crf"), int) and 0 <= choices["crf"] <= 51:
            self.crf.setValue(choices["crf"])
        if choices.get("audio") is False:
            self.audio.setChecked(False)
        if choices.get("range") == "all":
            self.range_all.setChecked(True)

    def _remember_choices(self) -> None:
        if self.settings is None:
            return
        self.settings.set_export_settings({"codec": self.codec, "crf": self.crf.value(), "audio": self.audio.isChecked(),
                                           "range": "all" if self.range_all.isChecked() else "in_out"})
        self.settings.set_last_folder("export", Path(self.path.text()).expanduser().parent)

    def _build_history(self) -> QGroupBox:
        box = QGroupBox("Past exports")
        self.history = QListWidget()
        self.history.setObjectName("exportHistory")
        self.history.setMaximumHeight(120)
        self.show_folder = QPushButton("Show in Folder")
        self.show_folder.setObjectName("showInFolderButton")
        self.show_folder.setEnabled(False)
        self.show_folder.clicked.connect(lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.selected_folder()))))
        self.history.currentItemChanged.connect(lambda *_: self.show_folder.setEnabled(self.selected_folder() is not None))
        for entry in self.settings.export_history() if self.settings is not None else []:
            mark = "✓" if entry.get("ok") else "✗"
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.get("when", 0)))
            frames = count(entry.get("frames", 0), "frame")
            item = QListWidgetItem(f"{mark} {Path(entry['output']).name} · {frames} · {when}")
            item.setToolTip("\n".join([entry["output"], *entry.get("checks", [])]))
            item.setData(Qt.ItemDataRole.UserRole, entry["output"])
            self.history.addItem(item)
        if not self.history.count():
            self.history.addItem("(none yet)")
        column = QVBoxLayout(box)
        column.addWidget(self.history)
        column.addWidget(self.show_folder, 0, Qt.AlignmentFlag.AlignRight)
        return box

    def selected_folder(self) -> Path | None:
        """The folder of the selected past export, if it is still there."""
        item = self.history.currentItem()
        output = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        folder = folder_of(output) if output else None
        return folder if folder is not None and folder.is_dir() else None

    def show_error(self, text: str) -> None:
        self.error.setText(text)
        self.error.setVisible(bool(text))

    @property
    def codec(self) -> str:
        return self.format.currentData()

    def set_format(self, codec: str) -> None:
        self.format.setCurrentIndex(self.format.findData(codec))

    def _on_format_changed(self) -> None:
        codec = self.codec
        suffix = next(s for _, c, s in FORMATS if c == codec)
        self.crf.setEnabled(codec in ("h264", "h265"))
        self.audio.setEnabled(self.info.has_audio and codec != "png")
        self.overwrite.setEnabled(codec == "png")
        path = Path(self.path.text())
        stem = path.stem if path.suffix in (".mp4", ".mov", ".mkv") else path.name
        self.path.setText(str(path.with_name(stem + suffix)))

    def _browse(self) -> None:
        if self.codec == "png":
            folder = QFileDialog.getExistingDirectory(self, "Folder for the PNG sequence", str(Path(self.path.text()).parent))
            if folder:
                self.path.setText(str(Path(folder) / Path(self.path.text()).name))
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export to", self.path.text(), "Video (*.mp4 *.mov *.mkv)")
        if path:
            self.path.setText(path)

    def request(self) -> RenderRequest:
        """The export as a render request; raises VdiffError for a bad choice (e.g. a .mp4 for ProRes)."""
        spec = OutputSpec(
            path=Path(self.path.text()).expanduser(),
            codec=self.codec,
            crf=self.crf.value(),
            audio=self.audio.isChecked() and self.audio.isEnabled(),
            overwrite=self.overwrite.isChecked() and self.overwrite.isEnabled(),
        )
        start, end = (self.in_point, self.out_point + 1) if self.range_in_out.isChecked() else (0, self.info.frame_count)
        cluster = self.render_on.cluster() if self.render_on is not None else None
        return RenderRequest(self.info.path, self.params.replace(max_side=self.max_side.value()), start, end, spec,
                             cluster=cluster)

    def accept(self) -> None:
        """Check the choices (errors show in the dialog), ask before replacing a file, then close as accepted."""
        try:
            request = self.request()
            check_output_path(request.output)
        except VdiffError as exc:
            self.show_error(str(exc))
            return
        if existing_output(request.output) and not confirm(
                self, "Replace the file?", f"{request.output.path} exists. Replace it with this export?", self.auto_answer):
            self.show_error("Not exported: choose another name, or confirm replacing the file.")
            return
        self.show_error("")
        self._remember_choices()
        super().accept()

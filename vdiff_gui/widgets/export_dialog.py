"""Export…: format, quality, size, audio, range and output path, turned into one RenderRequest."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QLineEdit,
    QPushButton, QRadioButton, QSpinBox, QVBoxLayout, QWidget,
)

from pipeline.errors import VdiffError
from pipeline.request import OutputSpec, RenderRequest, StyleParams
from pipeline.video import VideoInfo

# label, codec, file suffix ("" for a PNG folder)
FORMATS = (
    ("MP4 · H.264", "h264", ".mp4"),
    ("MP4 · H.265", "h265", ".mp4"),
    ("MOV · ProRes 422 HQ", "prores", ".mov"),
    ("PNG sequence (folder)", "png", ""),
)


def default_output(source: Path, suffix: str) -> Path:
    return source.with_name(f"{source.stem}-vdiff{suffix}")


class ExportDialog(QDialog):
    def __init__(self, info: VideoInfo, params: StyleParams, in_point: int, out_point: int, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("exportDialog")
        self.setWindowTitle("Export")
        self.info, self.params = info, params
        self.in_point, self.out_point = in_point, out_point
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
        self.range_all = QRadioButton(f"whole clip: {info.frame_count} frames")
        self.range_in_out.setChecked(True)
        self.path = QLineEdit(str(default_output(info.path, ".mp4")))
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
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)
        self.format.currentIndexChanged.connect(self._on_format_changed)
        self._on_format_changed()

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
        return RenderRequest(self.info.path, self.params.replace(max_side=self.max_side.value()), start, end, spec)

    def accept(self) -> None:
        try:
            self.request()
        except VdiffError as exc:
            self.path.setToolTip(str(exc))
            self.setWindowTitle(f"Export: {exc}")
            return
        super().accept()

"""Preset picker: load, save and delete parameter presets (loading one is a single undo step)."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QHBoxLayout, QInputDialog, QPushButton, QWidget

from vdiff_gui.presets import PresetStore
from vdiff_gui.project_state import ProjectState


class PresetBar(QWidget):
    def __init__(self, state: ProjectState, store: PresetStore, report_error, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("presetBar")
        self.state, self.store = state, store
        self._report_error = report_error
        self.combo = QComboBox()
        self.combo.setObjectName("presetCombo")
        self.combo.setMinimumContentsLength(12)
        self.combo.setToolTip("Presets: ★ ships with vdiff")
        self.load_button = QPushButton("Load")
        self.save_button = QPushButton("Save…")
        self.delete_button = QPushButton("Delete")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo, 1)
        for button in (self.load_button, self.save_button, self.delete_button):
            layout.addWidget(button)
        self.load_button.clicked.connect(lambda: self.load_preset(self.combo.currentData()))
        self.save_button.clicked.connect(self._on_save_clicked)
        self.delete_button.clicked.connect(lambda: self.delete_preset(self.combo.currentData()))
        self.combo.currentIndexChanged.connect(self._update_buttons)
        self.refresh()

    def refresh(self, select: str | None = None) -> None:
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItem("Presets…", None)
        for preset in self.store.presets():
            self.combo.addItem(("★ " if preset.builtin else "") + preset.name, preset.name)
        self.combo.setCurrentIndex(max(0, self.combo.findData(select)) if select is not None else 0)
        self.combo.blockSignals(False)
        self._update_buttons()
        problems = self.store.problems()
        if problems:
            self._report_error("; ".join(problems))

    def _update_buttons(self) -> None:
        preset = self.store.find(self.combo.currentData() or "")
        self.load_button.setEnabled(preset is not None)
        self.delete_button.setEnabled(preset is not None and not preset.builtin)

    def load_preset(self, name: str | None) -> None:
        if not name:
            return
        try:
            self.state.edit_params(self.store.apply(name, self.state.params))
        except Exception as exc:
            self._report_error(str(exc))

    def save_preset(self, name: str) -> None:
        try:
            preset = self.store.save(name, self.state.params)
        except Exception as exc:
            self._report_error(f"cannot save the preset: {exc}")
            return
        self.refresh(select=preset.name)

    def delete_preset(self, name: str | None) -> None:
        if not name:
            return
        try:
            self.store.delete(name)
        except Exception as exc:
            self._report_error(str(exc))
            return
        self.refresh()

    def _on_save_clicked(self) -> None:
        name, ok = QInputDialog.getText(self, "Save preset", "Preset name:")
        if ok and name.strip():
            self.save_preset(name)

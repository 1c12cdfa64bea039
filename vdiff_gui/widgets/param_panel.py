"""The parameter panel: engine picker, that engine's parameters, presets, reset to defaults.

It shows state.params and edits them only through ProjectState, so every edit is undoable; a slider
drag is one undo step (merged while the handle is held). Which rows show follows
pipeline.request.ENGINE_FIELDS; a field the panel has no widget for is simply not shown.
"""

from __future__ import annotations

import dataclasses
import random

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
    QPushButton, QScrollArea, QSlider, QSpinBox, QVBoxLayout, QWidget,
)

from pipeline.engines.base import fit_size
from pipeline.errors import VdiffError
from pipeline.request import CLASSICAL_LOOKS, ENGINE_FIELDS, ENGINES, KEYFRAME_MODES, MAX_DENOISE_STRENGTH, StyleParams
from vdiff_gui.engine_switch import engine_change
from vdiff_gui.presets import PresetStore
from vdiff_gui.project_state import ProjectState
from vdiff_gui.settings import DEVICES
from vdiff_gui.tasks import run_blocking, start_task
from vdiff_gui.widgets.conditioning_lists import ControlNetList, LoraList
from vdiff_gui.widgets.model_picker import ModelPicker
from vdiff_gui.widgets.preset_bar import PresetBar
from vdiff_gui.widgets.region_editor import PromptKeys, RegionEditor
from vdiff_gui.widgets.style_grid import StyleGrid

ENGINE_LABELS = {
    "fast-style": "Fast style (26 styles or a picture)",
    "classical": "Classical (OpenCV looks, denoise)",
    "diffusion": "Diffusion (Stable Diffusion img2img)",
}
ALWAYS = ("engine", "strength", "max_side", "device", "mask_anchors", "mask_feather")
DIFFUSION_EXTRA = ("allow_pickle", "low_memory", "prompt_keys", "image_guidance")
KEYFRAME_ROWS = ("keyframe_interval", "keyframes")  # every engine (pipeline.keyframes)
LEARNED_CONTROLS = ("depth", "lineart", "softedge")  # preprocessors that need the annotator field
COLOR_ANCHOR = {"auto": None, "on": True, "off": False}
FIELDS = {f.name for f in dataclasses.fields(StyleParams)}


def _row(*widgets) -> QWidget:
    holder = QWidget()
    layout = QHBoxLayout(holder)
    layout.setContentsMargins(0, 0, 0, 0)
    for i, widget in enumerate(widgets):
        layout.addWidget(widget, 1 if i == 0 else 0)
    return holder


class ParamPanel(QScrollArea):
    def __init__(self, state: ProjectState, presets: PresetStore, report_error, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("paramPanel")
        self.state = state
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        body = QWidget()
        outer = QVBoxLayout(body)
        self.preset_bar = PresetBar(state, presets, report_error)
        outer.addWidget(self.preset_bar)
        self.form = QFormLayout()
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        outer.addLayout(self.form)
        self.reset_button = QPushButton("Reset to defaults")
        self.reset_button.setObjectName("resetButton")
        self.reset_button.clicked.connect(lambda: state.edit_params(StyleParams(device=state.params.device)))
        outer.addWidget(self.reset_button)
        outer.addStretch(1)
        self.setWidget(body)
        self.rows: dict[str, QWidget] = {}
        self._setters: dict[str, callable] = {}  # field -> shows a value in its widget
        self._schedulers_requested = False  # their module imports torch: only once diffusion is chosen
        self._build()
        state.params_changed.connect(self._on_params_changed)
        state.clip_changed.connect(lambda _info: self._show_noise_estimate(state.params))
        self._on_params_changed(state.params)
        scrollbar = self.verticalScrollBar().sizeHint().width()
        self.setMinimumWidth(max(400, body.minimumSizeHint().width() + scrollbar + 6))

    # construction helpers: each adds a row for one StyleParams field and knows how to show its value
    def _add(self, field: str, label: str | None, widget: QWidget, setter) -> None:
        if field not in FIELDS:  # the core has no such parameter (any more)
            widget.hide()
            return
        self.rows[field] = widget
        self._setters[field] = setter
        self.form.addRow(widget) if label is None else self.form.addRow(label, widget)

    def _check(self, field: str, label: str, text: str) -> QCheckBox:
        box = QCheckBox(text)
        box.toggled.connect(lambda on: self.state.edit(**{field: on}))
        self._add(field, label, box, box.setChecked)
        return box

    def _combo(self, field: str, label: str, items, to_value=lambda text: text) -> QComboBox:
        combo = QComboBox()
        combo.addItems(list(items))
        combo.activated.connect(lambda i: self.state.edit(**{field: to_value(combo.itemText(i))}))
        self._add(field, label, combo, combo.setCurrentText)
        return combo

    def _spin(self, field: str, label: str, low: int, high: int, step: int = 1, suffix: str = "") -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(low, high)
        spin.setSingleStep(step)
        spin.setSuffix(suffix)
        spin.setKeyboardTracking(False)  # typing "123" is one edit, committed on Enter or focus out
        spin.valueChanged.connect(lambda v: self.state.edit(**{field: v}))
        self._add(field, label, spin, spin.setValue)
        return spin

    def _fraction(self, field: str, label: str) -> QSlider:
        """A 0-1 slider; moves while the handle is held merge into one undo step, closed on release."""
        slider = QSlider(Qt.Orientation.Horizontal)
        slider.setObjectName(f"{field}Slider")
        slider.setRange(0, 100)
        value = QLabel()
        value.setMinimumWidth(36)

        def moved(position: int) -> None:
            value.setText(f"{position / 100:.2f}")
            self.state.edit(merge_key=field if slider.isSliderDown() else None, **{field: position / 100})

        def show(fraction: float) -> None:
            value.setText(f"{fraction:.2f}")
            if not slider.isSliderDown():
                slider.setValue(round(fraction * 100))

        slider.valueChanged.connect(moved)
        slider.sliderReleased.connect(self.state.close_merge)
        self._add(field, label, _row(slider, value), show)
        return slider

    def _line(self, field: str, label: str, placeholder: str = "") -> QLineEdit:
        edit = QLineEdit()
        edit.setPlaceholderText(placeholder)
        edit.editingFinished.connect(lambda: self.state.edit(**{field: edit.text()}))
        self._add(field, label, edit, lambda text: edit.text() != text and edit.setText(text))
        return edit

    def _build(self) -> None:
        s = self.state
        self.engine = QComboBox()
        self.engine.setObjectName("engineCombo")
        for name in ENGINES:
            self.engine.addItem(ENGINE_LABELS.get(name, name), name)
        self.engine.activated.connect(lambda i: s.edit(**engine_change(s.params, self.engine.itemData(i))))  # + its strength
        self._add("engine", "Engine", self.engine, lambda v: self.engine.setCurrentIndex(self.engine.findData(v)))

        # fast-style
        self.style_grid = StyleGrid()
        self.style_grid.style_chosen.connect(lambda i: s.edit(style=str(i), style_image=None))
        self.style_spec = QLineEdit()
        self.style_spec.setPlaceholderText("index or blend, e.g. 3:0.5,12:0.5")
        self.style_spec.editingFinished.connect(self._on_style_spec_edited)
        style_box = QWidget()
        box = QVBoxLayout(style_box)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(QLabel("Style"))
        box.addWidget(self.style_grid)
        spec_row = _row(self.style_spec)
        spec_row.layout().insertWidget(0, QLabel("Index or blend"))
        box.addWidget(spec_row)
        self._add("style", None, style_box, self.style_spec.setText)  # spans both columns: the grid needs the width
        self.style_image = QLineEdit()
        self.style_image.setReadOnly(True)
        self.style_image.setPlaceholderText("none: use the style above")
        browse, clear = QPushButton("Browse…"), QPushButton("Clear")
        browse.clicked.connect(self._choose_style_image)
        clear.clicked.connect(lambda: s.edit(style_image=None))
        self._add("style_image", "Style image", _row(self.style_image, browse, clear),
                  lambda v: self.style_image.setText(v or ""))
        self._check("preserve_color", "Colour", "keep the source colours")
        # classical
        self._combo("look", "Look", CLASSICAL_LOOKS)
        self._spin("denoise_window", "Window", 1, 15, step=2, suffix=" frames")
        self._denoise_strength_row()
        # diffusion
        self.model = ModelPicker()
        self.model.model_chosen.connect(lambda text: s.edit(model=text))
        self._add("model", "Model", self.model, lambda v: None)  # shown with allow_pickle, below
        self._check("allow_pickle", "", "allow pickle checkpoints (can run code)")
        self.prompt = self._line("prompt", "Prompt", "e.g. a watercolor painting")
        self.prompt_keys = PromptKeys(s)
        self._add("prompt_keys", "Over time", self.prompt_keys, self.prompt_keys.show_keys)
        self._line("negative_prompt", "Negative")
        image_guidance = QDoubleSpinBox()
        image_guidance.setRange(0.0, 10.0)
        image_guidance.setSingleStep(0.1)
        image_guidance.setKeyboardTracking(False)
        image_guidance.setToolTip("InstructPix2Pix models: how closely to keep to the source frame")
        image_guidance.valueChanged.connect(lambda v: s.edit(image_guidance=round(v, 2)))
        self._add("image_guidance", "Image guidance", image_guidance, image_guidance.setValue)
        self.strength = self._fraction("strength", "Strength")
        self._spin("steps", "Steps", 1, 150)
        guidance = QDoubleSpinBox()
        guidance.setRange(0.0, 30.0)
        guidance.setSingleStep(0.5)
        guidance.setKeyboardTracking(False)
        guidance.valueChanged.connect(lambda v: s.edit(guidance=round(v, 2)))
        self._add("guidance", "Guidance", guidance, guidance.setValue)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setKeyboardTracking(False)
        self.seed.valueChanged.connect(lambda v: s.edit(seed=v))
        new_seed = QPushButton("New seed")
        new_seed.setObjectName("newSeedButton")
        new_seed.clicked.connect(lambda: s.edit(seed=random.randrange(2**31)))
        self._add("seed", "Seed", _row(self.seed, new_seed), self.seed.setValue)
        self.scheduler = QComboBox()
        self.scheduler.addItem("default")
        self.scheduler.activated.connect(lambda i: s.edit(scheduler=self.scheduler.itemText(i)))
        self._add("scheduler", "Scheduler", self.scheduler, self._show_scheduler)
        # conditioning (issue #12): ControlNets, LoRAs, the style picture through an IP-Adapter
        self.controlnets = ControlNetList()
        self.controlnets.setObjectName("controlNetList")
        self.controlnets.edited.connect(lambda specs: s.edit(controlnets=specs))
        self._add("controlnets", "ControlNets", self.controlnets, self.controlnets.set_specs)
        self._line("annotator", "Annotator", "depth model folder or hub id")
        self.loras = LoraList()
        self.loras.setObjectName("loraList")
        self.loras.edited.connect(lambda specs: s.edit(loras=specs))
        self._add("loras", "LoRAs", self.loras, self.loras.set_specs)
        self.ip_adapter = QLineEdit()
        self.ip_adapter.setPlaceholderText("adapter .safetensors (image_encoder/ beside it) or hub id")
        self.ip_adapter.editingFinished.connect(lambda: s.edit(ip_adapter=self.ip_adapter.text().strip()))
        browse_ip = QPushButton("Browse…")
        browse_ip.clicked.connect(self._choose_ip_adapter)
        self._add("ip_adapter", "IP-Adapter", _row(self.ip_adapter, browse_ip),
                  lambda v: self.ip_adapter.text() != v and self.ip_adapter.setText(v))
        self._fraction("ip_adapter_scale", "Style weight")
        self._check("safety_checker", "Safety", "run the model's safety checker")
        self._check("shared_noise", "Noise", "the same noise for every frame")
        self._check("cross_frame_attention", "Attention", "look at the first and previous frames")
        self._check("low_memory", "Memory", "lower memory (slower)")
        # temporal consistency, every engine
        self._check("temporal_flow", "Consistency", "blend along the optical flow")
        self._fraction("flow_blend", "Flow blend")
        anchor = self._combo("color_anchor", "Colour anchor", COLOR_ANCHOR, COLOR_ANCHOR.get)
        if "color_anchor" in self._setters:
            self._setters["color_anchor"] = lambda v: anchor.setCurrentText({None: "auto", True: "on", False: "off"}.get(v, "auto"))
        # keyframes, every engine: 0 is the engine's default (pipeline.request.KEYFRAME_DEFAULTS)
        keyframes = self._spin("keyframe_interval", "Keyframes every", 0, 60, suffix=" frames")
        keyframes.setObjectName("keyframeIntervalSpin")
        keyframes.setSpecialValueText("engine default")
        keyframes.setToolTip("The engine runs on every Nth frame of each shot; the frames between are carried "
                             "along the motion from both neighbouring keyframes. 1: every frame.")
        self._combo("keyframes", "Keyframe placement", KEYFRAME_MODES)
        # content editing, every engine: a painted region that follows the motion
        self.region = RegionEditor(s, lambda: None)
        self._add("mask_anchors", "Edit region", self.region, self.region.show_anchors)
        feather = QDoubleSpinBox()
        feather.setRange(0.0, 100.0)
        feather.setSuffix(" px")
        feather.setKeyboardTracking(False)
        feather.valueChanged.connect(lambda v: s.edit(mask_feather=round(v, 1)))
        self._add("mask_feather", "Region edge", feather, feather.setValue)
        # shared
        max_side = self._spin("max_side", "Output size", 0, 8192, step=64, suffix=" px")
        max_side.setSpecialValueText("source size")
        self.device = self._combo("device", "Device", DEVICES)
        self.device.setObjectName("deviceCombo")

    # the denoiser's noise level: the clip's estimate, shown beside the spin box that overrides it
    def _denoise_strength_row(self) -> None:
        spin = QDoubleSpinBox()
        spin.setRange(0.0, MAX_DENOISE_STRENGTH)
        spin.setSingleStep(1.0)
        spin.setDecimals(1)
        spin.setSpecialValueText("auto")  # 0: the clip's estimate
        spin.setKeyboardTracking(False)
        spin.valueChanged.connect(lambda v: self.state.edit(denoise_strength=round(v, 1) or None))
        self.noise_estimate = QLabel()
        self.noise_estimate.setObjectName("noiseEstimate")
        self._noise_shown_for: tuple | None = None
        self._add("denoise_strength", "Noise σ", _row(spin, self.noise_estimate), lambda v: spin.setValue(v or 0.0))

    def _show_noise_estimate(self, p: StyleParams) -> None:
        """Estimate the clip's noise in the background when the denoise look is on (once per clip and size)."""
        info = self.state.info
        if p.engine != "classical" or p.look != "denoise" or info is None:
            return
        size = fit_size(info.width, info.height, p.max_side)
        if self._noise_shown_for == (info.path, size):
            return
        self._noise_shown_for = (info.path, size)
        self.noise_estimate.setText("estimating…")
        start_task(self._estimate_noise(info.path, size))

    async def _estimate_noise(self, path, size) -> None:
        from pipeline.denoise import clip_noise

        try:
            model = await run_blocking(clip_noise, path, size)
        except (OSError, VdiffError) as exc:
            text = f"no estimate: {exc}"
        else:
            text = f"clip: {model.describe()}"
        if self._noise_shown_for == (path, size):  # still the clip and size shown
            self.noise_estimate.setText(text)

    def _show_scheduler(self, name: str) -> None:
        if self.scheduler.findText(name) < 0:
            self.scheduler.addItem(name)
        self.scheduler.setCurrentText(name)

    def load_scheduler_names(self) -> None:
        """The diffusion scheduler names, imported in the background (their module imports torch)."""
        start_task(self._load_schedulers())

    async def _load_schedulers(self) -> None:
        try:
            names = await run_blocking(_scheduler_names)
            with QSignalBlocker(self.scheduler):
                self.scheduler.clear()
                self.scheduler.addItems(names)
                self._show_scheduler(self.state.params.scheduler)
        except (ImportError, RuntimeError):  # no diffusion install, or the window closed meanwhile
            pass

    # edits that need more than one field
    def _on_style_spec_edited(self) -> None:
        text = self.style_spec.text().strip()
        if text and text != self.state.params.style:
            self.state.edit(style=text, style_image=None)

    def _choose_ip_adapter(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "IP-Adapter", "", "IP-Adapter weights (*.safetensors)")
        if path:
            self.state.edit(ip_adapter=path)

    def _choose_style_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Style image", "", "Images (*.png *.jpg *.jpeg *.webp *.bmp)")
        if path:
            self.state.edit(style_image=path)

    # the state -> the widgets
    def _on_params_changed(self, p: StyleParams) -> None:
        values = p.to_dict()
        for field, setter in self._setters.items():
            widget = self.rows[field]
            blockers = [QSignalBlocker(w) for w in [widget, *widget.findChildren(QWidget)]]
            setter(values[field])
            del blockers
        self.style_grid.set_current("" if p.style_image else p.style)
        visible = set(ENGINE_FIELDS.get(p.engine, ())) | set(ALWAYS) | set(KEYFRAME_ROWS)
        if getattr(p, "keyframes", "fixed") == "auto":  # auto places them itself
            visible.discard("keyframe_interval")
        if p.engine == "diffusion":
            visible |= set(DIFFUSION_EXTRA)
            self.model.set_model(p.model, p.allow_pickle)
            if not self._schedulers_requested:
                self._schedulers_requested = True
                self.load_scheduler_names()
        if p.engine == "diffusion":
            if not any(net.control in LEARNED_CONTROLS for net in p.controlnets):
                visible.discard("annotator")
            if not p.ip_adapter:
                visible.discard("ip_adapter_scale")
        if p.engine == "classical" and p.look != "denoise":
            visible.discard("denoise_window")
            visible.discard("denoise_strength")
        if p.engine == "classical" and p.look == "denoise":  # its own temporal stage replaces propagation
            visible -= {"temporal_flow", "flow_blend"}
            self._show_noise_estimate(p)
        if not getattr(p, "temporal_flow", True):
            visible.discard("flow_blend")
        if not p.mask_anchors and not p.mask:
            visible.discard("mask_feather")
        for field, widget in self.rows.items():
            self.form.setRowVisible(widget, field in visible)


def _scheduler_names() -> list[str]:
    from pipeline.engines.diffusion_models import SCHEDULER_NAMES

    return list(SCHEDULER_NAMES)

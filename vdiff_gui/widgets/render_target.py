""""Render on: this machine / Ray cluster" and the cluster's address, remembered in the settings.

Without Ray (the desktop bundle leaves it out) the cluster choice stays visible but disabled, with the
reason as its tooltip.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLineEdit, QWidget

from pipeline.cluster.address import parse_address, ray_available, why_unavailable
from vdiff_gui.settings import AppSettings

MACHINE, CLUSTER = "machine", "cluster"


class RenderTargetRow(QWidget):
    changed = Signal(object)  # the cluster address to render on, or None for this machine

    def __init__(self, settings: AppSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.settings = settings
        self.target = QComboBox()
        self.target.setObjectName("renderOn")
        self.target.addItem("this machine", MACHINE)
        self.target.addItem("Ray cluster", CLUSTER)
        self.address = QLineEdit(settings.cluster_address())
        self.address.setObjectName("clusterAddress")
        self.address.setPlaceholderText("local, auto, HOST:PORT or ray://HOST:10001")
        self.address.setToolTip("local: Ray started on this machine for the render (one engine per GPU or CPU core);\n"
                                "HOST:PORT: a head started with `ray start --head`; see docs/distributed.md")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.target)
        row.addWidget(self.address, 1)
        self.available = ray_available()
        if not self.available:
            item = self.target.model().item(1)
            item.setEnabled(False)
            item.setToolTip(why_unavailable())
            self.target.setItemData(1, why_unavailable(), Qt.ItemDataRole.ToolTipRole)
            self.address.setEnabled(False)
            self.address.setToolTip(why_unavailable())
        wanted = settings.render_target() if self.available else MACHINE
        self.target.setCurrentIndex(self.target.findData(wanted))
        self.target.currentIndexChanged.connect(self._on_edited)
        self.address.editingFinished.connect(self._on_edited)
        self._sync()

    def cluster(self) -> str | None:
        """The checked address when rendering on a cluster, else None; raises BadInputError on a bad one."""
        if self.target.currentData() != CLUSTER:
            return None
        return parse_address(self.address.text())

    def set_cluster(self, address: str | None) -> None:
        if address is not None:
            self.address.setText(address)
        self.target.setCurrentIndex(self.target.findData(CLUSTER if address is not None else MACHINE))
        self._on_edited()

    def _sync(self) -> None:
        self.address.setVisible(self.target.currentData() == CLUSTER)

    def _on_edited(self) -> None:
        self._sync()
        self.settings.set_render_target(self.target.currentData())
        self.settings.set_cluster_address(self.address.text().strip())
        try:
            self.changed.emit(self.cluster())
        except Exception:  # a half-typed address: the dialog says so when it is used
            pass

"""A dark Fusion palette: pictures are judged against a neutral dark surround, as in video tools."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

ROLES = {
    QPalette.ColorRole.Window: "#2b2e35",
    QPalette.ColorRole.WindowText: "#e6e8ec",
    QPalette.ColorRole.Base: "#1f2228",
    QPalette.ColorRole.AlternateBase: "#2b2e35",
    QPalette.ColorRole.ToolTipBase: "#1f2228",
    QPalette.ColorRole.ToolTipText: "#e6e8ec",
    QPalette.ColorRole.PlaceholderText: "#8a9099",
    QPalette.ColorRole.Text: "#e6e8ec",
    QPalette.ColorRole.Button: "#363a42",
    QPalette.ColorRole.ButtonText: "#e6e8ec",
    QPalette.ColorRole.BrightText: "#ff6b5b",
    QPalette.ColorRole.Link: "#6cb4ff",
    QPalette.ColorRole.Highlight: "#e0912b",
    QPalette.ColorRole.HighlightedText: "#1a1a1a",
}
DISABLED = {
    QPalette.ColorRole.WindowText: "#7a808a",
    QPalette.ColorRole.Text: "#7a808a",
    QPalette.ColorRole.ButtonText: "#7a808a",
    QPalette.ColorRole.Button: "#30333a",
}


def apply_dark_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    palette = QPalette()
    for role, color in ROLES.items():
        palette.setColor(role, QColor(color))
    for role, color in DISABLED.items():
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor(color))
    app.setPalette(palette)

"""A non-modal message strip at the top of the window: what went wrong and what to do, plus actions."""

from __future__ import annotations

from typing import Callable

from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

STYLES = {
    "error": "background: #5c1f22; color: #ffe3e0; border: 1px solid #a8434a;",
    "warning": "background: #5a4512; color: #fff2d0; border: 1px solid #a8842a;",
    "info": "background: #1f3f5c; color: #e0efff; border: 1px solid #3f78a8;",
}


class MessageBanner(QFrame):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("messageBanner")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setObjectName("messageText")
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(10, 6, 6, 6)
        self._layout.addWidget(self.label, 1)
        self._buttons: list[QPushButton] = []
        self.level = ""
        self.topic = ""  # what the message is about ('preview', 'render'): a later success there clears it
        self.hide()

    def text(self) -> str:
        return self.label.text() if self.isVisibleTo(self.parentWidget()) else ""

    def show_message(self, text: str, level: str = "error", actions: list[tuple[str, Callable[[], None]]] = (),
                     topic: str = "") -> None:
        """Show `text` (replacing any message) with buttons for `actions` and a Dismiss button."""
        for button in self._buttons:
            button.deleteLater()
        self._buttons = []
        self.level, self.topic = level, topic
        self.setStyleSheet(f"QFrame#messageBanner {{ {STYLES[level]} border-radius: 4px; }} QLabel {{ border: none; }}")
        self.label.setText(text)
        for label, callback in [*actions, ("Dismiss", lambda: None)]:
            button = QPushButton(label)
            button.clicked.connect(self.hide)  # first: the action may show a new message
            button.clicked.connect(callback)
            self._layout.addWidget(button)
            self._buttons.append(button)
        self.show()

    def clear(self, topic: str) -> None:
        """Hide the message if it is about `topic` (the thing that failed has now worked, or is tried again)."""
        if topic and self.topic == topic:
            self.hide()

    def button_texts(self) -> list[str]:
        return [b.text() for b in self._buttons]

    def trigger(self, label: str) -> None:
        """Press the action button called `label`."""
        next(b for b in self._buttons if b.text() == label).click()

"""Editor keyboard habits: the J/K/L shuttle, and single-key shortcuts that give way to typing.

Space, I, O, J, K, L, the arrows, Home, End, - and = are window shortcuts; while the focus is in a text
field, a spin box or an editable combo box they must type (or move the cursor) instead. TypingGuard is
an event filter on the application that accepts the ShortcutOverride of every key without Ctrl, Alt
or Meta for such widgets, which makes Qt deliver it as an ordinary key press to the widget.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QAbstractSpinBox, QApplication, QComboBox, QLineEdit, QPlainTextEdit, QTextEdit

MAX_SHUTTLE = 8.0
COMMAND_MODIFIERS = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier | Qt.KeyboardModifier.MetaModifier
TEXT_WIDGETS = (QLineEdit, QAbstractSpinBox, QTextEdit, QPlainTextEdit)


def shuttle_rate(rate: float, playing: bool, key: str) -> float:
    """The playback rate after pressing J, K or L: L plays forward and doubles the speed on each press
    (up to 8x), J the same backwards, K stops."""
    if key == "K":
        return 0.0
    sign = 1.0 if key == "L" else -1.0
    if not playing or rate * sign < 0:
        return sign
    return sign * min(MAX_SHUTTLE, abs(rate) * 2)


def is_typing_widget(widget) -> bool:
    if isinstance(widget, TEXT_WIDGETS):
        return not getattr(widget, "isReadOnly", lambda: False)()
    return isinstance(widget, QComboBox) and widget.isEditable()


class TypingGuard(QObject):
    """Keeps the plain-key shortcuts from firing while the user types in a field."""

    def install(self) -> "TypingGuard":
        QApplication.instance().installEventFilter(self)
        return self

    def remove(self) -> None:
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self)

    def eventFilter(self, watched, event) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride and is_typing_widget(watched):
            if not event.modifiers() & COMMAND_MODIFIERS:
                event.accept()  # accepted: no shortcut fires and the widget gets the key press
                return True
        return False

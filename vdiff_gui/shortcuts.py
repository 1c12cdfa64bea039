"""Editor keyboard habits: the J/K/L shuttle, and single-key shortcuts that give way to typing.

Space, I, O, J, K, L, the arrows, Home, End, - and = are window shortcuts; while the focus is in a text
field, a spin box or an editable combo box they must type (or move the cursor) instead. TypingGuard is
an event filter on the focused widget, when it is one of those, that accepts the ShortcutOverride of
every key without Ctrl, Alt or Meta, which makes Qt deliver it as an ordinary key press to the widget.
It follows the focus rather than filter the whole application: a filter on the application is a Python
call, and a wait for Python's lock, for every event of every widget.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QAbstractSpinBox, QApplication, QComboBox, QLineEdit, QPlainTextEdit, QTextEdit, QWidget

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

    _guarded: QWidget | None = None  # the focused widget the filter is on
    _following = False  # connected to the application's focus changes

    def install(self) -> "TypingGuard":
        app = QApplication.instance()
        app.focusChanged.connect(self._follow_focus)
        self._following = True
        self._follow_focus(None, app.focusWidget())
        return self

    def remove(self) -> None:
        app = QApplication.instance()
        if app is not None and self._following:
            app.focusChanged.disconnect(self._follow_focus)
        self._following = False
        self._follow_focus(None, None)

    def _follow_focus(self, old, now) -> None:
        if self._guarded is not None:
            try:
                self._guarded.removeEventFilter(self)
            except RuntimeError:  # the widget was deleted meanwhile
                pass
            self._guarded = None
        if isinstance(now, TEXT_WIDGETS + (QComboBox,)):  # read-only or not editable: checked at each key
            now.installEventFilter(self)
            self._guarded = now

    def eventFilter(self, watched, event) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride and is_typing_widget(watched):
            if not event.modifiers() & COMMAND_MODIFIERS:
                event.accept()  # accepted: no shortcut fires and the widget gets the key press
                return True
        return False

"""Small message boxes: export done (with the written file's verification), About, and confirmations.

Confirmations can be answered without a person (tests, scripted screenshots): a window's
`auto_answer` attribute, or the VDIFF_AUTO_ANSWER environment variable ("yes" or "no").
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QMessageBox, QWidget

from pipeline import __version__
from pipeline.words import count


def verification_lines(verification: dict | None) -> list[str]:
    """One line per check of pipeline.video.writer.Verification.to_json(), e.g. '✓ frames: 12'."""
    lines = []
    def say(value) -> str:
        return {True: "yes", False: "no"}.get(value, str(value)) if isinstance(value, bool) else str(value)

    for check in (verification or {}).get("checks", []):
        mark = "✓" if check.get("ok") else "✗"
        line = f"{mark} {check.get('name')}: {say(check.get('actual'))}"
        if not check.get("ok"):
            line += f" (expected {say(check.get('expected'))})"
        lines.append(line)
    return lines


def export_done_box(parent: QWidget, result: dict) -> QMessageBox:
    """A non-modal box: where the file is, its verification, and a button to open its folder."""
    output = Path(result.get("output") or "")
    verification = result.get("verification") or {}
    ok = bool(verification.get("ok"))
    box = QMessageBox(parent)
    box.setObjectName("exportDoneBox")
    box.setWindowTitle("Export finished" if ok else "Export finished with problems")
    box.setIcon(QMessageBox.Icon.Information if ok else QMessageBox.Icon.Warning)
    heading = "Written and verified:" if ok else "Written, but the file does not match what was asked:"
    lines = "<br>".join(html.escape(line) for line in verification_lines(verification))
    box.setText(f"<b>{heading}</b><br>{html.escape(str(output))}<br><br>{lines}")
    rendered, total, seconds = result.get("rendered", 0), result.get("total", 0), result.get("seconds", 0.0)
    box.setInformativeText(f"{count(total, 'frame')} ({rendered} rendered now, {total - rendered} from the cache) "
                           f"in {seconds:.1f} s")
    open_folder = box.addButton("Open Folder", QMessageBox.ButtonRole.ActionRole)
    box.addButton(QMessageBox.StandardButton.Close)
    folder = output if output.is_dir() else output.parent
    open_folder.clicked.connect(lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))))
    box.setModal(False)
    box.open()
    return box


def about_text(info: dict, device: str) -> str:
    packages = info.get("packages", {})
    rows = [("vdiff", info.get("vdiff", __version__)), ("Python", info.get("python", "?"))]
    rows += [(name, version or "not installed") for name, version in packages.items()]
    gpus = [d for d in info.get("devices", []) if d.get("name", "").startswith("cuda")]
    if gpus:
        memory = "; ".join(
            f"{d['name']} {d.get('model', '')}: {d['free_gb']} of {d['memory_gb']} GB free" if "memory_gb" in d
            else f"{d['name']}: {d.get('error', '?')}" for d in gpus
        )
    else:
        memory = "no CUDA GPU (running on the CPU)"
    rows += [("Engine device", device or "not loaded yet"), ("GPU memory", memory)]
    table = "".join(f"<tr><td><b>{html.escape(k)}</b>&nbsp;&nbsp;</td><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return (f"<h3>vdiff {html.escape(__version__)}</h3><p>Restyle videos with style-transfer and diffusion models.</p>"
            f"<table>{table}</table>")


def confirm(parent: QWidget, title: str, text: str, auto_answer: bool | None = None) -> bool:
    """Ask yes/no; answered by `auto_answer` or VDIFF_AUTO_ANSWER when set, without showing anything."""
    if auto_answer is None:
        env = os.environ.get("VDIFF_AUTO_ANSWER", "").strip().lower()
        auto_answer = {"yes": True, "no": False}.get(env)
    if auto_answer is not None:
        return auto_answer
    answer = QMessageBox.question(parent, title, text, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


def ask_save_changes(parent: QWidget, name: str, auto_answer: str | None = None) -> str:
    """"save", "discard" or "cancel" for unsaved work; `auto_answer` (or VDIFF_AUTO_ANSWER: yes is
    discard, no is cancel) answers without showing anything."""
    if auto_answer is None:
        env = os.environ.get("VDIFF_AUTO_ANSWER", "").strip().lower()
        auto_answer = {"yes": "discard", "no": "cancel"}.get(env)
    if auto_answer is not None:
        return auto_answer
    buttons = QMessageBox.StandardButton
    answer = QMessageBox.warning(parent, "Save changes?",
                                 f"{name} has changes that are not saved in a project. Save them before closing?",
                                 buttons.Save | buttons.Discard | buttons.Cancel, buttons.Save)
    return {buttons.Save: "save", buttons.Discard: "discard"}.get(answer, "cancel")

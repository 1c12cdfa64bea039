"""Playback at the source frame rate, before and after in sync, with the clip's audio.

A QElapsedTimer is the clock; once the audio (QMediaPlayer + QAudioOutput) is really playing, its
position becomes the master and the clock is re-anchored to it when they drift apart. Each tick shows
the frame due *now*: a frame that could not be drawn in time is dropped, so the picture never drifts.
Playback loops over the in/out range. Frames not rendered yet show the original with a marker.
`rate` is the shuttle speed (J/K/L): 1.0 plays with sound; other rates, backwards included, are silent.
"""

from __future__ import annotations

import bisect
import logging
import os

from PySide6.QtCore import QCoreApplication, QElapsedTimer, QObject, Qt, QTimer, QUrl, Signal

from vdiff_gui.multimedia_preload import missing_library_hint, missing_system_library, preload_multimedia
from vdiff_gui.project_state import ProjectState

log = logging.getLogger(__name__)

TICK_MS = 5
RESYNC_SECONDS = 0.12  # re-anchor the clock to the audio when they differ by more than this
PRELOAD_DELAY_MS = 1000  # after a clip's opening, whose own work on the GUI thread a preload would lengthen
_audio_unavailable = False  # QtMultimedia failed to load once: do not try again


class PlaybackController(QObject):
    playing_changed = Signal(bool)
    rate_changed = Signal(float)
    sound_unavailable = Signal(str)  # once: why playback has no sound on this machine, for the window to say

    def __init__(self, state: ProjectState, parent: QObject | None = None):
        super().__init__(parent)
        self.state = state
        self.playing = False
        self.rate = 1.0  # frames of clip time per frame of wall time; negative plays backwards
        self.dropped = 0  # frames skipped to keep time (a diagnostic)
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self._tick)
        self._clock = QElapsedTimer()
        self._anchor = 0.0  # clip time (s) at which the clock was (re)started
        self._times: list[float] = []
        self._player = None
        self._audio_output = None
        self._audio_start_ms = 0
        self._audio_live = False
        self._ticking = False
        self._preload_timer = QTimer(self)
        self._preload_timer.setSingleShot(True)
        self._preload_timer.setInterval(PRELOAD_DELAY_MS)
        self._preload_timer.timeout.connect(self._preload_sound)
        state.clip_changed.connect(self._on_clip_changed)
        state.frame_changed.connect(self._on_frame_changed)

    def toggle(self) -> None:
        self.stop() if self.playing else self.play(1.0)  # Space: forwards at normal speed, whatever J/L did

    def play(self, rate: float | None = None) -> None:
        info = self.state.info
        if rate is not None and rate != self.rate:
            self.rate = rate
            self.rate_changed.emit(rate)
        if info is None or self.playing:
            return
        if not self._times:
            self._times = [info.frame_time(i) for i in range(info.frame_count)]
        if self.rate > 0 and self.state.frame >= self.state.out_point:
            self.state.set_frame(self.state.in_point)
        elif self.rate < 0 and self.state.frame <= self.state.in_point:
            self.state.set_frame(self.state.out_point)
        self.playing = True
        self.dropped = 0
        self._restart_clock(self._times[self.state.frame])
        self._start_audio(self._anchor)
        self._timer.start()
        self.playing_changed.emit(True)

    def set_rate(self, rate: float) -> None:
        """Shuttle: play at `rate` (0 stops); a change while playing goes on from the frame shown."""
        if rate == 0:
            self.stop()
            return
        if not self.playing:
            self.play(rate)
            return
        self.rate = rate
        self.rate_changed.emit(rate)
        self._restart_clock(self._times[self.state.frame])
        if rate == 1.0:
            self._start_audio(self._anchor)
        elif self._player is not None:
            self._player.pause()

    def stop(self) -> None:
        if not self.playing:
            return
        self.playing = False
        self._timer.stop()
        if self._player is not None:
            self._player.pause()
        self.playing_changed.emit(False)

    def _restart_clock(self, clip_time: float) -> None:
        self._anchor = clip_time
        self._clock.restart()

    def _now(self) -> float:
        now = self._anchor + self.rate * self._clock.elapsed() / 1000.0
        if self.rate == 1.0 and self._player is not None and self._player.playbackState() == self._player.PlaybackState.PlayingState:
            position = self._player.position()
            self._audio_live = self._audio_live or position != self._audio_start_ms
            if self._audio_live:  # only once the audio really moves: a silent sink must not freeze the picture
                audio = position / 1000.0
                if abs(audio - now) > RESYNC_SECONDS:
                    self._restart_clock(audio)
                    now = audio
        return now

    def _tick(self) -> None:
        now = self._now()
        index = bisect.bisect_right(self._times, now) - 1
        if self.rate < 0:
            self._tick_backwards(now, index)
            return
        if index > self.state.out_point:  # loop over the in/out range
            if self.state.frame == self.state.in_point:
                self._on_frame_changed(self.state.in_point)
            else:
                self.state.set_frame(self.state.in_point)  # _on_frame_changed restarts the clock and audio
            return
        if index > self.state.frame:
            self.dropped += index - self.state.frame - 1
            self._ticking = True
            try:
                self.state.set_frame(index)
            finally:
                self._ticking = False

    def _tick_backwards(self, now: float, index: int) -> None:
        if now < self._times[self.state.in_point]:  # loop back to the out point
            self.state.set_frame(self.state.out_point)
            if self.state.frame == self.state.out_point:
                self._restart_clock(self._times[self.state.out_point])
            return
        if index < self.state.frame:
            self.dropped += self.state.frame - index - 1
            self._ticking = True
            try:
                self.state.set_frame(index)
            finally:
                self._ticking = False

    def _on_frame_changed(self, index: int) -> None:
        if self.playing and not self._ticking:  # the user scrubbed while playing: go on from there
            self._restart_clock(self._times[index])
            self._start_audio(self._anchor)

    # audio
    def _on_clip_changed(self, info) -> None:
        self.stop()
        self._times = []
        if self._player is not None:
            self._player.setSource(QUrl())
        elif self._sound_wanted(info):
            self._preload_timer.start()

    def _preload_sound(self) -> None:
        """Load QtMultimedia off the GUI thread before the first Play needs it (vdiff_gui.multimedia_preload)."""
        if self._player is None and self._sound_wanted(self.state.info):
            preload_multimedia(QCoreApplication.libraryPaths())

    def _sound_wanted(self, info) -> bool:
        return info is not None and info.has_audio and not _audio_unavailable and not os.environ.get("VDIFF_NO_AUDIO")

    def _start_audio(self, seconds: float) -> None:
        info = self.state.info
        if self.rate != 1.0:  # shuttle speeds play silently
            return
        if not self._sound_wanted(info):
            return
        if self._player is None and not self._make_player():
            return
        source = QUrl.fromLocalFile(str(info.path))
        if self._player.source() != source:
            self._player.setSource(source)
        self._audio_start_ms = int(seconds * 1000)
        self._audio_live = False
        self._player.setPosition(self._audio_start_ms)
        self._player.play()

    def _make_player(self) -> bool:
        try:
            from PySide6.QtMultimedia import QAudioOutput, QMediaPlayer
        except ImportError as exc:  # e.g. no PulseAudio library: play the picture without sound
            global _audio_unavailable
            log.warning("no audio playback (%s); playing video only", exc)
            _audio_unavailable = True
            self.sound_unavailable.emit(sound_unavailable_text(str(exc)))
            return False
        self._player = QMediaPlayer(self)
        self._audio_output = QAudioOutput(self)
        self._player.setAudioOutput(self._audio_output)
        self._player.errorOccurred.connect(lambda error, text: log.warning("audio playback: %s", text))
        return True


def sound_unavailable_text(why: str) -> str:
    """What the window says when QtMultimedia cannot load: the missing library and the package that has it."""
    missing = missing_system_library(why)
    cause = why if missing is None else f"this system lacks {missing}, {missing_library_hint(missing)}"
    return f"Playback has no sound: {cause}. Video plays without it; exports keep their audio."

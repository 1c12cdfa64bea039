"""Errors a user can act on. Each carries one clear sentence; the CLI prints it and exits 2."""


class VdiffError(Exception):
    """Base for errors caused by the user's input or environment (exit code 2)."""

    exit_code = 2


class BadInputError(VdiffError):
    """The input video, range, image or option cannot be used."""


class ModelError(VdiffError):
    """A model cannot be found, is incomplete, or is not allowed (pickle without opt-in)."""


class OutputError(VdiffError):
    """The output cannot be written (unwritable folder, full disk) or failed verification."""


class OutOfMemoryError(VdiffError):
    """The device ran out of memory even with the lower-memory settings."""


class CancelledError(Exception):
    """A render was cancelled; the frame cache keeps what was done."""


class VerificationError(OutputError):
    """The written file does not match the source; it was not moved over the target (vdiff's fault: exit 1)."""

    exit_code = 1

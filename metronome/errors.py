"""Error hierarchy shared by every Downbeat package.

Anything the user can fix (a bad file, flag, field or packet) is an :class:`InputError`: the CLI prints its
message on one line and exits with status 2.  The message must name the file/field/value, in the style of
python-soundfile's ``Invalid format: 'x'``, e.g. ``course.yaml: segments[2].grade_pct: 'steep' is not a number``.
"""


class DownbeatError(Exception):
    """Base class of every error Downbeat raises on purpose."""

    exit_code = 1


class InputError(DownbeatError, ValueError):
    """Bad user input: file, field, flag or value. Exit code 2, one-line message."""

    exit_code = 2


class ProfileError(InputError):
    """A course/workout/activity file cannot be used (``path: field: problem``)."""


class CueError(InputError):
    """A cue library, voice pack or cue id is invalid."""


class SensorError(InputError):
    """A sensor source URL or configuration is invalid."""


class AudioDeviceError(DownbeatError):
    """No usable audio device, or the device/server went away mid-session (exit 1)."""

    exit_code = 1

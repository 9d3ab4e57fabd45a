"""Error hierarchy shared by every Downbeat package.

Anything the user can fix (a bad file, flag, field or packet) is an :class:`InputError`: the CLI prints its
message on one line and exits with status 2.  The message must name the file/field/value, in the style of
python-soundfile's ``Invalid format: 'x'``, e.g. ``course.yaml: segments[2].grade_pct: 'steep' is not a number``.
"""


#: Longest message an error carries.  Messages quote the bad value; a value can be megabytes (a garbage CSV header,
#: a binary file read as text), and a 12 MB "one-line" error is no message at all.  Callers quote values through
#: ``safeyaml.short``; this cap is the net under every message.
MAX_MESSAGE_CHARS = 600


def cap_message(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` cut in the middle to at most ``limit`` characters (the file name at the start and the problem at
    the end are what a reader needs)."""
    if len(text) <= limit:
        return text
    keep = (limit - 5) // 2
    return f"{text[:keep]} ... {text[-keep:]}"


class DownbeatError(Exception):
    """Base class of every error Downbeat raises on purpose.  The message is capped (:func:`cap_message`)."""

    exit_code = 1

    def __init__(self, *args):
        if len(args) == 1 and isinstance(args[0], str):
            args = (cap_message(args[0]),)
        super().__init__(*args)


class InputError(DownbeatError, ValueError):
    """Bad user input: file, field, flag or value. Exit code 2, one-line message.

    ``field`` names the settings field the message starts with (``samplerate: ...``), so the CLI can say which of
    its options that is; library code never words its errors as flags.
    """

    exit_code = 2

    def __init__(self, *args, field: str | None = None):
        super().__init__(*args)
        self.field = field


class ProfileError(InputError):
    """A course/workout/activity file cannot be used (``path: field: problem``)."""


class CueError(InputError):
    """A cue library, voice pack or cue id is invalid."""


class SensorError(InputError):
    """A sensor source URL or configuration is invalid."""


class AudioDeviceError(DownbeatError):
    """No usable audio device, or the device/server went away mid-session (exit 1)."""

    exit_code = 1


def require_modules(modules, extra: str, field: str) -> None:
    """An :class:`InputError` naming ``field`` unless every one of ``modules`` imports: they come with Downbeat's
    optional ``extra`` (``pip install 'downbeat[extra]'``), so the user is told that, not shown a traceback."""
    missing = []
    for mod in modules:
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod.replace("_", "-"))  # the distribution's name (python_stretch -> python-stretch)
    if missing:
        raise InputError(f"{field}: {' and '.join(missing)} not installed; install Downbeat with its {extra} extra: "
                         f"pip install 'downbeat[{extra}]'", field=field)

"""Audio output devices: the one place that asks PortAudio what outputs exist."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import AudioDeviceError, InputError


class NoOutputDevice(AudioDeviceError):
    """No audio output at all (as opposed to a bad ``--device`` value)."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(f"{reason}; use 'downbeat render PROFILE -o out.wav' to make a track instead "
                         "('downbeat doctor' says what to install or start)")


@dataclass(frozen=True)
class DeviceInfo:
    """One PortAudio device as Downbeat uses it."""

    index: int
    name: str
    hostapi: str
    inputs: int
    outputs: int
    default_samplerate: float
    default_output: bool
    default_input: bool

    @property
    def label(self) -> str:
        """``name (host API)``: what ``--device`` matches and what stored offsets are keyed by."""
        return f"{self.name} ({self.hostapi})"


def list_devices() -> list[DeviceInfo]:
    """Every PortAudio device, or :class:`NoOutputDevice` when PortAudio itself is missing or broken."""
    try:
        import sounddevice as sd  # raises OSError when libportaudio2 is missing

        devices = sd.query_devices()
        apis = sd.query_hostapis()
        d_in, d_out = sd.default.device
    except Exception as exc:  # PortAudio missing or broken: say what to install
        raise NoOutputDevice(f"PortAudio is not usable ({exc}); install it with 'apt-get install libportaudio2'")
    return [DeviceInfo(i, d["name"], apis[d["hostapi"]]["name"], int(d["max_input_channels"]),
                       int(d["max_output_channels"]), float(d["default_samplerate"]), i == d_out, i == d_in)
            for i, d in enumerate(devices)]


def match_devices(devices, name: str) -> list[int]:
    """Indices of ``devices`` that ``name`` (case-insensitive) picks, best first.

    A host API named by its first word ("JACK", "ALSA") wins over a device whose label merely contains the word:
    with ALSA's jack and pulse plugins installed, ALSA lists PCMs called "jack" and "pulse" that are not the JACK or
    Pulse host APIs themselves (and "jack (ALSA)" listed first would take ``--device JACK``).
    """
    key = name.lower()
    return ([d.index for d in devices if d.hostapi.lower().split(" ")[0] == key]
            or [d.index for d in devices if key in d.label.lower()])


def find_device(name: str | None):
    """Resolve ``--device`` (index or case-insensitive substring) to an output device index."""
    outputs = [d for d in list_devices() if d.outputs > 0]
    if not outputs:
        raise NoOutputDevice("no audio output device found (no sound card, JACK or PulseAudio server)")
    indices = [d.index for d in outputs]
    if name is None:
        default = [d.index for d in outputs if d.default_output]
        return default[0] if default else indices[0]
    if name.isdigit():
        if int(name) in indices:
            return int(name)
        raise InputError(f"--device: {name!r} is not an output device index (outputs: {indices})")
    # "JACK", "pulse" or "USB": match the device name or its host API's name.
    matches = match_devices(outputs, name)
    if not matches:
        names = ", ".join(repr(d.label) for d in outputs)
        raise InputError(f"--device: no output device matches {name!r} (have: {names})")
    return matches[0]

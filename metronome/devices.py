"""Audio output devices: the one place that asks PortAudio what outputs exist."""

from __future__ import annotations



from .errors import AudioDeviceError, InputError


class NoOutputDevice(AudioDeviceError):
    """No audio output at all (as opposed to a bad ``--device`` value)."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(f"{reason}; use 'downbeat render PROFILE -o out.wav' to make a track instead "
                         "('downbeat doctor' says what to install or start)")


def find_device(name: str | None):
    """Resolve ``--device`` (index or case-insensitive substring) to an output device index."""
    try:
        import sounddevice as sd  # raises OSError when libportaudio2 is missing

        devices = sd.query_devices()
    except Exception as exc:  # PortAudio missing or broken: say what to install
        raise NoOutputDevice(f"PortAudio is not usable ({exc}); install it with 'apt-get install libportaudio2'")
    outputs = [i for i, d in enumerate(devices) if d["max_output_channels"] > 0]
    if not outputs:
        raise NoOutputDevice("no audio output device found (no sound card, JACK or PulseAudio server)")
    if name is None:
        default = sd.default.device[1]
        return default if default in outputs else outputs[0]
    if name.isdigit():
        if int(name) in outputs:
            return int(name)
        raise InputError(f"--device: {name!r} is not an output device index (outputs: {outputs})")
    apis = sd.query_hostapis()
    # "JACK", "pulse" or "USB": match the device name or its host API's name.
    label = {i: f"{devices[i]['name']} ({apis[devices[i]['hostapi']]['name']})" for i in outputs}
    matches = [i for i in outputs if name.lower() in label[i].lower()]
    if not matches:
        names = ", ".join(repr(label[i]) for i in outputs)
        raise InputError(f"--device: no output device matches {name!r} (have: {names})")
    return matches[0]

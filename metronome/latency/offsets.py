"""Per-device output offsets: a small JSON file keyed by device name, written atomically.

File: ``$XDG_CONFIG_HOME/downbeat/latency.json`` (``~/.config/downbeat/latency.json`` when XDG_CONFIG_HOME is unset
or not absolute, as the XDG Base Directory Specification 0.8 says)::

    {"version": 1,
     "devices": {"JACK Audio Connection Kit (JACK)": {
         "loopback": {"round_trip_s": 0.002667, "round_trip_frames": 128, "samplerate": 48000,
                      "period_frames": 128, "hostapi": "JACK", "measured_at": "2024-05-01T10:00:00+00:00"},
         "tap": {"offset_s": 0.183, "taps_used": 28, "mad_s": 0.011, "measured_at": "..."}}}}

:func:`output_offset_s` is what the live session uses: the tap offset when there is one (it is measured from the
sound the runner actually hears, Bluetooth included), else half the loopback round trip -- an estimate: a loopback
measures output + input together and cannot say how they split, so it assumes a symmetric path (true of JACK's
default two-period playback/capture buffering, not guaranteed elsewhere).

Writing goes to a temporary file in the same folder, fsync, then ``os.replace``: a crash or a full disk leaves the
old file intact, never a half-written one.  A file that cannot be parsed is never overwritten (the user may want
it); storing into it raises :class:`~metronome.errors.InputError` naming it.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from pathlib import Path

from ..errors import InputError

FILE_NAME = "latency.json"
VERSION = 1
#: Larger files are not ours (a handful of devices is ~1 KB).
MAX_FILE_BYTES = 1 << 20
#: Any offset outside this is a mistake, not a device (Bluetooth A2DP is 100-300 ms; 2 s is generous).
MAX_OFFSET_S = 2.0


def config_dir() -> Path:
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".config"
    return base / "downbeat"


def offsets_path() -> Path:
    return config_dir() / FILE_NAME


def load(path: Path | None = None) -> tuple[dict, tuple[str, ...]]:
    """``(devices, warnings)``: the stored records by device name; an unreadable file gives ``{}`` and a warning."""
    p = Path(path) if path is not None else offsets_path()
    try:
        if p.stat().st_size > MAX_FILE_BYTES:
            return {}, (f"{p}: larger than {MAX_FILE_BYTES} bytes, ignored",)
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, ()
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return {}, (f"{p}: cannot be read ({str(exc).splitlines()[0][:120]}), stored offsets ignored",)
    if not isinstance(data, dict) or not isinstance(data.get("devices"), dict):
        return {}, (f"{p}: field 'devices' is missing or not a mapping, stored offsets ignored",)
    devices = {k: v for k, v in data["devices"].items() if isinstance(k, str) and isinstance(v, dict)}
    return devices, ()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def store(device: str, method: str, record: dict, path: Path | None = None) -> Path:
    """Store ``record`` under ``devices[device][method]`` (method ``loopback`` or ``tap``), atomically.

    Raises InputError if the existing file cannot be parsed (it is left as it is).
    """
    if method not in ("loopback", "tap"):
        raise ValueError(f"method: {method!r} is not 'loopback' or 'tap'")
    if not isinstance(device, str) or not device:
        raise InputError(f"device: {device!r} is not a device name")
    p = Path(path) if path is not None else offsets_path()
    devices, warnings = load(p)
    if warnings:
        raise InputError(f"{warnings[0].split(', stored')[0]}; move it away to store new offsets")
    entry = dict(devices.get(device, {}))
    entry[method] = {**record, "measured_at": _now()}
    devices[device] = entry
    text = json.dumps({"version": VERSION, "devices": devices}, indent=1, sort_keys=True) + "\n"
    p.parent.mkdir(parents=True, exist_ok=True)
    from ..atomic import atomic_file

    with atomic_file(p, prefix=".latency-") as f:
        f.write(text)
    return p


def _finite(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) and abs(v) <= MAX_OFFSET_S else None


def _lookup(devices: dict, device_name: str) -> dict | None:
    if device_name in devices:
        return devices[device_name]
    low = device_name.lower()
    exact = [v for k, v in devices.items() if k.lower() == low]
    if exact:
        return exact[0]
    # "JACK Audio Connection Kit" (PortAudio's name without the host API) finds "... (JACK)".
    prefix = [v for k, v in devices.items() if k.lower().startswith(low + " (")]
    return prefix[0] if len(prefix) == 1 else None


def output_offset_s(device_name: str, path: Path | None = None) -> float | None:
    """Stored output offset of ``device_name`` in seconds (tap, else half the loopback round trip), or None.

    ``device_name`` is the stored key (``"NAME (HOST API)"``, as ``downbeat devices`` and ``downbeat latency``
    print it), matched exactly, then case-insensitively, then as PortAudio's bare device name.
    """
    devices, _ = load(path)
    entry = _lookup(devices, device_name)
    if entry is None:
        return None
    tap = entry.get("tap")
    if isinstance(tap, dict) and _finite(tap.get("offset_s")) is not None:
        return _finite(tap["offset_s"])
    loop = entry.get("loopback")
    if isinstance(loop, dict) and _finite(loop.get("round_trip_s")) is not None:
        return _finite(loop["round_trip_s"]) / 2.0
    return None


def format_offsets(path: Path | None = None) -> list[str]:
    """Lines for ``downbeat devices``: one per device with a stored offset (empty list when there is none), then
    any warning about the file as ``downbeat: warning: ...`` lines are the caller's to print (see :func:`load`)."""
    devices, _ = load(path)
    lines = []
    for name in sorted(devices):
        entry = devices[name]
        parts = []
        loop = entry.get("loopback") if isinstance(entry.get("loopback"), dict) else None
        tap = entry.get("tap") if isinstance(entry.get("tap"), dict) else None
        if loop and _finite(loop.get("round_trip_s")) is not None:
            frames = loop.get("round_trip_frames")
            fr = f" = {frames} frames" if isinstance(frames, int) else ""
            parts.append(f"round trip {loop['round_trip_s'] * 1000:.2f} ms{fr} (loopback)")
        if tap and _finite(tap.get("offset_s")) is not None:
            parts.append(f"tap offset {tap['offset_s'] * 1000:+.1f} ms")
        off = output_offset_s(name, path)
        if off is None:
            continue
        lines.append(f"    {name}: output offset {off * 1000:.1f} ms  [{'; '.join(parts)}]")
    if lines:
        lines.insert(0, f"stored output offsets ({path or offsets_path()}):")
    return lines

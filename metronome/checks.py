"""The shape of a health check (``downbeat doctor`` and the real-time checks of :mod:`metronome.latency`), and
the helpers that word their fixes.  Ground floor: no dependencies."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


STATUSES = ("ok", "info", "warn", "fail")


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report.

    Attributes
    ----------
    name : str
        Short, stable identifier (``portaudio``, ``espeak-ng`` ...); scripts read it from ``--json``.
    status : str
        ``ok``; ``info`` (absent but not needed); ``warn`` (play or speed is affected); ``fail`` (render is).
    detail : str
        What was found, one line.
    fix : str or None
        The exact command to install or start what is missing (``install: ...``, ``start ...: ...``).
    needed_for : str
        ``render`` or ``play``.
    """

    name: str
    status: str
    detail: str
    fix: str | None = None
    needed_for: str = "render"


def sudo() -> str:
    """``sudo `` unless we already are root (a fresh Debian container has no sudo at all)."""
    return "" if hasattr(os, "geteuid") and os.geteuid() == 0 else "sudo "


def apt(*packages: str) -> str:
    return f"install: {sudo()}apt-get install {' '.join(packages)}"


def child_env() -> dict:
    """Environment for probes: never autostart a JACK server; import this very copy of Downbeat."""
    env = dict(os.environ)
    env["JACK_NO_START_SERVER"] = "1"
    root = str(Path(__file__).resolve().parent.parent)  # the folder holding this copy of the metronome package
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env

"""Offline speech engines (espeak-ng, flite, festival): which are installed, which voice to use, raw speech.

Each engine turns a text into a temporary WAV through its own command-line program; :mod:`cues.voice` then trims,
resamples, fades, normalises and caches the result, the same way for every engine.  Nothing here runs in the audio
callback.

Choice of the default engine (``--voice`` not given, :data:`VOICE_ENV` unset): the most natural installed one, in
the order of :data:`ENGINES`:

1. **festival** with the HTS voice ``cmu_us_slt_arctic_hts`` (Debian ``festival festvox-us-slt-hts``): a
   statistical parametric (HMM) voice trained on the CMU ARCTIC "slt" recordings (Kominek & Black 2004; Zen et al.
   2007, "The HMM-based speech synthesis system (HTS) version 2.0"): the smoothest prosody of the three.  Festival
   without an installed voice cannot speak, so it counts as installed only with one.
2. **flite** ``slt`` (Debian ``flite``): CMU's small engine with a voice built from the same speaker, more natural
   than formant synthesis, a little buzzier than HTS.
3. **espeak-ng** ``en-us`` (Debian ``espeak-ng``): formant synthesis, always intelligible, robotic; tiny and the
   fastest (its clips are what the project used before there was a choice).

A voice spec is ``ENGINE[:VOICE]``: ``festival``, ``flite:slt``, ``espeak-ng:en-gb``.  Texts go to the programs
through stdin or a file we write, never argv (a phrasing starting with ``-`` must not become an option); voice
names are checked against :data:`_VOICE_RE` before they reach a command line or festival's Scheme.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from metronome.errors import CueError

#: Engines in order of preference (the default is the first one installed; see the module docstring).
ENGINES = ("festival", "flite", "espeak-ng")
#: Each engine's voice when the spec names none.
DEFAULT_VOICES = {"festival": "cmu_us_slt_arctic_hts", "flite": "slt", "espeak-ng": "en-us"}
#: Debian packages that install each engine with its default voice (what ``doctor`` and the errors suggest).
APT_PACKAGES = {"festival": "festival festvox-us-slt-hts", "flite": "flite", "espeak-ng": "espeak-ng"}
#: Environment variable holding the default voice spec when ``--voice`` is not given (the test suite pins
#: ``espeak-ng`` with it, so its results do not depend on which engines a machine has).
VOICE_ENV = "DOWNBEAT_VOICE"
#: Where Debian's festival looks for voices (``voice-path``: ``/usr/share/festival/voices/<language>/<voice>``).
FESTIVAL_VOICE_DIRS = ("/usr/share/festival/voices",)
#: Normal speaking rate of the engines' voices, words per minute: espeak-ng's default (``-s 175``); festival and
#: flite take a speed factor instead, ``rate_wpm / NATURAL_RATE_WPM``.
NATURAL_RATE_WPM = 175
TTS_TIMEOUT_S = 30.0

_VOICE_RE = re.compile(r"^[A-Za-z0-9_+\-]{1,40}$")
_SCHEME_VOICE_RE = re.compile(r"^[A-Za-z0-9_]{1,60}$")  # festival voices are Scheme symbols: voice_<name>
_PROGRAMS = {"festival": "text2wave", "flite": "flite", "espeak-ng": "espeak-ng"}


class VoiceUnavailableError(CueError):
    """No speech engine can speak (none installed): callers catch this and continue with clicks only."""


@dataclass(frozen=True)
class VoiceSpec:
    """An engine and one of its voices; ``explicit``: the user named the engine (a missing one is then an error)."""

    engine: str
    voice: str
    explicit: bool = True

    def __str__(self) -> str:
        return f"{self.engine}:{self.voice}"


def missing_message(engine: str) -> str:
    return f"{engine} not found: install it with 'apt-get install {APT_PACKAGES[engine]}'"


def none_installed_message() -> str:
    return ("no speech engine found (festival, flite, espeak-ng): install one with 'apt-get install "
            f"{APT_PACKAGES['festival']}' (most natural) or 'apt-get install espeak-ng'")


def festival_voices() -> list[str]:
    """Installed festival voices (folder names under :data:`FESTIVAL_VOICE_DIRS`), sorted."""
    found = set()
    for root in FESTIVAL_VOICE_DIRS:
        for path in glob.glob(os.path.join(root, "*", "*", "festvox")):
            found.add(os.path.basename(os.path.dirname(path)))
    return sorted(found)


def flite_voices(exe: str) -> list[str]:
    """The voices compiled into ``flite`` (``flite -lv``: ``Voices available: kal awb ... slt``)."""
    try:
        proc = subprocess.run([exe, "-lv"], capture_output=True, timeout=TTS_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return []
    text = proc.stdout.decode("utf-8", "replace")
    return text.split(":", 1)[1].split() if ":" in text else []


def installed(engine: str) -> bool:
    """The engine's program is on PATH (festival: and its default voice is installed)."""
    if shutil.which(_PROGRAMS[engine]) is None:
        return False
    return engine != "festival" or DEFAULT_VOICES["festival"] in festival_voices()


def best_installed() -> str | None:
    """The first installed engine of :data:`ENGINES`, or None."""
    return next((e for e in ENGINES if installed(e)), None)


def parse_voice(spec: str | None = None) -> VoiceSpec:
    """``ENGINE[:VOICE]`` -> :class:`VoiceSpec`; None (or ``auto``): :data:`VOICE_ENV`, else the best installed.

    Raises
    ------
    CueError
        Unknown engine or malformed voice name (``--voice: ...``).
    """
    if spec is None or spec == "auto":
        env = os.environ.get(VOICE_ENV)
        if env and env != "auto":
            # A default, not a request: a missing engine then means clicks only, as with no engine at all.
            vs = parse_voice(env)
            return VoiceSpec(vs.engine, vs.voice, explicit=False)
        # None installed: espeak-ng's spec, whose synthesis (if a clip is not cached) says what to install.
        engine = best_installed() or "espeak-ng"
        return VoiceSpec(engine, DEFAULT_VOICES[engine], explicit=False)
    if not isinstance(spec, str):
        raise CueError(f"--voice: {spec!r} is not ENGINE[:VOICE]")
    engine, sep, voice = spec.partition(":")
    if engine == "espeak":
        engine = "espeak-ng"
    if engine not in ENGINES:
        raise CueError(f"--voice: {engine!r} is not a speech engine (one of {', '.join(ENGINES)}; ENGINE[:VOICE])")
    if not sep:
        voice = DEFAULT_VOICES[engine]
    pattern = _SCHEME_VOICE_RE if engine == "festival" else _VOICE_RE
    if not pattern.match(voice):
        raise CueError(f"--voice: {voice!r} is not {'an' if engine[0] in 'ae' else 'a'} {engine} voice name")
    return VoiceSpec(engine, voice)


def check_voice(vs: VoiceSpec) -> None:
    """The engine is installed and knows the voice, else :class:`CueError` naming them (before any synthesis).

    espeak-ng's voices (with variants such as ``en-us+f3``) are checked by espeak-ng itself when it speaks.
    """
    exe = shutil.which(_PROGRAMS[vs.engine])
    if exe is None:
        raise (CueError if vs.explicit else VoiceUnavailableError)(f"--voice: {missing_message(vs.engine)}")
    if vs.engine == "festival":
        have = festival_voices()
        if vs.voice not in have:
            hint = (f"installed: {', '.join(have)}" if have else
                    f"none installed: 'apt-get install {APT_PACKAGES['festival'].split()[1]}'")
            raise CueError(f"--voice: festival has no voice {vs.voice!r} ({hint})")
    elif vs.engine == "flite":
        have = flite_voices(exe)
        if vs.voice not in have:
            raise CueError(f"--voice: flite has no voice {vs.voice!r} (it has: {', '.join(have) or 'none'})")


# ------------------------------------------------------------------------------------------------------------------
# Speaking: text -> (float64 samples, samplerate) of the engine's own output
# ------------------------------------------------------------------------------------------------------------------
def _read_audio(path) -> tuple:
    import soundfile as sf  # only needed when a clip is actually synthesized

    try:
        data, sr = sf.read(str(path), dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise CueError(f"{path}: cannot read audio: {exc}") from None
    return data.mean(axis=1), int(sr)


def _run(engine: str, voice: str, text: str, argv: list, out: str, stdin: bytes | None) -> tuple:
    try:
        proc = subprocess.run(argv, input=stdin, capture_output=True, timeout=TTS_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise CueError(f"{engine} timed out after {TTS_TIMEOUT_S:.0f} s speaking {text!r}") from None
    except OSError as exc:
        raise VoiceUnavailableError(f"{missing_message(engine)} ({exc})") from None
    err = proc.stderr.decode("utf-8", "replace").strip()
    # festival reports Scheme errors on stderr and still exits 0 (with its default voice's speech): an error.
    if proc.returncode != 0 or not os.path.exists(out) or "SIOD ERROR" in err:
        msg = (err.splitlines() or ["no message"])[0]
        raise CueError(f"{engine} failed (voice {voice!r}) for {text!r}: {msg}")
    return _read_audio(out)


def espeak_wav(text: str, voice: str, rate_wpm: int) -> tuple:
    """Speak ``text`` with espeak-ng (``-s`` words per minute) into a temporary WAV; return (samples, samplerate)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise VoiceUnavailableError(missing_message("espeak-ng"))
    with tempfile.TemporaryDirectory(prefix="downbeat-tts-") as tmpdir:
        out = os.path.join(tmpdir, "out.wav")
        return _run("espeak-ng", voice, text, [exe, "-w", out, "-v", voice, "-s", str(int(rate_wpm)), "--stdin"],
                    out, text.encode("utf-8"))


def flite_wav(text: str, voice: str, rate_wpm: int) -> tuple:
    """Speak ``text`` with flite; the rate is flite's ``duration_stretch`` (``NATURAL_RATE_WPM / rate_wpm``).

    flite silently falls back to its default voice for an unknown name, so the name is checked first.
    """
    exe = shutil.which("flite")
    if exe is None:
        raise VoiceUnavailableError(missing_message("flite"))
    check_voice(VoiceSpec("flite", voice))
    with tempfile.TemporaryDirectory(prefix="downbeat-tts-") as tmpdir:
        out, txt = os.path.join(tmpdir, "out.wav"), os.path.join(tmpdir, "text.txt")
        with open(txt, "w", encoding="utf-8") as f:
            f.write(text)
        stretch = NATURAL_RATE_WPM / float(rate_wpm)
        return _run("flite", voice, text, [exe, "-voice", voice, "--setf", f"duration_stretch={stretch:.4f}",
                                           "-f", txt, "-o", out], out, None)


def festival_wav(text: str, voice: str, rate_wpm: int) -> tuple:
    """Speak ``text`` with festival's ``text2wave`` (text on stdin) in ``voice``.

    The rate is a speed factor ``rate_wpm / NATURAL_RATE_WPM``: hts_engine's ``-r`` option for HTS voices (which
    ignore ``Duration_Stretch``), ``Duration_Stretch`` (its inverse) for the others.
    """
    exe = shutil.which("text2wave")
    if exe is None:
        raise VoiceUnavailableError(missing_message("festival"))
    if not _SCHEME_VOICE_RE.match(voice):
        raise CueError(f"--voice: {voice!r} is not a festival voice name")
    speed = float(rate_wpm) / NATURAL_RATE_WPM
    setup = (f"(begin (voice_{voice}) (Parameter.set 'Duration_Stretch {1.0 / speed:.4f}) "
             f"(if (boundp 'hts_engine_params) (set! hts_engine_params (append hts_engine_params "
             f"(list (list \"-r\" {speed:.4f}))))))")
    with tempfile.TemporaryDirectory(prefix="downbeat-tts-") as tmpdir:
        out = os.path.join(tmpdir, "out.wav")
        return _run("festival", voice, text, [exe, "-eval", setup, "-o", out], out, text.encode("utf-8"))

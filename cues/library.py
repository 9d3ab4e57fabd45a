"""Cue library (``library.yaml``) and user voice packs.

The library is plain data: frozen dataclasses loaded with ``yaml.safe_load`` and validated field by field, so a
typo in a user's library gives one line such as ``my.yaml: cues[3].trigger: 'foo' is not one of (...)`` and
never a traceback.

A voice pack is a folder of WAV recordings that replaces the synthesized voice for any cue:

* ``<cue_id>.wav`` — one recording used for every phrasing of that cue;
* ``<cue_id>-<n>.wav`` — the recording of phrasing ``n`` (1-based, as ``downbeat cues list`` numbers them); if a
  cue has fewer recordings than phrasings, the recordings are rotated;
* optionally ``manifest.yaml``: ``cues: {cue_id: file.wav | [file1.wav, file2.wav, ...]}``.  When present it is
  the whole truth: the folder is not scanned.

Every path must stay inside the pack folder: absolute paths, ``..`` components and symlinks that resolve outside
are rejected (a pack is something users download and share).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath


from metronome import safeyaml
from metronome.safeyaml import short
from metronome.errors import CueError

#: Everything that can make the planner consider a cue.
TRIGGERS = (
    "descent_start",
    "steep_descent",
    "long_descent",
    "technical",
    "descent_end",
    "cadence_low",
    "cadence_high",
    "announce_descent",
    "announce_decline",
    "announce_incline",
    "announce_flat",
    "off_course",
    "on_course",
    "distance_anchor",
    "descent_anchor",
)

#: The placeholder of the treadmill announcements: the grade of the terrain event, unsigned (``"6"``, ``"2.5"``)
#: ("Decline {grade} percent in 10 seconds."); each distinct value is its own clip (synthesized per filled-in
#: text, cached by text).
PLACEHOLDER = "grade"
#: The placeholder of the distance anchors (:mod:`cues.anchors`): a distance, filled with whole metres
#: (``"5000"``) and spoken in words (``"5 kilometres"``, ``"300 metres"``, :func:`distance_words`).
DISTANCE_PLACEHOLDER = "distance"
PLACEHOLDERS = (PLACEHOLDER, DISTANCE_PLACEHOLDER)

#: Bundled library, shipped as package data (see pyproject ``[tool.setuptools.package-data]``).
DEFAULT_LIBRARY_PATH = Path(__file__).with_name("library.yaml")

# Underscores only (no dashes) so that ``<id>-<n>.wav`` in a voice pack is never ambiguous.
_ID_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_PACK_FILE_RE = re.compile(r"^(?P<id>[a-z][a-z0-9_]{0,39})(?:-(?P<n>[1-9][0-9]{0,2}))?\.wav$")
#: A generous character bound; the real limit (<= 2.5 s spoken) is checked when the voice is synthesized.
MAX_PHRASING_CHARS = 60
_CUE_KEYS = {"id", "trigger", "priority", "safety", "cooldown_s", "grade_max_pct", "phrasings", "core"}


def format_grade(grade_pct: float) -> str:
    """``{grade}`` as spoken: unsigned, one decimal at most, no trailing ``.0`` (-6.0 -> ``"6"``, -2.5 -> ``"2.5"``).

    Treadmills step the incline by 0.5 % (or 1 %), so one decimal says every value a runner can set.
    """
    g = round(abs(float(grade_pct)), 1)
    return f"{g:.0f}" if g == int(g) else f"{g:.1f}"


def distance_words(distance_m) -> str:
    """A distance as spoken: ``"5 kilometres"``, ``"1 kilometre"``, ``"2.5 kilometres"``, ``"300 metres"``.

    From 1 km on, kilometres with one decimal at most (no trailing ``.0``); below, whole metres.
    """
    try:
        d = float(distance_m)
    except (TypeError, ValueError):
        raise CueError(f"{{{DISTANCE_PLACEHOLDER}}}: {short(distance_m)} is not a distance in metres") from None
    if not (math.isfinite(d) and d >= 0):
        raise CueError(f"{{{DISTANCE_PLACEHOLDER}}}: {short(distance_m)} is not a distance in metres")
    if d >= 1000.0:
        km = round(d / 1000.0, 1)
        if km == int(km):
            return f"{int(km)} kilometre" + ("" if int(km) == 1 else "s")
        return f"{km:.1f} kilometres"
    return f"{int(round(d))} metres"


def _placeholders(text: str) -> list:
    """Field names of ``str.format`` placeholders in ``text``; ValueError if the braces are malformed."""
    import string

    return [field for _, field, _, _ in string.Formatter().parse(text) if field is not None]


@dataclass(frozen=True)
class CueEntry:
    """One cue of the library.

    Attributes
    ----------
    id : str
    phrasings : tuple of str
        Rotated through on successive uses.
    trigger : str
        One of :data:`TRIGGERS`.
    priority : int
        0..100, higher wins when cues compete for the same moment.
    cooldown_s : float
        Minimum time between two plays of this cue.
    safety : bool
        Exempt from the spacing between voice cues (still never overlaps another cue).
    grade_max_pct : float or None
        Only used for terrain events whose mean grade is at or below this (e.g. ``-10`` for a steep-only cue).
    core : bool
        One of the core technique cues: every descent of ``PlannerRules.core_min_descent_s`` or more gets one of
        them near its start, rotating (see :mod:`cues.planner`).
    """

    id: str
    phrasings: tuple
    trigger: str
    priority: int
    cooldown_s: float
    safety: bool = False
    grade_max_pct: float | None = None
    core: bool = False

    def is_template(self, phrasing_index: int) -> bool:
        """Whether phrasing ``phrasing_index`` has a ``{grade}`` or ``{distance}`` to fill in."""
        return "{" in self.phrasings[phrasing_index]

    def text(self, phrasing_index: int, fill: str = "") -> str:
        """Phrasing ``phrasing_index`` with its placeholder filled: ``{grade}`` by ``fill`` as it is (see
        :func:`format_grade`), ``{distance}`` by ``fill`` (whole metres, ``"5000"``) in words (``"5 kilometres"``)."""
        p = self.phrasings[phrasing_index]
        if not self.is_template(phrasing_index):
            return p
        values = {PLACEHOLDER: fill}
        if DISTANCE_PLACEHOLDER in _placeholders(p):
            values[DISTANCE_PLACEHOLDER] = distance_words(fill)
        return p.format(**values)


@dataclass(frozen=True)
class CueLibrary:
    """An ordered, validated collection of :class:`CueEntry`.

    Attributes
    ----------
    cues : tuple of CueEntry
        In file order (the order ``cues list`` shows and the planner uses to break ties).
    source : str
        Where it was loaded from, for messages.
    """

    cues: tuple
    source: str = "library.yaml"

    def __iter__(self):
        return iter(self.cues)

    def __len__(self):
        return len(self.cues)

    @property
    def ids(self) -> tuple:
        return tuple(c.id for c in self.cues)

    def get(self, cue_id: str) -> CueEntry:
        """The cue with this id; :class:`CueError` naming the known ids if there is none."""
        for c in self.cues:
            if c.id == cue_id:
                return c
        raise CueError(f"cue id {short(cue_id)} is not in {self.source} (known: {', '.join(self.ids)})")

    def by_trigger(self, trigger: str) -> tuple:
        """Cues for ``trigger`` in file order."""
        return tuple(c for c in self.cues if c.trigger == trigger)


# ------------------------------------------------------------------------------------------------------------------
# Library loading
# ------------------------------------------------------------------------------------------------------------------
def _is_number(x) -> bool:
    # bool is an int subclass; ``priority: yes`` must not pass as 1.
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _known_placeholders() -> str:
    return ", ".join("{" + p + "}" for p in PLACEHOLDERS)


def _validate_cue(raw, where: str) -> CueEntry:
    if not isinstance(raw, dict):
        raise CueError(f"{where}: expected a mapping with id, trigger, priority, cooldown_s, phrasings")
    unknown = sorted(set(map(str, raw)) - _CUE_KEYS)
    if unknown:
        raise CueError(f"{where}: unknown key {short(unknown[0])} (allowed: {', '.join(sorted(_CUE_KEYS))})")
    for key in ("id", "trigger", "priority", "cooldown_s", "phrasings"):
        if key not in raw:
            raise CueError(f"{where}: missing required key {short(key)}")
    cid = raw["id"]
    if not isinstance(cid, str) or not _ID_RE.match(cid):
        raise CueError(f"{where}.id: {short(cid)} is not a lowercase identifier ([a-z][a-z0-9_]*, at most 40 chars)")
    trig = raw["trigger"]
    if trig not in TRIGGERS:
        raise CueError(f"{where}.trigger: {short(trig)} is not one of {', '.join(TRIGGERS)}")
    prio = raw["priority"]
    if not (isinstance(prio, int) and not isinstance(prio, bool)) or not 0 <= prio <= 100:
        raise CueError(f"{where}.priority: {short(prio)} is not an integer in 0..100")
    cool = raw["cooldown_s"]
    if not _is_number(cool) or not 0 <= cool <= 3600:
        raise CueError(f"{where}.cooldown_s: {short(cool)} is not a number of seconds in 0..3600")
    safety = raw.get("safety", False)
    if not isinstance(safety, bool):
        raise CueError(f"{where}.safety: {short(safety)} is not true or false")
    core = raw.get("core", False)
    if not isinstance(core, bool):
        raise CueError(f"{where}.core: {short(core)} is not true or false")
    gmax = raw.get("grade_max_pct")
    if gmax is not None and (not _is_number(gmax) or not -60 <= gmax <= 0):
        raise CueError(f"{where}.grade_max_pct: {short(gmax)} is not a grade in -60..0 %")
    phr = raw["phrasings"]
    if not isinstance(phr, list) or not phr:
        raise CueError(f"{where}.phrasings: expected a non-empty list of strings")
    for j, p in enumerate(phr):
        if not isinstance(p, str) or not p.strip():
            raise CueError(f"{where}.phrasings[{j}]: {short(p)} is not a non-empty string")
        if len(p) > MAX_PHRASING_CHARS:
            raise CueError(f"{where}.phrasings[{j}]: {len(p)} characters; keep phrasings under "
                           f"{MAX_PHRASING_CHARS} so they can be spoken in 2.5 s")
        if any(ord(ch) < 32 for ch in p):
            raise CueError(f"{where}.phrasings[{j}]: contains a control character")
        try:
            fields = _placeholders(p)
        except ValueError:
            raise CueError(f"{where}.phrasings[{j}]: unbalanced '{{' or '}}' (placeholders: "
                           f"{_known_placeholders()})") from None
        bad = [f for f in fields if f not in PLACEHOLDERS]
        if bad:
            raise CueError(f"{where}.phrasings[{j}]: unknown placeholder {short('{' + bad[0] + '}')} (known: "
                           f"{_known_placeholders()})")
        if len(set(fields)) > 1:
            raise CueError(f"{where}.phrasings[{j}]: one kind of placeholder per phrasing (it has "
                           f"{', '.join('{' + f + '}' for f in sorted(set(fields)))})")
    return CueEntry(id=cid, phrasings=tuple(p.strip() for p in phr), trigger=trig, priority=int(prio),
                    cooldown_s=float(cool), safety=safety,
                    grade_max_pct=None if gmax is None else float(gmax), core=core)


def parse_library(data, source: str) -> CueLibrary:
    """Validate already-parsed YAML data (a mapping with a ``cues`` list) into a :class:`CueLibrary`."""
    if not isinstance(data, dict):
        raise CueError(f"{source}: expected a mapping with a 'cues' list at the top level")
    unknown = sorted(set(map(str, data)) - {"version", "cues"})
    if unknown:
        raise CueError(f"{source}: unknown top-level key {short(unknown[0])} (allowed: cues, version)")
    if data.get("version", 1) != 1:
        raise CueError(f"{source}: version: {short(data.get('version'))} is not supported (expected 1)")
    raw_cues = data.get("cues")
    if not isinstance(raw_cues, list) or not raw_cues:
        raise CueError(f"{source}: cues: expected a non-empty list")
    seen = {}
    out = []
    for i, raw in enumerate(raw_cues):
        entry = _validate_cue(raw, f"{source}: cues[{i}]")
        if entry.id in seen:
            raise CueError(f"{source}: cues[{i}].id: {short(entry.id)} duplicates cues[{seen[entry.id]}]")
        seen[entry.id] = i
        out.append(entry)
    return CueLibrary(cues=tuple(out), source=source)


def load_library(path=None) -> CueLibrary:
    """Load and validate a cue library.

    Parameters
    ----------
    path : str or Path, optional
        A library YAML file; default: the bundled ``cues/library.yaml``.

    Raises
    ------
    CueError
        One line naming the file and the field, e.g. ``library.yaml: cues[3].trigger: 'foo' is not one of ...``.
    """
    p = DEFAULT_LIBRARY_PATH if path is None else Path(path)
    source = "library.yaml" if path is None else str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CueError(f"{source}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CueError(f"{source}: cannot read: {exc}") from None
    data = safeyaml.load(text, source, CueError)
    return parse_library(data, source)


# ------------------------------------------------------------------------------------------------------------------
# Voice packs
# ------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VoicePack:
    """Validated voice pack: recordings per cue id.

    Attributes
    ----------
    root : Path
        The pack folder (resolved).
    files : tuple of (cue_id, tuple of Path)
        Recordings per overridden cue, in phrasing order (resolved paths, all inside ``root``).
    """

    root: Path
    files: tuple

    def recordings(self, cue_id: str) -> tuple:
        """Recordings for ``cue_id`` (empty tuple: not overridden)."""
        for cid, paths in self.files:
            if cid == cue_id:
                return paths
        return ()

    def recording(self, cue_id: str, phrasing_index: int):
        """The recording that replaces phrasing ``phrasing_index`` (0-based) of ``cue_id``, or None."""
        paths = self.recordings(cue_id)
        return paths[phrasing_index % len(paths)] if paths else None


def _inside(root: Path, rel: str, where: str) -> Path:
    """Resolve ``rel`` against ``root`` and refuse anything that escapes it."""
    if not isinstance(rel, str) or not rel:
        raise CueError(f"{where}: {short(rel)} is not a file name")
    if "\x00" in rel:
        raise CueError(f"{where}: {short(rel)} contains a NUL byte")
    # Check both path flavours: a pack made on Windows may say C:\... or ..\x.wav.
    for flavour in (PurePosixPath, PureWindowsPath):
        pp = flavour(rel)
        if pp.is_absolute() or pp.anchor or pp.drive:
            raise CueError(f"{where}: {short(rel)} is an absolute path; paths must be relative to the pack folder")
        if ".." in pp.parts:
            raise CueError(f"{where}: {short(rel)} contains '..'; paths must stay inside the pack folder")
    target = (root / rel).resolve()
    if target != root and root not in target.parents:
        raise CueError(f"{where}: {short(rel)} points outside the pack folder (symlink?)")
    if not target.is_file():
        raise CueError(f"{where}: {short(rel)} is not a file in the pack folder")
    if target.suffix.lower() != ".wav":
        raise CueError(f"{where}: {short(rel)} is not a .wav file")
    return target


def load_voice_pack(pack_dir, library: CueLibrary) -> VoicePack:
    """Validate a voice pack folder against ``library``.

    Raises
    ------
    CueError
        Unknown cue ids, duplicate or missing numbered recordings, and any path that escapes the folder.
    """
    given = Path(pack_dir)
    if not given.is_dir():
        raise CueError(f"{pack_dir}: voice pack is not a folder")
    root = given.resolve()
    known = set(library.ids)
    manifest = given / "manifest.yaml"
    per_cue: dict[str, dict[int, Path]] = {}
    if manifest.exists():
        where = str(manifest)
        # The manifest itself must not be a symlink to somewhere else either.
        mres = manifest.resolve()
        if root not in mres.parents:
            raise CueError(f"{where}: points outside the pack folder (symlink?)")
        try:
            raw = manifest.read_bytes()
        except OSError as exc:
            raise CueError(f"{where}: cannot read: {exc}") from None
        data = safeyaml.load(raw, where, CueError)
        if not isinstance(data, dict) or not isinstance(data.get("cues"), dict):
            raise CueError(f"{where}: expected a mapping 'cues: {{cue_id: file.wav or [files]}}'")
        for cid, spec in data["cues"].items():
            if cid not in known:
                raise CueError(f"{where}: cues.{cid}: {short(cid)} is not a cue id of {library.source}")
            names = [spec] if isinstance(spec, str) else spec
            if not isinstance(names, list) or not names:
                raise CueError(f"{where}: cues.{cid}: expected a file name or a non-empty list of file names")
            per_cue[cid] = {n: _inside(root, name, f"{where}: cues.{cid}[{n}]") for n, name in enumerate(names)}
    else:
        whole: dict[str, Path] = {}
        numbered: dict[str, dict[int, Path]] = {}
        for entry in sorted(given.iterdir()):
            if entry.suffix.lower() != ".wav":
                continue  # README, cover art... are not our business
            where = f"{given / entry.name}"
            m = _PACK_FILE_RE.match(entry.name)
            if not m:
                raise CueError(f"{where}: file name must be <cue_id>.wav or <cue_id>-<n>.wav (lowercase)")
            cid = m.group("id")
            if cid not in known:
                raise CueError(f"{where}: {short(cid)} is not a cue id of {library.source}")
            path = _inside(root, entry.name, where)
            if m.group("n") is None:
                whole[cid] = path
            else:
                numbered.setdefault(cid, {})[int(m.group("n")) - 1] = path
        for cid in sorted(set(whole) & set(numbered)):
            raise CueError(f"{given}: both {cid}.wav and {cid}-<n>.wav exist; keep one form")
        for cid, by_n in numbered.items():
            for n in range(max(by_n) + 1):
                if n not in by_n:
                    raise CueError(f"{given}: {cid}-{n + 1}.wav is missing (numbered recordings must be "
                                   f"1, 2, 3, ... without gaps)")
            per_cue[cid] = by_n
        for cid, path in whole.items():
            per_cue[cid] = {0: path}
    files = tuple((cid, tuple(per_cue[cid][n] for n in sorted(per_cue[cid])))
                  for cid in library.ids if cid in per_cue)
    return VoicePack(root=root, files=files)

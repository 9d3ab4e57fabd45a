"""Recorded runs for the follow-mode checks (issue 14): the real files, and the kinds the data lacks built from
real tracks (test support, not a test module).

* road run: ``activity-small-fenix2-run.fit`` as recorded (Garmin Fenix 2, 9.0 km, 47 min).
* run with a long pause: the same run with a 10-minute stop half-way (the watch's auto-pause: no points for 600 s,
  then the run continues from where it stopped).
* walk-and-run trail runs: the real Mojstrovka track (``Mojstrovka.gpx``, a mountain path with no times), up and
  run back down in reverse, timed by a walk/run model: walk on climbs over 8 % (1.1 m/s), run elsewhere (2.6 m/s
  on the flat, 3.0 m/s down, 2.0 m/s down steeper than -15 %), a 60 s walk break after every 6 minutes of
  running, and a deterministic +-10 % wobble in pace.
* a hike with its own times: ``cerknicko-jezero.gpx`` (no descent of 150 m: it checks that nothing is claimed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from profiles.loader import read_track
from profiles.track import haversine_m

from .track_files import DATA, T0_UNIX_S, write_gpx

PAUSE_S = 600.0


def _finite(raw):
    ok = np.isfinite(raw.lat_deg) & np.isfinite(raw.lon_deg) & np.isfinite(raw.elevation_m)
    return raw.lat_deg[ok], raw.lon_deg[ok], raw.elevation_m[ok], np.asarray(raw.time_s)[ok]


def with_pause(src: Path, out: Path, pause_s: float = PAUSE_S, at: float = 0.5) -> Path:
    """``src`` with a stop of ``pause_s`` inserted at fraction ``at`` of its duration (no points during it)."""
    lat, lon, ele, t = _finite(read_track(src))
    t = t - t[0] + T0_UNIX_S
    k = int(np.searchsorted(t, t[0] + at * (t[-1] - t[0])))
    t = t.copy()
    t[k:] += pause_s
    return write_gpx(out, lat, lon, ele, t)


def walk_run_times(lat, lon, ele, seed: int = 14) -> np.ndarray:
    """Timestamps for a track run by the walk/run model in the module docstring (deterministic)."""
    step = np.concatenate([[0.0], haversine_m(lat, lon)])
    d = np.cumsum(step)
    # Grade over +-25 m (GPS elevation is noisy point to point).
    lo = np.searchsorted(d, d - 25.0)
    hi = np.minimum(np.searchsorted(d, d + 25.0, side="right") - 1, d.size - 1)
    span = np.maximum(d[hi] - d[lo], 1.0)
    grade = 100.0 * (ele[hi] - ele[lo]) / span
    v = np.where(grade > 8.0, 1.1, np.where(grade < -15.0, 2.0, np.where(grade < -3.0, 3.0, 2.6)))
    rng = np.random.default_rng(seed)
    v = v * (1.0 + 0.1 * rng.uniform(-1.0, 1.0, v.size))
    t = np.zeros(d.size)
    running = 0.0
    walk_left = 0.0
    for i in range(1, d.size):
        vi = v[i]
        if walk_left > 0:
            vi = min(vi, 1.3)
        dt = step[i] / vi
        t[i] = t[i - 1] + dt
        if walk_left > 0:
            walk_left -= dt
        elif vi > 1.5:
            running += dt
            if running >= 360.0:
                running, walk_left = 0.0, 60.0
    return T0_UNIX_S + t


def mojstrovka(out: Path, reverse: bool = False) -> Path:
    lat, lon, ele, _ = _finite(read_track(DATA / "Mojstrovka.gpx"))
    if reverse:
        lat, lon, ele = lat[::-1], lon[::-1], ele[::-1]
    t = walk_run_times(lat, lon, ele)
    # The file's points are 15 m apart (a drawn route); a GPS receiver reports once a second: resample the timed
    # track at 1 s (linear between the real points).
    ts = np.arange(t[0], t[-1], 1.0)
    return write_gpx(out, np.interp(ts, t, lat), np.interp(ts, t, lon), np.interp(ts, t, ele), ts)


def build_runs(folder: Path) -> dict:
    """``{name: path}`` of every run (files built into ``folder``)."""
    folder = Path(folder)
    return {
        "road run, Fenix 2 (9.0 km)": DATA / "activity-small-fenix2-run.fit",
        "same run, 10-min pause": with_pause(DATA / "activity-small-fenix2-run.fit", folder / "pause-run.gpx"),
        "walk-and-run up, Mojstrovka": mojstrovka(folder / "mojstrovka-up.gpx"),
        "walk-and-run down, Mojstrovka": mojstrovka(folder / "mojstrovka-down.gpx", reverse=True),
        "hike, Cerknicko jezero": DATA / "cerknicko-jezero.gpx",
    }


def arrival_times(run: Path, distances_m) -> np.ndarray:
    """When the runner reached each course distance, by the run's own timestamps (s from its first point).

    The course is the run's own track, so a course distance is the track's own cumulative distance
    (:func:`profiles.track.track_distance_m`, the profile's distance axis).
    """
    from profiles.track import track_distance_m

    raw = read_track(run)
    d = track_distance_m(raw)
    t = np.asarray(raw.time_s, float)
    ok = np.isfinite(t)
    d, t = d[ok], t[ok] - t[ok][0]
    idx = np.searchsorted(d, np.asarray(distances_m, float), side="left")
    return t[np.minimum(idx, t.size - 1)]


MIN_DESCENT_M = 150.0
WINDOW_BEFORE_S, WINDOW_AFTER_S = 20.0, 10.0  # issue 14: coaching within 20 s before to 10 s after arrival


def follow_render(course: Path, run: Path, out: Path, *, events=None, blocksize: int = 65536):
    """``render COURSE --follow replay:RUN`` as a library call: ``(RenderResult, FollowSchedule, FollowPlan)``."""
    from metronome.follow_session import plan_follow, render_follow
    from metronome.mix import EngineSettings
    from metronome.sensors.track_replay import load_track_fixes
    from metronome.session import load_profile, tempo_settings_for

    prof = load_profile(str(course), runner=None)
    plan = plan_follow(prof, tempo_settings_for(prof), EngineSettings())
    res, sched = render_follow(plan, load_track_fixes(run), str(out), events_path=events, blocksize=blocksize,
                               keep_events=True)
    return res, sched, plan


def descents_of(plan, min_m: float = MIN_DESCENT_M) -> list:
    return [d for d in plan.course.descents if d.length_m >= min_m]


def window_report(cue_times_s, arrivals_s) -> list:
    """Per descent: the offset (s, cue minus arrival) of the cue nearest the window, and whether one is in it."""
    cues = np.asarray(sorted(cue_times_s), float)
    out = []
    for a in np.asarray(arrivals_s, float):
        if cues.size == 0:
            out.append((None, False))
            continue
        off = cues - a
        inside = (off >= -WINDOW_BEFORE_S) & (off <= WINDOW_AFTER_S)
        if inside.any():
            out.append((float(off[inside][0]), True))
        else:
            out.append((float(off[np.argmin(np.abs(off))]), False))
    return out


def time_plan_cue_times(course: Path, *, recorded: bool = True) -> list:
    """Start times of the cues a plain (time-based) render of ``course`` plays: the plan's cue samples (the render
    plays each planned cue on its planned beat).  ``recorded=False``: timed by the pace model, as a course file
    without times would be."""
    from metronome.mix import EngineSettings
    from metronome.session import load_profile, plan_session, tempo_settings_for

    kw = {} if recorded else {"use_recorded_time": False}
    prof = load_profile(str(course), runner=None, **kw)
    plan = plan_session(prof, tempo_settings_for(prof), EngineSettings())
    return [c.start_sample / plan.engine_settings.samplerate for c in plan.planned_cues]

"""profiles: shapes of real files found by outside testing (issue 11 "Real files", issue 12 items 3 and 7).

The originals (a phone GPX, a 14,263-point logger file, a triathlon FIT, a car log...) cannot be shipped; each is
rebuilt here as a small fixture from tests/data or generated, with the one property that broke the loader.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import fitdecode
import numpy as np
import pytest
from click.testing import CliRunner

from metronome.errors import ProfileError
from profiles import load_profile
from profiles import track as T
from metronome.cli.profile import profile as profile_cli
from profiles.fit import read_fit
from profiles.pace import elapsed_time_s

from tests.support.fit_writer import write_fit
from tests.support.track_files import DATA, T0_UNIX_S, edit_track_eles, iso, line_track, write_gpx

CERKNICA = DATA / "cerknicko-jezero.gpx"


# --------------------------------------------------------------------------------------------------------------
# 1. FIT with a missing or wrong final CRC: every record kept, with a warning
# --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["activity-small-fenix2-run.fit", "garmin-fenix-5-run.fit"])
def test_fit_without_final_crc_keeps_every_record(tmp_path, name):
    data = (DATA / name).read_bytes()
    whole = load_profile(DATA / name)
    assert not any("CRC" in w for w in whole.warnings)
    cut = tmp_path / f"nocrc-{name}"
    cut.write_bytes(data[:-2])
    p = load_profile(cut)
    assert p.total_distance_m == whole.total_distance_m and p.duration_s == whole.duration_s
    assert [w for w in p.warnings if "CRC" in w] == [f"{cut}: the file's final CRC is missing (the file ends "
                                                     f"after its data): records kept as read"]
    flipped = tmp_path / f"badcrc-{name}"
    flipped.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    p = load_profile(flipped)
    assert p.total_distance_m == whole.total_distance_m
    assert any(w.startswith(f"{flipped}: the file's CRC does not match its data") for w in p.warnings)


def test_fit_without_usable_records_is_still_refused(tmp_path):
    data = (DATA / "garmin-fenix-5-run.fit").read_bytes()
    f = tmp_path / "cut.fit"
    f.write_bytes(data[:len(data) // 2])   # the body itself is cut: a half-decoded activity is refused
    with pytest.raises(ProfileError, match=r"truncated or corrupt FIT file \(file truncated"):
        load_profile(f)


@pytest.mark.parametrize("name", ["activity-small-fenix2-run.fit", "garmin-fenix-5-run.fit", "sample-activity.fit"])
def test_fit_reader_agrees_with_fitdecode(name):
    """Our decoder against the reference decoder, record by record."""
    rows = []
    with fitdecode.FitReader(str(DATA / name)) as reader:
        for frame in reader:
            if isinstance(frame, fitdecode.FitDataMessage) and frame.name == "record":
                def get(k):
                    v = frame.get_value(k, fallback=None) if frame.has_field(k) else None
                    return np.nan if v is None else v
                alt = get("enhanced_altitude")
                alt = get("altitude") if not np.isfinite(alt) else alt
                ts = get("timestamp")
                rows.append((get("position_lat"), get("position_long"), alt, ts.timestamp(), get("distance")))
    ref = np.array(rows, dtype=np.float64)
    raw = read_fit((DATA / name).read_bytes(), name)
    ours = np.column_stack([raw.lat_deg / (180.0 / 2 ** 31) if raw.lat_deg is not None else np.full(len(ref), np.nan),
                            raw.lon_deg / (180.0 / 2 ** 31) if raw.lon_deg is not None else np.full(len(ref), np.nan),
                            raw.elevation_m, raw.time_s, raw.distance_m])
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6, equal_nan=True)


# --------------------------------------------------------------------------------------------------------------
# 2. Phone GPX: <ele>0.0</ele> placeholders before the GPS fix
# --------------------------------------------------------------------------------------------------------------
def test_zero_placeholders_before_the_fix_are_dropped(tmp_path):
    f = tmp_path / "phone.gpx"
    f.write_text(edit_track_eles(CERKNICA.read_text(encoding="utf-8"), lambda e: ["0.0"] * 30 + e[30:]))
    ref = load_profile(CERKNICA)
    p = load_profile(f)
    # Without the fix the jump from 0 m to ~550 m counts as ascent (+600 m here, +1230 m on the real file); with
    # it, only the climbing of the first 30 fixes is unknown.
    assert ref.total_ascent_m - 30.0 < p.total_ascent_m < ref.total_ascent_m + 5.0
    assert p.elevation_m.min() > 400
    assert any(re.search(r"phone\.gpx: trk\[1\]\.trkseg\[0\]\.trkpt\[0\.\.\d+\]\.ele: \d+ placeholder elevations "
                         r"of 0 m", w) for w in p.warnings), p.warnings


def test_a_coastal_track_at_sea_level_keeps_its_zeros(tmp_path):
    lat, lon = line_track(200, 10.0)
    ele = np.concatenate([np.zeros(50), np.linspace(0, 20, 150)])   # starts on the beach, climbs gently
    p = load_profile(write_gpx(tmp_path / "beach.gpx", lat, lon, ele))
    assert not any("placeholder" in w for w in p.warnings)
    assert p.total_ascent_m == pytest.approx(20.0, abs=3.0)


# --------------------------------------------------------------------------------------------------------------
# 3. Out-of-order timestamps: the switch to the pace model is said, with the reason
# --------------------------------------------------------------------------------------------------------------
def test_out_of_order_timestamps_say_why_the_pace_model_is_used(tmp_path):
    text = CERKNICA.read_text(encoding="utf-8")
    head, sep, body = text.partition("<trk>")
    times = re.findall(r"<time>[^<]*</time>", body)
    times[40], times[41] = times[41], times[40]
    it = iter(times)
    f = tmp_path / "swapped.gpx"
    f.write_text(head + sep + re.sub(r"<time>[^<]*</time>", lambda m: next(it), body))
    p = load_profile(f)
    assert p.kind == "course"
    timing = [w for w in p.warnings if ": time: " in w]
    assert len(timing) == 1 and "\n" not in timing[0]
    assert re.fullmatch(rf"{re.escape(str(f))}: time: timestamps go backwards at trk\[\d\]\.trkseg\[0\]\.trkpt\[\d+\] "
                        r"\(\d+ s before the point ahead of it\): using the pace model \(flat 5:30 min/km\) instead "
                        r"of the recorded time", timing[0]), timing[0]
    assert not any(": time: " in w for w in load_profile(CERKNICA).warnings)


# --------------------------------------------------------------------------------------------------------------
# 4. One -672 m outlier among good fixes: a spike, named by track and point
# --------------------------------------------------------------------------------------------------------------
def test_an_isolated_out_of_range_elevation_is_dropped_not_refused(tmp_path):
    text = CERKNICA.read_text(encoding="utf-8")
    trk2_start = len(re.findall(r"<trkpt", "<trk>".join(text.split("<trk>")[:3])))   # points before trk[2]

    def inject(eles):
        eles[trk2_start + 10] = "-672.0"
        return eles
    f = tmp_path / "logger.gpx"
    f.write_text(edit_track_eles(text, inject))
    p = load_profile(f)
    assert p.total_descent_m == pytest.approx(load_profile(CERKNICA).total_descent_m, rel=0.05)
    assert f"{f}: trk[2].trkseg[0].trkpt[10].ele: -672 m is outside -500..9000 m: dropped as a spike" in p.warnings


def test_many_out_of_range_elevations_are_refused_naming_the_track(tmp_path):
    text = CERKNICA.read_text(encoding="utf-8")
    trk2_start = len(re.findall(r"<trkpt", "<trk>".join(text.split("<trk>")[:3])))

    def inject(eles):
        for k in range(10, 20):
            eles[trk2_start + k] = "-672.0"
        return eles
    f = tmp_path / "feet.gpx"
    f.write_text(edit_track_eles(text, inject))
    with pytest.raises(ProfileError, match=r"feet\.gpx: trk\[2\]\.trkseg\[0\]\.trkpt\[10\]\.ele: -672\.0 is outside "
                                           r"-500\.\.9000 m \(and 9 more points\)$"):
        load_profile(f)


# --------------------------------------------------------------------------------------------------------------
# 5. Barometric jump across a pause: re-based, not terrain
# --------------------------------------------------------------------------------------------------------------
def test_elevation_jump_across_a_pause_is_rebased(tmp_path):
    n = 600                                   # 10 min of a flat ride at 5 m/s, 1 Hz, each side of the stop
    lat, lon = line_track(2 * n, 5.0)
    lon[n:] = lon[n - 1] + (lon[n:] - lon[n])  # the watch stops and restarts at the same place
    t = T0_UNIX_S + np.arange(2 * n, dtype=float)
    t[n:] += 21 * 60                          # a 21-minute stop
    rng = np.random.default_rng(1)
    ele = 300.0 + rng.normal(0, 0.05, 2 * n)  # barometric: a few cm of jitter
    ele[n:] += 33.8
    f = write_gpx(tmp_path / "ride.gpx", lat, lon, ele, t)
    p = load_profile(f)
    assert np.abs(p.grade_pct).max() < 2.0, np.abs(p.grade_pct).max()   # was +-45 %
    assert p.total_ascent_m < 3.0
    assert any(re.fullmatch(rf"{re.escape(str(f))}: trk\[0\]\.trkseg\[0\]\.trkpt\[{n}\]\.ele: elevation jumps "
                            r"\+33\.8 m across a 21 min pause with no distance: re-based the rest of the track", w)
               for w in p.warnings), p.warnings


# --------------------------------------------------------------------------------------------------------------
# 6. Elevation flat zero: "0 m", and a warning
# --------------------------------------------------------------------------------------------------------------
def test_all_zero_elevation_prints_0_m_and_warns(tmp_path):
    f = tmp_path / "flat.gpx"
    f.write_text(edit_track_eles(CERKNICA.read_text(encoding="utf-8"), lambda e: ["0.0"] * len(e)))
    p = load_profile(f)
    assert any("<ele> is 0 m at every point" in w for w in p.warnings)
    result = CliRunner().invoke(profile_cli, ["show", str(f), "--no-cues"])
    assert result.exit_code == 0, result.output
    assert re.search(r"descent / ascent\s+0 m / 0 m$", result.output, re.M), result.output
    assert "--0" not in result.output
    assert f"downbeat: warning: {f}: <ele> is 0 m at every point" in result.output


# --------------------------------------------------------------------------------------------------------------
# 7. Plausibility: a car log, and a triathlon in one FIT
# --------------------------------------------------------------------------------------------------------------
def test_car_speeds_get_a_warning(tmp_path):
    lat, lon = line_track(400, 26.0)           # 26 m/s = 94 km/h, one fix a second
    t = T0_UNIX_S + np.arange(400.0)
    p = load_profile(write_gpx(tmp_path / "car.gpx", lat, lon, np.linspace(300, 250, 400), t))
    speeds = [int(m.group(1)) for w in p.warnings
              if (m := re.search(r"car\.gpx: median moving speed (\d+) km/h is not running \(over 23 km/h\)", w))]
    assert len(speeds) == 1 and 90 <= speeds[0] <= 97, p.warnings
    assert not any("not running" in w for w in load_profile(CERKNICA).warnings)


def _triathlon(tmp_path) -> Path:
    records, sessions = [], []
    t, d = T0_UNIX_S, 0.0
    lat0, lon0 = 46.0, 14.0
    m_per_deg = 111_320.0 * np.cos(np.radians(lat0))
    for sport, minutes, speed, ele0, ele1 in [("swimming", 30, 1.0, 100, 100), ("transition", 3, 1.0, 100, 100),
                                              ("cycling", 60, 10.0, 100, 500), ("transition", 2, 1.0, 500, 500),
                                              ("running", 40, 3.0, 500, 300)]:
        t0 = t
        n = minutes * 12                       # one record every 5 s
        for k in range(n):
            records.append((t, lat0, lon0 + d / m_per_deg, ele0 + (ele1 - ele0) * k / n, d, 85))
            t += 5.0
            d += 5.0 * speed
        sessions.append((sport, t0, t - 5.0))
    f = tmp_path / "triathlon.fit"
    f.write_bytes(write_fit(records, sessions))
    return f


def test_multisport_fit_coaches_only_the_running_leg(tmp_path):
    f = _triathlon(tmp_path)
    p = load_profile(f)
    assert p.total_distance_m == pytest.approx(40 * 60 * 3.0, rel=0.01)     # the run only (45 km in all)
    assert p.total_descent_m == pytest.approx(200.0, abs=5.0)
    assert p.total_ascent_m < 5.0                                          # the bike's climb is not in it
    assert f"{f}: multisport file: coaching the 1 running leg only; skipped swimming (30 min), transition " \
           f"(3 min), cycling (60 min), transition (2 min)" in p.warnings
    assert np.nanmedian(p.recorded_cadence_spm) == pytest.approx(170.0)    # running cadence, doubled


def test_multisport_fit_without_a_running_leg_is_refused(tmp_path):
    records = [(T0_UNIX_S + 5 * k, 46.0, 14.0 + k * 1e-4, 100.0, 8.0 * k, 0) for k in range(200)]
    sessions = [("swimming", T0_UNIX_S, T0_UNIX_S + 495), ("cycling", T0_UNIX_S + 500, T0_UNIX_S + 995)]
    f = tmp_path / "aquabike.fit"
    f.write_bytes(write_fit(records, sessions))
    with pytest.raises(ProfileError, match=r"aquabike\.fit: multisport file with no running leg \(legs: swimming, "
                                           r"cycling\): nothing to coach$"):
        load_profile(f)


# --------------------------------------------------------------------------------------------------------------
# 8. TCX <Course>: the virtual partner's times are not the runner's
# --------------------------------------------------------------------------------------------------------------
def test_tcx_course_uses_the_pace_model(tmp_path):
    lat, lon = line_track(300, 10.0)
    ele = np.linspace(600, 450, 300)
    pts = "".join(f"<Trackpoint><Time>{iso(T0_UNIX_S + i * 10.0 / (33 / 3.6))}</Time><Position><LatitudeDegrees>"
                  f"{lat[i]:.7f}</LatitudeDegrees><LongitudeDegrees>{lon[i]:.7f}</LongitudeDegrees></Position>"
                  f"<AltitudeMeters>{ele[i]:.1f}</AltitudeMeters><DistanceMeters>{10.0 * i:.1f}</DistanceMeters>"
                  f"</Trackpoint>" for i in range(300))
    f = tmp_path / "course.tcx"
    f.write_text('<?xml version="1.0"?><TrainingCenterDatabase xmlns="http://www.garmin.com/xmlschemas/'
                 'TrainingCenterDatabase/v2"><Courses><Course><Name>Descent</Name><Lap><TotalTimeSeconds>327'
                 f'</TotalTimeSeconds></Lap><Track>{pts}</Track></Course></Courses></TrainingCenterDatabase>')
    p = load_profile(f)
    assert p.kind == "course"
    assert p.duration_s == pytest.approx(float(elapsed_time_s(p.distance_m, p.grade_pct)[-1]))
    assert p.duration_s > 2990 / (33 / 3.6) * 2      # not the virtual partner's 33 km/h


# --------------------------------------------------------------------------------------------------------------
# Warnings reach the CLI
# --------------------------------------------------------------------------------------------------------------
def test_profile_warnings_reach_the_session_plan(tmp_path):
    from metronome.session import plan_session

    f = tmp_path / "nocrc.fit"
    f.write_bytes((DATA / "garmin-fenix-5-run.fit").read_bytes()[:-2])
    prof = load_profile(f)
    assert prof.warnings and set(prof.warnings) <= set(plan_session(prof, cues=False).warnings)


# --------------------------------------------------------------------------------------------------------------
# issue 12.3: a FIFO (or any non-regular file) as the profile is refused, never waited on
# --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [["render", "{f}", "-o", "{out}", "--no-cues", "--quiet"],
                                  ["profile", "show", "{f}", "--no-cues"]])
def test_fifo_profile_is_refused_not_opened(tmp_path, args):
    fifo = tmp_path / "pipe.gpx"
    os.mkfifo(fifo)
    out = tmp_path / "o.wav"
    cmd = [sys.executable, "-m", "metronome.cli"] + [a.format(f=fifo, out=out) for a in args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)   # the old code blocked forever here
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == f"downbeat: error: {fifo}: is a FIFO, not a regular file: a profile must be a file"
    assert not out.exists()


def test_character_device_is_refused():
    with pytest.raises(ProfileError, match=r"^/dev/null\.gpx|is a character device"):
        from profiles.loader import _read_bytes
        _read_bytes(Path("/dev/null"), "/dev/null")


# --------------------------------------------------------------------------------------------------------------
# issue 12.7: the points limit, refused before the slow work (the huge files themselves are in benchmarks/)
# --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, what", [("cerknicko-jezero.gpx", "trkpt points"),
                                        ("cerknicko-jezero.tcx", "Trackpoint points"),
                                        ("activity-small-fenix2-run.fit", "record messages")])
def test_files_over_the_points_limit_are_refused(monkeypatch, name, what):
    monkeypatch.setattr(T, "MAX_POINTS", 100)
    with pytest.raises(ProfileError, match=rf"^{re.escape(str(DATA / name))}: more than 100 {what}, the limit per "
                                           r"file \(a 1 Hz recording of 0 h\); split the file or resample it"):
        load_profile(DATA / name)


@pytest.mark.parametrize("module, const, name, what", [
    ("profiles.gpx", "GPX_MAX_POINTS", "cerknicko-jezero.gpx", "trkpt points, the limit per file for GPX"),
    ("profiles.tcx", "TCX_MAX_POINTS", "cerknicko-jezero.tcx", "Trackpoint points, the limit per file for TCX")])
def test_xml_formats_have_their_own_lower_limit(monkeypatch, module, const, name, what):
    import importlib

    monkeypatch.setattr(importlib.import_module(module), const, 100)
    with pytest.raises(ProfileError, match=rf"{re.escape(name)}: more than 100 {what} \(a 1 Hz recording of 0 h\)"):
        load_profile(DATA / name)


def test_gpxpy_fallback_has_its_own_lower_limit(monkeypatch):
    from profiles import gpx as G

    def declines(data, display):
        raise G._Unusual("time 'July 6th'")   # e.g. a time format only gpxpy reads (Python 3.10's fromisoformat)
    monkeypatch.setattr(G, "GPXPY_MAX_POINTS", 100)
    assert load_profile(CERKNICA).kind == "activity"       # the fast reader has no such limit
    monkeypatch.setattr(G, "read_gpx_fast", declines)
    with pytest.raises(ProfileError, match=r"cerknicko-jezero\.gpx: 296 track/route points need the gpxpy reader "
                                           r"\(unusual layout or time format: time 'July 6th'\), which is limited "
                                           r"to 100 points"):
        load_profile(CERKNICA)
    monkeypatch.setattr(G, "GPXPY_MAX_POINTS", 1000)
    assert load_profile(CERKNICA).kind == "activity"       # under the limit: gpxpy reads it

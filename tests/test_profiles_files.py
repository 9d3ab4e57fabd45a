"""profiles: real GPX/FIT/TCX files (tests/data, see LICENSES.md), reference totals, truncated and corrupt files."""

from __future__ import annotations

from pathlib import Path

import fitdecode
import gpxpy
import numpy as np
import pytest

from metronome.errors import ProfileError
from profiles import load_profile
from profiles.gpx import _Unusual, read_gpx_fast, read_gpx_gpxpy

DATA = Path(__file__).parent / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

#: Every real file: the kind it loads as, or the (one-line) reason it is rejected.
EXPECTED = {
    "Mojstrovka.gpx": "course",              # timestamps all equal (1901): pace model
    "cerknicko-jezero.gpx": "activity",
    "cerknicko-without-times.gpx": "course",
    "track-with-empty-segment.gpx": "activity",
    "cerknicko-jezero-without-elevations.gpx": r"no elevation data \(0 of 296 points have <ele>\)",
    "route.gpx": r"no elevation data \(0 of 55 points have <ele>\)",
    "gpx_with_garmin_extension.gpx": r"only waypoints \(1 <wpt>\), no track or route",
    "activity-small-fenix2-run.fit": "activity",
    "garmin-fenix-5-run.fit": "activity",
    "sample-activity.fit": "activity",
    "activity-unexpected-eof.fit": r"truncated or corrupt FIT file \(",
    "activity-settings-corruptheader.fit": r"truncated or corrupt FIT file \(",
    "WorkoutIndividualSteps.fit": r"no record messages \(file type 'workout'\)",
    "cerknicko-jezero.tcx": "activity",
}


def fit_session(path: Path) -> dict:
    with fitdecode.FitReader(str(path)) as reader:
        for frame in reader:
            if isinstance(frame, fitdecode.FitDataMessage) and frame.name == "session":
                return {k: frame.get_value(k, fallback=None) for k in ("total_distance", "total_descent")}
    raise AssertionError("no session message")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_real_file_loads_or_is_rejected_clearly(name):
    expected = EXPECTED[name]
    path = DATA / name
    if expected in ("course", "activity"):
        p = load_profile(path)
        assert p.kind == expected
        assert p.source == str(path) and p.name == path.stem
        assert np.all(np.diff(p.time_s) > 0) and np.all(np.diff(p.distance_m) > 0)
        assert np.all(np.abs(p.grade_pct) <= 45.0)
        assert np.all(np.isfinite(p.elevation_m)) and np.all(p.speed_mps > 0)
    else:
        with pytest.raises(ProfileError, match=f"^{path}: {expected}") as exc:
            load_profile(path)
        assert "\n" not in str(exc.value)


def test_expectations_cover_every_shared_file():
    if not SHARED.is_dir():
        pytest.skip("shared/data not present")
    shared = {p.name for p in SHARED.glob("*/*") if p.suffix in (".gpx", ".fit")}
    assert shared <= set(EXPECTED)
    for name in shared:   # the copies are the real files
        assert (DATA / name).read_bytes() == next(SHARED.glob(f"*/{name}")).read_bytes()


# --------------------------------------------------------------------------------------------------------------
# Reference totals: gpxpy's own figures for GPX, the device's session message for FIT
# --------------------------------------------------------------------------------------------------------------
def within(ours: float, ref: float, rel: float = 0.05, abs_m: float = 2.5) -> bool:
    # abs_m: the altimeter's resolution, for totals of a few metres (a 5 % band around 0 m is empty).
    return abs(ours - ref) <= max(rel * abs(ref), abs_m)


@pytest.mark.parametrize("name", ["Mojstrovka.gpx", "track-with-empty-segment.gpx", "cerknicko-jezero.gpx",
                                  "cerknicko-without-times.gpx"])
def test_gpx_distance_matches_gpxpy(name):
    gpx = gpxpy.parse((DATA / name).read_text(encoding="utf-8"))
    p = load_profile(DATA / name)
    assert within(p.total_distance_m, gpx.length_2d(), abs_m=0.0)


@pytest.mark.parametrize("name", [
    "Mojstrovka.gpx",
    "track-with-empty-segment.gpx",
    # Counted with the noise-scaled threshold (Profile.counting_threshold_m); a plain sum gives ~110 m here.
    "cerknicko-jezero.gpx",
])
def test_gpx_descent_matches_gpxpy(name):
    gpx = gpxpy.parse((DATA / name).read_text(encoding="utf-8"))
    p = load_profile(DATA / name)
    assert within(p.total_descent_m, gpx.get_uphill_downhill().downhill)


@pytest.mark.parametrize("name", ["activity-small-fenix2-run.fit", "garmin-fenix-5-run.fit", "sample-activity.fit"])
def test_fit_distance_matches_device(name):
    ref = fit_session(DATA / name)
    assert within(load_profile(DATA / name).total_distance_m, ref["total_distance"], abs_m=0.0)


@pytest.mark.parametrize("name", [
    "garmin-fenix-5-run.fit",
    "sample-activity.fit",
    # A plain sum gives ~89 m against the watch's 61 m; the noise-scaled counting threshold gives 60.8 m.
    "activity-small-fenix2-run.fit",
])
def test_fit_descent_matches_device(name):
    ref = fit_session(DATA / name)
    assert within(load_profile(DATA / name).total_descent_m, ref["total_descent"])


# --------------------------------------------------------------------------------------------------------------
# Timing, cadence, readers
# --------------------------------------------------------------------------------------------------------------
def test_recorded_time_removes_pauses_between_segments():
    gpx = gpxpy.parse((DATA / "cerknicko-jezero.gpx").read_text(encoding="utf-8"))
    start, end = gpx.get_time_bounds()
    elapsed_s = (end - start).total_seconds()
    p = load_profile(DATA / "cerknicko-jezero.gpx")
    assert p.kind == "activity"
    # The recording spans the 6-15 min stops between its tracks; the profile is moving time only.
    assert p.duration_s < elapsed_s - 30 * 60
    assert p.duration_s == pytest.approx(gpx.get_moving_data().moving_time, rel=0.25)
    forced = load_profile(DATA / "cerknicko-jezero.gpx", use_recorded_time=False)
    assert forced.kind == "course"
    assert not np.allclose(forced.time_s, p.time_s)
    np.testing.assert_allclose(forced.grade_pct, p.grade_pct)


def test_unusable_timestamps():
    # Mojstrovka's 184 timestamps are all 1901-12-13T20:45:52: the pace model is used...
    p = load_profile(DATA / "Mojstrovka.gpx")
    assert p.kind == "course" and any("pace model" in n for n in p.notes)
    # ...unless recorded time is demanded.
    with pytest.raises(ProfileError, match=r"Mojstrovka\.gpx: time: recorded timestamps are unusable"):
        load_profile(DATA / "Mojstrovka.gpx", use_recorded_time=True)
    with pytest.raises(ProfileError, match=r"5 of 296 points have a time"):
        load_profile(DATA / "cerknicko-without-times.gpx", use_recorded_time=True)


def test_fit_cadence_and_speed():
    p = load_profile(DATA / "activity-small-fenix2-run.fit")
    assert p.recorded_cadence_spm is not None
    assert 150 <= np.nanmedian(p.recorded_cadence_spm) <= 200     # steps/min, i.e. strides x 2
    assert 2.0 <= np.median(p.speed_mps) <= 5.0
    assert p.duration_s == pytest.approx(2832.0, rel=0.05)          # session total_elapsed_time, no pauses


def test_tcx_matches_the_gpx_it_was_made_from():
    tcx = load_profile(DATA / "cerknicko-jezero.tcx")
    gpx = load_profile(DATA / "cerknicko-jezero.gpx")
    assert tcx.kind == "activity"
    assert tcx.total_distance_m == pytest.approx(gpx.total_distance_m, rel=0.01)
    assert tcx.total_descent_m == pytest.approx(gpx.total_descent_m, rel=0.05)
    assert tcx.duration_s == pytest.approx(gpx.duration_s, rel=0.02)
    assert np.all(tcx.recorded_cadence_spm == 170.0)


@pytest.mark.parametrize("name", ["Mojstrovka.gpx", "cerknicko-jezero.gpx", "cerknicko-without-times.gpx",
                                  "track-with-empty-segment.gpx", "route.gpx", "gpx_with_garmin_extension.gpx"])
def test_fast_gpx_reader_agrees_with_gpxpy(name):
    data = (DATA / name).read_bytes()
    try:
        fast = read_gpx_fast(data, name)
    except ProfileError as exc:
        with pytest.raises(ProfileError) as ref:
            read_gpx_gpxpy(data, name)
        assert str(ref.value) == str(exc)
        return
    ref = read_gpx_gpxpy(data, name)
    for field in ("lat_deg", "lon_deg", "elevation_m", "time_s", "segment"):
        np.testing.assert_allclose(getattr(fast, field), getattr(ref, field), rtol=0, atol=1e-3, err_msg=field)
    assert fast.is_route == ref.is_route


def test_unusual_gpx_falls_back_to_gpxpy(tmp_path):
    text = (DATA / "track-with-empty-segment.gpx").read_text(encoding="utf-8")
    odd = text.replace("2013-07-06T17:26:26Z", "2013-07-06T17:26:26.000+00:00 ")
    odd = odd.replace("<time>2013-07-06T17:26:30Z</time>", "<time>2013-07-06 17:26:30Z</time>")
    with pytest.raises(_Unusual):
        read_gpx_fast("x".join([odd]).replace("<time>2013-07-06 17:26:30Z", "<time>July 6th").encode(), "x")
    f = tmp_path / "odd.gpx"
    f.write_text(odd, encoding="utf-8")
    assert load_profile(f).total_distance_m == pytest.approx(load_profile(DATA / "track-with-empty-segment.gpx")
                                                             .total_distance_m)


@pytest.mark.parametrize("body, message", [
    ('<trk><trkseg><trkpt lat="95" lon="13"><ele>5</ele></trkpt></trkseg></trk>', r"trkpt\[0\]\.lat: '95'"),
    ('<trk><trkseg><trkpt lat="46" lon="13"><ele>nan</ele></trkpt></trkseg></trk>', r"\.ele: 'nan' is not a finite"),
    ('<trk><trkseg><trkpt lat="46" lon="13"><ele>high</ele></trkpt></trkseg></trk>', r"\.ele: 'high' is not a num"),
    ('<trk><trkseg><trkpt lat="46" lon="13"><ele>1e9</ele></trkpt><trkpt lat="46.1" lon="13"><ele>1</ele></trkpt>'
     '</trkseg></trk>', r"trkpt\[0\]\.ele: 1000000000\.0 is outside -500\.\.9000 m"),
    ('<trk><trkseg><trkpt lat="46" lon="13"><ele>5</ele></trkpt></trkseg></trk>', r"too few points with elevation"),
    ('<trk><trkseg><trkpt lat="46" lon="13"><ele>5</ele></trkpt><trkpt lat="46" lon="13"><ele>6</ele></trkpt>'
     '</trkseg></trk>', r"too short: 0\.0 m over 2 points"),
    ('', r"no track or route points"),
])
def test_bad_gpx_points(tmp_path, body, message):
    f = tmp_path / "run.gpx"
    f.write_text(f'<?xml version="1.0"?><gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1">{body}</gpx>')
    with pytest.raises(ProfileError, match=message):
        load_profile(f)


def test_not_gpx_xml(tmp_path):
    f = tmp_path / "x.gpx"
    f.write_text("<kml><Document/></kml>")
    with pytest.raises(ProfileError, match=r"x\.gpx: not a GPX file \(root element <kml>"):
        load_profile(f)
    f.write_text("<gpx><trk>")
    with pytest.raises(ProfileError, match=r"x\.gpx: not well-formed XML"):
        load_profile(f)


# --------------------------------------------------------------------------------------------------------------
# Truncated and corrupt files: always a ProfileError (or, for a prefix that is itself valid, a Profile)
# --------------------------------------------------------------------------------------------------------------
def _cuts(size: int, n: int) -> list[int]:
    cuts = {1, 12, 13, 14, size // 2, size - 1, size - 2}
    cuts.update(int(x) for x in np.linspace(2, size - 3, n))
    return sorted(c for c in cuts if 0 < c < size)


@pytest.mark.parametrize("name, n_cuts, must_fail", [
    ("garmin-fenix-5-run.fit", 30, True),
    ("activity-small-fenix2-run.fit", 8, True),
    ("Mojstrovka.gpx", 25, True),
    ("cerknicko-jezero.tcx", 15, True),
])
def test_truncated_files_raise_profile_error(tmp_path, name, n_cuts, must_fail):
    data = (DATA / name).read_bytes()
    for cut in _cuts(len(data), n_cuts):
        if not data[cut:].strip():
            continue  # only the trailing newline cut: still the whole document
        f = tmp_path / f"cut{cut}{Path(name).suffix}"
        f.write_bytes(data[:cut])
        if name.endswith(".fit") and cut >= len(data) - 2:
            # Only (part of) the final CRC is gone: every record is intact, kept with a warning (issue 11).
            p = load_profile(f)
            assert any("final CRC is missing" in w for w in p.warnings)
            continue
        with pytest.raises(ProfileError, match=f"^{f}: ") as exc:
            load_profile(f)
        assert "\n" not in str(exc.value)


def test_truncated_yaml_never_escapes(tmp_path):
    from profiles.loader import bundled_path
    data = bundled_path("demo-descent").read_bytes()
    for cut in _cuts(len(data), 25):
        f = tmp_path / "cut.yaml"
        f.write_bytes(data[:cut])
        try:
            load_profile(f)
        except ProfileError as exc:
            assert "\n" not in str(exc)


@pytest.mark.parametrize("name", ["garmin-fenix-5-run.fit", "Mojstrovka.gpx", "cerknicko-jezero.tcx"])
def test_corrupted_bytes_never_escape(tmp_path, name):
    data = (DATA / name).read_bytes()
    rng = np.random.default_rng(7)
    for i in range(12):
        b = bytearray(data)
        for pos in rng.integers(0, len(b), size=4):
            b[pos] = int(rng.integers(0, 256))
        f = tmp_path / f"c{i}{Path(name).suffix}"
        f.write_bytes(bytes(b))
        try:
            p = load_profile(f)
        except ProfileError as exc:
            assert str(exc).startswith(str(f)) and "\n" not in str(exc)
        else:
            if name.endswith(".fit"):  # flipped bytes fail the CRC: refused, or kept with a warning (issue 11)
                assert any("CRC does not match" in w for w in p.warnings), "a FIT file with flipped bytes " \
                                                                           "must fail its CRC"
            assert np.all(np.diff(p.time_s) > 0)


def test_fit_header_only_and_wrong_magic(tmp_path):
    data = (DATA / "garmin-fenix-5-run.fit").read_bytes()
    f = tmp_path / "h.fit"
    f.write_bytes(data[:14])
    with pytest.raises(ProfileError, match="truncated or corrupt FIT file"):
        load_profile(f)
    f.write_bytes(data[:8] + b"JUNK" + data[12:])
    with pytest.raises(ProfileError, match="truncated or corrupt FIT file"):
        load_profile(f)

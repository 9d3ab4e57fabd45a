"""Security (issue 7): YAML only through safe_load, XML without entity tricks, loopback-only UDP by default, a
1 KiB datagram limit, and voice packs that cannot reach outside their folder.

Profiles, cue libraries and voice packs are files users download and share; the sensor port is reachable by
anything that can send a datagram.  Each test plants the attack and checks both the refusal and that nothing
happened (no file written, no data read from outside).
"""

from __future__ import annotations

import ast
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from metronome.errors import CueError, InputError, ProfileError, SensorError
from profiles import load_profile

from tests.support.fuzz import deadline

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["metronome", "profiles", "cues"]


# ----------------------------------------------------------------------------------------------------------------
# YAML: safe_load only
# ----------------------------------------------------------------------------------------------------------------
def python_tags(marker: Path) -> list[str]:
    """YAML documents that would run code (create ``marker``) under an unsafe loader."""
    cmd = f"touch {marker}"
    return [
        f"!!python/object/apply:os.system ['{cmd}']\n",
        f"segments: !!python/object/apply:os.system ['{cmd}']\n",
        f"name: !!python/object/apply:subprocess.check_output [['touch', '{marker}']]\n",
        f"segments:\n  - !!python/object/new:subprocess.Popen [['touch', '{marker}']]\n",
        "kind: !!python/name:os.system\n",
        "segments: !!python/module:os\n",
    ]


def test_python_tags_in_a_profile_are_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    for i, text in enumerate(python_tags(marker)):
        p = tmp_path / f"evil{i}.yaml"
        p.write_text(text)
        with pytest.raises(ProfileError) as info:
            load_profile(str(p))
        msg = str(info.value)
        assert "\n" not in msg and "python/" in msg and str(p) in msg, msg  # names the file and the tag
        assert not marker.exists(), text


def test_python_tags_through_the_cli_exit_2(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.yaml").write_text(python_tags(marker)[1])
    res = subprocess.run([sys.executable, "-m", "metronome.cli", "render", "evil.yaml", "-o", "out.wav", "--quiet"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "Traceback" not in res.stderr and "python/object" in res.stderr
    assert not marker.exists() and not (tmp_path / "out.wav").exists()


def test_python_tags_in_a_cue_library_and_a_manifest_are_refused(tmp_path):
    import cues.library as library
    marker = tmp_path / "pwned"
    for i, text in enumerate(python_tags(marker)):
        p = tmp_path / f"lib{i}.yaml"
        p.write_text(text.replace("segments:", "cues:"))
        with pytest.raises(CueError):
            library.load_library(p)
        pack = tmp_path / f"pack{i}"
        pack.mkdir()
        (pack / "manifest.yaml").write_text(text.replace("segments:", "cues:"))
        with pytest.raises(CueError):
            library.load_voice_pack(pack, library.load_library())
    assert not marker.exists()


UNSAFE_YAML = {"load", "load_all", "full_load", "full_load_all", "unsafe_load", "unsafe_load_all"}


def test_no_unsafe_yaml_loader_anywhere_in_the_code():
    """Static check: every ``yaml.*load*`` call in the packages is ``safe_load``/``safe_load_all``, and no
    ``Loader=``/``UnsafeLoader``/``FullLoader`` is named (a future edit must not bring one in)."""
    calls, offenders = 0, []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "yaml":
                    if node.attr in UNSAFE_YAML or node.attr in ("Loader", "UnsafeLoader", "FullLoader"):
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: yaml.{node.attr}")
                    if node.attr in ("safe_load", "safe_load_all"):
                        calls += 1
                if isinstance(node, ast.keyword) and node.arg == "Loader":
                    offenders.append(f"{path.relative_to(ROOT)}:{node.value.lineno}: Loader=")
                if isinstance(node, ast.ImportFrom) and node.module == "yaml":
                    bad = [a.name for a in node.names if a.name in UNSAFE_YAML | {"Loader", "UnsafeLoader"}]
                    if bad:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: from yaml import {bad}")
    assert offenders == []
    assert calls >= 1  # the scan really sees the loaders (it would pass vacuously on a renamed import)


# ----------------------------------------------------------------------------------------------------------------
# XML: no external entities, no entity expansion bombs (GPX, both readers, and TCX)
# ----------------------------------------------------------------------------------------------------------------
SECRET = "downbeat-secret-7f3a"


def _xxe(root: str, secret_file: Path) -> str:
    body = {"gpx": '<trk><name>&x;</name><trkseg><trkpt lat="46.0" lon="14.0"><ele>&x;</ele></trkpt>'
                   '<trkpt lat="46.01" lon="14.0"><ele>100</ele></trkpt></trkseg></trk>',
            "TrainingCenterDatabase": "<Activities><Activity Sport=\"Running\"><Lap><Track><Trackpoint>"
                                      "<AltitudeMeters>&x;</AltitudeMeters></Trackpoint></Track></Lap></Activity>"
                                      "</Activities>"}[root]
    return (f'<?xml version="1.0"?><!DOCTYPE {root} [<!ENTITY x SYSTEM "file://{secret_file}">]>'
            f'<{root}>{body}</{root}>')


def _lol(root: str) -> str:
    ents = '<!ENTITY a "lollollollollollollollollollol">' + "".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
    return f'<?xml version="1.0"?><!DOCTYPE {root} [{ents}]><{root}><name>&j;</name></{root}>'


@pytest.mark.parametrize("ext,root", [(".gpx", "gpx"), (".tcx", "TrainingCenterDatabase")])
def test_external_entities_are_never_read(tmp_path, ext, root):
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    p = tmp_path / f"xxe{ext}"
    p.write_text(_xxe(root, secret))
    with pytest.raises(ProfileError) as info:
        load_profile(str(p))
    assert SECRET not in str(info.value)


def test_external_entities_in_the_gpxpy_fallback_are_never_read(tmp_path):
    from profiles.gpx import read_gpx_gpxpy

    secret = tmp_path / "secret.txt"
    secret.write_text("123")  # a number: if it were substituted, it would become an elevation
    try:
        raw = read_gpx_gpxpy(_xxe("gpx", secret).encode(), "xxe.gpx")
    except ProfileError:
        return
    assert not any(e == 123.0 for e in raw.elevation_m)


@pytest.mark.parametrize("ext,root", [(".gpx", "gpx"), (".tcx", "TrainingCenterDatabase")])
def test_entity_expansion_bomb_is_refused_fast(tmp_path, ext, root):
    """10 ** 9 x 30 bytes if expanded: expat's amplification limit refuses it in well under a second."""
    p = tmp_path / f"lol{ext}"
    p.write_text(_lol(root))
    t0 = time.perf_counter()
    with deadline(10.0), pytest.raises(ProfileError):
        load_profile(str(p))
    assert time.perf_counter() - t0 < 3.0


def test_entity_expansion_bomb_in_the_gpxpy_fallback_is_refused_fast():
    from profiles.gpx import read_gpx_gpxpy

    t0 = time.perf_counter()
    with deadline(10.0), pytest.raises(ProfileError):
        read_gpx_gpxpy(_lol("gpx").encode(), "lol.gpx")
    assert time.perf_counter() - t0 < 3.0


# ----------------------------------------------------------------------------------------------------------------
# UDP sensor listener: loopback unless --listen-any; 1 KiB datagrams
# ----------------------------------------------------------------------------------------------------------------
import metronome.sensors as sensors  # noqa: E402


def _lan_address() -> str | None:
    """This machine's address on its default route (no packet is sent: UDP connect only picks the route)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere real
        addr = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if addr.startswith("127.") else addr


NON_LOOPBACK = ["udp://0.0.0.0:47800", "udp://[::]:47800", "udp://192.168.1.10:47800", "udp://10.0.0.5:1",
                "udp://172.16.0.1:47800", "udp://[fe80::1]:47800", "udp://8.8.8.8:47800"]


@pytest.mark.parametrize("url", NON_LOOPBACK + (["udp://%s:47800" % _lan_address()] if _lan_address() else []))
def test_non_loopback_udp_needs_listen_any(url):
    with pytest.raises(SensorError, match="listen-any|loopback"):
        sensors.parse_sensor_url(url)
    spec = sensors.parse_sensor_url(url, listen_any=True)
    assert spec.kind == "udp" and spec.listen_any


@pytest.mark.parametrize("url", ["udp://", "udp://127.0.0.1:0", "udp://localhost:0", "udp://[::1]:0",
                                 "udp://127.8.9.10:0"])
def test_loopback_urls_bind_loopback(url):
    spec = sensors.parse_sensor_url(url)
    assert not spec.listen_any
    if spec.port != 0:
        spec = sensors.SensorSpec(kind="udp", url=url, host=spec.host, port=0)  # any free port for the test
    src = sensors.make_source(spec)
    try:
        try:
            src.open()
        except SensorError as exc:
            if "::1" in url:
                pytest.skip(f"no IPv6 loopback here: {exc}")
            raise
        host = src.address[0]
        import ipaddress

        assert ipaddress.ip_address(host).is_loopback, host
    finally:
        src.close()


def test_udp_source_itself_refuses_a_wildcard_bind_without_listen_any():
    spec = sensors.SensorSpec(kind="udp", url="udp://0.0.0.0:0", host="0.0.0.0", port=0, listen_any=False)
    src = sensors.make_source(spec)
    try:
        with pytest.raises(SensorError):
            src.open()
    finally:
        src.close()


def test_datagram_size_limit_is_1_kib():
    ok = b'{"grade_pct": -5}'
    assert isinstance(sensors.parse_message(ok.ljust(sensors.MAX_MESSAGE_BYTES)), sensors.Reading)
    rej = sensors.parse_message(ok.ljust(sensors.MAX_MESSAGE_BYTES + 1))
    assert isinstance(rej, sensors.Reject) and rej.reason == sensors.RejectReason.OVERSIZE
    assert sensors.MAX_MESSAGE_BYTES == 1024


def test_oversize_datagram_over_a_real_socket_is_rejected_not_truncated():
    """A 64 KB datagram whose first bytes are a valid message: the kernel hands over the first 1025 bytes, which
    must count as oversize (and must not be parsed as the valid message it starts with)."""
    src = sensors.UdpSource("127.0.0.1", 0)
    src.open()
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        payload = b'{"grade_pct": -5}' + b" " * 60_000
        tx.sendto(payload, src.address)
        tx.sendto(b'{"grade_pct": -7}', src.address)
        got = []
        t0 = time.monotonic()
        while len(got) < 2 and time.monotonic() - t0 < 5:
            got += src.read(0.2)
        assert len(got) == 2
        assert len(got[0]) == sensors.MAX_MESSAGE_BYTES + 1
        first, second = (sensors.parse_message(g) for g in got)
        assert isinstance(first, sensors.Reject) and first.reason == sensors.RejectReason.OVERSIZE
        assert isinstance(second, sensors.Reading) and second.grade_pct == -7
    finally:
        tx.close()
        src.close()


# ----------------------------------------------------------------------------------------------------------------
# Voice packs stay inside their folder
# ----------------------------------------------------------------------------------------------------------------
import cues.library as library  # noqa: E402


@pytest.fixture()
def pack_env(tmp_path):
    """A library, a pack folder with one good recording, and a "secret" WAV outside the pack."""
    lib = library.load_library()
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "good.wav").write_bytes(b"RIFF....WAVE")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.wav").write_bytes(b"RIFF....WAVE")
    return lib, pack, outside, lib.ids[0]


def _manifest(pack: Path, cue: str, spec) -> None:
    import yaml

    (pack / "manifest.yaml").write_text(yaml.safe_dump({"cues": {cue: spec}}))


@pytest.mark.parametrize("spec", ["../outside/secret.wav", "sub/../../outside/secret.wav", "..\\outside\\secret.wav",
                                  "{outside}/secret.wav", "C:\\outside\\secret.wav", "\\\\host\\share\\x.wav",
                                  ["good.wav", "../outside/secret.wav"]],
                         ids=["dotdot", "nested-dotdot", "windows-dotdot", "absolute", "drive", "unc", "list"])
def test_manifest_paths_cannot_leave_the_pack(pack_env, spec):
    lib, pack, outside, cue = pack_env
    if isinstance(spec, str):
        spec = spec.replace("{outside}", str(outside))
    _manifest(pack, cue, spec)
    with pytest.raises(CueError) as info:
        library.load_voice_pack(pack, lib)
    assert "\n" not in str(info.value)


def test_symlink_out_of_the_pack_is_refused(pack_env):
    lib, pack, outside, cue = pack_env
    (pack / "good.wav").unlink()  # the folder scan must meet only the symlink (good.wav is not a cue id)
    (pack / f"{cue}.wav").symlink_to(outside / "secret.wav")
    with pytest.raises(CueError, match="outside"):
        library.load_voice_pack(pack, lib)  # folder scan (no manifest)
    _manifest(pack, cue, f"{cue}.wav")
    with pytest.raises(CueError, match="outside"):
        library.load_voice_pack(pack, lib)  # named by the manifest


def test_symlinked_subfolder_out_of_the_pack_is_refused(pack_env):
    lib, pack, outside, cue = pack_env
    (pack / "sub").symlink_to(outside, target_is_directory=True)
    _manifest(pack, cue, "sub/secret.wav")
    with pytest.raises(CueError, match="outside"):
        library.load_voice_pack(pack, lib)


def test_manifest_symlinked_from_outside_is_refused(pack_env, tmp_path):
    lib, pack, outside, cue = pack_env
    import yaml

    (outside / "manifest.yaml").write_text(yaml.safe_dump({"cues": {cue: "good.wav"}}))
    (pack / "manifest.yaml").symlink_to(outside / "manifest.yaml")
    with pytest.raises(CueError, match="outside"):
        library.load_voice_pack(pack, lib)


def test_paths_inside_the_pack_still_work(pack_env):
    """The refusals above are not a blanket refusal: relative paths and symlinks that stay inside load."""
    lib, pack, outside, cue = pack_env
    (pack / "sub").mkdir()
    (pack / "sub" / "take2.wav").write_bytes(b"RIFF....WAVE")
    (pack / "alias.wav").symlink_to(pack / "good.wav")
    _manifest(pack, cue, ["good.wav", "./sub/take2.wav", "alias.wav"])
    vp = library.load_voice_pack(pack, lib)
    paths = vp.recordings(cue)
    assert len(paths) == 3 and all(pack.resolve() in p.parents for p in paths)

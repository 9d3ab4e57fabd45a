"""``--sensor`` URLs: parsed and validated once into a :class:`SensorSpec`."""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ..errors import SensorError
from .protocol import DEFAULT_HOST, DEFAULT_PORT

# --------------------------------------------------------------------------------------------------------------
# URLs
# --------------------------------------------------------------------------------------------------------------
SENSOR_KINDS = ("udp", "stdin", "replay", "ftms", "rsc", "gpsd", "http")
_URL_HELP = ("expected udp://HOST:PORT, -, replay:FILE[@SPEEDx], ftms:BLE_ADDR, rsc:BLE_ADDR, gpsd://HOST:PORT "
             "or http://HOST:PORT")
GPSD_DEFAULT_PORT = 2947  # IANA-registered gpsd port (gpsd(8))
#: Default port of the HTTP push listener (the UDP protocol's port + 1, so one firewall note covers both).
HTTP_DEFAULT_PORT = DEFAULT_PORT + 1
_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                          r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
_UUID_RE = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")  # macOS
_SPEED_RE = re.compile(r"^(?P<path>.+)@(?P<speed>[^@/\\]*[xX]|[0-9.eE+-]+)$")
MAX_REPLAY_SPEED = 1000.0


@dataclass(frozen=True)
class SensorSpec:
    """A validated ``--sensor`` URL.

    Attributes
    ----------
    kind : str
        One of :data:`SENSOR_KINDS`.
    url : str
        The URL as given (for messages).
    host, port : str, int
        UDP / HTTP bind address (``port`` 0 = ephemeral, for tests), or the gpsd server to connect to.
    listen_any : bool
        A non-loopback bind was explicitly allowed.
    path, speed : Path, float
        Replay file and playback speed (times real time).
    address : str
        BLE MAC (or CoreBluetooth UUID on macOS).
    cadence_factor : float
        RSC cadence multiplier: 1 (spec: steps/min) or 2 (``?cadence=strides`` pods).
    """

    kind: str
    url: str
    host: str | None = None
    port: int | None = None
    listen_any: bool = False
    path: Path | None = None
    speed: float = 1.0
    address: str | None = None
    cadence_factor: float = 1.0


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_sensor_url(url: str, *, listen_any: bool = False) -> SensorSpec:
    """Validate a ``--sensor`` URL.  Raises :class:`SensorError` (one line, naming the bad value).

    ``udp://HOST:PORT`` (defaults 127.0.0.1:47800; a non-loopback HOST needs ``listen_any=True``), ``-`` (stdin
    lines), ``replay:FILE[@SPEEDx]`` (the file must exist; SPEED in (0, 1000]), ``ftms:ADDR``,
    ``rsc:ADDR[?cadence=steps|strides]``, ``gpsd://HOST:PORT`` (defaults 127.0.0.1:2947; a client, so any host),
    ``http://HOST:PORT`` (push listener, defaults 127.0.0.1:47801; loopback unless ``listen_any=True``).
    """
    if not isinstance(url, str) or not url.strip():
        raise SensorError(f"--sensor: {url!r} is empty; {_URL_HELP}")
    url = url.strip()
    if url == "-":
        return SensorSpec(kind="stdin", url=url)
    scheme, sep, rest = url.partition(":")
    scheme = scheme.lower()
    if not sep:
        raise SensorError(f"--sensor {url!r}: no scheme; {_URL_HELP}")
    if scheme == "udp":
        return _parse_udp(url, listen_any)
    if scheme == "gpsd":
        host, port = _host_port(url, "gpsd", GPSD_DEFAULT_PORT)
        if not (_is_ip(host) or _HOSTNAME_RE.match(host)):
            raise SensorError(f"--sensor {url!r}: host {host!r} is not an IP address or host name")
        if port == 0:
            raise SensorError(f"--sensor {url!r}: port 0 is not a gpsd port (gpsd listens on {GPSD_DEFAULT_PORT})")
        return SensorSpec(kind="gpsd", url=url, host=host, port=port)
    if scheme == "http":
        host, port = _host_port(url, "http", HTTP_DEFAULT_PORT)
        _check_listen_host(url, host, listen_any)
        return SensorSpec(kind="http", url=url, host=host, port=port, listen_any=listen_any)
    if scheme == "https":
        raise SensorError(f"--sensor {url!r}: https is not supported; the listener is plain http on loopback "
                          "(put a TLS proxy in front for anything else)")
    if scheme == "replay":
        return _parse_replay(url, rest)
    if scheme in ("ftms", "rsc"):
        addr, _, query = rest.partition("?")
        addr = addr.strip()
        if not (_MAC_RE.match(addr) or _UUID_RE.match(addr)):
            raise SensorError(f"--sensor {url!r}: BLE address {addr!r} is not AA:BB:CC:DD:EE:FF (or a macOS UUID)")
        factor = 1.0
        if query:
            if scheme != "rsc":
                raise SensorError(f"--sensor {url!r}: ftms: takes no options, got {query!r}")
            opts = parse_qs(query, keep_blank_values=True)
            unknown = set(opts) - {"cadence"}
            if unknown:
                raise SensorError(f"--sensor {url!r}: unknown option {sorted(unknown)[0]!r} (known: cadence)")
            val = opts["cadence"][-1]
            if val not in ("steps", "strides"):
                raise SensorError(f"--sensor {url!r}: cadence={val!r} must be 'steps' or 'strides'")
            factor = 2.0 if val == "strides" else 1.0
        return SensorSpec(kind=scheme, url=url, address=addr.upper(), cadence_factor=factor)
    raise SensorError(f"--sensor {url!r}: unknown scheme {scheme!r}; {_URL_HELP}")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _host_port(url: str, scheme: str, default_port: int) -> tuple[str, int]:
    """``SCHEME://HOST:PORT`` -> (host, port); 'localhost' becomes 127.0.0.1.  One-line errors naming the value."""
    parts = urlsplit(url)
    if not url.lower().startswith(f"{scheme}://"):
        raise SensorError(f"--sensor {url!r}: write {scheme}://HOST:PORT")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise SensorError(f"--sensor {url!r}: {scheme} URLs take only HOST:PORT")
    try:
        port = parts.port
    except ValueError:
        bad = parts.netloc.rpartition(":")[2]
        raise SensorError(f"--sensor {url!r}: port {bad!r} is not an integer in 0..65535") from None
    if port is None:
        if parts.netloc.endswith(":"):
            raise SensorError(f"--sensor {url!r}: port '' is not an integer in 0..65535")
        port = default_port
    host = parts.hostname or DEFAULT_HOST
    if host.lower() == "localhost":
        host = DEFAULT_HOST
    return host, int(port)


def _check_listen_host(url: str, host: str, listen_any: bool) -> None:
    if not _is_loopback(host) and not listen_any:
        raise SensorError(f"--sensor {url!r}: refusing to listen on {host!r}, which is not a loopback address; "
                          "other interfaces need the explicit listen-any flag")
    if not _is_loopback(host) and not _is_ip(host):
        raise SensorError(f"--sensor {url!r}: host {host!r} is not an IP address")


def _parse_udp(url: str, listen_any: bool) -> SensorSpec:
    host, port = _host_port(url, "udp", DEFAULT_PORT)
    _check_listen_host(url, host, listen_any)
    return SensorSpec(kind="udp", url=url, host=host, port=int(port), listen_any=listen_any)


def _parse_replay(url: str, rest: str) -> SensorSpec:
    speed = 1.0
    path_s = rest
    m = _SPEED_RE.match(rest)
    if m and not Path(rest).exists():
        path_s = m.group("path")
        tok = m.group("speed")
        num = tok[:-1] if tok[-1:] in "xX" else tok
        try:
            speed = float(num)
        except ValueError:
            raise SensorError(f"--sensor {url!r}: replay speed {tok!r} is not a number like 4x") from None
        if not (math.isfinite(speed) and 0.0 < speed <= MAX_REPLAY_SPEED):
            raise SensorError(f"--sensor {url!r}: replay speed {tok!r} is outside (0, {MAX_REPLAY_SPEED:g}]x")
    if not path_s:
        raise SensorError(f"--sensor {url!r}: replay needs a file: replay:FILE[@SPEEDx]")
    path = Path(path_s).expanduser()
    if not path.is_file():
        raise SensorError(f"--sensor {url!r}: replay file {path_s!r} does not exist")
    return SensorSpec(kind="replay", url=url, path=path, speed=speed)

"""Real-time checks for ``downbeat doctor``: what decides whether a small audio period plays without xruns.

Every check is a warning at most (``needed_for="play"``): rendering never depends on them.  Each function takes the
root of the file system it reads (``root="/"``) and the values it would otherwise ask the OS for, so tests run
them against fake ``/sys`` and ``/proc`` trees.  The checks follow the list of rtcqs / realTimeConfigQuickScan
(the Linux audio community's standard scan, https://codeberg.org/rtcqs/rtcqs) and the Debian jackd2 package's
``/etc/security/limits.d/audio.conf`` (``@audio - rtprio 95``, ``@audio - memlock unlimited``).
"""

from __future__ import annotations

import glob
import os
import re
import resource
import shutil
import subprocess
from pathlib import Path

from ..checks import Check, child_env as _child_env, sudo as _sudo

#: JACK's default real-time priority for its process thread is 10 (jackd(1), -P); PipeWire's RT module asks for
#: 88 (libpipewire-module-rt, rt.prio).  A soft RTPRIO limit below 10 means neither can run its thread SCHED_FIFO.
MIN_RTPRIO = 10
#: audio.conf from jackd2 grants unlimited locked memory; JACK and PipeWire mlock their buffers and shared memory.
#: Linux's default soft limit is 8 MiB since 5.16 (64 KiB before); 64 MiB is Downbeat's own threshold (a choice,
#: not a measurement): room for a server and a few clients, short of audio.conf's "unlimited".
MIN_MEMLOCK_BYTES = 64 << 20
#: Shortest period the machine should run, in ms.  Measured on this project's 2-vCPU VM without an RT kernel
#: (benchmarks/README.md section 2): 64 frames (1.33 ms) and 128 frames (2.67 ms) at 48 kHz gave xruns even
#: idle, 256 frames (5.33 ms) none even with both cores loaded.  With an RT or threadirqs kernel, RT priority and
#: 4 or more cores, 128 frames at 48 kHz is the usual floor (Ardour manual, "The Right Latency": 64-256 frames).
SAFE_QUANTUM_MS_TUNED = 128 / 48.0
SAFE_QUANTUM_MS_UNTUNED = 256 / 48.0


def check_governor(root: str = "/") -> list[Check]:
    """CPU frequency governor: ``performance`` keeps the clock up; ``powersave``/``ondemand`` ramp it after the
    load arrives, which is a period too late for audio (rtcqs "CPU Frequency Scaling")."""
    paths = sorted(glob.glob(os.path.join(root, "sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor")))
    if not paths:
        return [Check("cpu governor", "info", "no cpufreq interface (a virtual machine or a fixed clock)",
                      needed_for="play")]
    govs = {}
    for p in paths:
        try:
            govs[Path(p).parent.parent.name] = Path(p).read_text().strip()
        except OSError:
            continue
    slow = {c: g for c, g in govs.items() if g != "performance"}
    if not slow:
        return [Check("cpu governor", "ok", f"performance on {len(govs)} CPUs", needed_for="play")]
    kinds = ", ".join(sorted(set(slow.values())))
    return [Check("cpu governor", "warn", f"{kinds} on {len(slow)} of {len(govs)} CPUs: the clock ramps up late",
                  f"set performance: {_sudo()}cpupower frequency-set -g performance (Debian: linux-cpupower)",
                  needed_for="play")]


def _fmt_limit(v: int) -> str:
    return "unlimited" if v == resource.RLIM_INFINITY else str(v)


def check_rtprio(limit: int | None = None, euid: int | None = None) -> list[Check]:
    """RLIMIT_RTPRIO: the highest SCHED_FIFO priority an unprivileged process may take."""
    soft = resource.getrlimit(resource.RLIMIT_RTPRIO)[0] if limit is None else limit
    euid = os.geteuid() if euid is None else euid
    if euid == 0:
        return [Check("rtprio limit", "ok", f"running as root (limit {_fmt_limit(soft)} does not apply)",
                      needed_for="play")]
    if soft == resource.RLIM_INFINITY or soft >= MIN_RTPRIO:
        return [Check("rtprio limit", "ok", f"{_fmt_limit(soft)}", needed_for="play")]
    return [Check("rtprio limit", "warn", f"{soft}: audio threads cannot get real-time priority",
                  "join the audio group (below) or add '@audio - rtprio 95' to /etc/security/limits.d/audio.conf, "
                  "then log in again", needed_for="play")]


def check_memlock(limit: int | None = None, euid: int | None = None) -> list[Check]:
    """RLIMIT_MEMLOCK: JACK and PipeWire lock their buffers in RAM (a page fault in the audio thread is an xrun)."""
    soft = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0] if limit is None else limit
    euid = os.geteuid() if euid is None else euid
    if euid == 0 or soft == resource.RLIM_INFINITY or soft >= MIN_MEMLOCK_BYTES:
        shown = "running as root" if euid == 0 else _fmt_limit(soft) + ("" if soft == resource.RLIM_INFINITY
                                                                         else " bytes")
        return [Check("memlock limit", "ok", shown, needed_for="play")]
    return [Check("memlock limit", "warn", f"{soft >> 10} KiB: audio buffers cannot all be locked in RAM",
                  "add '@audio - memlock unlimited' to /etc/security/limits.d/audio.conf, then log in again",
                  needed_for="play")]


def _group_members(root: str, name: str):
    try:
        for line in Path(root, "etc/group").read_text().splitlines():
            f = line.split(":")
            if len(f) >= 4 and f[0] == name:
                return int(f[2]), [m for m in f[3].split(",") if m]
    except (OSError, ValueError):
        pass
    return None


def check_audio_group(root: str = "/", user: str | None = None, gids=None, euid: int | None = None) -> list[Check]:
    """Membership of the ``audio`` group, which Debian's audio.conf gives rtprio and memlock to.

    ``gids`` are the groups of the running process (``os.getgroups()``): a user just added to the group has it
    only after logging in again.
    """
    euid = os.geteuid() if euid is None else euid
    if euid == 0:
        return [Check("audio group", "ok", "running as root", needed_for="play")]
    user = user or os.environ.get("USER") or os.environ.get("LOGNAME") or ""
    gids = set(os.getgroups()) if gids is None else set(gids)
    g = _group_members(root, "audio")
    if g is None:
        return [Check("audio group", "info", "this system has no 'audio' group", needed_for="play")]
    gid, members = g
    if gid in gids:
        return [Check("audio group", "ok", f"{user or 'this process'} is in 'audio'", needed_for="play")]
    if user in members:
        return [Check("audio group", "warn", f"{user} was added to 'audio' but this login predates it",
                      "log out and in again (or reboot)", needed_for="play")]
    return [Check("audio group", "warn", f"{user or 'this user'} is not in 'audio' (no real-time limits)",
                  f"{_sudo()}usermod -aG audio {user or '$USER'}, then log in again", needed_for="play")]


def kernel_rt(root: str = "/", uname_version: str | None = None) -> str | None:
    """How this kernel serves audio interrupts: ``PREEMPT_RT``, ``threadirqs``, or None (stock)."""
    try:
        if Path(root, "sys/kernel/realtime").read_text().strip() == "1":
            return "PREEMPT_RT"
    except OSError:
        pass
    version = os.uname().version if uname_version is None else uname_version
    if "PREEMPT_RT" in version or re.search(r"\bPREEMPT RT\b", version):
        return "PREEMPT_RT"
    try:
        cmdline = Path(root, "proc/cmdline").read_text().split()
    except OSError:
        cmdline = []
    if "threadirqs" in cmdline:
        return "threadirqs"
    return None


def check_kernel(root: str = "/", uname_version: str | None = None) -> list[Check]:
    """A PREEMPT_RT kernel, or ``threadirqs`` (IRQ handlers as threads whose priority can be raised above other
    devices', rtcqs "threadirqs"), lets the sound card's interrupt preempt everything else."""
    kind = kernel_rt(root, uname_version)
    if kind:
        return [Check("rt kernel", "ok", kind, needed_for="play")]
    return [Check("rt kernel", "warn", "stock kernel without threadirqs: device interrupts can delay audio",
                  "add threadirqs to GRUB_CMDLINE_LINUX_DEFAULT in /etc/default/grub, then "
                  f"{_sudo()}update-grub and reboot (or install linux-image-rt-amd64)", needed_for="play")]


def safe_quantum_ms(cpus: int, rt_kernel: bool, rt_priority: bool) -> float:
    """Shortest period (ms) this machine should run (see :data:`SAFE_QUANTUM_MS_UNTUNED`)."""
    if rt_kernel and rt_priority and cpus >= 4:
        return SAFE_QUANTUM_MS_TUNED
    return SAFE_QUANTUM_MS_UNTUNED


def check_quantum(server: str, period_frames: int | None, samplerate: int | None, cpus: int, rt_kernel: bool,
                  rt_priority: bool) -> list[Check]:
    """A JACK period or PipeWire quantum shorter than :func:`safe_quantum_ms` for this machine."""
    name = f"{server} quantum"
    if not period_frames or not samplerate:
        return [Check(name, "info", f"not measured ({server} not running)", needed_for="play")]
    ms = 1000.0 * period_frames / samplerate
    floor_ms = safe_quantum_ms(cpus, rt_kernel, rt_priority)
    if ms + 1e-9 >= floor_ms:
        return [Check(name, "ok", f"{period_frames} frames at {samplerate} Hz ({ms:.2f} ms)", needed_for="play")]
    need = 1 << max(5, (int(floor_ms * samplerate / 1000.0 - 1e-9)).bit_length())
    why = ", ".join(w for w, bad in (("no RT kernel", not rt_kernel), ("no RT priority", not rt_priority),
                                     (f"{cpus} CPUs", cpus < 4)) if bad)
    fix = ("restart JACK with a longer period: jackd ... -p " + str(need) if server == "jack" else
           f"pw-metadata -n settings 0 clock.force-quantum {need}")
    return [Check(name, "warn", f"{period_frames} frames ({ms:.2f} ms) is short for this machine ({why}): "
                                f"expect xruns below {floor_ms:.2f} ms", fix, needed_for="play")]


def _run(cmd, timeout_s: float = 5.0) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=_child_env(),
                           stdin=subprocess.DEVNULL)
    except (subprocess.TimeoutExpired, OSError):
        return None
    return r.stdout if r.returncode == 0 else None


def jack_quantum() -> tuple[int | None, int | None]:
    """(period, samplerate) of the JACK server JACK_DEFAULT_SERVER names, via jackd2's jack_bufsize /
    jack_samplerate; (None, None) when none answers (never starts one)."""
    out = _run(["jack_bufsize"])
    m = re.search(r"(\d+)", out or "")  # jackd2 prints "128"; older tools "buffer size = 128"
    sr = _run(["jack_samplerate"])
    return (int(m.group(1)) if m else None), (int(sr.strip()) if sr and sr.strip().isdigit() else None)


def pipewire_quantum(text: str | None = None) -> tuple[int | None, int | None]:
    """(quantum, rate) from ``pw-metadata -n settings`` (clock.force-quantum wins over clock.quantum)."""
    text = _run(["pw-metadata", "-n", "settings"]) if text is None else text
    if not text:
        return None, None
    vals = dict(re.findall(r"key:'(clock\.[\w-]+)' value:'(\d+)'", text))
    q = int(vals.get("clock.force-quantum", 0)) or int(vals.get("clock.quantum", 0)) or None
    rate = int(vals.get("clock.force-rate", 0)) or int(vals.get("clock.rate", 0)) or None
    return q, rate


def run_rt_checks(root: str = "/") -> list[Check]:
    """Every real-time check, in report order."""
    checks = check_governor(root) + check_rtprio() + check_memlock() + check_audio_group(root) + check_kernel(root)
    rt_kernel = kernel_rt(root) is not None
    soft = resource.getrlimit(resource.RLIMIT_RTPRIO)[0]
    rt_priority = os.geteuid() == 0 or soft == resource.RLIM_INFINITY or soft >= MIN_RTPRIO
    cpus = os.cpu_count() or 1
    for server, probe in (("jack", jack_quantum), ("pipewire", pipewire_quantum)):
        period, sr = probe()
        if period:
            checks += check_quantum(server, period, sr, cpus, rt_kernel, rt_priority)
    if not any(c.name.endswith("quantum") for c in checks):
        checks.append(Check("audio quantum", "info", "no JACK or PipeWire server answering", needed_for="play"))
    return checks

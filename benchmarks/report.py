"""Print the README's tables (Markdown) from ``benchmarks/results/*.json``.

Not a test (pytest does not collect it).  Run after ``python3 benchmarks/run.py``::

    python3 benchmarks/report.py
"""

from __future__ import annotations

import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import RESULTS_DIR  # noqa: E402


def load(name):
    p = os.path.join(RESULTS_DIR, f"{name}.json")
    return json.load(open(p)) if os.path.exists(p) else None


def render_table(r) -> str:
    rows = ["| map | audio | klick (process) | Downbeat process | Downbeat `render()` | prototype int16 writer | "
            "kernel mono / stereo (no file) | numpy kernel / to file | klick ÷ Downbeat time (process / render()) | "
            "peak RSS klick / Downbeat / numpy |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for c in r["cases"]:
        k, d, f = c["klick"], c["downbeat-file"], c["downbeat-fast-file"]
        rows.append(
            f"| {c['kind']} {c['minutes']:g} min | {d['audio_s'] / 60:.1f} min | {k['process_xrt']:.0f}x "
            f"({k['process_wall_best_s']:.2f} s) | {d['process_xrt']:.0f}x ({d['process_wall_best_s']:.2f} s) | "
            f"{d['work_xrt']:.0f}x ({d['work_best_s']:.2f} s) | {f['work_xrt']:.0f}x | "
            f"{c['downbeat-kernel']['work_xrt']:.0f}x / {c['downbeat-kernel-stereo']['work_xrt']:.0f}x | "
            f"{c['numpy-kernel']['work_xrt']:.0f}x / {c['numpy-file']['work_xrt']:.0f}x | "
            f"{c['speed_ratio_downbeat_process_vs_klick']:.2f} / {c['speed_ratio_downbeat_render_call_vs_klick']:.2f} | "
            f"{k['maxrss_mb']:.0f} / {d['maxrss_mb']:.0f} / {c['numpy-file']['maxrss_mb']:.0f} MB |")
    v = r.get("verify", {})
    if v:
        rows.append("")
        rows.append("Checks: " + "; ".join(
            f"{kind}: numpy vs Downbeat max abs diff {x['max_abs_diff_numpy_vs_downbeat']:.1e}, prototype writers "
            f"bit-identical to render(): {x['int16_prototype_bit_identical'] and x['fast_prototype_bit_identical']}"
            for kind, x in v.items()))
    return "\n".join(rows)


def callback_table(r) -> str:
    rows = ["| period | load | run | callbacks | median | p99 | p99.9 | max | PortAudio underflows | "
            "server timer xruns (Downbeat server / no-client server) | JACK blamed PortAudio |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    cases = r["cases"] + ([r["long_run"]] if "long_run" in r else [])
    for c in cases:
        s, b = c["server_log"], c["no_client_server_log"]
        if "error" in c:
            rows.append(f"| {c['period_frames']} | {'2 burners' if c['loaded'] else 'idle'} | {c['seconds']:.0f} s | "
                        f"run failed (rc {c.get('rc')}) | | | | | | {s['timer_late']} / {b['timer_late']} | |")
            continue
        rows.append(
            f"| {c['period_frames']} ({c['period_ms']:.2f} ms) | {'2 burners' if c['loaded'] else 'idle'} | "
            f"{c['seconds']:.0f} s | {c['callbacks']} | {c['median_ms'] * 1e3:.0f} µs ({c['median_pct']:.2f} %) | "
            f"{c['p99_ms'] * 1e3:.0f} µs ({c['p99_pct']:.2f} %) | {c['p999_ms'] * 1e3:.0f} µs ({c['p999_pct']:.2f} %) | "
            f"{c['max_ms'] * 1e3:.0f} µs ({c['max_pct']:.1f} %) | {c['underflows']} | {s['timer_late']} / "
            f"{b['timer_late']} | {s['client_blamed_portaudio']} |")
    return "\n".join(rows)


def latency_table(r) -> str:
    rows = ["| period | PortAudio blocksize | click cycles matched (clean / all) | frames Downbeat adds beyond the "
            "cycle (clean cycles) | click onsets located at F0 + n + slip + ... | slip (frames lost to xruns) | "
            "JACK playback latency of Downbeat's port |",
            "|---|---|---|---|---|---|---|"]
    for c in r["cases"]:
        rows.append(
            f"| {c['period_frames']} | {c['blocksize']} | {c['clean_cycles_with_click'] - c['unmatched_clean_cycles']}"
            f"/{c['clean_cycles_with_click']} / {c['cycles_matched']}/{c['cycles_with_click']} | "
            f"{c['offset_frames_values_clean']} | {c['click_residual_frames']} ({c['clicks_located']} clicks) | "
            f"{c['final_slip_frames']} by the end ({c['frame_time_gaps']} server jumps, "
            f"{c['cycles_downbeat_skipped']} cycles without a Downbeat callback) | "
            f"{c['port_latency_frames'].get('downbeat_port_playback')} |")
    return "\n".join(rows)


def sensor_table(r) -> str:
    if r.get("skipped"):
        return f"Not measured: {r['skipped']}"
    rows = ["| step | trials | decision beat (ms after the datagram) min / median / max | first earlier click "
            "min / median / max |", "|---|---|---|---|"]
    d, a = r.get("decision_ms"), r.get("audible_ms")
    if d:
        rows.append(f"| first reading, 0 -> -10 % | {d['n']} | {d['min']:.0f} / {d['median']:.0f} / {d['max']:.0f} | "
                    f"{a['min']:.0f} / {a['median']:.0f} / {a['max']:.0f} |")
    h = r.get("hysteresis_trial")
    if h and "decision_ms" in h:
        rows.append(f"| established level 0 %, then -10 % at 10 Hz (hysteresis) | 1 | {h['decision_ms']:.0f} | "
                    f"{h['audible_ms']:.0f} |")
    return "\n".join(rows)


def startup_table(r) -> str:
    rows = ["| command | numba cache | runs | to JACK port (s) | to first audio (s) | to done (s) | notes |",
            "|---|---|---|---|---|---|---|"]
    for cmd in ("play", "render"):
        for cache in ("cold", "warm"):
            runs = [x for x in r[cmd] if x["cache"] == cache]
            if not runs:
                continue
            stale = sum(bool(x.get("kernels_changed_since_cold") or x.get("kernels_edited_during_run"))
                        for x in runs)
            note = f"{stale} run(s) after someone edited _kernels.py (cache invalid)" if stale else ""
            if cmd == "play":
                port = statistics.median(x["port_s"] for x in runs)
                first = [x["first_audio_s"] for x in runs if x.get("first_audio_s") is not None]
                b0 = sum(bool(x.get("first_click_is_beat0")) for x in runs)
                rows.append(f"| `downbeat play demo-descent --no-cues` | {cache} | {len(runs)} | {port:.2f} | "
                            f"{statistics.median(first):.2f} | | beat 0 caught in {b0}/{len(runs)} {note} |")
            else:
                first = [x["first_audio_written_s"] for x in runs if x.get("first_audio_written_s")]
                done = statistics.median(x["done_s"] for x in runs)
                rows.append(f"| `downbeat render demo-descent --no-cues` | {cache} | {len(runs)} | | "
                            f"{statistics.median(first):.2f} | {done:.2f} | {note} |")
    rows.append("")
    rows.append("(medians)")
    return "\n".join(rows)


def main() -> int:
    for name, fn in (("render", render_table), ("callback", callback_table), ("latency", latency_table),
                     ("sensor", sensor_table), ("startup", startup_table)):
        r = load(name)
        print(f"\n### {name}\n")
        if r is None:
            print("(no results yet)")
            continue
        m = r.get("machine", {})
        print(f"<!-- {m.get('time')} load {m.get('loadavg_1_5_15')} head {m.get('git_head')} -->")
        print(fn(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())

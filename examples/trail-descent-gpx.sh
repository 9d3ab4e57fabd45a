#!/usr/bin/env bash
# Render a real trail descent from a GPX file: a track for your phone, the list of every step and cue, a picture.
#
#   bash examples/trail-descent-gpx.sh [FILE.gpx] [OUT_DIR]
#
# Default FILE: the bundled Mojstrovka recording (Julian Alps, 2.7 km, -419 m; profiles/bundled/mojstrovka.LICENSE).
# Writes OUT_DIR/NAME.ogg (Ogg Vorbis: small, every phone plays it), OUT_DIR/NAME-events.csv (kind, sample,
# time_s, bpm, clip of every step and cue) and OUT_DIR/NAME.png (grade, cadence and cue timeline).
# DOWNBEAT names the command (default: `downbeat` on PATH, else the README's ~/.downbeat/bin/downbeat).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
gpx="${1:-$here/../profiles/bundled/mojstrovka.gpx}"
out="${2:-.}"
if [ -z "${DOWNBEAT:-}" ]; then
    if command -v downbeat >/dev/null; then DOWNBEAT=downbeat; else DOWNBEAT="$HOME/.downbeat/bin/downbeat"; fi
fi
name="$(basename "${gpx%.*}")"
mkdir -p "$out"

# 1. What the run will sound like: grade, target cadence and when each cue is spoken.
$DOWNBEAT profile show "$gpx" --png "$out/$name.png"
# 2. The track. -3 dB leaves headroom for the phone's own volume steps; set your usual cadence with --base-cadence.
$DOWNBEAT render "$gpx" -o "$out/$name.ogg" --events "$out/$name-events.csv" --volume-db -3

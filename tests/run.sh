#!/usr/bin/env bash
# Run Downbeat's test suite on a fresh Debian machine (this is the README's test command; .ci/run calls it).
#
# 1. installs the Debian packages the tests need (PortAudio, JACK, espeak-ng, sndfile) if they are missing;
# 2. makes a virtualenv in .venv and installs Downbeat with its test extras;
# 3. starts a JACK dummy server (a real, paced audio server without a sound card) unless one is running;
# 4. runs pytest, then stops the JACK server it started (by its pid).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(libportaudio2 jackd2 espeak-ng festival festvox-us-slt-hts flite libsndfile1 python3-venv gpsd gpsd-clients
              gcc python3-dev)  # gcc + headers: the audio kernels are compiled ahead of time (metronome/_aot.py)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "installing Debian packages: ${missing[*]}"
    # jackd2 asks about real-time priority in a debconf dialog: answer it non-interactively.
    echo "jackd2 jackd/tweak_rt_limits boolean false" | $SUDO debconf-set-selections
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test,ble,latency,music,musicsync]'
# Compile the audio kernels ahead of time now (a few seconds, once per source change), as the README's install does.
.venv/bin/python -m metronome._aot

export JACK_NO_START_SERVER=1
JACK_PID=""
cleanup() { if [ -n "$JACK_PID" ]; then kill "$JACK_PID" 2>/dev/null || true; wait "$JACK_PID" 2>/dev/null || true; fi; }
trap cleanup EXIT
if ! jack_lsp >/dev/null 2>&1; then
    # No server runs: clear what killed servers may have left in JACK's shared-memory registry, which
    # otherwise fills up ("Too many servers already active").
    if ! pgrep -x jackd >/dev/null 2>&1 && ! pgrep -x jackdbus >/dev/null 2>&1; then
        rm -rf /dev/shm/jack-shm-registry /dev/shm/jack_* /dev/shm/jack-[0-9]* 2>/dev/null || true
    fi
    export DOWNBEAT_JACKD_LOG="${TMPDIR:-/tmp}/downbeat-jackd.$$.log"
    # The tests read this log: JACK names the client that missed a deadline ("client = X was not finished").
    jackd -d dummy -r 48000 -p 128 >"$DOWNBEAT_JACKD_LOG" 2>&1 &
    JACK_PID=$!
    jack_wait -w -t 10 >/dev/null
fi

.venv/bin/python -m pytest -q "$@"

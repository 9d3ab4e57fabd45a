"""``python -m metronome.cli``: the same Ctrl-C-safe start-up as the ``downbeat`` console script."""

from metronome.entry import main

main()

"""``python -m metronome.cli``: the same entry point as the ``downbeat`` console script."""

from .app import main

if __name__ == "__main__":
    main()

"""The runner's own history: learn a runner profile from recorded runs, review a run's descents, track progress.

Library modules (no CLI, no audio): :mod:`.samples` (per-point cadence from FIT/GPX/TCX), :mod:`.runner`
(:class:`~.runner.RunnerProfile`, YAML save/load, :func:`~.runner.apply_runner` for render/play/profile show),
:mod:`.learn`, :mod:`.review`, :mod:`.progress`; :mod:`.plot` draws the review PNG; :mod:`.commands` holds the click
commands ``learn``, ``review`` and ``progress`` for the ``downbeat`` group.
"""

"""Plans that travel (issue 16): FIT course and workout export for GPS watches, and finish-time/anchor helpers.

* :mod:`.fit_course`: the course track plus a course point at every planned cue;
* :mod:`.fit_workout`: one distance step per tempo plateau with a cadence target;
* :mod:`.finish`: :func:`~.finish.scale_to_finish_time` and :func:`~.finish.distance_anchors` for ``render``;
* :mod:`.command`: the ``downbeat export`` click command.

The FIT encoder (fit-tool, BSD-3-Clause) is the optional ``fit`` extra; see :mod:`._fit` for the licences.
"""

"""Limits shared by several packages, each stated once (ground floor: no dependencies).

``MAX_GRADE_PCT``: the steepest grade any input may carry, in percent, positive or negative.  45 % (24 degrees) is
steeper than any runnable trail (the steepest road grades are ~35 %, Baldwin Street 34.8 %; sky-race "vertical km"
courses average 30-40 % with short pitches above); beyond it the pace, grade -> cadence and energy-cost figures
the models rest on (Minetti et al. 2002 measured to +-45 %) say nothing.  The sensor protocol refuses readings
beyond it, profiles clip to it, YAML courses refuse it, the pace model and runner profiles are defined within it.
"""

MAX_GRADE_PCT = 45.0

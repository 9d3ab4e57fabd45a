"""Course, workout and activity profiles: files (YAML, GPX, FIT, TCX) -> :class:`Profile`.

Public API::

    load_profile(path_or_name, *, flat_pace_s_per_km=None, smoothing_m=None, use_recorded_time=None) -> Profile
    bundled_names() -> list[str]
"""

from metronome.errors import ProfileError

from .loader import bundled_names, load_profile
from .schema import PROFILE_KINDS, Profile, Tag

__all__ = ["load_profile", "bundled_names", "Profile", "Tag", "PROFILE_KINDS", "ProfileError"]

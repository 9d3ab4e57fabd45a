"""``downbeat latency``: measure your own audio path.

* :mod:`.signal` -- MLS / chirp test signal and cross-correlation onset (pure numpy);
* :mod:`._kernel` -- the duplex stream's compiled C callback (no Python in the audio thread);
* :mod:`.loopback` -- the round trip through a device whose output is wired to its input;
* :mod:`.tap` -- tap calibration for headphones and Bluetooth (pure logic; the keyboard part is thin);
* :mod:`.offsets` -- per-device output offsets in ``$XDG_CONFIG_HOME/downbeat/latency.json``;
* :mod:`.rtchecks` -- real-time checks for ``downbeat doctor``;
* :mod:`.command` -- the ``latency`` click command.
"""

from .offsets import format_offsets, output_offset_s  # noqa: F401

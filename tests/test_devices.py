"""metronome.devices: --device names pick the host API before a device that merely carries the word."""

from metronome.devices import DeviceInfo, match_devices


def _dev(i, name, hostapi):
    return DeviceInfo(i, name, hostapi, 2, 2, 48000.0, False, False)


def test_host_api_named_wins_over_alsa_plugin_pcms_of_the_same_name():
    devs = [_dev(0, "jack", "ALSA"), _dev(1, "pulse", "ALSA"), _dev(2, "system", "JACK Audio Connection Kit")]
    assert match_devices(devs, "JACK") == [2]
    assert match_devices(devs, "alsa") == [0, 1]
    assert match_devices(devs, "pulse") == [1]  # no Pulse host API: the substring rule
    assert match_devices(devs, "usb") == []

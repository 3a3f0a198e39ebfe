"""A receiver with nothing to do: how much CPU it burns, and how fast it wakes."""
from cywhip import _bench


class IdleReceiver:
    timeout = 120

    def track_cpu_percent_idle_2s(self):
        return _bench.run_pair(_bench._w_cywhip_idle, {"name": _bench._name("asv-d"), "seconds": 2.0})["cpu_percent"]

    track_cpu_percent_idle_2s.unit = "% of a core"

    def track_wakeup_after_50ms_idle_p50(self):
        return _bench.run_pair(_bench._w_cywhip_wakeup, {"name": _bench._name("asv-w"), "count": 40,
                                                         "idle": 0.05})["p50_us"]

    track_wakeup_after_50ms_idle_p50.unit = "µs"

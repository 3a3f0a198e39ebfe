"""Ping-pong round trips of 32-byte messages, measured on the pinging side."""
from cywhip import _bench


class RoundTrip:
    params = [["default_wait", "no_spin"]]
    param_names = ["wait"]
    timeout = 180

    def setup_cache(self):
        out = {}
        for wait, spin, count in (("default_wait", 50e-6, 200_000), ("no_spin", 0.0, 20_000)):
            out[wait] = _bench.run_pair(_bench._w_cywhip_pingpong,
                                        {"name": _bench._name("asv-p"), "count": count, "spin": spin})
        return out

    def track_p50(self, cache, wait):
        return cache[wait]["p50_us"]

    track_p50.unit = "µs"

    def track_p99(self, cache, wait):
        return cache[wait]["p99_us"]

    track_p99.unit = "µs"


class FutexFloor:
    timeout = 120

    def track_futex_pingpong_p50(self):
        return _bench.run_pair(_bench._w_floor_futex, {"name": "cywhip-" + _bench._name("asv-x"),
                                                       "count": 20_000})["p50_us"]

    track_futex_pingpong_p50.unit = "µs"

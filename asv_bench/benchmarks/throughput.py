"""Messages (or records) per second between two processes, measured in the receiving one."""
from cywhip import _bench

SIZES = [32, 1024, 65536, 1048576]


def _count(size):
    # About 64 MiB per figure, at least 2,000 and at most 1,000,000 messages.
    return max(2_000, min(1_000_000, (64 << 20) // size))


def _capacity(size):
    return 1024 if size <= 1024 else 64


class SingleSendRecv:
    params = [SIZES]
    param_names = ["message_bytes"]
    unit = "messages/s"
    timeout = 120

    def track_send_recv(self, size):
        return _bench.run_pair(_bench._w_cywhip_stream, {
            "name": _bench._name("asv-s"), "count": _count(size), "size": size, "mode": "single",
            "capacity": _capacity(size)})["rate"]

    track_send_recv.unit = "messages/s"


class BatchSendRecv:
    params = [SIZES]
    param_names = ["message_bytes"]
    timeout = 120

    def track_send_many_recv_many(self, size):
        return _bench.run_pair(_bench._w_cywhip_stream, {
            "name": _bench._name("asv-m"), "count": _count(size) * 2, "size": size, "mode": "many",
            "capacity": _capacity(size)})["rate"]

    track_send_many_recv_many.unit = "messages/s"


class TypedArrays:
    timeout = 120

    def track_send_array_recv_into_32B(self):
        return _bench.run_pair(_bench._w_cywhip_array, {"name": _bench._name("asv-t"), "count": 10_000_000})["rate"]

    track_send_array_recv_into_32B.unit = "records/s"

    def track_raw_c_ring_floor_32B(self):
        return _bench.run_pair(_bench._w_floor_ring, {"name": "cywhip-" + _bench._name("asv-f"),
                                                      "count": 10_000_000, "size": 32})["rate"]

    track_raw_c_ring_floor_32B.unit = "records/s"

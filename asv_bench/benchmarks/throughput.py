"""Messages (or records) per second between two processes, measured in the receiving one."""
from cywhip import _bench
from cywhip._bench.common import _record_bytes

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


class ByteChannelSendRecv:
    """SingleSendRecv and BatchSendRecv through a byte channel (max_queued_bytes) that queues as
    many messages of that size as the slot channel there has slots."""
    params = [SIZES]
    param_names = ["message_bytes"]
    timeout = 120

    def track_send_recv(self, size):
        return _bench.run_pair(_bench._w_cywhip_stream, {
            "name": _bench._name("asv-ys"), "count": _count(size), "size": size, "mode": "single",
            "bytes": _record_bytes(size, _capacity(size))})["rate"]

    track_send_recv.unit = "messages/s"

    def track_send_many_recv_many(self, size):
        return _bench.run_pair(_bench._w_cywhip_stream, {
            "name": _bench._name("asv-ym"), "count": _count(size) * 2, "size": size, "mode": "many",
            "bytes": _record_bytes(size, _capacity(size))})["rate"]

    track_send_many_recv_many.unit = "messages/s"


def _checked(result):
    if result.get("wrong"):
        raise AssertionError(result["note"])
    return result


class MixedSizes:
    """The seeded stream of 16 B to 64 KiB messages (log-uniform), each checked byte for byte,
    through a byte channel of 4 MiB or a slot channel of 1,024 slots of 64 KiB; and the size of
    each channel's file.  One stream per channel gives all three figures."""
    params = [["byte channel", "slot channel"]]
    param_names = ["channel"]
    timeout = 180

    def setup_cache(self):
        from cywhip._bench.common import MIXED_RING, MIXED_SLOTS
        out = {}
        for channel, ring in (("byte channel", {"bytes": MIXED_RING}), ("slot channel", {"slots": MIXED_SLOTS})):
            out[channel] = _checked(_bench.run_pair(_bench._w_cywhip_mixed, dict(
                ring, name=_bench._name("asv-x"), count=50_000)))
        return out

    def track_messages(self, results, channel):
        return results[channel]["rate"]

    track_messages.unit = "messages/s"

    def track_gigabytes(self, results, channel):
        return results[channel]["bytes_rate"]

    track_gigabytes.unit = "GB/s"

    def track_file_bytes(self, results, channel):
        return results[channel]["file_bytes"]

    track_file_bytes.unit = "bytes"


class Reserve1MiB:
    """1 MiB messages made as they are sent (computed by NumPy, or read from a file with
    os.preadv), in reserve()'s buffer in the ring or in a buffer of the producer's own that send()
    copies: GB/s through a byte channel of 16 messages."""
    params = [["numpy", "preadv"], ["reserve", "send"]]
    param_names = ["fill", "into"]
    timeout = 120

    def track_gigabytes(self, fill, into):
        size = 1 << 20
        result = _bench.run_pair(_bench._w_cywhip_fill, {
            "name": _bench._name("asv-r"), "count": 2000, "size": size, "fill": fill,
            "reserve": into == "reserve"})
        return _checked(result)["rate"] * size / 1e9

    track_gigabytes.unit = "GB/s"

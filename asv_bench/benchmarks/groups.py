"""Receiver groups, one sender and two receivers (three processes): a broadcast to two groups,
per receiver (on a slot channel and on a byte channel), and one group of two members sharing
the messages, both together; and both on a byte channel of two senders (max_senders=2, four
processes), each sending half the messages."""
from cywhip import _bench


def _exactly_once(result):
    if not result["exactly_once"]:
        raise AssertionError(result["note"])
    return result


class Groups:
    timeout = 180

    def track_broadcast_2_groups_recv_many_per_group(self):
        n = 1_000_000
        return _bench._per_consumer(_bench.run_pair(_bench._w_cywhip_groups, {
            "name": _bench._name("asv-gb"), "count": n, "size": 32, "mode": "recv_many"}, consumers=2), n)["rate"]

    track_broadcast_2_groups_recv_many_per_group.unit = "messages/s"

    def track_1_group_of_2_sharing_recv_many_aggregate(self):
        n = 500_000
        return _exactly_once(_bench._aggregate(_bench.run_pair(_bench._w_cywhip_groups, {
            "name": _bench._name("asv-gs"), "count": n, "size": 32, "mode": "recv_many", "share": True},
            shared=_bench.SPAWN.Value("i", 0), consumers=2), n))["rate"]

    track_1_group_of_2_sharing_recv_many_aggregate.unit = "messages/s"

    def track_byte_channel_broadcast_2_groups_recv_many_per_group(self):
        n = 1_000_000
        return _bench._per_consumer(_bench.run_pair(_bench._w_cywhip_groups, {
            "name": _bench._name("asv-gd"), "count": n, "size": 32, "mode": "recv_many", "bytes": True},
            consumers=2), n)["rate"]

    track_byte_channel_broadcast_2_groups_recv_many_per_group.unit = "messages/s"

    def track_byte_channel_of_2_senders_broadcast_2_groups_recv_many_per_group(self):
        n = 1_000_000
        return _bench._per_consumer(_bench.run_pair(_bench._w_cywhip_groups, {
            "name": _bench._name("asv-ge"), "count": n // 2, "size": 32, "mode": "recv_many", "bytes": True,
            "senders": 2}, producers=2, consumers=2), n)["rate"]

    track_byte_channel_of_2_senders_broadcast_2_groups_recv_many_per_group.unit = "messages/s"

    def track_byte_channel_of_2_senders_1_group_of_2_sharing_recv_many_aggregate(self):
        n = 500_000
        return _exactly_once(_bench._aggregate(_bench.run_pair(_bench._w_cywhip_groups, {
            "name": _bench._name("asv-gf"), "count": n // 2, "size": 32, "mode": "recv_many", "share": True,
            "bytes": True, "senders": 2}, shared=(_bench.SPAWN.Value("i", 0), _bench.SPAWN.Value("i", 0)),
            producers=2, consumers=2), n))["rate"]

    track_byte_channel_of_2_senders_1_group_of_2_sharing_recv_many_aggregate.unit = "messages/s"

"""The cost of on_message with a trivial serializer and deserializer."""
from cywhip import _bench


class OnMessage:
    timeout = 120

    def track_on_message_trivial_serializers(self):
        return _bench.run_pair(_bench._w_cywhip_callback, {"name": _bench._name("asv-o"), "count": 1_000_000,
                                                           "size": 32})["rate"]

    track_on_message_trivial_serializers.unit = "messages/s"

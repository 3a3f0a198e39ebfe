"""The transport interface: what the channel side of a bridge asks of a network engine.

The channel side (cywhip/bridge/_channels.py) reads and writes cywhip channels and knows nothing
of the engine; a transport (cywhip/bridge/jetstream.py today) moves batches of messages and keeps
them until they are acknowledged.  Another engine (Redis Streams, say) is one more class with
these methods; the channel side does not change.
"""
from dataclasses import dataclass
from typing import Optional, Sequence


@dataclass(frozen=True)
class Geometry:
    """What a channel's every end must agree on, as the out side's channel has it.

    A slot channel has ``max_queued_messages`` and ``max_queued_bytes`` None; a byte channel has
    ``max_queued_bytes`` (its ring's bytes) and ``max_queued_messages`` None."""
    message_length: int
    max_queued_messages: Optional[int]
    max_senders: int
    max_receivers: int
    max_queued_bytes: Optional[int] = None

    def describe(self):
        queue = (f"max_queued_bytes={self.max_queued_bytes}" if self.max_queued_bytes is not None
                 else f"max_queued_messages={self.max_queued_messages}")
        return (f"message_length={self.message_length}, {queue}, "
                f"max_senders={self.max_senders}, max_receivers={self.max_receivers}")

    def queue_kwargs(self):
        """The keyword that opens an end of this channel's kind and size."""
        if self.max_queued_bytes is not None:
            return dict(max_queued_bytes=self.max_queued_bytes)
        return dict(max_queued_messages=self.max_queued_messages)


class TransportError(Exception):
    """The engine could not do what was asked now (unreachable, timed out); the caller retries."""


class RefusedError(Exception):
    """The engine's state refuses this bridge (a stream with another channel's geometry, say);
    retrying does not help: the message says what to do."""


@dataclass
class Delivery:
    """One message the engine delivered to an `in` link, not yet acknowledged.

    ``position`` orders deliveries of one link (JetStream: the stream sequence); ``channel`` is the
    channel its publisher named (None if it named none); ``token`` is the transport's own handle."""
    data: bytes
    position: int
    channel: Optional[str]
    token: object


class OutLink:
    """Where one local channel's messages go."""

    async def publish(self, batch: Sequence[tuple], after: Optional[str]) -> int:
        """Publish ``(message_id, payload)`` pairs in this order, each only if the one before it
        (``after`` for the first; None: whatever is there) is the last message the engine holds
        for the channel, so that a message can never be stored after a later one; return once the
        engine has stored every one (durably, as it was configured to), with how many it dropped
        as duplicates of an id it already had.  Raises TransportError if it cannot say so: the
        caller asks last_id() and publishes what is not stored yet again, with the same ids."""
        raise NotImplementedError

    async def last_id(self) -> Optional[str]:
        """The id of the last message the engine holds for the channel (None if none, or if it
        carries no id).  Raises TransportError."""
        raise NotImplementedError

    async def close(self):
        pass


class InLink:
    """Where one local channel's messages come from (a durable consumer of them)."""

    #: the geometry the out side recorded, or None if it recorded none
    geometry: Optional[Geometry] = None

    async def fetch(self, max_count: int, timeout: float) -> list:
        """Up to ``max_count`` Deliveries in order; an empty list if none came within ``timeout`` s.
        Raises TransportError."""
        raise NotImplementedError

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge these (they are never delivered again); return once the engine confirmed.
        Raises TransportError: the caller acknowledges them again."""
        raise NotImplementedError

    async def dead(self, delivery: Delivery, reason: str) -> None:
        """Put a refused delivery on the dead-letter subject with ``reason``, then acknowledge it."""
        raise NotImplementedError

    async def pending(self) -> Optional[int]:
        """Messages the engine holds for this link not yet delivered (for --stats), if known."""
        return None

    async def close(self):
        pass


class Transport:
    """One connection to the engine."""

    async def open_out(self, channel: str, geometry: Geometry, identity: str) -> OutLink:
        """Make ready to publish ``channel`` (creating what the engine needs: a stream); record its
        geometry there.  Raises RefusedError if the engine holds that channel with another
        geometry."""
        raise NotImplementedError

    async def open_in(self, channel: str, consumer: str) -> InLink:
        """Attach to ``channel``'s messages through the durable consumer named ``consumer``."""
        raise NotImplementedError

    async def channels(self) -> list:
        """The channels published so far (for `in` patterns)."""
        raise NotImplementedError

    async def close(self):
        pass

"""Names shared by the channel side and the transports: how a channel name is written where
only a few characters are allowed, and the id that makes a message's republication detectable."""
import re


def encode(name, keep=b"_-"):
    """A name as one subject token or stream-name part: [A-Za-z0-9] and ``keep`` as they are,
    any other byte ``=XX``."""
    out = []
    for b in name.encode("utf-8", "surrogateescape"):
        c = bytes((b,))
        out.append(c.decode() if (c.isalnum() and c.isascii()) or c in keep else f"={b:02X}")
    return "".join(out)


def decode(token):
    """encode()'s inverse."""
    raw = re.sub(rb"=([0-9A-F]{2})", lambda m: bytes((int(m.group(1), 16),)), token.encode("ascii", "replace"))
    return raw.decode("utf-8", "surrogateescape")


def message_id(channel, created_ns, position):
    """The Nats-Msg-Id of the message at ``position`` of the channel ``channel`` created at
    ``created_ns``: the same message published again has the same id."""
    return f"{encode(channel)}/{created_ns}/{position}"


def channel_of_id(msg_id):
    """The channel a message id names, or None if it is not one of ours."""
    parts = msg_id.split("/")
    if len(parts) != 3:
        return None
    return decode(parts[0])



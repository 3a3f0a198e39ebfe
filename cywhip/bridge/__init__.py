"""cywhip channels beyond one machine, through NATS JetStream (``pip install "cywhip[nats]"``).

``bridge_out`` publishes local channels to JetStream; ``bridge_in`` sends what JetStream holds
into local channels of the same names.  Both are coroutines that run until ``stop`` (an
``asyncio.Event``) is set::

    import asyncio, cywhip.bridge

    async def main():
        stop = asyncio.Event()
        await cywhip.bridge.bridge_out(["prices", "orders-*"], nats="nats://feed-host:4222", stop=stop)

The command line is ``python -m cywhip bridge out|in CHANNEL... --nats URL``.  docs/bridge.md says
what each side guarantees and what the guarantees rest on.

The channel side (``_channels``) speaks to the network through a small interface
(``Transport``, ``OutLink``, ``InLink`` in ``_transport``); ``jetstream.JetStream`` is the one
transport today.
"""
import asyncio

from cywhip.bridge._transport import (
    Delivery, Geometry, InLink, OutLink, RefusedError, Transport, TransportError,
)
from cywhip.bridge._channels import InChannel, OutChannel, Stats, _report, _run_channels, default_consumer

__all__ = ["bridge_out", "bridge_in", "connect", "Stats", "Geometry", "Transport", "OutLink", "InLink",
           "Delivery", "TransportError", "RefusedError", "default_consumer"]

DEFAULT_BATCH = 256


async def connect(nats="nats://127.0.0.1:4222", *, subject_prefix="cywhip", **options):
    """A JetStream transport connected to ``nats`` (a URL or a list of them).  ``options``:
    ``credentials``, ``tls_ca``, ``tls_cert``, ``tls_key``, ``user``, ``password``, ``token``
    (as nats-py takes them), ``duplicate_window`` and ``replicas`` (of the streams it creates),
    ``ack_wait`` (of the consumers it creates), ``timeout`` (of every request)."""
    from cywhip.bridge.jetstream import JetStream
    return await JetStream.connect(nats, prefix=subject_prefix, **options)


async def _bridge(kind, make, channels, listing_of, exclude, nats, subject_prefix, stats, stop, transport,
                  stats_every, options):
    if isinstance(channels, str):
        channels = [channels]
    if isinstance(exclude, str):
        exclude = [exclude]
    stop = stop if stop is not None else asyncio.Event()
    stats = stats if stats is not None else Stats()
    own = transport is None
    if own:
        transport = await connect(nats, subject_prefix=subject_prefix, **options)
    reporter = None
    if stats_every:
        reporter = asyncio.ensure_future(_report(kind, stats, stats_every, stop))
    try:
        return await _run_channels(kind, lambda name: make(name, transport, stats), list(channels),
                                   listing_of(transport), list(exclude), stop, stats)
    finally:
        if reporter is not None:
            reporter.cancel()
        if own:
            await transport.close()


async def bridge_out(channels, *, nats="nats://127.0.0.1:4222", subject_prefix="cywhip", exclude=(),
                     group="bridge", batch=DEFAULT_BATCH, stop=None, stats=None, stats_every=None,
                     transport=None, **options):
    """Publish local channels to JetStream until ``stop`` is set.

    ``channels``: names or shell-style patterns, matched against the channels in /dev/shm (looked
    at again every second, so a channel made later is bridged when it appears); ``exclude``:
    patterns never bridged.  Each channel goes to subject ``subject_prefix.CHANNEL`` in a stream of
    its own, created with file storage if missing, its geometry in the stream's metadata.  The
    bridge reads a channel of many receivers as the only member of the durable group ``group``,
    a channel of one receiver as that receiver; it borrows up to ``batch`` messages, publishes
    them with ids made of the channel's name, its creation time and each message's position, and
    takes them once JetStream has stored them all.  Set ``stop`` to stop once the batch in hand
    is stored (it waits for JetStream as long as it takes); cancelling the task instead leaves
    that batch in the channel for the next bridge, in another process.  Raises RefusedError
    (a channel that cannot be bridged, with what to do) or TransportError (no server)."""
    return await _bridge("out", lambda name, t, st: OutChannel(name, t, group, batch, st), channels,
                         lambda t: _local_channels, exclude, nats, subject_prefix, stats, stop,
                         transport, stats_every, options)


async def bridge_in(channels, *, nats="nats://127.0.0.1:4222", subject_prefix="cywhip", exclude=(),
                    consumer=None, local_prefix="", batch=DEFAULT_BATCH, stop=None, stats=None,
                    stats_every=None, transport=None, **options):
    """Send what JetStream holds for ``channels`` into local channels of the same names until
    ``stop`` is set.

    ``channels``: names or shell-style patterns, matched against the channels JetStream has
    streams for (looked at again every second); ``exclude``: patterns never bridged.  Each
    channel is read through the durable pull consumer ``consumer`` (default: this host's name
    and the channel's); a missing local channel is created with the geometry the out side
    recorded, a local channel of another geometry is refused naming both.  The bridge is one of
    the channel's senders.  Each message is acknowledged after the local send returned; a
    malformed one (longer than message_length, naming another channel) is put on the subject
    ``subject_prefix.$dead.CHANNEL`` with the reason and acknowledged, never sent.
    ``local_prefix`` is put before each local channel's name (to bridge into channels of other
    names, e.g. on the machine the channels come from)."""
    return await _bridge("in", lambda name, t, st: InChannel(name, t, consumer, batch, st, local_prefix), channels,
                         lambda t: t.channels, exclude, nats, subject_prefix, stats, stop,
                         transport, stats_every, options)


async def _local_channels():
    import cywhip
    return [c.name for c in cywhip.channels() if not c.problem]

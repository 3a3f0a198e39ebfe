"""The JetStream transport of cywhip.bridge, over nats-py (``pip install "cywhip[nats]"``).

A channel CHANNEL is the subject ``PREFIX.CHANNEL`` and has a stream of its own, ``PREFIX_CHANNEL``
(file storage), whose metadata records the channel's geometry (``cywhip.message_length``, ...).
Names are kept as they are when they are made of ``A-Z a-z 0-9 _ -``; any other byte is written
``=XX`` (its hex value), so every channel name maps to one subject token and one stream name.
Messages are published with a ``Nats-Msg-Id`` header, which the stream's duplicate window uses
to drop a message published twice.  An `in` link is a durable pull consumer with explicit acks.
"""
import asyncio
import itertools
import json
import logging
import ssl

from cywhip.bridge._names import channel_of_id, decode, encode, message_id  # noqa: F401
from cywhip.bridge._transport import (
    Delivery, Geometry, InLink, OutLink, RefusedError, Transport, TransportError,
)

try:
    import nats
    import nats.errors
    import nats.js.errors
    from nats.js import api
except ImportError as _exc:   # pragma: no cover - nats-py is the extra cywhip[nats]
    raise ImportError(f"the JetStream bridge needs nats-py ({_exc}): pip install \"cywhip[nats]\"") from _exc

log = logging.getLogger("cywhip.bridge")

MSG_ID = "Nats-Msg-Id"
EXPECTED_LAST_ID = "Nats-Expected-Last-Msg-Id"
# Metadata keys of a channel's stream.
META_CHANNEL = "cywhip.channel"
# A slot channel's stream records max_queued_messages, a byte channel's max_queued_bytes (the
# other is left out); a stream without cywhip.max_queued_bytes holds a slot channel.
_META_GEOMETRY = ("message_length", "max_queued_messages", "max_senders", "max_receivers",
                  "max_queued_bytes")
_META_QUEUES = ("max_queued_messages", "max_queued_bytes")
# Headers of a dead letter.
REASON = "Cywhip-Reason"
DEAD_CHANNEL = "Cywhip-Channel"
DEAD_SEQUENCE = "Cywhip-Stream-Sequence"

_ERRORS = (nats.errors.Error, nats.js.errors.Error, asyncio.TimeoutError, OSError)


def subject_of(prefix, channel):
    return f"{prefix}.{encode(channel)}"


def stream_of(prefix, channel):
    # The prefix keeps no '_', so the first '_' ends it: no two (prefix, channel) share a stream.
    return f"{encode(prefix, b'-')}_{encode(channel)}"


def dead_subject_of(prefix, channel):
    return f"{prefix}.$dead.{encode(channel)}"


def dead_stream_of(prefix):
    return f"{encode(prefix, b'-')}-dead"


def geometry_from_metadata(meta):
    if not meta or not all(f"cywhip.{k}" in meta for k in _META_GEOMETRY if k not in _META_QUEUES):
        return None
    queues = [k for k in _META_QUEUES if f"cywhip.{k}" in meta]
    if len(queues) != 1:
        return None
    try:
        return Geometry(**{k: int(meta[f"cywhip.{k}"]) for k in _META_GEOMETRY if f"cywhip.{k}" in meta},
                        **{k: None for k in _META_QUEUES if k not in queues})
    except ValueError:
        return None


def geometry_metadata(channel, geometry):
    meta = {META_CHANNEL: channel}
    meta.update({f"cywhip.{k}": str(getattr(geometry, k)) for k in _META_GEOMETRY
                 if getattr(geometry, k) is not None})
    return meta


class JetStream(Transport):
    """A connection to a NATS server (or cluster) with JetStream.

    ``servers``: a URL or a list of them; ``prefix``: the subjects' first token; ``credentials``:
    a .creds file; ``tls_ca``/``tls_cert``/``tls_key``: files for TLS; ``user``/``password``/
    ``token``: as nats-py takes them.  ``duplicate_window`` (s) is set on the streams it creates;
    ``replicas`` likewise (a cluster keeps each message on that many servers); ``ack_wait`` (s) on
    the consumers it creates; ``timeout`` bounds every request."""

    def __init__(self, nc, prefix="cywhip", duplicate_window=120.0, replicas=1, ack_wait=30.0,
                 timeout=5.0):
        self.nc = nc
        self.js = nc.jetstream(timeout=timeout)
        self.prefix = prefix
        self.duplicate_window = duplicate_window
        self.replicas = replicas
        self.ack_wait = ack_wait
        self.timeout = timeout
        self._dead_ready = False
        self._box = {}
        # Reconnections so far: an `in` link resets its consumer after one (see fetch()).
        self.reconnects = 0
        self.replies = _Replies(nc)

    @classmethod
    async def connect(cls, servers, *, prefix="cywhip", credentials=None, tls_ca=None, tls_cert=None,
                      tls_key=None, user=None, password=None, token=None, name="cywhip-bridge",
                      **options):
        tls = None
        if tls_ca or tls_cert:
            tls = ssl.create_default_context(cafile=tls_ca)
            if tls_cert:
                tls.load_cert_chain(tls_cert, tls_key)

        async def on_error(exc):
            log.warning("NATS: %s", exc)

        async def on_disconnected():
            if not box.get("closing"):
                log.warning("NATS: disconnected; reconnecting")

        box = {}

        async def on_reconnected():
            log.info("NATS: reconnected")
            if "t" in box:
                box["t"].reconnects += 1

        kwargs = dict(servers=servers, name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                      error_cb=on_error, disconnected_cb=on_disconnected, reconnected_cb=on_reconnected,
                      connect_timeout=options.get("timeout", 5.0))
        if credentials:
            kwargs["user_credentials"] = credentials
        if tls is not None:
            kwargs["tls"] = tls
        if user is not None:
            kwargs["user"], kwargs["password"] = user, password
        if token is not None:
            kwargs["token"] = token
        try:
            nc = await nats.connect(**kwargs)
        except _ERRORS as exc:
            raise TransportError(f"cannot connect to NATS at {servers}: {type(exc).__name__}: {exc}") from exc
        box["t"] = t = cls(nc, prefix=prefix, **options)
        t._box = box
        return t

    async def close(self):
        # Everything the bridges sent that matters was confirmed (publishes' and acks' replies);
        # close() flushes the rest (no drain: it would wait for every subscription, up to 30 s).
        self._box["closing"] = True
        try:
            await asyncio.wait_for(self.nc.flush(), self.timeout)
        except Exception:
            pass
        await self.nc.close()

    # ------------------------------------------------------------------ out

    async def open_out(self, channel, geometry, identity):
        stream = stream_of(self.prefix, channel)
        subject = subject_of(self.prefix, channel)
        meta = geometry_metadata(channel, geometry)
        try:
            try:
                info = await self.js.stream_info(stream)
            except nats.js.errors.NotFoundError:
                info = None
            if info is None:
                await self.js.add_stream(api.StreamConfig(
                    name=stream, subjects=[subject], storage=api.StorageType.FILE,
                    duplicate_window=self.duplicate_window, num_replicas=self.replicas, metadata=meta,
                    description=f"cywhip channel {channel!r}"))
                log.info("created stream %s for channel %r (%s)", stream, channel, geometry.describe())
            else:
                recorded = geometry_from_metadata(info.config.metadata)
                if recorded is not None and recorded != geometry:
                    raise RefusedError(
                        f"stream {stream} holds channel {channel!r} with {recorded.describe()}, but the "
                        f"local channel {channel!r} has {geometry.describe()}: drain the stream and delete "
                        f"it (nats stream rm {stream}), or bridge under another --subject-prefix")
                if recorded is None:
                    cfg = info.config
                    cfg.metadata = {**(cfg.metadata or {}), **meta}
                    await self.js.update_stream(cfg)
        except _ERRORS as exc:
            raise TransportError(f"cannot set up stream {stream}: {type(exc).__name__}: {exc}") from exc
        return _JetStreamOut(self, subject, stream)

    # ------------------------------------------------------------------ in

    async def channels(self):
        names = []
        try:
            infos = await self.js.streams_info()
        except _ERRORS as exc:
            raise TransportError(f"cannot list streams: {type(exc).__name__}: {exc}") from exc
        head = stream_of(self.prefix, "")
        for info in infos:
            meta = info.config.metadata or {}
            if info.config.name.startswith(head) and META_CHANNEL in meta:
                names.append(meta[META_CHANNEL])
        return sorted(names)

    async def open_in(self, channel, consumer):
        stream = stream_of(self.prefix, channel)
        subject = subject_of(self.prefix, channel)
        try:
            info = await self.js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            raise RefusedError(f"no stream {stream} for channel {channel!r}: start `bridge out` for it "
                               f"first (with --subject-prefix {self.prefix})") from None
        except _ERRORS as exc:
            raise TransportError(f"cannot read stream {stream}: {type(exc).__name__}: {exc}") from exc
        try:
            await self._consumer(stream, consumer)
            sub = await self.js.pull_subscribe_bind(durable=consumer, stream=stream)
        except _ERRORS as exc:
            raise TransportError(f"cannot attach consumer {consumer} of stream {stream}: "
                                 f"{type(exc).__name__}: {exc}") from exc
        link = _JetStreamIn(self, channel, subject, stream, consumer, sub)
        link.geometry = geometry_from_metadata(info.config.metadata)
        return link

    async def _consumer(self, stream, consumer):
        """The durable consumer, created if missing.  One that holds deliveries not acknowledged
        (a bridge died with a batch in hand) is made again from its first message not
        acknowledged, so that they come again at once and before any later message (JetStream
        would redeliver them only after ack_wait, after newer ones)."""
        config = api.ConsumerConfig(durable_name=consumer, ack_policy=api.AckPolicy.EXPLICIT,
                                    ack_wait=self.ack_wait, max_deliver=-1, num_replicas=self.replicas or None)
        try:
            info = await self.js.consumer_info(stream, consumer)
        except nats.js.errors.NotFoundError:
            info = None
        if info is not None and info.num_ack_pending:
            start = info.ack_floor.stream_seq + 1
            log.info("consumer %s of %s: %d delivered and not acknowledged; made again from stream "
                     "sequence %d", consumer, stream, info.num_ack_pending, start)
            await self.js.delete_consumer(stream, consumer)
            config.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = start
            info = None
        if info is None:
            await self.js.add_consumer(stream, config)

    async def _dead(self, channel, data, reason, sequence):
        stream = dead_stream_of(self.prefix)
        if not self._dead_ready:
            try:
                await self.js.stream_info(stream)
            except nats.js.errors.NotFoundError:
                await self.js.add_stream(api.StreamConfig(
                    name=stream, subjects=[f"{self.prefix}.$dead.>"], storage=api.StorageType.FILE,
                    num_replicas=self.replicas, description="messages cywhip bridges refused"))
            self._dead_ready = True
        await self.js.publish(dead_subject_of(self.prefix, channel), data,
                              headers={REASON: reason, DEAD_CHANNEL: encode(channel),
                                       DEAD_SEQUENCE: str(sequence)})


class _Replies:
    """Publishes to JetStream whose acknowledgements come back to one inbox subscription, each to
    its own future: True for a duplicate, False for a message stored, TransportError for a refusal
    (JetStream's error, e.g. a wrong last message id, or no stream)."""

    def __init__(self, nc):
        self.nc = nc
        self.prefix = None
        self.futures = {}
        self.tokens = itertools.count()

    async def start(self):
        if self.prefix is None:
            prefix = self.nc.new_inbox()
            await self.nc.subscribe(prefix + ".*", cb=self._reply)
            self.prefix = prefix

    async def publish(self, subject, payload, headers):
        token = str(next(self.tokens))
        future = asyncio.get_running_loop().create_future()
        self.futures[token] = future
        await self.nc.publish(subject, payload, reply=f"{self.prefix}.{token}", headers=headers)
        return future

    def forget(self, futures):
        for f in futures:
            f.cancel()
        dead = [t for t, f in self.futures.items() if f.done()]
        for t in dead:
            del self.futures[t]

    async def _reply(self, msg):
        future = self.futures.pop(msg.subject[len(self.prefix) + 1:], None)
        if future is None or future.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":
            future.set_exception(TransportError("no stream answered (503)"))
            return
        try:
            resp = json.loads(msg.data)
        except ValueError:
            future.set_exception(TransportError(f"an acknowledgement that is not JSON: {msg.data[:100]!r}"))
            return
        if "error" in resp:
            err = resp["error"]
            future.set_exception(TransportError(f"JetStream refused it: {err.get('description')} "
                                                f"(code {err.get('err_code')})"))
        else:
            future.set_result(bool(resp.get("duplicate")))


class _JetStreamOut(OutLink):
    def __init__(self, transport, subject, stream):
        self.t = transport
        self.subject = subject
        self.stream = stream

    async def publish(self, batch, after):
        # Each message names the one before it: JetStream refuses it unless that is the stream's
        # last (after a duplicate check, so a republished one is still acknowledged as a
        # duplicate).  Publishes that the client sends again from its buffer after a
        # reconnection, behind ones the server never got, are refused rather than stored out
        # of order.
        replies = self.t.replies
        await replies.start()
        futures = []
        try:
            for msg_id, payload in batch:
                headers = {MSG_ID: msg_id}
                if after is not None:
                    headers[EXPECTED_LAST_ID] = after
                after = msg_id
                futures.append(await replies.publish(self.subject, payload, headers))
            duplicates = await asyncio.wait_for(asyncio.gather(*futures), self.t.timeout)
        except (TransportError, *_ERRORS) as exc:
            replies.forget(futures)
            if isinstance(exc, TransportError):
                raise TransportError(f"publish to {self.subject}: {exc}") from None
            raise TransportError(f"publish to {self.subject}: {type(exc).__name__}: {exc}") from exc
        return sum(duplicates)

    async def last_id(self):
        try:
            msg = await self.t.js.get_last_msg(self.stream, self.subject)
        except nats.js.errors.NotFoundError:
            return None
        except _ERRORS as exc:
            raise TransportError(f"last message of {self.stream}: {type(exc).__name__}: {exc}") from exc
        return (msg.headers or {}).get(MSG_ID)


class _JetStreamIn(InLink):
    def __init__(self, transport, channel, subject, stream, consumer, sub):
        self.t = transport
        self.channel = channel
        self.subject = subject
        self.stream = stream
        self.consumer = consumer
        self.sub = sub
        self._suspect = False
        self._reconnects = transport.reconnects

    async def fetch(self, max_count, timeout):
        try:
            if self._suspect or self._reconnects != self.t.reconnects:
                # A fetch failed (the connection or the server went away): deliveries made to a
                # fetch that never returned are pending, and JetStream would send newer ones
                # first.  The consumer is made again from its first message not acknowledged.
                await self.sub.unsubscribe()
                await self.t._consumer(self.stream, self.consumer)
                self.sub = await self.t.js.pull_subscribe_bind(durable=self.consumer, stream=self.stream)
                self._suspect = False
                self._reconnects = self.t.reconnects
            try:
                msgs = await self.sub.fetch(max_count, timeout=timeout)
            except asyncio.TimeoutError:
                # Nothing came within the timeout.  nats-py says so with its own TimeoutError,
                # or with asyncio's when the server's "no messages" answer to its first request
                # arrives after the deadline (a loop busy elsewhere): both mean an empty fetch.
                return []
        except _ERRORS as exc:
            self._suspect = True
            raise TransportError(f"fetch from {self.stream}: {type(exc).__name__}: {exc}") from exc
        out = []
        for m in msgs:
            msg_id = (m.headers or {}).get(MSG_ID)
            if m.subject != self.subject:
                named = f"subject {m.subject}"
            elif msg_id is not None:
                named = channel_of_id(msg_id)
            else:
                named = None
            out.append(Delivery(m.data, m.metadata.sequence.stream, named, m))
        return out

    async def ack(self, deliveries):
        try:
            last = len(deliveries) - 1
            for i, d in enumerate(deliveries):
                m = d.token
                m._ackd = False     # again, if this is a retry: the first ack may have been lost
                if i == last:
                    # Confirmed: the server handles one connection's messages in order, so every
                    # ack before it was handled too.
                    await m.ack_sync(timeout=self.t.timeout)
                else:
                    await m.ack()
        except _ERRORS as exc:
            raise TransportError(f"ack to {self.stream}: {type(exc).__name__}: {exc}") from exc

    async def dead(self, delivery, reason):
        try:
            await self.t._dead(self.channel, delivery.data, reason, delivery.position)
            if not delivery.token._ackd:
                await delivery.token.ack_sync(timeout=self.t.timeout)
        except _ERRORS as exc:
            raise TransportError(f"dead letter of {self.stream}: {type(exc).__name__}: {exc}") from exc

    async def pending(self):
        try:
            info = await self.t.js.consumer_info(self.stream, self.consumer)
        except _ERRORS:
            return None
        return info.num_pending

    async def close(self):
        try:
            await self.sub.unsubscribe()
        except Exception:
            pass

"""The channel side of a bridge: reads local channels for `out`, writes them for `in`.

It speaks to the network only through the transport interface (_transport.py).
"""
import asyncio
import bisect
import fnmatch
import logging
import os
import socket
import struct
import time

import cywhip.asyncio as cwa
from cywhip._admin import _channel_info
from cywhip._region import record_size_for
from cywhip.asyncio import _NOTHING
from cywhip.bridge._names import encode, message_id
from cywhip.bridge._transport import Geometry, RefusedError, TransportError
from cywhip.errors import ChannelBusyError, ChannelMismatchError, CywhipError, ReceiveTimeout, SendTimeout

log = logging.getLogger("cywhip.bridge")

# Offset of created_ns (CLOCK_REALTIME ns, written once when the channel is made) in a channel's
# header: includes/layout.h, cw_header (tests/test_bridge.py checks it against the layout).
CREATED_NS_OFFSET = 72
# The journal of an `in` bridge that is its channel's only sender (see _Journal).
JOURNAL_PREFIX = "cywhip-bridge."
_JOURNAL_MAGIC = 0x4C4E524A47445242   # "BRDGJRNL"
_JOURNAL_HEAD = struct.Struct("<QQQQ")
# How long a wait looks before it checks whether the bridge is told to stop (s).
POLL = 0.25
# How long an `in` bridge tries to acknowledge a batch it sent before it moves on, remembering the
# batch's positions so that their redelivery is acknowledged and not sent (s).
ACK_GIVE_UP = 10.0


def channel_identity(path):
    """The channel's created_ns, from its header (one read; any value is only an identity)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        raw = os.pread(fd, 8, CREATED_NS_OFFSET)
    finally:
        os.close(fd)
    if len(raw) != 8:
        raise RefusedError(f"channel file {path} is too short to hold a header ({len(raw)} bytes at "
                           f"offset {CREATED_NS_OFFSET})")
    return struct.unpack("<Q", raw)[0]


def _position_in(msg_id, head):
    """The position a message id of this channel (``head``: its name and identity) names, else None."""
    if msg_id is None or not msg_id.startswith(head):
        return None
    try:
        return int(msg_id[len(head):])
    except ValueError:
        return None


def geometry_of(info):
    return Geometry(info.message_length, info.max_queued_messages, len(info.senders), len(info.receivers),
                    info.max_queued_bytes)


def record_size(length):
    """A byte channel's record of a ``length``-byte message: an 8-byte header and the payload
    rounded up to 8 (the layout's record descriptor)."""
    return record_size_for(length)


def byte_positions(start, lengths, capacity):
    """Where the records of messages of these lengths, sent in this order into a byte channel of
    ``capacity`` bytes from the write cursor ``start``, begin, and where the last one ends: a
    record that would cross the ring's end goes after a padding record to it (B2)."""
    at = start
    out = []
    for n in lengths:
        rec = record_size(n)
        index = at % capacity
        if index + rec > capacity:
            at += capacity - index
        out.append(at)
        at += rec
    return out, at


def allowed(name, patterns, exclude):
    """A name is bridged if it matches a pattern (a name or a shell-style pattern) and no
    --exclude pattern."""
    return (any(fnmatch.fnmatchcase(name, p) for p in patterns)
            and not any(fnmatch.fnmatchcase(name, p) for p in exclude))


class Stats:
    """Counters of one bridge, summed over its channels."""

    def __init__(self):
        self.messages = 0          # out: published and taken; in: sent into the local channel
        self.bytes = 0
        self.duplicates = 0        # out: messages found stored already (dropped by their id, or
                                   # skipped as the stream's last id showed them stored)
        self.skipped = 0           # in: redeliveries of messages already sent, acknowledged unsent
        self.dead = 0              # in: malformed messages put on the dead-letter subject
        self.retries = 0           # transport errors retried
        self.in_flight = 0         # messages published or delivered and not yet acknowledged
        self.channels = {}         # name -> the running channel's object

    def as_dict(self):
        return {k: getattr(self, k) for k in ("messages", "bytes", "duplicates", "skipped", "dead",
                                              "retries", "in_flight")}


class _GaveUp(Exception):
    pass


async def _retrying(what, call, stats, give_up=None):
    """``await call()`` until it does not raise TransportError (backing off up to 2 s); with
    ``give_up`` (s), raise _GaveUp once that long has passed."""
    pause = 0.05
    start = time.monotonic()
    while True:
        try:
            return await call()
        except TransportError as exc:
            stats.retries += 1
            if give_up is not None and time.monotonic() - start > give_up:
                log.warning("%s: %s; giving up after %.0f s", what, exc, give_up)
                raise _GaveUp() from exc
            log.warning("%s: %s; trying again in %.2f s", what, exc, pause)
            await asyncio.sleep(pause)
            pause = min(2.0, pause * 2)


# ---------------------------------------------------------------------- out


class OutChannel:
    """One local channel read by the bridge and published."""

    def __init__(self, name, transport, group, batch, stats):
        self.name = name
        self.transport = transport
        self.group = group
        self.batch = batch
        self.stats = stats
        self.rx = None

    async def run(self, stop):
        info = _channel_info(self.name)
        if info is None or info.problem:
            raise RefusedError(f"channel {self.name!r} cannot be bridged: "
                               f"{'it does not exist' if info is None else info.problem}")
        geometry = geometry_of(info)
        created = channel_identity(info.path)
        kwargs = dict(message_length=geometry.message_length, max_senders=geometry.max_senders,
                      max_receivers=geometry.max_receivers, **geometry.queue_kwargs())
        if geometry.max_receivers > 1:
            kwargs.update(group=self.group, durable=True)
        link = await _retrying(f"channel {self.name!r}",
                               lambda: self.transport.open_out(self.name, geometry, str(created)), self.stats)
        try:
            self.rx = rx = cwa.Receiver(self.name, **kwargs)
        except ChannelBusyError as exc:
            raise RefusedError(f"channel {self.name!r} cannot be read by the bridge: {exc}. A channel "
                               f"of one receiver is bridged by its receiver; give it max_receivers > 1 "
                               f"to keep local receivers beside the bridge (its group "
                               f"{self.group!r})") from None
        except CywhipError as exc:
            raise RefusedError(f"channel {self.name!r} cannot be read by the bridge: {exc}") from None
        try:
            if geometry.max_receivers > 1:
                self._check_alone()
            log.info("out: channel %r (%s) as %s", self.name, geometry.describe(),
                     f"group {self.group!r}" if geometry.max_receivers > 1 else "its receiver")
            await self._pump(rx, link, created, geometry.max_queued_bytes, stop)
        finally:
            rx.close()
            await link.close()

    def _check_alone(self):
        """The message ids need each message's position: the bridge must be its group's only
        member, so that what it borrows starts at the group's first message not taken."""
        info = _channel_info(self.name)
        me = os.getpid()
        for g in info.groups:
            if g.name == self.group and any(pid != me for pid in g.members):
                others = ", ".join(str(p) for p in g.members if p != me)
                raise RefusedError(f"group {self.group!r} of channel {self.name!r} has another live "
                                   f"member (pid {others}): a bridge must be alone in its group; "
                                   f"give it another --group")

    async def _borrow(self, rx, stop):
        """Wait for waiting messages and borrow up to a batch of them: (lease, views), or None
        once the bridge is told to stop."""
        plain = rx._end
        # A byte channel's max_queued_messages is its ring's bytes // 8: the most records it holds.
        count = min(self.batch, plain.max_queued_messages)

        def attempt():
            lease = plain.borrow(count, 0)
            try:
                return lease, lease.__enter__()
            except ReceiveTimeout:
                return _NOTHING

        while not stop.is_set():
            try:
                return await rx._retry(attempt, plain._empty_error, POLL, False)
            except ReceiveTimeout:
                continue
        return None

    async def _pump(self, rx, link, created, capacity, stop):
        """``capacity``: a byte channel's ring bytes (None: a slot channel)."""
        plain = rx._end
        name = self.name
        stats = self.stats
        head = message_id(name, created, "")
        after = None         # the id the next message to publish must follow; None: ask first
        last = None          # the position of the last message this bridge took
        while True:
            got = await self._borrow(rx, stop)
            if got is None:
                return
            lease, views = got
            # Taken only once JetStream has stored them all: until the lease exits, they stay
            # in the ring (a bridge killed now leaves them to the next one).
            position = plain.taken
            payloads = [bytes(v) for v in views]
            # A message's id is its position in the channel, the same whichever bridge borrows
            # it and in whatever batch.  A slot channel's cursors count messages.  A byte
            # channel's count bytes: a message is at the start of its record, which follows the
            # one before it or, where it would cross the ring's end, a padding record to it (a
            # lease steps over one before its first record and ends before any other, but the
            # rule is the sender's, B2, so it is applied to each).  The taken cursor is the one
            # released, at a record's start (the lease releases its records only on exit); every
            # record is at least 8 bytes: the ids grow strictly, and a restarted bridge gives a
            # message its id again.
            if capacity is None:
                positions = list(range(position, position + len(payloads)))
                end = position + len(payloads)
            else:
                positions, end = byte_positions(position, [len(p) for p in payloads], capacity)
            batch = [(f"{head}{p}", data) for p, data in zip(positions, payloads)]
            stats.in_flight += len(batch)
            try:
                while True:
                    if after is None:
                        # At the start, and after a failure: what does the stream hold already?
                        # Messages of this channel up to its last one are stored (a bridge died
                        # before taking them, or a publish was stored and its ack lost): they
                        # are taken without being published again.
                        after = await _retrying(f"channel {name!r}", link.last_id, stats)
                        stored = _position_in(after, head)
                        # The last message taken: on a slot channel the one before the batch; on a
                        # byte channel known only once this bridge took one.
                        taken_last = position - 1 if capacity is None else last
                        if stored is not None and taken_last is not None and stored < taken_last:
                            log.error("channel %r: the stream's last message of this channel is at "
                                      "position %d, but positions up to %d were taken once JetStream "
                                      "had acknowledged them: the server lost them", name, stored,
                                      taken_last)
                        todo = batch[bisect.bisect_right(positions, stored):] if stored is not None else batch
                        stats.duplicates += len(batch) - len(todo)
                    else:
                        todo = batch
                    if not todo:
                        break
                    try:
                        stats.duplicates += await link.publish(todo, after)
                        after = todo[-1][0]
                        break
                    except TransportError as exc:
                        stats.retries += 1
                        log.warning("channel %r: %s; publishing again what is not stored", name, exc)
                        after = None
                        await asyncio.sleep(0.1)
            except BaseException:
                # Cancelled: the lease is not exited, so nothing is taken; the messages wait in
                # the channel for the next bridge (in another process: this one keeps the end).
                log.warning("out: channel %r: stopped with %d messages published and not "
                            "acknowledged; they stay in the channel for the next bridge", name, len(batch))
                raise
            finally:
                stats.in_flight -= len(batch)
            lease.__exit__(None, None, None)
            last = positions[-1]
            if capacity is not None and plain.taken != end:
                log.warning("channel %r: the read cursor is at byte %d after a batch whose last record "
                            "was worked out to end at %d: message ids may not be the records' positions, "
                            "so a restarted bridge may publish some again; the channel may be corrupt "
                            "(check it with cywhip.channels())", name, plain.taken, end)
            stats.messages += len(batch)
            stats.bytes += sum(len(p) for _, p in batch)

    async def lag(self):
        """Messages waiting in the channel for the bridge."""
        try:
            return self.rx.depth if self.rx is not None and not self.rx.closed else 0
        except Exception:
            return 0


# ---------------------------------------------------------------------- in


class _Journal:
    """What an `in` bridge that is its channel's only sender writes before each local send: the
    channel's write cursor (Sender.published) and the positions (stream sequences) of the batch.

    After a crash between the send and the ack, the transport delivers the batch again; the
    new bridge reads the journal and the write cursor: the first ``published - before`` of the
    batch reached the channel, and their redeliveries are acknowledged without being sent.
    It is a file in /dev/shm beside the channel (it lives as long as the channel's memory does),
    removed when the bridge stops with nothing unacknowledged.

    A byte channel's write cursor counts bytes (records and padding), so the journal also holds
    where each message's record will end (byte_positions() from the cursor before the send, the
    sender's own rule): the bridge is the only sender, so the cursor moves only by these records
    and their padding, and the messages that reached the channel are those whose record ends at
    or below it (a padding record is published with its message, never alone)."""

    def __init__(self, channel, consumer, created_ns, capacity=None):
        self.path = os.path.join("/dev/shm", f"{JOURNAL_PREFIX}{encode(consumer)}.{encode(channel)}")
        self.created = created_ns
        self.capacity = capacity    # a byte channel's ring bytes; None: a slot channel
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def recover(self, published):
        """The positions already sent into the channel of the batch the journal holds."""
        raw = os.pread(self.fd, 1 << 20, 0)
        if len(raw) < _JOURNAL_HEAD.size:
            return set()
        magic, created, before, count = _JOURNAL_HEAD.unpack_from(raw)
        arrays = 1 if self.capacity is None else 2
        if magic != _JOURNAL_MAGIC or created != self.created or len(raw) < _JOURNAL_HEAD.size + 8 * arrays * count:
            return set()
        seqs = struct.unpack_from(f"<{count}Q", raw, _JOURNAL_HEAD.size)
        if self.capacity is None:
            done = max(0, min(count, published - before))
        else:
            ends = struct.unpack_from(f"<{count}Q", raw, _JOURNAL_HEAD.size + 8 * count)
            done = 0
            while done < count and ends[done] <= published:
                done += 1
        return set(seqs[:done])

    def write(self, published, positions, lengths=None):
        data = _JOURNAL_HEAD.pack(_JOURNAL_MAGIC, self.created, published, len(positions))
        data += struct.pack(f"<{len(positions)}Q", *positions)
        if self.capacity is not None:
            starts, _ = byte_positions(published, lengths, self.capacity)
            data += struct.pack(f"<{len(positions)}Q", *(s + record_size(n) for s, n in zip(starts, lengths)))
        os.pwrite(self.fd, data, 0)

    def close(self, remove):
        os.close(self.fd)
        if remove:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def default_consumer(channel):
    """The durable consumer name of `bridge in` when --consumer is not given: host and channel."""
    return f"{encode(socket.gethostname())}-{encode(channel)}"


class InChannel:
    """One local channel written by the bridge from the transport."""

    def __init__(self, name, transport, consumer, batch, stats, local_prefix=""):
        self.name = name
        self.local = local_prefix + name
        self.transport = transport
        self.consumer = consumer or default_consumer(name)
        self.batch = batch
        self.stats = stats
        self.link = None

    async def run(self, stop):
        name = self.name
        link = self.link = await _retrying(f"channel {name!r}",
                                           lambda: self.transport.open_in(name, self.consumer), self.stats)
        try:
            tx = self._open(link.geometry)
            try:
                info = _channel_info(self.local)
                journal = None
                if link.geometry.max_senders == 1:
                    journal = _Journal(self.local, self.consumer, channel_identity(info.path),
                                       link.geometry.max_queued_bytes)
                clean = False
                try:
                    await self._pump(tx, link, journal, stop)
                    clean = True
                finally:
                    if journal is not None:
                        journal.close(remove=clean)
            finally:
                tx.close()
        finally:
            await link.close()

    def _open(self, geometry):
        name = self.local
        info = _channel_info(name)
        if geometry is None:
            if info is None:
                raise RefusedError(f"the stream of channel {name!r} records no geometry and there is "
                                   f"no local channel {name!r} to take it from: create the channel, or "
                                   f"publish it with `bridge out`")
            geometry = geometry_of(info)
            self.link.geometry = geometry
        elif info is not None and not info.problem and geometry_of(info) != geometry:
            raise RefusedError(f"local channel {name!r} has {geometry_of(info).describe()}, but its "
                               f"stream records {geometry.describe()} (channel {self.name!r}, which `bridge out` reads): "
                               f"remove the local channel (cywhip.unlink({name!r})) or bridge it under "
                               f"another name")
        try:
            tx = cwa.Sender(name, message_length=geometry.message_length,
                            max_senders=geometry.max_senders, max_receivers=geometry.max_receivers,
                            **geometry.queue_kwargs())
        except ChannelBusyError as exc:
            raise RefusedError(f"channel {name!r} cannot take the bridge as a sender: {exc}. The bridge "
                               f"is one of the channel's senders: with max_senders=1 it must be the "
                               f"only one (give the out side's channel max_senders > 1 to have local "
                               f"senders beside it)") from None
        except ChannelMismatchError as exc:
            raise RefusedError(f"local channel {name!r} differs from what its stream records "
                               f"({geometry.describe()}): {exc}") from None
        log.info("in: channel %r (%s) through consumer %s", name, geometry.describe(), self.consumer)
        return tx

    def _refusal(self, d, message_length):
        if d.channel is not None and d.channel != self.name:
            return f"it names channel {d.channel!r}, not {self.name!r}"
        if len(d.data) > message_length:
            return f"it is {len(d.data)} bytes, over the channel's message_length {message_length}"
        return None

    async def _pump(self, tx, link, journal, stop):
        stats = self.stats
        name = self.name
        message_length = link.geometry.message_length
        plain = tx._end
        skip = journal.recover(plain.published) if journal is not None else set()
        if skip:
            log.info("in: channel %r: %d redelivered messages were sent before a restart; they are "
                     "acknowledged, not sent again", name, len(skip))
        while not stop.is_set():
            deliveries = await _retrying(f"channel {name!r}", lambda: link.fetch(self.batch, POLL), stats)
            if not deliveries:
                continue
            stats.in_flight += len(deliveries)
            try:
                run = []
                for d in deliveries:
                    reason = self._refusal(d, message_length)
                    if reason is None:
                        run.append(d)
                        continue
                    # In order: what came before is sent and acknowledged first.
                    await self._deliver(tx, link, journal, run, skip, stop)
                    run = []
                    log.error("in: channel %r: message at stream position %d refused: %s; put on "
                              "the dead-letter subject", name, d.position, reason)
                    await _retrying(f"channel {name!r}", lambda: link.dead(d, reason), stats)
                    stats.dead += 1
                await self._deliver(tx, link, journal, run, skip, stop)
            finally:
                stats.in_flight -= len(deliveries)

    async def _deliver(self, tx, link, journal, run, skip, stop):
        if not run:
            return
        stats = self.stats
        again = [d for d in run if d.position in skip]
        fresh = [d for d in run if d.position not in skip]
        stats.skipped += len(again)
        if fresh:
            if journal is not None:
                journal.write(tx._end.published, [d.position for d in fresh], [len(d.data) for d in fresh])
            payloads = [d.data for d in fresh]
            sent = 0
            while sent < len(payloads):
                try:
                    sent += await tx.send_many(payloads[sent:] if sent else payloads, timeout=POLL)
                except SendTimeout as exc:
                    # Back-pressure: the local channel is full.  JetStream keeps the rest.
                    sent += exc.sent
                    if stop.is_set():
                        # Acknowledge what went out; the rest is delivered again to the next bridge.
                        done = run[:run.index(fresh[sent])] if sent < len(fresh) else run
                        await _retrying(f"channel {self.name!r}", lambda: link.ack(done), stats)
                        stats.messages += sent
                        stats.bytes += sum(len(p) for p in payloads[:sent])
                        raise _Stopped() from None
            stats.messages += len(fresh)
            stats.bytes += sum(len(p) for p in payloads)
        try:
            await _retrying(f"channel {self.name!r}", lambda: link.ack(run), stats, give_up=ACK_GIVE_UP)
        except _GaveUp:
            # The transport will deliver them again: they were sent, so they are then
            # acknowledged without being sent again.
            skip.update(d.position for d in run)

    async def lag(self):
        """Messages the transport holds for this channel, not yet delivered to the bridge."""
        pending = await self.link.pending() if self.link is not None else None
        return pending or 0


class _Stopped(Exception):
    """An `in` channel stopped with part of a batch unsent (acknowledged up to what was sent)."""


# ---------------------------------------------------------------------- the bridge


async def _run_channels(kind, make, names, listing, exclude, stop, stats, rescan=1.0):
    """Start a task per allowed channel (listing() names the candidates; patterns are looked at
    again every ``rescan`` s); run until ``stop`` is set; raise the first refusal."""
    tasks = {}
    failure = None

    def done(task):
        nonlocal failure
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and not isinstance(exc, _Stopped) and failure is None:
            failure = exc
            stop.set()

    try:
        while not stop.is_set():
            try:
                candidates = await listing()
            except TransportError as exc:
                log.warning("%s: %s", kind, exc)
                candidates = []
            for name in candidates:
                if name not in tasks and allowed(name, names, exclude):
                    ch = make(name)
                    stats.channels[name] = ch
                    tasks[name] = t = asyncio.ensure_future(ch.run(stop))
                    t.add_done_callback(done)
            try:
                await asyncio.wait_for(stop.wait(), rescan)
            except asyncio.TimeoutError:
                pass
        if tasks:
            await asyncio.wait(list(tasks.values()))
    except BaseException:
        for t in tasks.values():
            t.cancel()
        if tasks:
            await asyncio.wait(list(tasks.values()))
        raise
    if failure is not None:
        raise failure
    return stats


async def _report(kind, stats, every, stop):
    """--stats: a line every ``every`` s on the log."""
    last = (time.monotonic(), 0, 0)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), every)
        except asyncio.TimeoutError:
            pass
        now = time.monotonic()
        dt = max(1e-9, now - last[0])
        lag = 0
        for ch in list(stats.channels.values()):
            lag += await ch.lag()
        log.info("%s: %.0f msg/s, %.3f MB/s, lag %s, pending acks %d, duplicates dropped %d, "
                 "redeliveries skipped %d, dead letters %d, retries %d",
                 kind, (stats.messages - last[1]) / dt, (stats.bytes - last[2]) / dt / 1e6, lag,
                 stats.in_flight, stats.duplicates, stats.skipped, stats.dead, stats.retries)
        last = (now, stats.messages, stats.bytes)

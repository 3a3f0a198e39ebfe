"""Byte channels (max_queued_bytes) in the shared-memory fuzzer: cases and racing rounds.

A byte channel's ring is a run of records (u32 length, u32 kind, payload padded to 8 bytes;
kind 1 is padding to the ring's end), its cursors count bytes (docs/protocol.md, steps B1-B7).
Its cases (``python -m cywhip._testing.fuzz --bytes only``) and rounds (with ``--race``) rewrite
the record headers (length 0, huge, just over the bytes published, a sum that crosses the ring's
end or lands inside the next record; kind 0, 1 and unknown; padding of a wrong length, padding
where a message is), write_cursor and read_cursor (unaligned, beyond capacity, backwards,
forwards) and the header's ``records``, ``capacity`` and ``message_length`` before an end opens.

Every message the fuzzer sends is ``message(seq, n)``: its sequence number, its length and a
CRC-32 of the rest, and a filler whose every 8-byte word has the top bit of its upper half set
(a word of a payload never reads as a record header), so a torn, shortened or invented
message shows.  What must hold:

- no crash, no hang (every wait has a timeout), no receive allocating more than its messages'
  cap (message_length each, tracemalloc's peak over the call, a little slack for the call);
- a mutation no sound check can accept (an *implausible* one: a length over message_length
  or over the bytes published, an unknown kind, a padding record that does not reach the
  ring's end, a cursor unaligned or further than the ring from the other) is refused with
  ChannelCorruptError; the directed checks (a fresh end meeting one at once) also want the
  error to name the value, and ChannelMismatchError naming it for the header's geometry;
- until a *plausible* mutation (a value a sound channel could hold: a shorter length, a
  cursor moved within the ring, a payload byte) every message delivered is whole, was sent
  (not given up inside a reserve() block), and comes after the one delivered before it;
  after one, what is delivered is still bytes of at most message_length.

Racing rounds are strict or wild (a share of them on channels of many senders, with their own
mutations and checks: fuzz_bytes_many.py).  A strict round's mutator flips cursors only by atomic XOR
with masks whose every result is implausible (so an end's store between two flips leaves its
value or its value flipped, never an older one), rewrites the geometry fields and the waiting,
pid and start words as fuzz_race.py does, and the victim checks every message as above.  A wild
round's mutator also rewrites record headers with plausible values, payload bytes and cursors
by plain stores; its victim checks the rest.
"""
import functools
import mmap
import os
import random
import signal
import struct
import time
import tracemalloc
import zlib

from cywhip import ChannelCorruptError, ChannelMismatchError, Receiver, Sender
from cywhip._region import channel_path, slots_offset_for
from cywhip._testing._model import atomic_xor_u64, layout, var_capacity, var_max_length, var_record_size
from cywhip._testing.fuzz import (
    BAD_MESSAGE, EXPECTED_ERRORS, UNEXPECTED_ERROR, _ended, _fail_case, _note, _open_end,
)

# The share of cases and rounds on byte channels when they are mixed with the others.
BYTES_SHARE = 0.3
MIN_MESSAGE = 16
# What a receive may allocate besides its messages (an exception, its text, a list).
ALLOCATION_SLACK = 16384
HEADER = 8
_TOP = 0x80000000
# Ring sizes asked for (rounded up to 8, at least 64).
_RINGS = (64, 72, 120, 256, 504, 1024, 4096)


# The record descriptor of byte rings (layout.h), seen from Python.
ring_bytes = var_capacity
max_length = var_max_length
record_size = var_record_size


@functools.lru_cache(maxsize=512)
def message(seq, n):
    """Message seq of n bytes (n >= MIN_MESSAGE): <I seq><I top|n>, <I crc><I top|seq>, then a
    filler of words <I f(seq, k)><I top|g(seq, k)>; the CRC-32 covers every byte but its own word."""
    head = struct.pack("<II", seq & 0xFFFFFFFF, _TOP | n)
    filler = b"".join(struct.pack("<II", (seq * 2654435761 + k * 40503) & 0xFFFFFFFF,
                                  _TOP | ((seq * 7 + k) & 0x7FFFFFFF))
                      for k in range(2, n // 8 + 1))[:n - 16]
    crc = zlib.crc32(head + filler)
    return head + struct.pack("<II", crc, _TOP | (seq & 0x7FFFFFFF)) + filler


def whole_seq(msg):
    """The sequence number of a whole message (as message() made it), else None."""
    if type(msg) is not bytes or len(msg) < MIN_MESSAGE:
        return None
    seq, n = struct.unpack_from("<II", msg)
    if n != _TOP | len(msg) or msg != message(seq, len(msg)):
        return None
    return seq


class Stream:
    """What a sender sent and a receiver delivered, and the checks on each delivery.

    ``tainted`` says a plausible corruption happened: only the length and type of what is
    delivered are checked from then on.  ``ordered``: each delivery comes after the one before
    (one receiver)."""

    ordered = True

    def __init__(self, cap, fail):
        self.cap = cap
        self.fail = fail
        self.next = 0
        self.lengths = {}         # seq -> length, of every message a send was attempted with
        self.aborted = set()      # seqs of reserve() blocks that raised: never sent
        self.last = -1            # the last seq delivered
        self.tainted = None       # what made the checks loose, if anything
        self.delivered = 0
        self.loose = 0            # deliveries after a taint that were not whole

    def new(self, n):
        seq = self.next
        self.next += 1
        self.lengths[seq] = n
        return seq, message(seq, n)

    def taint(self, why):
        if self.tainted is None:
            self.tainted = why
            _note(f"plausible corruption: {why}; from here on only lengths are checked")

    def delivered_one(self, msg, how):
        self.delivered += 1
        if type(msg) is not bytes or len(msg) > self.cap:
            self.fail(f"{how} delivered {type(msg).__name__} of "
                      f"{len(msg) if hasattr(msg, '__len__') else '?'} bytes, message_length={self.cap}: "
                      f"{msg!r:.120}")
        seq = whole_seq(msg)
        if self.tainted is not None:
            self.loose += seq is None
            return
        if seq is None:
            self.fail(f"{how} delivered a torn or invented message of {len(msg)} bytes (not tainted): "
                      f"{msg[:32]!r}...")
        if seq not in self.lengths or self.lengths[seq] != len(msg):
            self.fail(f"{how} delivered message {seq} of {len(msg)} bytes, which was never sent "
                      f"(sent: {self.lengths.get(seq)})")
        if seq in self.aborted:
            self.fail(f"{how} delivered message {seq}, whose reserve() block raised: nothing was to be sent")
        if self.ordered and seq <= self.last:
            self.fail(f"{how} delivered message {seq} after message {self.last}")
        self.last = seq


class Allocations:
    """The most a receive may allocate: tracemalloc's peak over it (traced only during the
    call), at most its messages' cap (message_length each, and a little for each object) and
    ALLOCATION_SLACK bytes for the call itself (an exception and its text)."""

    def __init__(self, cap, fail):
        self.cap = cap
        self.fail = fail

    def start(self):
        if tracemalloc.is_tracing():
            tracemalloc.reset_peak()      # the last call raised before its check
        else:
            tracemalloc.start()
        self.base = tracemalloc.get_traced_memory()[0]

    def check(self, what, count):
        peak = tracemalloc.get_traced_memory()[1] - self.base
        tracemalloc.stop()
        bound = count * (self.cap + 128) + ALLOCATION_SLACK
        if peak > bound:
            self.fail(f"{what} of at most {count} messages of message_length={self.cap} allocated {peak} "
                      f"bytes at its peak, more than {bound}")


def offsets():
    lay = layout()
    return {f: lay[f] for f in ("write_cursor", "read_cursor", "records", "capacity", "message_length",
                                "sender_waiting", "receiver_waiting")}


def _u64(mm, off):
    return struct.unpack_from("<Q", mm, off)[0]


def _put(mm, off, fmt, value, what):
    old = struct.unpack_from(fmt, mm, off)[0]
    struct.pack_into(fmt, mm, off, value)
    _note(f"corrupt {what} @{off}: {old:#x} -> {value:#x}")
    return old


def records(mm, ring, capacity):
    """The records published from read_cursor to write_cursor, as their headers say now:
    [(position, index, length, kind)]; stops at an impossible one."""
    o = offsets()
    rd, w = _u64(mm, o["read_cursor"]), _u64(mm, o["write_cursor"])
    out = []
    pos = rd
    if w - rd > capacity or (w | rd) % 8:
        return out
    while pos < w:
        i = pos % capacity
        length, kind = struct.unpack_from("<II", mm, ring + i)
        if kind == 1 and length == capacity - i:
            out.append((pos, i, length, kind))
            pos += length
        elif kind == 0 and i + record_size(length) <= capacity and pos + record_size(length) <= w:
            out.append((pos, i, length, kind))
            pos += record_size(length)
        else:
            break
    return out


def send_one(tx, stream, rng, size, cap, timeout):
    """One call of a sender, drawn: try_send, send, send_many, or a reserve() block (reserving
    more and truncating now and then, or giving up by an exception: that message is never to
    arrive).  Each message is stream.new(size())."""
    how = rng.random()
    if how < 0.25:
        tx.try_send(stream.new(size())[1])
    elif how < 0.45:
        tx.send(stream.new(size())[1], timeout=timeout)
    elif how < 0.65:
        tx.send_many([stream.new(size())[1] for _ in range(rng.randint(1, 6))], timeout=timeout)
    else:
        n = size()
        seq, msg = stream.new(n)
        room = n if rng.random() < 0.6 else rng.randint(n, cap)
        raises = rng.random() < 0.25
        if raises:
            stream.aborted.add(seq)
        claim = tx.reserve(room, timeout=timeout)
        try:
            with claim as buf:
                buf[:n] = msg
                if room != n:
                    claim.truncate(n)
                if raises:
                    raise _Abort()
        except _Abort:
            pass


def receive_one(rx, stream, alloc, rng, timeout, how=None):
    """One call of a receiver (recv, try_recv, recv_many or borrow; drawn unless how is given),
    its allocations bounded and each message checked; returns what it delivered."""
    how = rng.random() if how is None else how
    count = 1 if how < 0.5 else rng.randint(1, 8)
    alloc.start()
    if how < 0.3:
        got, what = [rx.recv(timeout=timeout)], "recv"
    elif how < 0.5:
        got, what = [rx.try_recv()], "try_recv"
    elif how < 0.8:
        got, what = rx.recv_many(count, timeout=timeout), "recv_many"
    else:
        with rx.borrow(count, timeout=timeout) as lent:
            got, what = [bytes(v) for v in lent], "borrow"
    alloc.check(what, count)
    for m in got:
        if m is not None:
            stream.delivered_one(m, what)
    return got


def map_channel(path):
    """A writable mapping of a channel file, all of it."""
    fd = os.open(path, os.O_RDWR)
    try:
        return mmap.mmap(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


# ------------------------------------------------------------------ the cases

def _expect_error(kind, needles, fn, what):
    """Call fn; it must raise kind with every needle (a value) in its message."""
    try:
        got = fn()
    except kind as exc:
        text = str(exc)
        missing = [n for n in needles if str(n) not in text]
        if missing:
            _fail_case(BAD_MESSAGE, f"{what}: {type(exc).__name__} does not name {missing}: {text}")
        return exc
    except EXPECTED_ERRORS as exc:
        _fail_case(BAD_MESSAGE, f"{what}: expected {kind.__name__} naming {needles}, got "
                                f"{type(exc).__name__}: {exc}")
    if hasattr(got, "close"):
        got.close()
    _fail_case(BAD_MESSAGE, f"{what}: expected {kind.__name__} naming {needles}, the call returned {got!r:.100}")


def _geometry(rng):
    """A byte channel's sizes, drawn: max_queued_bytes asked, the ring's bytes, message_length,
    and the ends' keywords (message_length given half the time when it is the largest)."""
    asked = rng.choice(_RINGS)
    capacity = ring_bytes(asked)
    top = max_length(capacity)
    cap = top if rng.random() < 0.6 else rng.randint(MIN_MESSAGE, top)
    kw = dict(max_queued_bytes=asked)
    if cap != top or rng.random() < 0.5:
        kw["message_length"] = cap
    return asked, capacity, cap, kw


def bytes_case(rng, name):
    """One case on a byte channel: a history that wraps the ring, directed mutations met by a
    fresh end at once, then random calls with random mutations between them."""
    asked, capacity, cap, kw = _geometry(rng)
    o = offsets()
    ring = slots_offset_for()

    def bad(detail):
        _fail_case(BAD_MESSAGE, detail)

    stream = Stream(cap, bad)
    alloc = Allocations(cap, bad)
    _note(f"bytes case: max_queued_bytes={asked} (ring {capacity} bytes), message_length={cap}, "
          f"ends given message_length: {'message_length' in kw}")

    def size():
        r = rng.random()
        if r < 0.15:
            return cap
        if r < 0.5:
            return rng.randint(MIN_MESSAGE, min(cap, 40))
        return rng.randint(MIN_MESSAGE, cap)

    ends = {"sender": None, "receiver": None}

    def open_end(which):
        if ends[which] is None:
            try:
                ends[which] = _open_end(which, Sender if which == "sender" else Receiver, name, **kw)
            except EXPECTED_ERRORS:
                pass
        return ends[which]

    def close_end(which):
        if ends[which] is not None:
            ends[which].close()
            ends[which] = None

    def send(tx):
        send_one(tx, stream, rng, size, cap, rng.choice([0, 0, 0.001]))

    def receive(rx, how=None):
        return receive_one(rx, stream, alloc, rng, rng.choice([0, 0.001]), how)

    def quietly(fn, *args):
        try:
            return fn(*args)
        except EXPECTED_ERRORS:
            return None
        except Exception:
            import traceback
            _fail_case(UNEXPECTED_ERROR, traceback.format_exc())

    # The history: the ring wraps (padding records), some messages stay queued.
    tx, rx = open_end("sender"), open_end("receiver")
    if tx is None or rx is None:
        bad(f"a sound byte channel could not be opened: sender {tx}, receiver {rx}")
    # (At most 80 calls: a case must end well within the alarm on a loaded machine.)
    for _ in range(rng.randint(0, min(4 * capacity // 24 + 2, 80))):
        quietly(send, tx)
        if rng.random() < 0.6:
            quietly(receive, rx)
    mm = map_channel(channel_path(name))
    try:
        # Directed: each mutation met at once by a fresh end, then put back.
        for _ in range(rng.randint(1, 3)):
            _directed(rng, mm, ring, capacity, cap, kw, name, o, ends, close_end, open_end, stream, receive)
        # Random: calls, reopenings and mutations between them.
        pending = []
        for _ in range(rng.randint(4, 30)):
            r = rng.random()
            if r < 0.3:
                tx = open_end("sender")
                if tx is not None:
                    quietly(send, tx)
            elif r < 0.65:
                rx = open_end("receiver")
                if rx is not None:
                    quietly(receive, rx)
            elif r < 0.75:
                close_end(rng.choice(["sender", "receiver"]))
            elif r < 0.8 and pending:
                # Only what is still as the mutation left it: a value an end wrote since is
                # newer than the one saved, which would be a plausible corruption of its own.
                off, raw, written = pending.pop(rng.randrange(len(pending)))
                if bytes(mm[off:off + len(raw)]) == written:
                    _note(f"put back @{off}: {raw.hex()}")
                    mm[off:off + len(raw)] = raw
            else:
                dirty = any(off in (o["write_cursor"], o["read_cursor"]) and bytes(mm[off:off + len(raw)]) == written
                            for off, raw, written in pending)
                for off, raw in _mutate(rng, mm, ring, capacity, cap, o, stream, dirty):
                    pending, raw = _supersede(pending, off, raw)
                    pending.append((off, raw, bytes(mm[off:off + len(raw)])))
            end = ends["receiver"] or ends["sender"]
            if end is not None:
                depth = quietly(lambda: end.depth)
                if depth is not None and not 0 <= depth <= capacity:
                    bad(f"depth {depth} of a ring of {capacity} bytes")
    finally:
        for which in ("sender", "receiver"):
            close_end(which)
        mm.close()


class _Abort(Exception):
    pass


def _directed(rng, mm, ring, capacity, cap, kw, name, o, ends, close_end, open_end, stream, receive):
    """One mutation a fresh end meets at once: it must refuse it naming the value; the value
    put back, the channel works again."""
    what = rng.choice(["header", "header", "write", "read", "record", "record", "record"])
    if what == "header":
        close_end("sender")
        close_end("receiver")
        field = rng.choice(["records", "capacity", "message_length"] if "message_length" in kw
                           else ["records", "capacity"])
        off = o[field]
        fmt = "<I" if field == "records" else "<Q"
        good = struct.unpack_from(fmt, mm, off)[0]
        value = rng.choice({"records": [0, 2, 7, 0xFFFFFFFF],
                            "capacity": [0, good - 8, good + 8, good * 2, 1 << 40, (1 << 64) - 1],
                            "message_length": [0, cap - 1, cap + 1, 1 << 33]}[field])
        _put(mm, off, fmt, value, f"header.{field}")
        which = rng.choice(["sender", "receiver"])
        kind = Sender if which == "sender" else Receiver
        k = _note(f"{which} opens: must refuse header.{field}={value}")
        _expect_error(ChannelMismatchError, ["a slot channel"] if field == "records" and value == 0 else [value], lambda: kind(name, **kw),
                      f"a {which} opening a channel whose header.{field} is {value} (was {good})")
        _ended(k, "refused")
        _put(mm, off, fmt, good, f"header.{field} put back")
        return
    if what in ("write", "read"):
        close_end("receiver")
        close_end("sender")
        off = o[f"{what}_cursor"]
        w, rd = _u64(mm, o["write_cursor"]), _u64(mm, o["read_cursor"])
        good = w if what == "write" else rd
        other = rd if what == "write" else w
        choices = [good ^ rng.randrange(1, 8), good + capacity + 8, (1 << 63) | good]
        if what == "write":
            choices += [rd - 8] if rd >= 8 else []           # backwards, behind the reader
        else:
            choices += [w + 8, w - capacity - 8] if w >= capacity + 8 else [w + 8]
        value = rng.choice(choices) & ((1 << 64) - 1)
        _put(mm, off, "<Q", value, f"header.{what}_cursor")
        which = rng.choice(["sender", "receiver"]) if what == "write" else "receiver"
        kind = Sender if which == "sender" else Receiver
        k = _note(f"{which} opens: must refuse {what}_cursor={value} ({'read' if what == 'write' else 'write'} "
                  f"cursor {other})")
        _expect_error(ChannelCorruptError, [value], lambda: kind(name, **kw),
                      f"a {which} opening a byte channel whose {what}_cursor is {value} (was {good}, the "
                      f"other cursor {other}, ring {capacity} bytes)")
        _ended(k, "refused")
        _put(mm, off, "<Q", good, f"header.{what}_cursor put back")
        return
    # A record: the first one a fresh receiver reads.
    recs = records(mm, ring, capacity)
    if not recs:
        return
    close_end("receiver")
    w = _u64(mm, o["write_cursor"])
    pos, i, length, kind = recs[0]
    avail = w - pos
    choices = [("kind", rng.choice([2, 3, 0x7FFFFFFF, 0xFFFFFFFF])),
               ("length", rng.choice([cap + 1, cap + 8, 1 << 31, 0xFFFFFFFF]))]
    # The record just over the bytes published, or crossing the ring's end.
    over = max(avail - HEADER + 1, 1)
    if over <= cap:
        choices.append(("length", over))
    cross = capacity - i - HEADER + 1
    if 0 < cross <= cap:
        choices.append(("length", cross))
    if kind == 0:
        choices.append(("kind", 1))                             # a message called padding
    else:
        choices += [("kind", 0), ("length", length - 8), ("length", length + 8), ("length", 0)]
    # A value the header holds already changes nothing: it is no corruption to refuse (a
    # padding record's length equal to a cap + 1 drawn for it, say).
    choices = [(f, v) for f, v in choices if (v & 0xFFFFFFFF) != (kind if f == "kind" else length)]
    field, value = rng.choice(choices)
    at = ring + i + (0 if field == "length" else 4)
    old = _put(mm, at, "<I", value & 0xFFFFFFFF, f"record at byte {pos} (index {i}).{field}")
    nk, nl = (value, length) if field == "kind" else (kind, value)
    rx = open_end("receiver")
    if rx is None:
        _put(mm, at, "<I", old, "record put back")
        return
    k = _note(f"receiver must refuse the record at byte {pos}: kind {nk}, length {nl}, {avail} bytes published")
    # A message called padding is refused where it stands, a padding record that stops short
    # is read as a message there too.
    _expect_error(ChannelCorruptError, [f"kind {nk} and length {nl}", pos], lambda: receive(rx, 0.0),
                  f"a receiver meeting the record at byte {pos} (index {i}, ring {capacity}) with kind {nk} "
                  f"and length {nl} (was kind {kind}, length {length}; {avail} bytes published)")
    _ended(k, "refused")
    _put(mm, at, "<I", old, "record put back")
    # The same receiver, once the header is sound again, goes on from that record.
    try:
        got = receive(rx, 0.0)
    except EXPECTED_ERRORS as exc:
        _fail_case(BAD_MESSAGE, f"after the record at byte {pos} was put back, recv raised "
                                f"{type(exc).__name__}: {exc}")
    if got == [None]:
        _fail_case(BAD_MESSAGE, f"after the record at byte {pos} was put back, recv found nothing")


def _cursor_plausible(which, value, w, rd, capacity):
    """Whether a cursor of this value could be read as sound, now or once the ends move on.
    write_cursor: aligned, not behind the reader, and less than a ring ahead of the bytes
    published (once the receiver has read up to them, it reads unpublished bytes; a new sender
    writes over published ones).  read_cursor: aligned and within a ring of the writer's cursor
    either way (behind: a new receiver reads old records; ahead: a sender that has not looked at
    it since passes it, and then overwrites unread records)."""
    if value % 8:
        return False
    if which == "write":
        return rd <= value <= w + capacity
    return w - capacity <= value <= w + capacity


def _supersede(pending, off, before):
    """The put-backs left once the field at off (holding before, now mutated again) has a new
    one: an earlier put-back of that field goes.  If the field still held what that mutation
    wrote, the value it saved is the one to put back now; if an end has written the field
    since, the value it saved is stale, and putting it back later would move a cursor back
    (the check of what the field holds cannot tell when both mutations wrote the same value)."""
    kept = []
    for entry in pending:
        if entry[0] == off and len(entry[1]) == len(before):
            if entry[2] == before:
                before = entry[1]
            continue
        kept.append(entry)
    return kept, before


def _mutate(rng, mm, ring, capacity, cap, o, stream, dirty=False):
    """One mutation between calls; returns what to put back later [(offset, bytes)].  A
    plausible one taints the stream.  dirty: a cursor holds a value written here."""
    w, rd = _u64(mm, o["write_cursor"]), _u64(mm, o["read_cursor"])
    r = rng.random()
    if r < 0.55:
        recs = records(mm, ring, capacity)
        if not recs:
            return []
        pos, i, length, kind = rng.choice(recs)
        avail = w - pos
        implausible = [("kind", 2), ("kind", 0xFFFFFFFF), ("length", cap + 1), ("length", 1 << 31)]
        plausible = []
        if kind == 0:
            implausible.append(("kind", 1))
            if length >= 1:
                plausible.append(("length", 0))
            plausible += [("length", min(cap, length + rng.randint(1, 9))), ("length", max(0, length - 1))]
            if avail > capacity - i:
                # Padding where a message stands, reaching the ring's end: read as sound.
                plausible.append(("padding", capacity - i))
            implausible.append(("padding", capacity - i - 8))
        else:
            implausible += [("kind", 0), ("length", length - 8), ("length", length + 8)]
        over = avail - HEADER + 1
        if 0 < over <= cap:
            # Just over the bytes published: refused now, read as sound once more is sent.
            plausible.append(("length", over))
        field, value = rng.choice(implausible + plausible)
        sound = (field, value) in plausible
        saved = bytes(mm[ring + i:ring + i + 8])
        if field == "padding":
            _put(mm, ring + i, "<Q", (1 << 32) | (value & 0xFFFFFFFF), f"record at byte {pos}: padding of {value}")
        else:
            _put(mm, ring + i + (0 if field == "length" else 4), "<I", value & 0xFFFFFFFF,
                 f"record at byte {pos} (index {i}).{field}")
        if sound and not (field == "padding"):
            stream.taint(f"record at byte {pos} given {field} {value}")
        return [(ring + i, saved)]
    if r < 0.8 and not dirty:
        # (Never while a cursor holds a value written here: two wrong cursors can make a
        # sound-looking pair, and a value saved from a wrong cursor is no value to put back.)
        which = rng.choice(["write", "read"])
        off = o[f"{which}_cursor"]
        good = w if which == "write" else rd
        if which == "write":
            choices = [w ^ rng.randrange(1, 8), rd + capacity + 8, rd - 8, (1 << 63) | w, w - 8, w + 8,
                       rd + capacity]
        else:
            choices = [rd ^ rng.randrange(1, 8), w + capacity + 8, w - capacity - 8, (1 << 63) | rd, w + 8,
                       rd + 8, rd - 8, w, w - capacity]
        value = rng.choice([v for v in choices if v >= 0 and v != good] or [good ^ 4]) & ((1 << 64) - 1)
        _put(mm, off, "<Q", value, f"header.{which}_cursor (the other {rd if which == 'write' else w})")
        if _cursor_plausible(which, value, w, rd, capacity):
            stream.taint(f"{which}_cursor moved from {good} to {value}")
        return [(off, struct.pack("<Q", good))]
    if r < 0.9:
        off = o[rng.choice(["sender_waiting", "receiver_waiting"])]
        saved = bytes(mm[off:off + 4])
        _put(mm, off, "<I", rng.choice([0, 1, 2, 0xFFFFFFFF]), "a waiting word")
        return [(off, saved)]
    # A payload byte of a published record: undetectable by design.
    recs = [x for x in records(mm, ring, capacity) if x[3] == 0 and x[2] > 0]
    if not recs:
        return []
    pos, i, length, kind = rng.choice(recs)
    at = ring + i + HEADER + rng.randrange(length)
    saved = bytes(mm[at:at + 1])
    _put(mm, at, "<B", rng.randrange(256), f"payload byte of the record at byte {pos}")
    stream.taint(f"a payload byte of the record at byte {pos}")
    return [(at, saved)]


# ------------------------------------------------------------------ racing rounds

# Cursor flips of a strict round: each leaves any value implausible (unaligned, or further than
# the ring from the other cursor), whatever an end stored in between; each cursor has a high bit
# of its own, so that both flipped at once (a flip left by an end's store) never look sound.
_STRICT_FLIPS = {"write_cursor": (1, 2, 4, 1 << 40), "read_cursor": (1, 2, 4, 1 << 63)}
# The bits those flips set that no sound cursor has (cursors are multiples of 8 below 2**40).
_FLIPPED = ((1 << 64) - 1) & ~((1 << 40) - 8)


def race_round(rng, rs, name, counters, seconds_left):
    """A racing round on a byte channel: its channel made and filled; returns its geometry, the
    mutator's and the victim's work (each run in a process of its own) and how long the victim
    runs (fuzz_race.race() runs them).  A share of the rounds (fuzz_bytes_many.many_round())
    has many senders: fuzz_bytes_many.py."""
    from cywhip import unlink
    from cywhip._testing.fuzz_bytes_many import many_round
    if many_round(rs):
        from cywhip._testing.fuzz_bytes_many import race_round as many_senders_round
        return many_senders_round(rng, rs, name, counters, seconds_left)
    asked, capacity, cap, kw = _geometry(rng)
    strict = rng.random() < 0.5
    unlink(name, missing_ok=True)
    stream = Stream(cap, None)
    with Sender(name, **kw) as s:
        for _ in range(rng.randint(0, 6)):
            s.try_send(stream.new(rng.randint(MIN_MESSAGE, cap))[1])
    round_seconds = min(rng.uniform(0.2, 1.0), seconds_left)
    mutator_rng = random.Random(rs ^ 0x5A5A5A5A)
    geometry = {"max_queued_bytes": asked, "ring_bytes": capacity, "message_length": cap,
                "ends_give_message_length": "message_length" in kw, "strict": strict}

    def run_mutator():
        _race_mutator(channel_path(name), mutator_rng, capacity, cap, strict)

    def run_victim():
        _race_victim(name, rng, kw, capacity, cap, strict, round_seconds, counters, stream)
    return geometry, run_mutator, run_victim, round_seconds


def _race_mutator(path, rng, capacity, cap, strict):
    """Rewrite the channel without pause until killed: the geometry fields (flipped to a wrong
    value and back: ends read them only as they open), the waiting, pid and start words, and the
    cursors (a strict round: atomic XOR flips, each result implausible; a wild one: plain stores
    of any value, often put back); a wild round also the record headers (plausible values among
    them) and payload bytes."""
    from cywhip._testing.fuzz import _U32_FIELDS, _offsets
    lay = _offsets(layout())
    mm = map_channel(path)
    parent = os.getppid()
    ring = slots_offset_for()
    size_of = {f: 4 for f in _U32_FIELDS + ("records",)}
    geometry = [(lay[f], size_of.get(f, 8)) for f in ("records", "capacity", "message_length", "slot_size",
                                                       "file_size", "header_size_field", "version", "magic",
                                                       "max_senders", "max_receivers", "topology")]
    state = [(lay[f], size_of.get(f, 8)) for f in ("sender_waiting", "receiver_waiting", "sender_pid",
                                                    "receiver_pid", "sender_starts", "receiver_starts")]
    cursors = [lay["write_cursor"], lay["read_cursor"]]
    flips = {lay[c]: masks for c, masks in _STRICT_FLIPS.items()}
    pristine = bytes(mm[:lay["write_cursor"]])
    # A pause after each mutation: most of the time the channel is sound enough to open and use.
    rest = rng.choice([0.0002, 0.001, 0.003] if strict else [0, 0.0001, 0.001])
    while True:
        if os.getppid() != parent:
            os._exit(0)
        phase_end = time.monotonic() + rng.choice([0.001, 0.005, 0.02])
        pick = rng.random()
        if pick < 0.25:
            # A geometry field, wrong and right in turn (ends read it only as they open).
            mm[:len(pristine)] = pristine
            off, size = rng.choice(geometry)
            fmt = "<Q" if size == 8 else "<I"
            good = pristine[off:off + size]
            current = struct.unpack(fmt, good)[0]
            bad = struct.pack(fmt, rng.choice([0, 1, current + 8, current - 8, current * 2, 2, 7])
                              & ((1 << (8 * size)) - 1))
            while time.monotonic() < phase_end:
                for _ in range(32):
                    mm[off:off + size] = bad
                    mm[off:off + size] = good
        elif pick < 0.6 or strict:
            while time.monotonic() < phase_end:
                if rng.random() < 0.7:
                    off = rng.choice(cursors)
                    if strict:
                        # An end's store between two flips left its value flipped: flip the
                        # bits no sound cursor has back (a store meanwhile gets them instead).
                        for c in cursors:
                            wrong = _u64(mm, c) & _FLIPPED
                            if wrong:
                                atomic_xor_u64(mm, c, wrong)
                        mask = rng.choice(flips[off])
                        atomic_xor_u64(mm, off, mask)
                        if rng.random() < 0.5:
                            time.sleep(rng.choice([0, 0.0001, 0.001]))
                        atomic_xor_u64(mm, off, mask)
                    else:
                        old = mm[off:off + 8]
                        now = struct.unpack("<Q", old)[0]
                        for _ in range(rng.randint(1, 10)):
                            struct.pack_into("<Q", mm, off, rng.choice(
                                [now + 8, now - 8, now + capacity, now - capacity, now ^ 4, 0, now + (1 << 40)])
                                & ((1 << 64) - 1))
                        if rng.random() < 0.7:
                            mm[off:off + 8] = old
                        w, rd = _u64(mm, cursors[0]), _u64(mm, cursors[1])
                        if rng.random() < 0.3 and ((w - rd) % (1 << 64) > capacity or (w | rd) % 8):
                            # A repair now and then: the ring usable again.
                            struct.pack_into("<Q", mm, cursors[1], w & ~7)
                            struct.pack_into("<Q", mm, cursors[0], w & ~7)
                else:
                    off, size = rng.choice(state)
                    fmt = "<Q" if size == 8 else "<I"
                    old = mm[off:off + size]
                    struct.pack_into(fmt, mm, off, rng.choice([0, 1, 2, (1 << (8 * size)) - 1]))
                    if rng.random() < 0.8:
                        mm[off:off + size] = old
                if rest:
                    time.sleep(rest)
        else:
            # Wild: record headers and payload bytes anywhere in the ring.
            while time.monotonic() < phase_end:
                i = rng.randrange(0, capacity, 8)
                at = ring + i
                old = mm[at:at + 8]
                length, kind = struct.unpack("<II", old)
                how = rng.random()
                if how < 0.7:
                    value = rng.choice([(0, kind), (length + 8, kind), (max(0, length - 1), kind), (cap + 1, kind),
                                        (1 << 31, kind), (length, 1 - kind if kind < 2 else 0), (length, 2),
                                        (capacity - i, 1), (capacity - i - 8, 1)])
                    struct.pack_into("<II", mm, at, value[0] & 0xFFFFFFFF, value[1] & 0xFFFFFFFF)
                else:
                    at += rng.randrange(8, 16) if i + 16 <= capacity else 0
                    mm[at] = rng.randrange(256)
                if rng.random() < 0.5:
                    mm[ring + i:ring + i + 8] = old
                if rest:
                    time.sleep(rest)


class RaceCalls:
    """A racing victim's calls into cywhip: each noted in the trail and in the page shared with
    the runner (counters: the figures and the call under way), an expected error counted, any
    other a failure, as is a call with a timeout returning more than RACE_LATE_SECONDS after it.
    ``debug``: a dict counting the expected errors by call and text (None: not counted)."""

    def __init__(self, counters, debug=None):
        self.counters = counters
        self.seen = [0, 0, 0, 0]   # iterations, calls, calls that raised an expected error, ends opened
        self.debug = debug

    def fail(self, code, detail):
        from cywhip._testing.fuzz_race import _DETAIL, _DETAIL_SIZE
        raw = detail.encode("utf-8", "replace")[:_DETAIL_SIZE]
        self.counters[_DETAIL:_DETAIL + _DETAIL_SIZE] = raw.ljust(_DETAIL_SIZE, b"\0")
        _note(f"FAILED: {detail}")
        os._exit(code)

    def call(self, what, fn, *args, timeout=None):
        from cywhip._testing.fuzz import LATE, RACE_LATE_SECONDS
        from cywhip._testing.fuzz_race import _DETAIL, _DURING
        self.seen[1] += 1
        self.counters[_DURING:_DETAIL] = what.encode()[:_DETAIL - _DURING].ljust(_DETAIL - _DURING, b"\0")
        k = _note(what if timeout is None else f"{what}, timeout {timeout} s")
        started = time.monotonic()
        try:
            result = fn(*args)
        except EXPECTED_ERRORS as exc:
            self.seen[2] += 1
            _ended(k, f"raised {type(exc).__name__}: {str(exc)[:80]}")
            if self.debug is not None:
                key = f"{what.split(' ')[0]}: {type(exc).__name__}: {str(exc)[:50]}"
                self.debug[key] = self.debug.get(key, 0) + 1
            return None
        except Exception:
            import traceback
            self.fail(UNEXPECTED_ERROR, traceback.format_exc(limit=-3))
        finally:
            took = time.monotonic() - started
            if timeout is not None and took > timeout + RACE_LATE_SECONDS:
                self.fail(LATE, f"{what} with a timeout of {timeout} s returned after {took:.3f} s")
        _ended(k, "returned")
        return result

    def iteration_done(self):
        from cywhip._testing.fuzz_race import _DETAIL, _DURING
        self.seen[0] += 1
        struct.pack_into("<4Q", self.counters, 0, *self.seen)
        self.counters[_DURING:_DETAIL] = bytes(_DETAIL - _DURING)


def mutate_until_parent_goes(rng, parent, strict, stall, repair, step, stall_share, stall_holds, rest):
    """The loop of the racing mutators of byte channels with groups or many senders, until the
    round's process (parent) is gone: a long stall early in 3 rounds of 10, while the victim
    is at work; then phases of 1 to 20 ms, each a stall (stall_share of them, held for one of
    stall_holds seconds) or a wild round's repair now and then followed by rewrites without
    pause: step(hold), a rewrite whose strict value is put back by compare-and-swap after
    hold seconds (it may stay a while), with rest seconds between."""
    from cywhip._testing.fuzz_race import RACE_STALL_SECONDS
    if rng.random() < 0.3:
        time.sleep(rng.uniform(0.01, 0.15))
        stall(RACE_STALL_SECONDS)
    while True:
        if os.getppid() != parent:
            os._exit(0)
        phase_end = time.monotonic() + rng.choice([0.001, 0.005, 0.02])
        if rng.random() < stall_share:
            stall(rng.choice(stall_holds))
            continue
        if not strict and rng.random() < 0.3:
            repair()
        while time.monotonic() < phase_end:
            step(rng.choice([0, 0.0001, 0.001, 0.005, 0.02] if strict else [0, 0, 0.0001, 0.001, 0.005]))
            if rest:
                time.sleep(rest)


def race_victim_setup(counters, stream, strict, rng, cap, wild, debug=None):
    """What a racing victim of a byte channel starts with: its calls (RaceCalls), the stream's
    failures reported through them (loose from the start in a wild round: ``wild`` says why),
    the allocation check of its receives and the draw of a message's length."""
    calls = RaceCalls(counters, debug)
    stream.fail = lambda detail: calls.fail(BAD_MESSAGE, detail)
    if not strict:
        stream.taint(wild)

    def size():
        return rng.randint(MIN_MESSAGE, min(cap, 40)) if rng.random() < 0.5 else rng.randint(MIN_MESSAGE, cap)
    return calls, Allocations(cap, stream.fail), size


def _race_victim(name, rng, kw, capacity, cap, strict, seconds, counters, stream):
    """Open, use and close a byte channel's ends in a loop for ``seconds``; exit with a failure
    code on an impossible result, a torn message in a strict round, or a late call."""
    from cywhip._testing.fuzz import RACE_HANG_SECONDS
    calls, alloc, size = race_victim_setup(counters, stream, strict, rng, cap,
                                           "a wild round: headers, payloads and cursors rewritten by plain stores")
    fail, call = calls.fail, calls.call

    def send(tx, timeout):
        send_one(tx, stream, rng, size, cap, timeout)

    def receive(rx, timeout):
        receive_one(rx, stream, alloc, rng, timeout)

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        signal.alarm(RACE_HANG_SECONDS)
        makers = [("sender", Sender), ("receiver", Receiver)]
        rng.shuffle(makers)
        ends = [(label, call(f"open {label}", lambda kind=kind: kind(name, **kw)))
                for label, kind in makers[:rng.randint(1, 2)]]
        ends = [(label, end) for label, end in ends if end is not None]
        calls.seen[3] += len(ends)
        for _ in range(rng.choice([0, 1, 2, 4, 8])):
            for label, end in ends:
                timeout = rng.choice([0, 0, 0.0005, 0.002])
                if label == "sender":
                    call("send", send, end, timeout, timeout=timeout)
                else:
                    call("receive", receive, end, timeout, timeout=timeout)
            if ends and rng.random() < 0.1:
                depth = call("depth", lambda: ends[0][1].depth)
                if depth is not None and not 0 <= depth <= capacity:
                    fail(BAD_MESSAGE, f"depth {depth} of a ring of {capacity} bytes")
        for label, end in ends:
            call(f"close {label}", end.close)
        calls.iteration_done()
    signal.alarm(0)

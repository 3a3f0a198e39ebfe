"""Hostile shared memory: a channel's header and slots corrupted between calls, or while they run.

    python -m cywhip._testing.fuzz --cases 10000 [--seed N] [--groups mix|only|none]
    python -m cywhip._testing.fuzz --case-seed N [--cases K] [--groups only|none]
    python -m cywhip._testing.fuzz --race --seconds 60 [--seed N] [--groups mix|only|none]
    (each also with --bytes mix|only|none: byte channels, fuzz_bytes.py)

Each case runs in a forked child: it fills a channel, corrupts the file (the
header's geometry, cursors, waiting words, pids, slot lengths and payloads, or
its size), then opens ends and sends and receives, corrupting again between
calls, as a hostile process sharing the mapping could. Every call must either
work, with messages no longer than message_length, or raise a clear error; a
child killed by a signal (a crash), one that hangs (5 s alarm) or one that sees
an impossible message is a failure.

Channels with receiver groups (``--groups``: a share of the cases and rounds,
all of them, or none) have one to three groups of one or two members each,
durable or not.  Their cases leave claims in members' places (a member closed
with a claim not all taken, a member process that died holding one), then
corrupt the group entries (claim cursor, claim lock, epoch, members, flags,
name length and name), the receiver places (group tag, hold_start, hold_end,
pid), groups_gen and the cursors, and between calls of the sender and the
members also join, leave, remove groups (remove_group) and list the channel
(channels()); a depth beyond max_queued_messages (an end's, or one channels()
lists for a channel it finds sound) is an impossible figure, a failure too.

With ``--race``, the corruption happens while the calls run: each round, one
process maps the channel file and rewrites its header (every geometry field and
the type description, flipped to a wrong value and back, again and again), its
cursors, waiting words, pid and start fields and slot lengths continuously,
while another process opens ends, sends and receives through every path
(send, try_send, send_many, send_array, recv, try_recv, recv_many, recv_into,
recv_array, borrow, an on_message thread) and closes them, in a loop; with
groups, the mutator also rewrites the group entries, the members' places and
groups_gen, and now and then holds the groups lock (groups_gen left odd, as a
creator stopped midway) or a member place's lock (as a live member), while the
victim's members join, claim, take, leave and remove groups.  The file
is never truncated: a mapped file that shrinks raises SIGBUS by design.  The
same failures count, and a call with a timeout (0 for try_send and try_recv)
that returns more than RACE_LATE_SECONDS after it; a failure names the round's seed (``--round-seed`` runs
that round's choices again, though the interleaving differs from run to run).

Byte channels (``--bytes``: a share of the cases and rounds, all of them, or none) have their
cases and rounds in fuzz_bytes.py: record headers, cursors and the header's geometry corrupted
between calls and while the ends run, every message checked whole until a corruption a sound
channel could hold (see its docstring).  A share of the byte rounds has many senders
(fuzz_bytes_many.py: senders at once, the claim word, the sender places and the 16-byte record
headers rewritten, senders stopped in their claims; the report counts ``byte_many_rounds``), and
so has a share of the byte rounds with receiver groups (fuzz_bytes_many_groups.py: the senders'
words and the groups' rewritten at once; ``byte_many_group_rounds``).

A failure must be diagnosable from the report alone, since replaying its seed
(``--case-seed``, ``--round-seed``) may not fail again: another process, the
machine's load or a race had a part in it.  So each failure also names the
call under way, carries the child's report (faulthandler's Python tracebacks of
every thread, written on a fatal signal such as SIGSEGV or SIGBUS and on the
alarm that ends a hang; or the traceback of an unexpected exception; or the
impossible value) and its last TRAIL_ENTRIES steps: each call into cywhip with
its arguments and outcome, and each corruption with the field, its offset, the
old and the new value.  The command prints each failure so (describe_failure())
on stderr after the JSON report.
"""
import argparse
import faulthandler
import fcntl
import json
import logging
import mmap
import os
import random
import signal
import struct
import sys
import tempfile
import time

from cywhip import CywhipError, Receiver, Sender, channels, remove_group, unlink
from cywhip._region import channel_path, slots_offset_for
from cywhip._testing._model import layout, slot_header_size, slot_offset
from cywhip._testing._model import slot_size as slot_size_of

EXPECTED_ERRORS = (CywhipError, OSError, RuntimeError)
BAD_MESSAGE = 3
UNEXPECTED_ERROR = 4


# ------------------------------------------------------------------ the trail
#
# A failure must be diagnosable from the runner's report alone: a case that dies by a signal
# once in a long run may never die so again when its seed is replayed (another process, the
# machine's load, a race).  So each case's child (and each racing victim) keeps, in a page it
# shares with the runner, its last TRAIL_ENTRIES steps: every call into cywhip (the end, the
# call and its arguments, then how it ended) and every corruption (the field, its offset, the
# old and the new value); the runner reads the page after the child is gone, however it ended.
# The child also has faulthandler write the Python traceback of every thread to a file the
# runner reads: on a fatal signal (SIGSEGV, SIGBUS, SIGFPE, SIGABRT, SIGILL) at once, and
# before the alarm that ends a hung case.

TRAIL_ENTRIES = 64
_TRAIL_ENTRY = 240
TRAIL_BYTES = 8 + TRAIL_ENTRIES * _TRAIL_ENTRY
# The Python traceback of a case that still runs this long is written down; the alarm that
# kills a hung case comes at CASE_HANG_SECONDS.
CASE_HANG_SECONDS = 5
_CASE_DUMP_SECONDS = 4
# How much of the child's report (faulthandler's output, an exception's traceback or the
# detail of an impossible message) a failure record keeps: its end.
_REPORT_CHARS = 6000

_trail = None
_report_file = None


class _Trail:
    """The last TRAIL_ENTRIES steps of one process, in a page shared with the runner: a count of
    the steps (u64), then the entries, step k in entry k % TRAIL_ENTRIES (UTF-8, ended by a NUL
    unless it fills the entry)."""

    def __init__(self, page):
        self.page = page
        self.count = 0
        self.texts = {}
        page[:8] = bytes(8)

    def _put(self, k, text):
        self.texts[k % TRAIL_ENTRIES] = text
        raw = text.encode("utf-8", "replace")[:_TRAIL_ENTRY - 1] + b"\0"
        at = 8 + (k % TRAIL_ENTRIES) * _TRAIL_ENTRY
        self.page[at:at + len(raw)] = raw

    def note(self, text):
        """Record a step; returns its number (for ended())."""
        k = self.count
        self._put(k, f"{k}: {text}")
        self.count = k + 1
        struct.pack_into("<Q", self.page, 0, self.count)
        return k

    def ended(self, k, outcome):
        """Add how step k ended to its entry (if no later step has taken the entry since)."""
        if self.count - k > TRAIL_ENTRIES:
            return
        self._put(k, f"{self.texts[k % TRAIL_ENTRIES]} -> {outcome}")


def read_trail(page):
    """The steps a _Trail wrote in page, oldest first (its last TRAIL_ENTRIES)."""
    count = struct.unpack_from("<Q", page, 0)[0]
    out = []
    for k in range(max(0, count - TRAIL_ENTRIES), count):
        at = 8 + (k % TRAIL_ENTRIES) * _TRAIL_ENTRY
        out.append(page[at:at + _TRAIL_ENTRY].split(b"\0", 1)[0].decode("utf-8", "replace"))
    return out


def _in_progress(trail):
    """The last step of a trail if it had not ended (a call the process died or hung in)."""
    if trail and " -> " not in trail[-1]:
        return trail[-1]
    return None


def _watch_child(page, report):
    """In a case's child (or a racing victim): keep the trail in page, and have faulthandler
    write every thread's Python traceback to the file report on a fatal signal, and on the
    alarm that ends a hung case before the alarm kills it (chain: SIGALRM's default action
    then ends the process as before)."""
    global _trail, _report_file
    _trail = _Trail(page)
    _report_file = report
    faulthandler.enable(file=report, all_threads=True)
    faulthandler.register(signal.SIGALRM, file=report, all_threads=True, chain=True)


def _resync_trail():
    """After a child forked from this process ended: go on after the steps it noted."""
    if _trail is not None:
        _trail.count = struct.unpack_from("<Q", _trail.page, 0)[0]


def _fail_case(code, detail):
    """End this child with a failure code; the detail goes to stderr and to the runner's report."""
    text = f"{detail}\n"
    sys.stderr.write(text)
    sys.stderr.flush()
    if _report_file is not None:
        os.write(_report_file.fileno(), text.encode("utf-8", "replace"))
    os._exit(code)


def _child_report(report):
    """What a child wrote to its report file (the end of it), None if nothing."""
    text = os.pread(report.fileno(), 1 << 20, 0).decode("utf-8", "replace").strip()
    if len(text) > _REPORT_CHARS:
        text = "...\n" + text[-_REPORT_CHARS:]
    return text or None


def _note(text):
    return _trail.note(text) if _trail is not None else None


def _ended(k, outcome):
    if _trail is not None and k is not None:
        _trail.ended(k, outcome)


def _short(value):
    """A few characters that say what an argument was (its size, not its bytes)."""
    if value is None or type(value) in (int, float, bool):
        return repr(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    if isinstance(value, list):
        return f"[{len(value)} items]"
    if hasattr(value, "dtype") and hasattr(value, "shape"):
        return f"<array {value.dtype} {value.shape}>"
    if type(value).__module__.startswith("cywhip"):
        return f"<{type(value).__name__}>"
    if callable(value):
        return getattr(value, "__name__", type(value).__name__)
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _traced(what, fn, *args, **kw):
    """Call fn, noted in the trail as what(args) with its outcome."""
    shown = ", ".join([_short(a) for a in args] + [f"{k}={_short(v)}" for k, v in kw.items()])
    k = _note(f"{what}({shown})")
    try:
        result = fn(*args, **kw)
    except BaseException as exc:
        _ended(k, f"raised {type(exc).__name__}: {str(exc)[:80]}")
        raise
    _ended(k, "returned" if result is None else f"returned {_short(result)}")
    return result


class _TracedEnd:
    """An end (or a borrow) whose calls, and reads of its properties, are noted in the trail."""

    # Flags the fuzzer reads all the time; they touch no shared memory.
    _QUIET = frozenset({"closed", "running", "message_type", "name"})

    def __init__(self, end, label):
        self.end = end
        self.label = label
        self.receiving = isinstance(end, Receiver)

    def __getattr__(self, attr):
        value_type = getattr(type(self.end), attr, None)
        if attr in self._QUIET or attr.startswith("_"):
            return getattr(self.end, attr)
        if not callable(value_type):
            # A property (depth, taken): its read is a call into the channel too.
            k = _note(f"{self.label}.{attr}")
            try:
                value = getattr(self.end, attr)
            except BaseException as exc:
                _ended(k, f"raised {type(exc).__name__}: {str(exc)[:80]}")
                raise
            _ended(k, f"is {_short(value)}")
            return value
        method = getattr(self.end, attr)

        def call(*args, **kw):
            result = _traced(f"{self.label}.{attr}", method, *args, **kw)
            if hasattr(result, "__enter__") and type(result).__module__.startswith("cywhip"):
                return _TracedEnd(result, f"{self.label}.{attr}()")
            return result
        return call

    def __enter__(self):
        value = _traced(f"{self.label}.__enter__", self.end.__enter__)
        return self if value is self.end else value

    def __exit__(self, *exc):
        return _traced(f"{self.label}.__exit__", self.end.__exit__, *exc)


def _open_end(label, kind, *args, **kw):
    """Open an end, noted in the trail, and return it traced."""
    return _TracedEnd(_traced(f"{label} = {kind.__name__}", kind, *args, **kw), label)


def _describe_offset(off, capacity, slot_size, senders=1, receivers=1):
    """What lies at offset off of a channel file of this geometry: a header field, a place's or a
    group entry's field, or a slot's."""
    lay = _layout()
    if off < lay["places"]:
        desc = lay["type_description"]
        if desc <= off < desc + 2048:
            return f"type_description[{off - desc}]"
        fields = [f for f in ("magic", "version", "header_size_field", "message_length", "capacity",
                              "slot_size", "file_size", "type_fingerprint", "type_size", "creator_pid",
                              "created_ns", "topology", "max_senders", "max_receivers", "place_size",
                              "write_cursor", "read_cursor", "sender_waiting", "receiver_waiting",
                              "groups_gen") if lay[f] == off]
        return f"header.{fields[0]}" if fields else f"header+{off}"
    places_end = lay["places"] + (senders + receivers) * lay["place_bytes"]
    if off < places_end:
        p, within = divmod(off - lay["places"], lay["place_bytes"])
        who = f"sender place {p}" if p < senders else f"receiver place {p - senders}"
        fields = [f for f in ("pid", "starts", "intent", "group", "hold_start", "hold_end")
                  if lay[f"place_{f}"] == within]
        return f"{who}.{fields[0]}" if fields else f"{who}+{within}"
    first = slots_offset_for(senders, receivers)
    if receivers > 1 and off < places_end + receivers * lay["sizeof_group"]:
        g, within = divmod(off - places_end, lay["sizeof_group"])
        name_at = lay["group_name"]
        if name_at <= within < name_at + _GROUP_NAME_SIZE:
            return f"group {g}.name[{within - name_at}]"
        fields = [f for f in ("next", "lock", "epoch", "members", "flags", "name_len")
                  if lay[f"group_{f}"] == within]
        return f"group {g}.{fields[0]}" if fields else f"group {g}+{within}"
    if first <= off < first + slot_offset(slot_size, capacity):
        i, within = divmod(off - first, slot_size)
        head = slot_header_size(senders)
        if within == 0:
            return f"slot {i}.length"
        if senders > 1 and within == lay["slot_seq"]:
            return f"slot {i}.seq"
        return f"slot {i}.payload[{within - head}]" if within >= head else f"slot {i}+{within}"
    return f"file+{off}"


_LAYOUT = []


def _layout():
    """layout(), asked once."""
    if not _LAYOUT:
        _LAYOUT.append(layout())
    return _LAYOUT[0]


def _note_write(mm, off, size, value, capacity, slot_size, senders, receivers):
    """Write value (size bytes, or one byte) at off, noted in the trail as a corruption."""
    fmt = {1: "<B", 4: "<I", 8: "<Q"}[size]
    old = struct.unpack_from(fmt, mm, off)[0]
    struct.pack_into(fmt, mm, off, value)
    _note(f"corrupt {_describe_offset(off, capacity, slot_size, senders, receivers)} @{off}: "
          f"{old:#x} -> {value:#x}")


# 4-byte fields of the header; the others are 8 bytes.
_U32_FIELDS = ("version", "header_size_field", "sender_waiting", "receiver_waiting",
               "topology", "max_senders", "max_receivers", "place_size")


def _offsets(lay):
    """Offsets by field name: the header's, and the two places of a one-to-one channel."""
    out = dict(lay)
    for end in ("sender", "receiver"):
        out[f"{end}_pid"] = lay[f"{end}_place"] + lay["place_pid"]
        out[f"{end}_starts"] = lay[f"{end}_place"] + lay["place_starts"]
    return out


def _intents(lay, senders):
    """The intent words of a many-senders channel's sender places (none with one sender)."""
    if senders < 2:
        return []
    return [(lay["places"] + i * lay["place_bytes"] + lay["place_intent"], 8) for i in range(senders)]


def _slot_words(lay, capacity, slot_size, senders, receivers=1):
    """Each slot's length, and with many senders its seq."""
    first = slots_offset_for(senders, receivers)
    words = [(first + slot_offset(slot_size, i), 4) for i in range(capacity)]
    if senders > 1:
        words += [(first + slot_offset(slot_size, i) + lay["slot_seq"], 8) for i in range(capacity)]
    return words


def _targets(capacity, slot_size, senders=1, receivers=1):
    lay = _offsets(layout())
    fields = [(lay[f], 8) for f in ("magic", "message_length", "capacity", "slot_size", "file_size",
                                    "type_fingerprint", "type_size", "write_cursor", "read_cursor",
                                    "sender_pid", "receiver_pid", "sender_starts", "receiver_starts")]
    fields += [(lay[f], 4) for f in _U32_FIELDS]
    fields += _intents(lay, senders)
    slots = _slot_words(lay, capacity, slot_size, senders, receivers)
    head = slot_header_size(senders)
    first = slots_offset_for(senders, receivers)
    payloads = [(first + slot_offset(slot_size, i) + head, slot_size - head) for i in range(capacity)]
    return fields, slots, payloads


def _mutate(rng, mm, capacity, slot_size, count, senders=1, receivers=1):
    fields, slots, payloads = (
        [(off, size) for off, size in group if off + size <= len(mm)]
        for group in _targets(capacity, slot_size, senders, receivers))
    slots = slots or fields
    payloads = payloads or fields
    for _ in range(count):
        if receivers > 1 and rng.random() < 0.6:
            # A channel with groups: most corruptions hit what the groups' protocol reads.
            _mutate_group_word(rng, mm, capacity, senders, receivers)
            continue
        kind = rng.random()
        if kind < 0.45:
            off, size = rng.choice(fields)
        elif kind < 0.8:
            off, size = rng.choice(slots)
        else:
            off, size = rng.choice(payloads)
            off += rng.randrange(size)
            size = 1
        if size in (4, 8):
            top = (1 << (size * 8)) - 1
            value = rng.choice([0, 1, top, top >> 1, capacity, capacity + 1, rng.randrange(top + 1),
                                struct.unpack_from("<Q" if size == 8 else "<I", mm, off)[0] + rng.randint(-3, 3)])
            _note_write(mm, off, size, value & top, capacity, slot_size, senders, receivers)
        else:
            _note_write(mm, off, 1, rng.randrange(256), capacity, slot_size, senders, receivers)


# ------------------------------------------------------------ receiver groups

# Words of a group entry: (layout name, size, kind of value that goes there).
_GROUP_WORDS = (("group_next", 8, "next"), ("group_lock", 8, "lock"), ("group_epoch", 8, "epoch"),
                ("group_members", 8, "members"), ("group_flags", 4, "flags"),
                ("group_name_len", 4, "name_len"))
_GROUP_NAMES = ("", "g1", "work", "x" * 64, "\u00fcn\u00efc\u00f6de")
_GROUP_NAME_SIZE = 64
# The share of cases and rounds on channels with groups when they are mixed with the others.
GROUP_SHARE = 0.4


def _group_offset(lay, senders, receivers, g):
    """Offset of group entry g (the entries follow the places)."""
    return lay["places"] + (senders + receivers) * lay["place_bytes"] + g * lay["sizeof_group"]


def _group_targets(senders, receivers):
    """(offset, size, kind) of the words a channel with groups adds to what its ends read: each
    receiver place's pid, group tag, hold_start and hold_end; each group entry's fields and its
    name (kind "name": a byte of it is drawn); groups_gen; and both cursors (read: the floor)."""
    lay = layout()
    out = [(lay["groups_gen"], 8, "gen"), (lay["write_cursor"], 8, "cursor"), (lay["read_cursor"], 8, "cursor")]
    for q in range(receivers):
        base = lay["places"] + (senders + q) * lay["place_bytes"]
        out += [(base + lay["place_pid"], 8, "pid"), (base + lay["place_group"], 8, "tag"),
                (base + lay["place_hold_start"], 8, "hold_start"), (base + lay["place_hold_end"], 8, "hold_end")]
    for g in range(receivers):
        base = _group_offset(lay, senders, receivers, g)
        out += [(base + lay[f], size, kind) for f, size, kind in _GROUP_WORDS]
        out.append((base + lay["group_name"], 1, "name"))
    return out


def _word(mm, off, size):
    return struct.unpack_from("<Q" if size == 8 else "<I", mm, off)[0]


def _group_value(rng, mm, off, size, kind, capacity, senders, receivers):
    """A value for one word of a channel with groups: as often one the protocol could mistake for
    sound (a cursor or a claim near the write cursor or a group's claim cursor, the tag of a
    group's epoch, a lock naming a member place) as a wild one."""
    lay = layout()
    top = (1 << (size * 8)) - 1
    current = _word(mm, off, size)
    w = _word(mm, lay["write_cursor"], 8)
    entries = [_group_offset(lay, senders, receivers, g) for g in range(receivers)]
    nxt = _word(mm, rng.choice(entries) + lay["group_next"], 8)
    near = [w, w + 1, w - 1, w + 2, w - capacity, w - capacity + 1, w - capacity - 1, w + capacity,
            nxt, nxt + 1, nxt - 1]
    if kind == "tag":
        g = rng.randrange(receivers + 1)          # receivers: no such group
        epoch = _word(mm, entries[g % receivers] + lay["group_epoch"], 8)
        epoch = (epoch + rng.choice([0, 0, 0, 1, -1])) & 0xFFFFFFFF
        choices = [(epoch << 32) | (g + 1), epoch << 32, (epoch << 32) | 0xFFFFFFFF, g + 1]
    elif kind == "hold_start":
        choices = [0, 0] + [v + 1 for v in near] + near
    elif kind in ("hold_end", "next", "cursor"):
        choices = near
    elif kind == "lock":
        choices = list(range(receivers + 2))      # 0 free, q + 1 place q claiming, receivers + 1 none
    elif kind == "epoch":
        choices = [current + 1, current - 1, 0, 1 << 32]
    elif kind == "members":
        choices = [0, 1, 2, top]
    elif kind == "flags":
        choices = [0, 1, 2, 3, 4, top]
    elif kind == "name_len":
        choices = [0, 1, 2, 63, 64, 65, 1 << 31, top]
    elif kind == "gen":
        choices = [current + 1, current + 2, current - 1, current | 1, 0, 1, top]
    else:   # pid
        choices = [0, 1, os.getpid(), os.getppid(), top, top >> 1]
    if rng.random() < 0.75:
        value = rng.choice(choices)
    else:
        value = rng.choice([0, 1, top, top >> 1, current + 1, current - 1, rng.randrange(top + 1)])
    return value & top


def _mutate_group_word(rng, mm, capacity, senders, receivers):
    """Rewrite one word (or one name byte) of a channel with groups."""
    off, size, kind = rng.choice(_group_targets(senders, receivers))
    if kind == "name":
        byte = rng.randrange(256)          # drawn first, as an assignment's value is
        _note_write(mm, off + rng.randrange(_GROUP_NAME_SIZE), 1, byte, capacity, 0, senders, receivers)
        return
    value = _group_value(rng, mm, off, size, kind, capacity, senders, receivers)
    _note_write(mm, off, size, value, capacity, 0, senders, receivers)


def _group_spec(rng):
    """1 to 3 groups of 1 or 2 members, each durable or not; and max_receivers for them."""
    names = rng.sample(_GROUP_NAMES, rng.randint(1, 3))
    groups = [(gname, rng.random() < 0.5, rng.randint(1, 2)) for gname in names]
    receivers = max(2, sum(m for _, _, m in groups) + rng.choice([0, 0, 1]))
    return groups, receivers


def _ofd_lock(fd, offset, lock=True):
    """Take (or drop) an open-file-description lock on one byte, as an end does; True if taken."""
    packed = struct.pack("hhxxxxqqixxxx", fcntl.F_WRLCK if lock else fcntl.F_UNLCK, os.SEEK_SET, offset, 1, 0)
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, packed)
    except OSError:
        return False
    return True


def _check_listing(name, fail):
    """channels() on a corrupted channel: listed as broken, or with figures a sound channel of the
    geometry its header shows could have (the header's geometry is as corrupt as the rest)."""
    for info in _traced("channels", channels):
        if info.name != name or info.problem is not None:
            continue
        most = info.max_queued_messages
        if info.depth is None or not 0 <= info.depth <= most:
            fail(f"channels() lists depth {info.depth!r} with max_queued_messages={most}")
        for row in info.groups:
            if type(row.name) is not str or not 0 <= row.depth <= most or type(row.durable) is not bool:
                fail(f"channels() lists group {row!r} with max_queued_messages={most}")


def _remove_group(name, gname):
    """remove_group(); a group that is gone (KeyError) or a header that says no groups (ValueError)
    is an answer, not a failure."""
    try:
        _traced("remove_group", remove_group, name, gname)
    except (KeyError, ValueError):
        pass


def _group_case(rng, name):
    """A channel with groups: a history that leaves claims in places (members closed with a claim
    not all taken, a member process that died holding one), corruption, then a sender and the
    members at work, joining, leaving, removing groups and listing, corrupted between calls."""
    length = rng.choice([1, 8, 13, 32, 100])
    capacity = rng.choice([1, 2, 3, 7, 16])
    np = _numpy()
    dtype = np.dtype([("x", "u1", (length,))]) if np is not None and rng.random() < 0.33 else None
    groups, receivers = _group_spec(rng)
    kw = dict(message_type=dtype) if dtype is not None else dict(message_length=length)
    kw.update(max_queued_messages=capacity, max_receivers=receivers)

    def bad(detail):
        _fail_case(BAD_MESSAGE, detail)

    opens = [0]

    def member(gname, durable, pushed=False, label=None):
        opens[0] += 1
        label = label or f"member{opens[0]}"
        if pushed and rng.random() < 0.5:
            return _open_end(label, Receiver, name, group=gname, durable=durable, on_message=check, **kw)
        if pushed:
            return _open_end(label, Receiver, name, group=gname, durable=durable, on_batch=check_batch, **kw)
        return _open_end(label, Receiver, name, group=gname, durable=durable, **kw)

    def check_batch(batch):
        if dtype is not None:
            if getattr(batch, "dtype", None) != dtype or not 1 <= len(batch) <= capacity:
                bad(f"on_batch() got {batch!r:.200}")
            return
        if type(batch) is not list or not 1 <= len(batch) <= capacity:
            bad(f"on_batch() got {batch!r:.200}")
        for msg in batch:
            check(msg)

    def one(i):
        if dtype is not None:
            return np.full(1, i % 256, dtype)[0]
        return bytes([i % 256]) * rng.randint(0, length)

    def check(msg):
        if dtype is not None:
            if getattr(msg, "dtype", None) != dtype:
                bad(f"expected a record of {dtype}, got {msg!r:.200}")
        elif type(msg) is not bytes or len(msg) > length:
            bad(f"expected bytes of at most {length}, got {msg!r:.200}")

    def receive(m):
        how = rng.random()
        if dtype is not None and how < 0.4:
            if how < 0.15:
                got = m.recv_array(capacity + 1, timeout=0)
                if got.dtype != dtype or len(got) > capacity:
                    bad(f"recv_array() returned {got!r:.200}")
            elif how < 0.3:
                out = np.zeros(capacity + 1, dtype)
                got = m.recv_into(out, timeout=0)
                if not 1 <= got <= capacity:
                    bad(f"recv_into() into {capacity + 1} records returned {got}")
            else:
                with m.borrow(capacity, timeout=0) as batch:
                    if len(batch) > capacity or int(batch["x"].sum()) < 0:
                        bad(f"borrow() lent {batch!r:.200}")
        elif how < 0.35:
            for msg in m.recv_many(rng.randint(1, capacity + 1), timeout=0):
                check(msg)
        elif how < 0.6:
            msg = m.try_recv()
            if msg is not None:
                check(msg)
        elif how < 0.75:
            check(m.recv(timeout=rng.choice([0, 0.001])))
        elif how < 0.9 and dtype is None:
            with m.borrow(rng.randint(1, capacity), timeout=0) as batch:
                if not 1 <= len(batch) <= capacity or any(len(v) > length for v in batch):
                    bad(f"borrow() lent {len(batch)} views of {[len(v) for v in batch]} bytes")
        else:
            depth = m.depth
            if not 0 <= depth <= capacity:
                bad(f"a member's depth is {depth} with max_queued_messages={capacity}")
            m.taken

    # The history, on a sound channel: claims taken in part, members closed or dead with claims.
    _note(f"case: groups {groups}, max_receivers={receivers}, message_length={length}, "
          f"max_queued_messages={capacity}, typed={dtype is not None}")
    with _open_end("sender", Sender, name, **kw) as s:
        members = [member(gname, durable) for gname, durable, count in groups for _ in range(count)]
        sent = 0
        for _ in range(rng.randint(0, 4)):
            for _ in range(rng.randint(0, capacity)):
                sent += bool(s.try_send(one(sent)))
            for m in members:
                if m.closed:
                    continue
                how = rng.random()
                try:
                    if how < 0.5:
                        receive(m)
                    elif how < 0.6:
                        m.close()
                except EXPECTED_ERRORS:
                    pass
        if rng.random() < 0.3:
            # A member process that dies holding a claim (its place keeps its pid and claim).
            k = _note("fork: a member process that dies holding a claim")
            pid = os.fork()
            if pid == 0:
                try:
                    gname, durable, _ = rng.choice(groups)
                    member(gname, durable, label="dying member").try_recv()
                finally:
                    os._exit(0)
            _, status = os.waitpid(pid, 0)
            _resync_trail()
            _ended(k, f"it ended: {_how(status)}")
        for m in members:
            m.close()
    path = channel_path(name)
    fd = os.open(path, os.O_RDWR)
    try:
        mm = mmap.mmap(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)
    slot_size = slot_size_of(length, 1)

    def corrupt(count):
        _mutate(rng, mm, capacity, slot_size, count, 1, receivers)

    corrupt(rng.randint(1, 4))
    opened = []
    makers = [lambda: _open_end("sender", Sender, name, **kw)]
    # Some members deliver to on_message or on_batch from their thread, while the others run.
    makers += [(lambda gname=gname, durable=durable: member(gname, durable, rng.random() < 0.15))
               for gname, durable, count in groups for _ in range(count)]
    try:
        for make in makers:
            try:
                opened.append([make, make()])
            except EXPECTED_ERRORS:
                opened.append([make, None])
        for _ in range(rng.randint(1, 12)):
            for entry in opened:
                make, end = entry
                try:
                    if end is None or end.closed:
                        if rng.random() < 0.3:
                            entry[1] = make()
                        continue
                    if rng.random() < 0.1:
                        end.close()
                    elif end.receiving:
                        if end.running:
                            time.sleep(0.0005)
                        else:
                            receive(end)
                    else:
                        how = rng.random()
                        if dtype is not None and how < 0.1:
                            end.send_array(np.zeros(rng.randint(1, capacity + 1), dtype), timeout=0)
                        elif how < 0.4:
                            end.try_send(one(sent))
                        elif how < 0.6:
                            end.send(one(sent), timeout=rng.choice([0, 0.001]))
                        elif how < 0.9:
                            end.send_many([one(sent) for _ in range(rng.randint(1, capacity + 1))], timeout=0)
                        elif not 0 <= end.depth <= capacity:
                            bad(f"the sender's depth is {end.depth} with max_queued_messages={capacity}")
                except EXPECTED_ERRORS:
                    pass
            try:
                if rng.random() < 0.15:
                    _remove_group(name, rng.choice(groups)[0])
                if rng.random() < 0.15:
                    _check_listing(name, bad)
            except EXPECTED_ERRORS:
                pass
            if rng.random() < 0.5:
                corrupt(1)
    finally:
        for _, end in opened:
            if end is not None:
                end.close()


def _numpy():
    try:
        import numpy
    except ImportError:
        return None
    return numpy


def _case(rng, name):
    length = rng.choice([1, 8, 13, 32, 100])
    capacity = rng.choice([1, 2, 3, 7, 16])
    np = _numpy()
    # A third of the cases use a typed channel (NumPy records), read with the array paths.
    dtype = np.dtype([("x", "u1", (length,))]) if np is not None and rng.random() < 0.33 else None
    senders = rng.choice([1, 1, 2, 3])
    kw = dict(message_type=dtype) if dtype is not None else dict(message_length=length)
    kw["max_senders"] = senders
    _note(f"case: max_senders={senders}, message_length={length}, max_queued_messages={capacity}, "
          f"typed={dtype is not None}")
    with _open_end("sender", Sender, name, max_queued_messages=capacity, **kw) as s:
        for i in range(rng.randint(0, capacity)):
            if dtype is not None:
                s.try_send(np.full(1, i % 256, dtype)[0])
            else:
                s.try_send(bytes([i % 256]) * rng.randint(0, length))
    path = channel_path(name)
    slot_size = slot_size_of(length, senders)
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        if rng.random() < 0.05:
            to = rng.choice([0, 100, 4096, size - 4096, size + 4096])
            _note(f"corrupt the file's size: {size} -> {to} bytes (ftruncate)")
            os.ftruncate(fd, to)
            size = os.fstat(fd).st_size
        mm = mmap.mmap(fd, max(size, 4096) if size else 4096) if size >= 4096 else None
    finally:
        os.close(fd)
    if mm is not None:
        _mutate(rng, mm, capacity, slot_size, rng.randint(1, 4), senders)
    ends = []
    try:
        for make in ([lambda: _open_end("receiver", Receiver, name, max_queued_messages=capacity, **kw)]
                     + [lambda: _open_end(f"sender{len(ends)}", Sender, name, max_queued_messages=capacity, **kw)]
                     * senders):
            try:
                ends.append(make())
            except EXPECTED_ERRORS:
                pass
        for step in range(rng.randint(1, 12)):
            for end in ends:
                try:
                    if end.receiving and dtype is not None:
                        how = rng.random()
                        if how < 0.4:
                            got = end.recv_array(capacity + 1, timeout=0)
                            if got.dtype != dtype or len(got) > capacity:
                                _fail_case(BAD_MESSAGE, f"recv_array() returned {got!r:.200}")
                        elif how < 0.7:
                            out = np.zeros(capacity + 1, dtype)
                            got = end.recv_into(out, timeout=0)
                            if not 1 <= got <= capacity:
                                _fail_case(BAD_MESSAGE, f"recv_into() into {capacity + 1} records returned {got}")
                        else:
                            with end.borrow(capacity, timeout=0) as batch:
                                if len(batch) > capacity or int(batch["x"].sum()) < 0:
                                    _fail_case(BAD_MESSAGE, f"borrow() lent {batch!r:.200}")
                    elif end.receiving:
                        msgs = end.recv_many(capacity + 1, timeout=0) if rng.random() < 0.5 else [end.try_recv()]
                        for m in msgs:
                            if m is not None and (type(m) is not bytes or len(m) > length):
                                _fail_case(BAD_MESSAGE, f"expected bytes of at most {length}, got {m!r:.200}")
                    elif dtype is not None:
                        end.try_send(np.zeros(1, dtype)[0])
                    else:
                        end.try_send(b"z" * rng.randint(0, length))
                except EXPECTED_ERRORS:
                    pass
                except Exception:
                    import traceback
                    _fail_case(UNEXPECTED_ERROR, traceback.format_exc())
            if mm is not None and rng.random() < 0.5:
                _mutate(rng, mm, capacity, slot_size, 1, senders)
    finally:
        for end in ends:
            end.close()


def _bytes_round(round_seed, groups, bytes_):
    """Whether a case or round of this seed uses a byte channel (max_queued_bytes; fuzz_bytes.py):
    all of them with bytes_ "only", none with "none", a share with "mix" (drawn apart from the
    other choices, and never where groups are "only": byte channels have no groups)."""
    if bytes_ == "only":
        return True
    if bytes_ == "none" or groups == "only":
        return False
    from cywhip._testing.fuzz_bytes import BYTES_SHARE
    return random.Random(round_seed ^ 0x6279746573).random() < BYTES_SHARE


def _grouped(round_seed, groups):
    """Whether a case or round of this seed uses a channel with groups (drawn apart from its
    other choices, so a seed without groups plays as it did before groups existed)."""
    if groups == "mix":
        return random.Random(round_seed ^ 0x67726F7570).random() < GROUP_SHARE
    return groups == "only"


def quiet_receive_threads():
    """Keep cywhip's log of failing receive threads off this process's stderr (and its forked
    children's).  The cases corrupt channels under on_message threads, whose failures cywhip
    logs at once; the case's own report says what failed, and a log on stderr, often a pipe
    its reader drains only at the end, would fill it and block the children in a write."""
    log = logging.getLogger("cywhip")
    log.addHandler(logging.NullHandler())
    log.propagate = False


def run(cases, seed=0, progress=None, groups="mix", case_seed=None, bytes_="mix"):
    """Run the cases; return a report with the failures.

    ``groups``: "mix" (a share of the cases on channels with receiver groups),
    "only" or "none"; ``bytes_`` the same for byte channels (fuzz_bytes.py).  ``case_seed``: run only the case of this seed (a failure's),
    ``cases`` times.  A failure names its case seed, how it failed, the call
    under way, the child's report (faulthandler's tracebacks of every thread on a
    fatal signal or a hang, the traceback of an unexpected exception, or the
    impossible value) and its last TRAIL_ENTRIES steps (see describe_failure())."""
    quiet_receive_threads()
    failures = []
    grouped = byte_cases = 0
    name = f"fuzz-{os.getpid()}"
    from cywhip._testing.fuzz_bytes import bytes_case
    # Import NumPy once, single-threaded, before forking: each child then has it for free.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    _numpy()
    # Shared with each case's child: its trail, and faulthandler's output (see _watch_child()).
    page = mmap.mmap(-1, TRAIL_BYTES)
    report = tempfile.TemporaryFile()
    t0 = time.monotonic()
    for case in range(cases):
        this_seed = seed * 1_000_003 + case if case_seed is None else case_seed
        on_bytes = _bytes_round(this_seed, groups, bytes_)
        with_groups = not on_bytes and _grouped(this_seed, groups)
        grouped += with_groups
        byte_cases += on_bytes
        play = bytes_case if on_bytes else _group_case if with_groups else _case
        report.seek(0)
        report.truncate()
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                _watch_child(page, report)
                signal.alarm(CASE_HANG_SECONDS)
                play(random.Random(this_seed), name)
            except EXPECTED_ERRORS:
                status = 0
            except BaseException:
                import traceback
                _fail_case(UNEXPECTED_ERROR, traceback.format_exc())
            os._exit(status)
        _, status = os.waitpid(pid, 0)
        unlink(name, missing_ok=True)
        if status != 0:
            trail = read_trail(page)
            failures.append({"case_seed": this_seed, "failure": _how(status, CASE_HANG_SECONDS),
                             "groups": with_groups, "bytes": on_bytes, "during": _in_progress(trail),
                             "report": _child_report(report), "trail": trail})
        if progress and (case + 1) % progress == 0:
            print(f"{case + 1} cases, {len(failures)} failures, {time.monotonic() - t0:.0f} s",
                  file=sys.stderr, flush=True)
    report.close()
    return {"cases": cases, "group_cases": grouped, "byte_cases": byte_cases, "failures": failures,
            "seconds": round(time.monotonic() - t0, 1)}


# ------------------------------------------------------------- what a child's end means

# A racing victim that sees no progress for this long is killed by its alarm (the racing mode,
# fuzz_race.py).
RACE_HANG_SECONDS = 10
# A call with a timeout (0 for try_send/try_recv) that returns this much later than its
# timeout failed: it overran its deadline.  Generous, for a loaded machine.
RACE_LATE_SECONDS = 2.0
LATE = 5
_SIGNAL_NAMES = {int(s): s.name for s in signal.Signals}


def _how(status, hang_seconds=None):
    """Describe a non-zero wait status of a case's child (hang_seconds: its alarm) or a racing
    victim."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = _SIGNAL_NAMES.get(sig, str(sig))
        if sig == signal.SIGALRM:
            if hang_seconds is not None:
                return f"hung (still running after {hang_seconds} s, killed by SIGALRM)"
            return f"hung (no progress for {RACE_HANG_SECONDS} s, killed by SIGALRM)"
        return f"killed by signal {sig} ({name})"
    code = os.WEXITSTATUS(status)
    return {BAD_MESSAGE: "an impossible message (longer than message_length or of the wrong type) or figure",
            UNEXPECTED_ERROR: "an unexpected exception",
            LATE: f"a call returned more than {RACE_LATE_SECONDS} s after its timeout"}.get(
                code, f"exit status {code}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m cywhip._testing.fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=None,
                        help="how many cases to run (default 10000; with --case-seed, 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--race", action="store_true",
                        help="corrupt shared memory while ends open, send, receive and close")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long a --race run lasts")
    parser.add_argument("--round-seed", type=int, default=None,
                        help="with --race: play only this round's choices, again and again")
    parser.add_argument("--case-seed", type=int, default=None,
                        help="without --race: play only this case (a failure's case seed), --cases times")
    parser.add_argument("--groups", choices=("mix", "only", "none"), default="mix",
                        help="channels with receiver groups: a share of the cases and rounds (mix), "
                             "all of them, or none")
    parser.add_argument("--bytes", choices=("mix", "only", "none"), default="mix", dest="bytes_",
                        help="byte channels (max_queued_bytes): a share of the cases and rounds (mix; none "
                             "with --groups only), all of them, or none")
    args = parser.parse_args(argv)
    if args.race:
        from cywhip._testing.fuzz_race import race
        report = race(args.seconds, args.seed, progress=100, round_seed=args.round_seed, groups=args.groups,
                      bytes_=args.bytes_)
    else:
        cases = args.cases if args.cases is not None else 10_000 if args.case_seed is None else 1
        report = run(cases, args.seed, progress=10_000, groups=args.groups, case_seed=args.case_seed,
                     bytes_=args.bytes_)
    print(json.dumps(report, indent=1))
    for failure in report["failures"]:
        print(describe_failure(failure), file=sys.stderr)
    return 0 if not report["failures"] else 1


def describe_failure(failure):
    """A failure record as text to read: what failed and how, the call it was in, the child's
    report (faulthandler's tracebacks of every thread, or the exception or the impossible value)
    and its last steps."""
    on_bytes = failure.get("bytes", False)
    if "case_seed" in failure:
        head = (f"case seed {failure['case_seed']} (with groups: {failure['groups']}, byte channel: {on_bytes}; "
                f"replay: python -m cywhip._testing.fuzz --case-seed {failure['case_seed']} "
                f"--groups {'only' if failure['groups'] else 'none'} --bytes {'only' if on_bytes else 'none'})")
    else:
        head = (f"round seed {failure['round_seed']} (--round-seed {failure['round_seed']} "
                f"--bytes {'only' if on_bytes else 'none'}"
                + (" --groups only" if failure.get("byte_groups") else "") + "), "
                f"{failure['after_seconds']} s into the run; geometry {failure['geometry']}")
    lines = [f"FAILED {head}: {failure['failure']}",
             f"  during: {failure.get('during') or 'no call (between calls, or in a thread)'}"]
    if failure.get("detail"):
        lines.append(f"  detail: {failure['detail']}")
    if failure.get("report"):
        lines.append("  the child's report (faulthandler, or the error):")
        lines += ["    " + line for line in failure["report"].splitlines()]
    if failure.get("trail"):
        lines.append(f"  its last {len(failure['trail'])} steps, oldest first:")
        lines += ["    " + step for step in failure["trail"]]
    return "\n".join(lines)


if __name__ == "__main__":
    # Through the module by its name: fuzz_bytes.py and fuzz_race.py import it so, and the trail
    # (this module's state) must be the one they note in.
    from cywhip._testing.fuzz import main as _main
    sys.exit(_main())

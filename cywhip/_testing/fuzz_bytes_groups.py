"""Racing rounds on byte channels with receiver groups (``python -m cywhip._testing.fuzz --race
--bytes only --groups only``; a share of the rounds with ``--bytes mix --groups mix``).

A round makes a byte channel of one sender with two groups, ``a`` shared by two members and
``b`` of one (each durable or not), fills it, and then one process rewrites its shared memory
without pause while another opens the sender and the members, sends (send, try_send,
send_many, reserve() blocks, some given up by an exception), receives through every call
(recv, try_recv, recv_many, borrow, an on_message thread), removes groups and lists the
channel, and closes the ends, in a loop.  Messages are fuzz_bytes.message(): each carries its
sequence number, its length and a CRC-32 of the rest, and none of its 8-byte words reads as a
record header.

What the mutator rewrites: the record headers in the ring, the group entries (group_next,
group_lock, members, flags, epoch), the receiver places (hold_start, hold_end, the group tag,
pid), groups_gen and both cursors; and now and then it holds the groups lock (groups_gen odd,
as a creator stopped midway) or a free member place's lock with the group's claim lock naming
it (as a member stopped in its claim), briefly or for RACE_STALL_SECONDS.

Rounds are strict or wild.  A strict round writes only values no sound channel holds, each
made from the word as read once and swapped in against that read, and puts the right value back
by compare-and-swap (atomic_cas_u64), so that a value an end stored meanwhile is never
overwritten (_flip()): a record's kind (an unknown one), group_next, hold_start,
hold_end and the cursors unaligned or far beyond the write cursor, a claim lock naming no member
place, groups_gen odd as a creator's (with the groups lock held), and members (a hint that
decides no position, only how much a member claims).  It also flips a group's durable flag,
which is no hint: as the group's last member closes (X3), or as a sender finds it holding the
ring full with no live member (R), the flag decides whether the group is removed, and so where
it comes back.  A durable group removed so is made again at the oldest position another group
holds (J1) and delivers again what it had; a non-durable one kept so comes back where it was,
not at the other groups' position.  Both are states a sound channel reaches by other paths
(remove_group(), a last member that died), and none of the checks below counts deliveries per
group (GroupStream: two members share group a, and a group made again may deliver again), so
the flip stays; fuzz_bytes_many_groups.py, whose strict rounds check once per group, leaves
the flag alone.  Every message a strict round's members deliver must be one
that was sent, whole, of the length it was sent with, and never one of a reserve() block that
raised; the messages of a borrow() block must not change while the sender sends; an impossible
value must be refused with ChannelCorruptError or another clear error (cywhip's errors,
OSError).  A wild round also writes values a sound channel could hold (a record's length, a
claim cursor or a hold moved within the ring, a group's flags or epoch, a place's group tag,
a claim lock naming a member or none, plain stores over what an end wrote): what its members
deliver must still be bytes of at most message_length.

In every round: no crash (a signal), no hang (RACE_HANG_SECONDS), no call with a timeout
returning more than RACE_LATE_SECONDS after it, no unexpected exception.
"""
import os
import random
import signal
import struct
import time

from cywhip import Receiver, Sender, channels, unlink
from cywhip._region import channel_path, slots_offset_for
from cywhip._testing._model import atomic_cas_u64, layout, var_record_size
from cywhip._testing.fuzz import (
    BAD_MESSAGE, EXPECTED_ERRORS, UNEXPECTED_ERROR, _group_offset, _ofd_lock, _remove_group,
)
from cywhip._testing.fuzz_bytes import (
    MIN_MESSAGE, Stream, _geometry, map_channel, mutate_until_parent_goes, race_victim_setup, receive_one,
    send_one,
)

# The groups of a round: (name, members); each is durable or not, drawn per round.
GROUPS = (("a", 2), ("b", 1))
# A strict round's flips of a position (group_next, hold_end, the write cursor; hold_start is a
# position + 1): unaligned, or far beyond any write cursor (positions stay below 2**40).
_POSITION_FLIPS = (1, 2, 4, 1 << 40)
# A strict round's flips of a record's kind word: bits of the word's last byte only.  A word
# whose kind reads 0 or 1 is a record header, or the last word of a payload whose message ends
# before that byte (a whole payload word has its top bit set: fuzz_bytes.message()), so the flip
# makes a header's kind one no record has, or changes a byte no message holds.
_RECORD_KIND_FLIPS = (1 << 56, 1 << 59, 1 << 62)
_U64 = (1 << 64) - 1
# What a round's mutator may hold as a stopped end would: the groups lock, a member place's lock.
STALLS = ("groups", "place")


class GroupStream(Stream):
    """What the sender sent, and the checks on what the members deliver: fuzz_bytes.Stream's,
    but for the order (two members share group a, and each group takes every message).  Nor is a
    message counted once per group: a group made again (remove_group(), a non-durable group's
    last close, a strict round's flip of the durable flag) delivers again what it had."""

    ordered = False


def race_round(rng, rs, name, counters, seconds_left):
    """A racing round on a byte channel with groups: its channel made and filled; returns its
    geometry, the mutator's and the victim's work (each run in a process of its own) and how
    long the victim runs (fuzz_race.race() runs them).  A share of the rounds
    (fuzz_bytes_many_groups.many_round()) has many senders: fuzz_bytes_many_groups.py."""
    from cywhip._testing.fuzz_bytes_many_groups import many_round
    if many_round(rs):
        from cywhip._testing.fuzz_bytes_many_groups import race_round as many_senders_round
        return many_senders_round(rng, rs, name, counters, seconds_left)
    asked, capacity, cap, kw = _geometry(rng)
    receivers = sum(m for _, m in GROUPS) + rng.choice([0, 0, 1])
    kw["max_receivers"] = receivers
    durable = {g: rng.random() < 0.5 for g, _ in GROUPS}
    strict = rng.random() < 0.5
    unlink(name, missing_ok=True)
    stream = GroupStream(cap, None)
    with Sender(name, **kw) as s:
        for g, _ in GROUPS:
            if rng.random() < 0.7:
                # The group exists from the start (a durable one stays without members).
                Receiver(name, group=g, durable=durable[g], **kw).close()
        for _ in range(rng.randint(0, 6)):
            s.try_send(stream.new(rng.randint(MIN_MESSAGE, cap))[1])
    round_seconds = min(rng.uniform(0.2, 1.0), seconds_left)
    mutator_rng = random.Random(rs ^ 0x5A5A5A5A)
    geometry = {"max_queued_bytes": asked, "ring_bytes": capacity, "message_length": cap,
                "ends_give_message_length": "message_length" in kw, "strict": strict,
                "max_receivers": receivers, "groups": [(g, durable[g], m) for g, m in GROUPS]}

    def run_mutator():
        _race_mutator(channel_path(name), mutator_rng, capacity, cap, receivers, strict)

    def run_victim():
        _race_victim(name, rng, kw, capacity, cap, durable, strict, round_seconds, counters, stream)
    return geometry, run_mutator, run_victim, round_seconds


def _targets(receivers):
    """(offset, kind) of the 8-byte words the mutator rewrites, besides the record headers."""
    lay = layout()
    out = [(lay["write_cursor"], "write"), (lay["read_cursor"], "read"), (lay["groups_gen"], "gen")]
    for g in range(receivers):
        base = _group_offset(lay, 1, receivers, g)
        out += [(base + lay["group_next"], "next"), (base + lay["group_lock"], "lock"),
                (base + lay["group_members"], "members"), (base + lay["group_flags"], "flags"),
                (base + lay["group_epoch"], "epoch")]
    for q in range(receivers):
        base = lay["places"] + (1 + q) * lay["place_bytes"]
        out += [(base + lay["place_hold_start"], "hold_start"), (base + lay["place_hold_end"], "hold_end"),
                (base + lay["place_group"], "tag"), (base + lay["place_pid"], "pid")]
    return out


def _u64(mm, off):
    return struct.unpack_from("<Q", mm, off)[0]


def _strict_value(rng, kind, current, receivers):
    """A value no sound channel holds in that word (for members, a hint, one that decides no
    position; for flags, the durable bit flipped, which does: see the module docstring), or None
    to leave the word alone."""
    flips = _POSITION_FLIPS
    if kind in ("next", "hold_end", "write"):
        return current ^ rng.choice(flips)
    if kind == "hold_start":
        # A hold is a position + 1 (0: none); a flip of an empty place's word makes a claim.
        return current ^ rng.choice(flips) if current else None
    if kind == "read":
        return current ^ rng.choice((1, 2, 4, 1 << 63))
    if kind == "lock":
        return rng.choice((receivers + 1, receivers + 7, 1 << 40, _U64))
    if kind == "members":
        return rng.choice((0, 1, 2, 3, _U64))
    if kind == "flags":
        # The durable bit of an entry in use (flags is the low half of the word: name_len above):
        # it decides whether the group outlives its last member, and so where it comes back
        # (the module docstring); no check of these rounds depends on that.
        return current ^ 2 if current & 1 else None
    if kind == "pid":
        return rng.choice((0, 1, os.getpid(), _U64 >> 1))
    return None


def _wild_value(rng, kind, current, capacity, receivers, w):
    near = [w, w - 8, w + 8, w - capacity, w - capacity + 8, w + capacity, current + 8, current - 8, 0]
    if kind in ("next", "hold_end", "write", "read"):
        return rng.choice(near + [current ^ 4, current | (1 << 40)]) & _U64
    if kind == "hold_start":
        return rng.choice([0, 0] + [v + 1 for v in near]) & _U64
    if kind == "lock":
        return rng.choice(range(receivers + 2))
    if kind == "flags":
        return (current & ~0xFFFFFFFF) | rng.choice((0, 1, 2, 3, 0xFFFFFFFF))
    if kind == "epoch":
        return rng.choice((current + 1, current - 1, 0)) & _U64
    if kind == "tag":
        g = rng.randrange(receivers + 1)
        return rng.choice((0, g + 1, (current & ~0xFFFFFFFF) | (g + 1), current + (1 << 32))) & _U64
    if kind == "gen":
        return rng.choice((current + 1, current + 2, current | 1, 0))
    return rng.choice((0, 1, 2, 3, current + 1, _U64))


def _flip(mm, off, old, bad, hold):
    """Write bad at off if it still holds old, the value bad was made from (read once), for
    hold seconds, then put old back unless an end wrote since.  (Swapped against a second
    read, the flip would write a value made from the first over whatever an end stored
    between the two: an older word, flipped, over a message's bytes.)"""
    if bad is None or bad == old or not atomic_cas_u64(mm, off, old, bad):
        return
    if hold:
        time.sleep(hold)
    atomic_cas_u64(mm, off, bad, old)


def _strict_record_flip(mm, at, rng, hold):
    """A strict round's rewrite of a ring word at at: a record kind no record has, if the
    word reads as a header (see _RECORD_KIND_FLIPS), put back after hold seconds."""
    word = _u64(mm, at)
    if word >> 32 < 2:
        _flip(mm, at, word, word ^ rng.choice(_RECORD_KIND_FLIPS), hold)


def _strict_word_flip(mm, off, kind, rng, receivers, hold):
    """A strict round's rewrite of a group entry's, a place's or a cursor's word of that kind
    at off (_strict_value()), put back after hold seconds."""
    current = _u64(mm, off)
    _flip(mm, off, current, _strict_value(rng, kind, current, receivers), hold)


def _race_mutator(path, rng, capacity, cap, receivers, strict):
    """Rewrite the channel's records, group entries, places and cursors without pause until
    killed (see the module docstring)."""
    lay = layout()
    mm = map_channel(path)
    fd = os.open(path, os.O_RDWR)           # the locks the mutator holds are on it
    parent = os.getppid()
    ring = slots_offset_for(1, receivers)
    words = _targets(receivers)
    w_off = lay["write_cursor"]
    rest = rng.choice([0.0002, 0.001, 0.003] if strict else [0, 0.0001, 0.001])
    # The share of header rewrites against group words and cursors.
    headers_share = rng.choice([0.2, 0.4, 0.6])

    def header(hold):
        i = rng.randrange(0, capacity, 8)
        at = ring + i
        if strict:
            _strict_record_flip(mm, at, rng, hold)
            return
        word = _u64(mm, at)
        length, kind = word & 0xFFFFFFFF, word >> 32
        value = rng.choice([(0, kind), (length + 8, kind), (max(0, length - 1), kind), (cap + 1, kind),
                            (1 << 31, kind), (length, kind ^ 1), (length, 2), (capacity - i, 1),
                            (capacity - i - 8, 1)])
        new = (value[0] & 0xFFFFFFFF) | (value[1] & 0xFFFFFFFF) << 32
        if rng.random() < 0.5:
            _flip(mm, at, word, new, hold)
        else:
            struct.pack_into("<Q", mm, at, new)       # a plain store: left there

    def word(hold):
        off, kind = rng.choice(words)
        if strict:
            _strict_word_flip(mm, off, kind, rng, receivers, hold)
            return
        current = _u64(mm, off)
        value = _wild_value(rng, kind, current, capacity, receivers, _u64(mm, w_off))
        if rng.random() < 0.8:
            _flip(mm, off, current, value, hold)
        else:
            struct.pack_into("<Q", mm, off, value)

    def stall(hold):
        """Hold the groups lock (groups_gen odd half the time, as a creator stopped midway) or
        (STALLS) a free member place's lock with a group's tag and that group's claim lock naming
        it (a member stopped in its claim), for hold seconds; then leave as that end would."""
        if not STALLS:
            return
        if rng.choice(STALLS) == "groups":
            byte = lay["groups_lock_byte"]
            if not _ofd_lock(fd, byte):
                return
            gen = _u64(mm, lay["groups_gen"])
            odd = rng.random() < 0.5 and not gen & 1 and atomic_cas_u64(mm, lay["groups_gen"], gen, gen + 1)
            time.sleep(hold)
            if odd:
                atomic_cas_u64(mm, lay["groups_gen"], gen + 1, gen + 2)
            _ofd_lock(fd, byte, lock=False)
            return
        for q in rng.sample(range(receivers), receivers):
            byte = lay["places"] + (1 + q) * lay["place_bytes"]
            if _ofd_lock(fd, byte):
                break
        else:
            return
        tag_off = byte + lay["place_group"]
        hold_off = byte + lay["place_hold_start"]
        old_tag = _u64(mm, tag_off)
        lock_off = None
        # The groups in use, read once the place is this process's (no member ends on it now).
        entries = [(g, _group_offset(lay, 1, receivers, g)) for g in range(receivers)]
        used = [e for e in entries if _u64(mm, e[1] + lay["group_flags"]) & 1]
        tags = {(_u64(mm, e + lay["group_epoch"]) << 32 | (g + 1)) & _U64: e for g, e in used}
        if tags:
            tag = rng.choice(sorted(tags))
            entry = tags[tag]
            if old_tag != tag:
                # As J2-J3 take a place for a member: never one that holds a claim of another
                # group in use; and one that holds a gone group's claim starts empty (with the
                # tag moved, that old claim would count for the senders' bound again, below
                # where a sender may have written up to: a state no sound channel holds).
                if old_tag in tags and _u64(mm, hold_off):
                    _ofd_lock(fd, byte, lock=False)
                    return
                struct.pack_into("<Q", mm, hold_off, 0)
            # Its place carries the group's tag, and it holds the claim lock (taken as a
            # member takes it: only when free).
            struct.pack_into("<Q", mm, tag_off, tag)
            if atomic_cas_u64(mm, entry + lay["group_lock"], 0, q + 1):
                lock_off = entry + lay["group_lock"]
        time.sleep(hold)
        if lock_off is not None:
            atomic_cas_u64(mm, lock_off, q + 1, 0)
        struct.pack_into("<Q", mm, tag_off, old_tag)
        _ofd_lock(fd, byte, lock=False)

    def repair():
        """A wild round's repair, now and then: the cursors, each group's claim cursor, claim
        lock and flags and each place's claim made sound again (a group whose claim cursor is at
        an impossible record starts at the write cursor), so that the ends can work on."""
        w = _u64(mm, w_off) & ((1 << 40) - 8)
        struct.pack_into("<Q", mm, w_off, w)
        struct.pack_into("<Q", mm, lay["read_cursor"], w)
        for g in range(receivers):
            entry = _group_offset(lay, 1, receivers, g)
            n = _u64(mm, entry + lay["group_next"])
            if n > w or w - n > capacity or n % 8 or not _records_sound(mm, ring, capacity, cap, n, w):
                struct.pack_into("<Q", mm, entry + lay["group_next"], w)
            if _u64(mm, entry + lay["group_lock"]) > receivers:
                struct.pack_into("<Q", mm, entry + lay["group_lock"], 0)
            flags = struct.unpack_from("<I", mm, entry + lay["group_flags"])[0]
            if flags & ~3:
                struct.pack_into("<I", mm, entry + lay["group_flags"], flags & 3)
        for q in range(receivers):
            base = lay["places"] + (1 + q) * lay["place_bytes"]
            h = _u64(mm, base + lay["place_hold_start"])
            e = _u64(mm, base + lay["place_hold_end"])
            if h and (h - 1 > w or w - (h - 1) > capacity or (h - 1) % 8 or e < h - 1 or e > w or e % 8
                      or not _records_sound(mm, ring, capacity, cap, h - 1, e)):
                struct.pack_into("<Q", mm, base + lay["place_hold_start"], 0)

    def step(hold):
        if rng.random() < headers_share:
            header(hold)
        else:
            word(hold)

    mutate_until_parent_goes(rng, parent, strict, stall, repair, step, 0.05, [0.001, 0.01, 0.05], rest)


def _records_sound(mm, ring, capacity, cap, pos, end):
    """Whether the records from byte pos to byte end read as sound (B6's checks)."""
    while pos < end:
        i = pos % capacity
        length, kind = struct.unpack_from("<II", mm, ring + i)
        if kind == 1 and length == capacity - i and length < end - pos:
            pos += length
            continue
        rec = var_record_size(length)
        if kind != 0 or length > cap or rec > end - pos or i + rec > capacity:
            return False
        pos += rec
    return pos == end


def _race_victim(name, rng, kw, capacity, cap, durable, strict, seconds, counters, stream):
    """Open the sender and the members, use them and close them in a loop for ``seconds``;
    exit with a failure code on an impossible result, a torn message in a strict round, or a
    late call."""
    from cywhip._testing.fuzz import RACE_HANG_SECONDS
    # CYWHIP_FUZZ_DEBUG=N: the round's deliveries and its N commonest refusals on stderr at its end.
    debug = {} if os.environ.get("CYWHIP_FUZZ_DEBUG") else None
    calls, alloc, size = race_victim_setup(counters, stream, strict, rng, cap,
                                           "a wild round: values a sound channel could hold, and plain stores",
                                           debug)
    fail, call = calls.fail, calls.call

    def on_message(msg):
        stream.delivered_one(msg, "on_message")

    def send(tx, timeout):
        send_one(tx, stream, rng, size, cap, timeout)

    def receive(rx, timeout):
        if rx in threaded:
            # Its on_message thread takes the messages (or has stopped on an error it keeps).
            time.sleep(rng.choice([0, 0.0005, 0.002]))
            if not rx.running and rx.exception is not None and not isinstance(rx.exception, EXPECTED_ERRORS):
                fail(UNEXPECTED_ERROR, f"the on_message thread stopped on {rx.exception!r}")
            return
        receive_one(rx, stream, alloc, rng, timeout)

    def borrow_across_sends(rx, tx, timeout):
        """A member's borrow() block while the sender sends: the borrowed messages must not
        change under it (the member's claim bounds the sender)."""
        with rx.borrow(rng.randint(1, 8), timeout=timeout) as lent:
            before = [bytes(v) for v in lent]
            for m in before:
                stream.delivered_one(m, "borrow")
            for _ in range(rng.randint(1, 4)):
                call("send (inside a borrow)", send, tx, 0, timeout=0)
            after = [bytes(v) for v in lent]
        if after != before and stream.tainted is None:
            changed = [k for k, (x, y) in enumerate(zip(before, after)) if x != y]
            fail(BAD_MESSAGE, f"the messages {changed} of a borrow() of {len(before)} changed under it while "
                              f"the sender sent: {[m[:16] for m in before]} became {[m[:16] for m in after]}")

    def listing():
        for info in channels():
            if info.name != name or info.problem is not None:
                continue
            if info.depth is None or not 0 <= info.depth <= capacity:
                fail(BAD_MESSAGE, f"channels() lists depth {info.depth!r} of a ring of {capacity} bytes")
            for row in info.groups:
                if type(row.name) is not str or not 0 <= row.depth <= capacity:
                    fail(BAD_MESSAGE, f"channels() lists group {row!r} of a ring of {capacity} bytes")

    def opener(group):
        if group is None:
            return "sender", lambda: Sender(name, **kw)
        more = dict(group=group, durable=durable[group])
        if rng.random() < 0.2:
            more["on_message"] = on_message

            def make():
                end = Receiver(name, **kw, **more)
                threaded.add(end)
                return end
            return f"member of {group!r} (on_message)", make
        return f"member of {group!r}", lambda: Receiver(name, **kw, **more)

    threaded = set()

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        signal.alarm(RACE_HANG_SECONDS)
        makers = [opener(None)] + [opener(g) for g, members in GROUPS for _ in range(members)]
        rng.shuffle(makers)
        if rng.random() < 0.3:
            makers = makers[:rng.randint(1, len(makers))]
        ends = [(label, call(f"open {label}", make)) for label, make in makers]
        ends = [(label, end) for label, end in ends if end is not None]
        calls.seen[3] += len(ends)
        senders = [end for label, end in ends if label == "sender"]
        for _ in range(rng.choice([0, 1, 2, 4, 8, 16])):
            for label, end in ends:
                timeout = rng.choice([0, 0, 0.0005, 0.002])
                if label == "sender":
                    call("send", send, end, timeout, timeout=timeout)
                elif senders and end not in threaded and rng.random() < 0.15:
                    call(f"borrow across sends ({label})", borrow_across_sends, end, senders[0], timeout,
                         timeout=timeout)
                else:
                    call(f"receive ({label})", receive, end, timeout, timeout=timeout)
            if ends and rng.random() < 0.05:
                label, end = rng.choice(ends)
                depth = call(f"depth ({label})", lambda: end.depth)
                if depth is not None and not 0 <= depth <= capacity:
                    fail(BAD_MESSAGE, f"depth {depth} of a ring of {capacity} bytes ({label})")
        if rng.random() < 0.1:
            call("remove_group", _remove_group, name, rng.choice(GROUPS)[0])
        if rng.random() < 0.05:
            call("channels", listing)
        for label, end in ends:
            call(f"close {label}", end.close)
        calls.iteration_done()
    signal.alarm(0)
    if debug is not None:
        import sys
        top = sorted(debug.items(), key=lambda kv: -kv[1])[:int(os.environ["CYWHIP_FUZZ_DEBUG"])]
        print(f"round {'strict' if strict else 'wild'}: iterations {calls.seen[0]}, opened {calls.seen[3]}, sent {stream.next}, delivered {stream.delivered} "
              f"(not whole {stream.loose}), calls {calls.seen[1]}, refused {calls.seen[2]}: {top}", file=sys.stderr, flush=True)

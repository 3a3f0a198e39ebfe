"""Racing rounds on byte channels of many senders with receiver groups (max_queued_bytes,
max_senders 2 or 3, groups; docs/protocol.md "Receiver groups on a byte ring of many senders",
G1-G5): a share (MANY_SHARE) of the byte rounds with groups of ``python -m cywhip._testing.fuzz
--race --bytes only --groups only`` (fuzz_bytes_groups.race_round()).

A round makes such a channel with the two groups of fuzz_bytes_groups.py (``a`` shared by two
members, ``b`` of one; each durable or not), fills it, and then one process rewrites its shared
memory without pause while another opens 1 to max_senders senders and the members, sends from
every sender and receives from every member by calls interleaved in one thread (a member now
and then by an on_message thread of its own), removes groups and closes the ends, in a loop.
Every sender opened is a sender incarnation of its own (``sid``, fuzz_bytes_many.SenderLog):
message k of incarnation sid carries (sid << SID_SHIFT) | k, its length and a CRC-32 of the rest.

What the mutator rewrites: what fuzz_bytes_many.py's does on the senders' side (the claim word,
read_cursor, each sender place's intent, intent_length, dead_claim, dead_length and
generation, the ring's words: record headers, seq words, payload bytes) and what
fuzz_bytes_groups.py's does on the groups' side (each group entry's group_next, group_lock,
members, flags and epoch, each receiver place's hold_start, hold_end, group tag and pid,
groups_gen).  And now and then it stalls: it holds the groups lock (groups_gen odd half the
time, as a creator stopped midway), or acts as a sender stopped in its claim (a free sender
place's lock taken and its generation counted, S0; the claim bit taken with room counted from
the groups' bound, G1, and held, then freed (T3) or left to a dead owner; the intent stored,
M2, and left for a takeover; the seq words zeroed, G2, and the claim committed, M3, then left
as a dead claim the groups step over (G4) or published as a void record, M4-M6), or writes a
dead generation's owner into a free claim word.

Rounds are strict or wild, as in the two modules it joins.  A strict round's mutator writes
only values no sound channel holds and puts the old value back by compare-and-swap; every
message a strict round's members deliver must be whole, sent (not given up in a reserve()
block), of its length, and delivered once to its group (since the group was last made; not in
order: a member goes on with a claim its place holds, or takes over a dead or closed member's,
after later messages came).  A wild round also writes values a sound channel could hold,
by plain stores too, and repairs the cursors now and then: what its members deliver must still
be bytes of at most message_length.  In every round: no crash, no hang, no late call, no
unexpected exception.
"""
import os
import random
import signal
import struct
import sys
import time

from cywhip import Receiver, Sender, unlink
from cywhip._region import channel_path
from cywhip._testing._model import atomic_cas_u64
from cywhip._testing.fuzz import BAD_MESSAGE, EXPECTED_ERRORS, UNEXPECTED_ERROR, _group_offset, _ofd_lock, \
    _remove_group
from cywhip._testing.fuzz_bytes import race_victim_setup, receive_one, send_one, whole_seq
from cywhip._testing.fuzz_bytes_groups import GROUPS, _strict_value as _group_strict, _wild_value as _group_wild
from cywhip._testing.fuzz_bytes_many import (
    OWNER_MASK, SENDER_FIELDS, SID_SHIFT, ManyMutator, ManyStream, _sizes, claim_position, claim_word, draw_channel,
    many_geometry, send_a_few,
)

# The share of byte rounds with groups that have many senders (drawn apart from the rounds'
# other choices, so that a round seed of one sender plays as before).
MANY_SHARE = 0.4
_RINGS = (120, 256, 504, 1024, 4096)
_U64 = (1 << 64) - 1
_SENDER_KINDS = {kind for _, kind in SENDER_FIELDS}


def many_round(round_seed):
    """Whether a byte round with groups of this seed has many senders."""
    return random.Random(round_seed ^ 0x6D677270).random() < MANY_SHARE


class GroupManyStream(ManyStream):
    """What the senders sent and the members delivered: fuzz_bytes.Stream's checks, and no
    message delivered twice to a group (``key``) since it was last made.  Not the order: a member
    goes on with a claim its place holds (left by a member closed after an error) or takes over
    a dead or closed member's claim once its own is taken, after later messages came to the
    group, or to the member itself."""

    def __init__(self, cap, fail):
        super().__init__(cap, fail)
        self.seen = {}            # key -> the seqs it delivered (since it was last forgotten)

    def delivered_in(self, msg, how, key):
        super(ManyStream, self).delivered_one(msg, how)
        if self.tainted is not None:
            return
        seq = whole_seq(msg)
        seen = self.seen.setdefault(key, set())
        if seq in seen:
            self.fail(f"{how} delivered message {seq & ((1 << SID_SHIFT) - 1)} of sender {seq >> SID_SHIFT} to "
                      f"group {key!r} a second time")
        seen.add(seq)

    def delivered_one(self, msg, how):
        self.delivered_in(msg, how, None)

    def forget(self, key):
        """The group ``key`` may be made anew: what it delivered before may come again."""
        self.seen.pop(key, None)

    def view(self, key):
        return _View(self, key)


class _View:
    """A GroupManyStream as one group (or one member) delivers into it (receive_one's stream)."""

    def __init__(self, stream, key):
        self.stream, self.key = stream, key

    def delivered_one(self, msg, how):
        self.stream.delivered_in(msg, how, self.key)


def race_round(rng, rs, name, counters, seconds_left):
    """A racing round on a byte channel of many senders with groups: its channel made and filled;
    returns its geometry, the mutator's and the victim's work and how long the victim runs."""
    senders, capacity, cap, kw = draw_channel(rng, _RINGS)
    receivers = sum(m for _, m in GROUPS) + rng.choice([0, 0, 1])
    kw["max_receivers"] = receivers
    durable = {g: rng.random() < 0.5 for g, _ in GROUPS}
    strict = rng.random() < 0.5
    whole_words = rng.random() < 0.5
    unlink(name, missing_ok=True)
    stream = GroupManyStream(cap, None)
    size = _sizes(cap, whole_words)
    with Sender(name, **kw) as s:
        for g, _ in GROUPS:
            if rng.random() < 0.7:
                Receiver(name, group=g, durable=durable[g], **kw).close()
        send_a_few(s, stream, size, rng)
    round_seconds = min(rng.uniform(0.2, 1.0), seconds_left)
    mutator_rng = random.Random(rs ^ 0x5A5A5A5A)
    geometry = dict(many_geometry(kw, capacity, cap, strict, whole_words), max_receivers=receivers,
                    groups=[(g, durable[g], m) for g, m in GROUPS])

    def run_mutator():
        GroupManyMutator(channel_path(name), mutator_rng, capacity, cap, senders, receivers, strict,
                         whole_words).run()

    def run_victim():
        _race_victim(name, rng, kw, capacity, cap, senders, durable, strict, size, round_seconds, counters,
                     stream)
    return geometry, run_mutator, run_victim, round_seconds


# ------------------------------------------------------------------ the mutator

class GroupManyMutator(ManyMutator):
    """fuzz_bytes_many.ManyMutator with the groups (module docstring): it also rewrites
    groups_gen, the group entries and the member places; a sender's room is counted from the
    groups' bound (G1) and it zeroes the seq words of its claim (G2); and it also stalls as a
    creator holding the groups lock."""

    STALLS = ("groups", "lock", "bit", "intent", "claim", "claim", "dead_bit")
    STALL_SHARE = 0.1
    zeroes_seqs = True

    def __init__(self, path, rng, capacity, cap, senders, receivers, strict, whole_words):
        super().__init__(path, rng, capacity, cap, senders, receivers, strict, whole_words)
        lay = self.lay
        self.receivers = receivers
        self.GEN = lay["groups_gen"]
        self.entries = [_group_offset(lay, senders, receivers, g) for g in range(receivers)]
        self.member_places = [lay["places"] + (senders + q) * lay["place_bytes"] for q in range(receivers)]
        self.words = [(self.W, "claim"), (self.R, "read"), (self.GEN, "gen")] + self.place_words
        for e in self.entries:
            self.words += [(e + lay["group_next"], "next"), (e + lay["group_lock"], "lock"),
                           (e + lay["group_members"], "members"), (e + lay["group_flags"], "flags"),
                           (e + lay["group_epoch"], "epoch")]
        for b in self.member_places:
            self.words += [(b + lay["place_hold_start"], "hold_start"), (b + lay["place_hold_end"], "hold_end"),
                           (b + lay["place_group"], "tag"), (b + lay["place_pid"], "pid")]

    def claim_at(self):
        """The claim word and the claim cursor (positions of a round stay far below 2**43)."""
        word = self.u64(self.W)
        return word, claim_position(word, 0)

    def claim_cursor(self):
        return self.claim_at()[1]

    def bound(self):
        """The groups' bound (G1) as a sender takes it: the least group_next of a group in use and
        hold_start - 1 of a place, read under groups_gen's sequence; None while a creation is
        under way or no group is in use.  Positions only move on, so a bound read a little late
        is lower than the true one: it never lets the mutator claim bytes a group has not passed."""
        lay, u64 = self.lay, self.u64
        g1 = u64(self.GEN)
        if g1 & 1:
            return None
        marks = [u64(e + lay["group_next"]) for e in self.entries if u64(e + lay["group_flags"]) & 1]
        marks += [h - 1 for h in (u64(b + lay["place_hold_start"]) for b in self.member_places) if h]
        if u64(self.GEN) != g1 or not marks:
            return None
        return min(marks)

    def strict_value(self, kind, current):
        if kind in ("gen", "epoch", "tag", "flags"):
            # Not the durable flag: flipped as a group's last member closes, it removes a
            # durable group, which comes back at the oldest position another group holds and
            # delivers again what it had (four strict rounds in 194 showed it).
            return None
        if kind == "claim" or kind in _SENDER_KINDS:
            return super().strict_value(kind, current)
        return _group_strict(self.rng, kind, current, self.receivers)

    def wild_value(self, kind, current):
        rng, capacity = self.rng, self.capacity
        word, w = self.claim_at()
        if kind == "claim":
            owners = self.owners(word)
            b = self.bound()
            position = rng.choice([w, w + 8, w - 8, w + capacity, w - capacity] + ([b, b + 16] if b else []))
            return claim_word(max(0, position), rng.choice(owners))
        if kind in ("intent", "dead_claim"):
            return rng.choice([0, w + 1, w - 7, current + 8, 1]) & _U64
        if kind in ("intent_length", "dead_length", "generation"):
            return self.wild_place_value(kind, current)
        return _group_wild(rng, kind, current, capacity, self.receivers, w)

    def seq_targets(self, i):
        _, w = self.claim_at()
        return [w, w - 16, ((w // self.capacity) * self.capacity) + i]

    def repair(self):
        """A wild round's repair, now and then: a free claim word at an aligned claim cursor, each
        group's claim cursor and claim lock and each place's hold made possible again, the intents
        and dead claims withdrawn now and then."""
        lay, mm, u64, store, capacity = self.lay, self.mm, self.u64, self.store, self.capacity
        word, w = self.claim_at()
        if w % 8 or word & OWNER_MASK and self.rng.random() < 0.5:
            w &= ~7
            store(self.W, claim_word(w, 0))
        for e in self.entries:
            n = u64(e + lay["group_next"])
            if n > w or w - n > capacity or n % 8:
                store(e + lay["group_next"], w)
            if u64(e + lay["group_lock"]) > self.receivers:
                store(e + lay["group_lock"], 0)
            flags = struct.unpack_from("<I", mm, e + lay["group_flags"])[0]
            if flags & ~3:
                struct.pack_into("<I", mm, e + lay["group_flags"], flags & 3)
        for b in self.member_places:
            h = u64(b + lay["place_hold_start"])
            e = u64(b + lay["place_hold_end"])
            if h and (h - 1 > w or w - (h - 1) > capacity or (h - 1) % 8 or e < h - 1 or e > w or e % 8):
                store(b + lay["place_hold_start"], 0)
        self.withdraw_intents()

    def left_behind(self, p):
        """An intent, or a dead claim (a new sender of the place would wait for every group to
        pass it, S0d, and the mutator leaves one of its own)."""
        return self.u64(self.at(p, "place_intent")) != 0 or self.u64(self.at(p, "place_dead_claim")) != 0

    def claim_and_bound(self):
        """The claim word, the claim cursor and the groups' bound (G1)."""
        word, c = self.claim_at()
        return word, c, self.bound()

    def may_die_with_claim(self, p):
        """Always: each group steps over the dead claim (G4); a new sender of the place waits for
        them to pass it (G5)."""
        return True

    def stall_as(self, how, hold):
        """The stalls of ManyMutator, and "groups": the groups lock held (groups_gen odd half the
        time, as a creator stopped midway)."""
        if how != "groups":
            return super().stall_as(how, hold)
        byte = self.lay["groups_lock_byte"]
        if not _ofd_lock(self.fd, byte):
            return "lock taken"
        gen = self.u64(self.GEN)
        odd = self.rng.random() < 0.5 and not gen & 1 and atomic_cas_u64(self.mm, self.GEN, gen, gen + 1)
        time.sleep(hold)
        if odd:
            atomic_cas_u64(self.mm, self.GEN, gen + 1, gen + 2)
        _ofd_lock(self.fd, byte, lock=False)
        return "held"


# ------------------------------------------------------------------ the victim

def _race_victim(name, rng, kw, capacity, cap, senders, durable, strict, size, seconds, counters, stream):
    """Open senders, then the members; send from each sender and receive from each member by
    interleaved calls; remove a group now and then; close; in a loop for ``seconds``."""
    from cywhip._testing.fuzz import RACE_HANG_SECONDS
    debug = {} if os.environ.get("CYWHIP_FUZZ_DEBUG") else None
    calls, alloc, _ = race_victim_setup(counters, stream, strict, rng, cap,
                                        "a wild round: values a sound channel could hold, and plain stores", debug)
    fail, call = calls.fail, calls.call
    threaded = set()

    def send(tx, log, timeout):
        send_one(tx, log, rng, lambda: size(rng), cap, timeout)

    def receive(rx, key, timeout):
        if rx in threaded:
            time.sleep(rng.choice([0, 0.0005, 0.002]))
            if not rx.running and rx.exception is not None and not isinstance(rx.exception, EXPECTED_ERRORS):
                fail(UNEXPECTED_ERROR, f"the on_message thread stopped on {rx.exception!r}")
            return
        receive_one(rx, stream.view(key), alloc, rng, timeout)

    def borrow_across_sends(rx, key, tx, log, timeout):
        """A member's borrow() block while a sender sends: the borrowed messages must not change."""
        view = stream.view(key)
        with rx.borrow(rng.randint(1, 8), timeout=timeout) as lent:
            before = [bytes(v) for v in lent]
            for _ in range(rng.randint(1, 4)):
                call("send (inside a borrow)", send, tx, log, 0, timeout=0)
            after = [bytes(v) for v in lent]
        # Taken once the block has ended without an error (else they may come again).
        for m in before:
            view.delivered_one(m, "borrow")
        if after != before and stream.tainted is None:
            changed = [k for k, (x, y) in enumerate(zip(before, after)) if x != y]
            fail(BAD_MESSAGE, f"the messages {changed} of a borrow() of {len(before)} changed under it while "
                              f"a sender sent: {[m[:16] for m in before]} became {[m[:16] for m in after]}")

    def open_member(group):
        more = dict(group=group, durable=durable[group])
        if rng.random() < 0.2:
            view = None

            def on_message(msg):
                view.delivered_one(msg, "on_message")
            more["on_message"] = on_message

            def make():
                nonlocal view
                view = stream.view(group)
                end = Receiver(name, **kw, **more)
                threaded.add(end)
                return end
            return call(f"open member of {group!r} (on_message)", make)
        return call(f"open member of {group!r}", lambda: Receiver(name, **kw, **more))

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        signal.alarm(RACE_HANG_SECONDS)
        # Senders before the members: a sender whose place's dead claim the groups have not all
        # passed (G5) raises ChannelBusyError while no member is open, instead of waiting for
        # members this thread would never run.
        count = rng.randint(1, senders if rng.random() < 0.5 else senders - 1)
        txs = []
        for _ in range(count):
            tx = call("open sender", lambda: Sender(name, **kw))
            if tx is not None:
                txs.append((tx, stream.sender()))
        members = [(g, g, open_member(g)) for g, n in GROUPS for _ in range(n) if rng.random() < 0.85]
        members = [(g, key, m) for g, key, m in members if m is not None]
        calls.seen[3] += len(txs) + len(members)
        for _ in range(rng.choice([0, 1, 2, 4, 8, 16])):
            ends = [("sender", e) for e in txs] + [("member", e) for e in members]
            rng.shuffle(ends)
            for label, end in ends:
                timeout = rng.choice([0, 0, 0.0005, 0.002])
                if label == "sender":
                    call("send", send, end[0], end[1], timeout, timeout=timeout)
                elif txs and end[2] not in threaded and rng.random() < 0.15:
                    tx, log = rng.choice(txs)
                    call(f"borrow across sends (member of {end[0]!r})", borrow_across_sends, end[2], end[1],
                         tx, log, timeout, timeout=timeout)
                else:
                    call(f"receive (member of {end[0]!r})", receive, end[2], end[1], timeout, timeout=timeout)
            if members and rng.random() < 0.05:
                depth = call("depth", lambda: members[0][2].depth)
                if depth is not None and not 0 <= depth <= capacity:
                    fail(BAD_MESSAGE, f"depth {depth} of a ring of {capacity} bytes")
        removed = rng.choice(GROUPS)[0] if rng.random() < 0.1 else None
        if removed is not None:
            call("remove_group", _remove_group, name, removed)
        ends = [tx for tx, _ in txs] + [m for _, _, m in members]
        rng.shuffle(ends)
        for end in ends:
            call("close", end.close)
        # A group removed (remove_group, or a non-durable one's last member gone) may be made
        # again at the oldest position another group holds: its messages may come again, from
        # there on in order.
        for g, _ in GROUPS:
            if g == removed or not durable[g]:
                stream.forget(g)
        calls.iteration_done()
    signal.alarm(0)
    if debug is not None:
        top = sorted(debug.items(), key=lambda kv: -kv[1])[:int(os.environ["CYWHIP_FUZZ_DEBUG"])]
        print(f"round {'strict' if strict else 'wild'} ({senders} senders, groups): iterations {calls.seen[0]}, "
              f"opened {calls.seen[3]}, sent {stream.next}, delivered {stream.delivered} (not whole "
              f"{stream.loose}), calls {calls.seen[1]}, refused {calls.seen[2]}: {top}", file=sys.stderr, flush=True)

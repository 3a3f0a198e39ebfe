"""Racing rounds on byte channels of many senders (max_queued_bytes with max_senders 2 or 3, one
receiver; docs/protocol.md "Many senders on a byte ring"): a share (MANY_SHARE) of the byte
rounds of ``python -m cywhip._testing.fuzz --race --bytes only`` (fuzz_bytes.race_round()).

A round makes such a channel and fills it; then one process rewrites its shared memory without
pause while another opens senders and the receiver, sends and receives, and closes them, in a
loop.  Its senders send at once, from threads (each opening a sender, sending a few calls,
closing it and opening another), or by calls interleaved in one thread; every sender opened is
a sender incarnation of its own (``sid``), and message k of incarnation sid is
fuzz_bytes.message((sid << SID_SHIFT) | k, n): its sequence number, length and a CRC-32 of the
rest, no 8-byte word of its payload read as a record header.

What the mutator rewrites: the claim word (header write_cursor: the claim cursor / 8, the
owner's generation and place + 1), read_cursor, each sender place's intent, intent_length,
dead_claim, dead_length and generation, and the ring's words (record headers: length, kind with
its slack bits, seq; payload bytes).  And now and then it acts as a sender would (a *stall*):
it takes a free sender place's lock, counts the place's generation as a new sender does (S0),
takes the claim bit (M1) and stops there for a while, or stores its intent (M2) or commits its
claim (M3) and stops, then dies (drops the lock: a dead owner, a dead claim the receiver steps
over, an intent a takeover clears), frees the bit as a taker that found no room does (T3), or
publishes its claim as a void record (M4-M6); or it writes the owner of a dead generation into a
free claim word (a sender that took the bit and died).  Briefly, or for RACE_STALL_SECONDS.

Rounds are strict or wild.  A strict round writes only values no sound channel holds and puts
the old value back by compare-and-swap (atomic_cas_u64), so that a value an end stored
meanwhile is never overwritten:

- the claim word: its owner's place + 1 past max_senders, or its position moved by 2**23 bytes
  and more (further than a ring from any read cursor);
- read_cursor: unaligned, or moved by 2**40 to 2**42 bytes (the claim position is kept modulo
  2**43 bytes, so a move by a multiple of 2**43 would not show: wild rounds make it);
- a place's intent and dead_claim: unaligned (``c + 1`` is 1 modulo 8), or 2**40 bytes on (past
  the claim cursor); an intent only while it is 0 or committed (its claim behind the claim
  cursor), never an uncommitted one, which a takeover's T2 clears: a value put back after T2
  skipped it would be a void intent again;
- intent_length and dead_length unaligned or longer than the ring; generation 2**40 on (the
  owner carries its low 11 bits: the same owner);
- a ring word whose top bit is clear (a header word, a seq, or bytes of no message: every whole
  word of a message's payload has it set) gets a bit of its last byte flipped: a kind or slack
  no record has, a seq no record has; in rounds whose messages are all whole words
  (``whole_words``), also bit 31 (a length over message_length and the ring) or bit 47 (a kind
  of 0x8000 and more), which would change a message byte in the last, partial word of a
  message otherwise.

Every message a strict round's receiver delivers must be whole, sent (not given up in a
reserve() block), of its length, and after the one delivered before it from the same sender
incarnation; an impossible value must be refused with ChannelCorruptError or another clear
error (cywhip's errors, OSError).  A wild round also writes values a sound channel could hold
(the claim word's position or owner, a live owner's generation, read_cursor by 2**43, intents
and dead claims covering the read cursor, record headers published over garbage, payload
bytes), by plain stores too, and repairs the cursors and places now and then: what its
receiver delivers must still be bytes of at most message_length.

In every round: no crash (a signal), no hang (RACE_HANG_SECONDS), no call with a timeout
returning more than RACE_LATE_SECONDS after it, no unexpected exception.
"""
import itertools
import os
import random
import signal
import struct
import sys
import threading
import time

from cywhip import Receiver, Sender, unlink
from cywhip._region import channel_path, slots_offset_for
from cywhip._testing._model import atomic_cas_u64, layout
from cywhip._testing.fuzz import BAD_MESSAGE, _ofd_lock
from cywhip._testing.fuzz_bytes import (
    MIN_MESSAGE, Stream, map_channel, max_length, mutate_until_parent_goes, race_victim_setup, receive_one,
    ring_bytes, send_one,
    whole_seq,
)

# The share of byte rounds on channels of many senders (drawn apart from the rounds' other
# choices, so that a round seed of one sender plays as before).
MANY_SHARE = 0.4
SID_SHIFT = 16
_RINGS = (64, 72, 120, 256, 504, 1024, 4096)
_U64 = (1 << 64) - 1
# The claim word (layout.h, cw_claim_*).
OWNER_BITS = 24
OWNER_MASK = (1 << OWNER_BITS) - 1
PLACE_BITS = 13
PLACE_MASK = (1 << PLACE_BITS) - 1
GEN_MASK = (1 << (OWNER_BITS - PLACE_BITS)) - 1
UNIT_MASK = (1 << (64 - OWNER_BITS)) - 1
HEADER = 16
# A strict round's flips of a ring word with its top bit clear: bits of its last byte (never a
# message byte: see the module's docstring); with whole_words, bits 31 and 47 too.
_RING_FLIPS = (1 << 56, 1 << 59, 1 << 62)
_WHOLE_FLIPS = (1 << 31, 1 << 47)
# A sender place's words the mutators rewrite, and their kinds.
SENDER_FIELDS = (("place_intent", "intent"), ("place_intent_length", "intent_length"),
                 ("place_dead_claim", "dead_claim"), ("place_dead_length", "dead_length"),
                 ("place_generation", "generation"))


def many_round(round_seed):
    """Whether a byte round of this seed has many senders."""
    return random.Random(round_seed ^ 0x6D616E79).random() < MANY_SHARE


def claim_position(word, ref):
    """cw_claim_position(): the least cursor >= ref whose bits the claim word holds."""
    return ref + ((((word >> OWNER_BITS) - (ref >> 3)) & UNIT_MASK) << 3)


def claim_word(position, owner):
    return (((position >> 3) << OWNER_BITS) | owner) & _U64


def owner_of(place, generation):
    return ((generation & GEN_MASK) << PLACE_BITS) | (place + 1)


class ManyStream(Stream):
    """What the senders sent and the receiver delivered: fuzz_bytes.Stream's checks, and each
    sender incarnation's messages in order (``sid``: the bits of seq from SID_SHIFT)."""

    ordered = False

    def __init__(self, cap, fail):
        super().__init__(cap, fail)
        self.last_of = {}
        self.sids = itertools.count(1)

    def sender(self):
        """The log of a sender just opened: its messages numbered apart from every other's."""
        return SenderLog(self, next(self.sids))

    def delivered_one(self, msg, how):
        super().delivered_one(msg, how)
        if self.tainted is not None:
            return
        seq = whole_seq(msg)
        sid = seq >> SID_SHIFT
        last = self.last_of.get(sid, -1)
        if seq <= last:
            self.fail(f"{how} delivered message {seq & ((1 << SID_SHIFT) - 1)} of sender {sid} after its "
                      f"message {last & ((1 << SID_SHIFT) - 1)}")
        self.last_of[sid] = seq


class SenderLog:
    """One sender incarnation's side of a ManyStream, as fuzz_bytes.send_one() uses a Stream."""

    def __init__(self, stream, sid):
        if sid >= 1 << (31 - SID_SHIFT):
            raise OverflowError(f"sender incarnation {sid}: too many for the sequence numbers")
        self.stream, self.sid, self.k = stream, sid, 0
        self.aborted = stream.aborted

    def new(self, n):
        seq = (self.sid << SID_SHIFT) | self.k
        self.k += 1
        self.stream.lengths[seq] = n
        self.stream.next += 1
        from cywhip._testing.fuzz_bytes import message
        return seq, message(seq, n)


def race_round(rng, rs, name, counters, seconds_left):
    """A racing round on a byte channel of many senders: its channel made and filled; returns
    its geometry, the mutator's and the victim's work (each run in a process of its own) and how
    long the victim runs (fuzz_race.race() runs them)."""
    senders, capacity, cap, kw = draw_channel(rng, _RINGS)
    strict = rng.random() < 0.5
    whole_words = rng.random() < 0.5
    threads = rng.random() < 0.6
    unlink(name, missing_ok=True)
    stream = ManyStream(cap, None)
    size = _sizes(cap, whole_words)
    with Sender(name, **kw) as s:
        send_a_few(s, stream, size, rng)
    round_seconds = min(rng.uniform(0.2, 1.0), seconds_left)
    mutator_rng = random.Random(rs ^ 0x5A5A5A5A)
    geometry = dict(many_geometry(kw, capacity, cap, strict, whole_words), threads=threads)

    def run_mutator():
        ManyMutator(channel_path(name), mutator_rng, capacity, cap, senders, 1, strict, whole_words).run()

    def run_victim():
        _race_victim(name, rng, kw, capacity, cap, senders, strict, threads, size, round_seconds, counters,
                     stream)
    return geometry, run_mutator, run_victim, round_seconds


def draw_channel(rng, rings):
    """A racing round's byte channel of many senders: (max_senders, the ring's bytes,
    message_length, the ends' keywords); max_queued_bytes one of rings, message_length the
    longest the ring takes or less, given to the ends or left to them."""
    senders = rng.choice((2, 3))
    asked = rng.choice(rings)
    capacity = ring_bytes(asked)
    top = max_length(capacity, senders)
    cap = top if rng.random() < 0.6 else rng.randint(MIN_MESSAGE, top)
    kw = dict(max_queued_bytes=asked, max_senders=senders)
    if cap != top or rng.random() < 0.5:
        kw["message_length"] = cap
    return senders, capacity, cap, kw


def send_a_few(sender, stream, size, rng):
    """A channel filled before a round: up to 6 messages from sender, a sender incarnation of
    the stream's own (try_send: those that find room)."""
    log = stream.sender()
    for _ in range(rng.randint(0, 6)):
        sender.try_send(log.new(size(rng))[1])


def many_geometry(kw, capacity, cap, strict, whole_words):
    """What a failure report tells of a round of many senders."""
    return {"max_queued_bytes": kw["max_queued_bytes"], "ring_bytes": capacity, "message_length": cap,
            "ends_give_message_length": "message_length" in kw, "strict": strict,
            "max_senders": kw["max_senders"], "whole_words": whole_words}


def _sizes(cap, whole_words):
    """The draw of a message's length: any from MIN_MESSAGE to cap, short ones often; a multiple
    of 8 with whole_words."""
    def size(rng):
        n = rng.randint(MIN_MESSAGE, min(cap, 40)) if rng.random() < 0.5 else rng.randint(MIN_MESSAGE, cap)
        return max(MIN_MESSAGE, n & ~7) if whole_words else n
    return size


# ------------------------------------------------------------------ the mutator

class ManyMutator:
    """The racing mutator of a byte channel of many senders (see the module's docstring): it
    rewrites the claim word, read_cursor, the sender places' words and the ring's words without
    pause until the round's process is gone (run()), and now and then stalls as a sender
    stopped in its claim.  fuzz_bytes_many_groups.GroupManyMutator is this mutator with the
    groups: it overrides the hooks of a stall (claim_and_bound, left_behind,
    may_die_with_claim, zeroes_seqs) and what it writes."""

    STALLS = ("lock", "bit", "bit", "intent", "claim", "claim", "dead_bit")
    STALL_SHARE = 0.15
    # Whether a sender zeroes the seq words of its claim before it commits it (G2: groups).
    zeroes_seqs = False

    def __init__(self, path, rng, capacity, cap, senders, receivers, strict, whole_words):
        self.lay = lay = layout()
        self.mm = map_channel(path)
        self.fd = os.open(path, os.O_RDWR)          # the place locks the mutator holds are on it
        self.parent = os.getppid()
        self.rng, self.capacity, self.cap, self.senders, self.strict = rng, capacity, cap, senders, strict
        self.ring = slots_offset_for(senders, receivers)
        self.W, self.R = lay["write_cursor"], lay["read_cursor"]
        self.place_words = [(self.at(p, f), kind) for p in range(senders) for f, kind in SENDER_FIELDS]
        self.words = [(self.W, "claim"), (self.R, "read")] + self.place_words     # what word_step() rewrites
        self.rest = rng.choice([0.0002, 0.001, 0.003] if strict else [0, 0.0001, 0.001])
        self.headers_share = rng.choice([0.2, 0.4, 0.6])
        self.ring_flips = _RING_FLIPS + (_WHOLE_FLIPS if whole_words else ())
        self.debug = bool(os.environ.get("CYWHIP_FUZZ_DEBUG"))
        self.stalls = {}            # (CYWHIP_FUZZ_DEBUG) how the stalls ended: "how: end" -> count

    def at(self, p, field):
        """The offset of sender place p's field."""
        lay = self.lay
        return lay["places"] + p * lay["place_bytes"] + lay[field]

    def u64(self, off):
        return struct.unpack_from("<Q", self.mm, off)[0]

    def store(self, off, value):
        struct.pack_into("<Q", self.mm, off, value & _U64)

    def flip(self, off, old, bad, hold):
        """Write bad at off if it still holds old, for hold seconds, then put old back unless an
        end wrote since."""
        if bad is None or bad == old or not atomic_cas_u64(self.mm, off, old, bad & _U64):
            return
        if hold:
            time.sleep(hold)
        atomic_cas_u64(self.mm, off, bad & _U64, old)

    # -------------------------------------------------------------- rewrites

    def positions(self):
        """The read cursor, the claim word and the claim cursor."""
        rd = self.u64(self.R)
        word = self.u64(self.W)
        return rd, word, claim_position(word, rd & ~7)

    def strict_value(self, kind, current):
        """A value of a word of this kind that no sound channel holds, made from current (None:
        none to write now)."""
        rng = self.rng
        if kind == "claim":
            if rng.random() < 0.5:
                # No sender place has that number.
                return (current & ~PLACE_MASK) | rng.randint(self.senders + 1, PLACE_MASK)
            return current ^ (1 << (OWNER_BITS + rng.choice((20, 30, 39))))
        if kind == "read":
            return current ^ rng.choice((1, 2, 4, 1 << 40, 1 << 41, 1 << 42))
        if kind == "intent":
            if current and not current - 1 < self.claim_cursor():
                # Only a committed intent (its claim behind the claim cursor): a takeover's T2
                # clears an uncommitted one, and a value put back after it would be a void
                # intent again.
                return None
            return current ^ rng.choice((2, 4, 1 << 40))
        if kind == "dead_claim":
            return current ^ rng.choice((2, 4, 1 << 40))
        if kind in ("intent_length", "dead_length"):
            return current ^ rng.choice((1, 4, 1 << 40))
        if kind == "generation":
            return current ^ (1 << 40)
        return None

    def claim_cursor(self):
        """The claim cursor (below which every intent is committed)."""
        return self.positions()[2]

    def wild_value(self, kind, current):
        """Any value of a word of this kind, one a sound channel could hold often."""
        rng, capacity = self.rng, self.capacity
        rd, word, w = self.positions()
        if kind == "claim":
            owners = self.owners(word)
            position = rng.choice([w, w + 8, w - 8, w + capacity, w - capacity, rd, rd + 16])
            return claim_word(position, rng.choice(owners))
        if kind == "read":
            return rng.choice([w, w - 8, w + 8, rd + capacity, rd - capacity, rd ^ 4, rd + (1 << 43),
                               rd - 8, rd + 8]) & _U64
        if kind in ("intent", "dead_claim"):
            return rng.choice([0, rd + 1, rd - 7, w + 1, w - 7, current + 8, 1]) & _U64
        return self.wild_place_value(kind, current)

    def owners(self, word):
        """The claim word's owners a wild round writes: none, the one it holds, and each
        place's live, last and next generation's."""
        owners = [0, word & OWNER_MASK]
        for q in range(self.senders):
            g = self.u64(self.at(q, "place_generation"))
            owners += [owner_of(q, g), owner_of(q, g - 1), owner_of(q, g + 1)]
        return owners

    def wild_place_value(self, kind, current):
        """wild_value() of a sender place's length or generation."""
        rng, capacity = self.rng, self.capacity
        if kind in ("intent_length", "dead_length"):
            return rng.choice([16, 24, 32, capacity, capacity - 8, current + 8, current - 8, 0, 8]) & _U64
        return rng.choice([current + 1, current - 1, current + (GEN_MASK + 1), 0]) & _U64

    def word_step(self, hold):
        """One of the channel's words rewritten: a strict value flipped (put back after hold
        seconds), or a wild one flipped or stored."""
        off, kind = self.rng.choice(self.words)
        current = self.u64(off)
        if self.strict:
            self.flip(off, current, self.strict_value(kind, current), hold)
            return
        value = self.wild_value(kind, current)
        if self.rng.random() < 0.7:
            self.flip(off, current, value, hold)
        else:
            self.store(off, value)

    def seq_targets(self, i):
        """The positions a wild round publishes a record at ring offset i as (its seq)."""
        rd, _, w = self.positions()
        return [w, rd, w - 16, rd + 16, ((rd // self.capacity) * self.capacity) + i]

    def header_step(self, hold):
        """One of the ring's words rewritten: a strict round flips a bit no message byte has of a
        word whose top bit is clear; a wild round writes a header, a seq or a byte."""
        rng, capacity = self.rng, self.capacity
        i = rng.randrange(0, capacity, 8)
        off = self.ring + i
        word = self.u64(off)
        if self.strict:
            if not word >> 63:
                self.flip(off, word, word ^ rng.choice(self.ring_flips), hold)
            return
        targets = self.seq_targets(i)
        length, kind = word & 0xFFFFFFFF, word >> 32
        how = rng.random()
        if how < 0.5:
            # A header word: a length, a kind, slack bits.
            value = rng.choice([(0, kind), (length + 8, kind), (max(0, length - 8), kind), (self.cap + 1, kind),
                                (1 << 31, kind), (length, 0), (length, 1), (length, 2), (length, 0x10000),
                                (length, 0x10002), (capacity - i, 1), (capacity - i - 8, 1), (length, 3)])
            new = (value[0] & 0xFFFFFFFF) | (value[1] & 0xFFFFFFFF) << 32
        elif how < 0.8 and i + 8 < capacity:
            # A seq: a record published over whatever the ring holds there.
            off += 8
            word = self.u64(off)
            new = (rng.choice(targets) + 1) & _U64
        else:
            off += rng.randrange(8)
            self.mm[off] = rng.randrange(256)
            return
        if rng.random() < 0.5:
            self.flip(off, word, new, hold)
        else:
            self.store(off, new)

    def repair(self):
        """A wild round's repair, now and then: the read cursor and a free claim word at the
        claim position (aligned, within a ring), the intents and dead claims withdrawn."""
        rd, word, w = self.positions()
        if rd % 8 or w - rd > self.capacity or word & OWNER_MASK and self.rng.random() < 0.5:
            w = max(w, rd) & ~7 if w - rd <= self.capacity else rd & ~7
            self.store(self.R, w)
            self.store(self.W, claim_word(w, 0))
        self.withdraw_intents()

    def withdraw_intents(self):
        """Each sender place's intent and dead claim withdrawn, half the time."""
        for p in range(self.senders):
            if self.rng.random() < 0.5:
                for f in ("place_intent", "place_dead_claim"):
                    self.store(self.at(p, f), 0)

    # -------------------------------------------------------------- stalls

    def left_behind(self, p):
        """Whether sender place p's predecessor left what a new sender of the place takes up: an
        intent (S0 would adopt it)."""
        return self.u64(self.at(p, "place_intent")) != 0

    def free_place(self):
        """A sender place's lock taken and its generation counted as a new sender's S0 does:
        (place, owner), or None (no place free, or one whose predecessor left something behind
        (left_behind()): the mutator leaves as a sender that counted nothing).  Tries for a few
        milliseconds: the victim's senders come and go."""
        rng, fd, senders = self.rng, self.fd, self.senders
        until = time.monotonic() + 0.01
        while True:
            p = next((q for q in rng.sample(range(senders), senders) if _ofd_lock(fd, self.at(q, "place_pid"))),
                     None)
            if p is not None:
                break
            if time.monotonic() > until:
                return None
            time.sleep(0.0002)
        if self.left_behind(p):
            _ofd_lock(fd, self.at(p, "place_pid"), lock=False)
            return None
        g_off = self.at(p, "place_generation")
        gen = self.u64(g_off)
        new = gen + 1
        if owner_of(p, new) == self.u64(self.W) & OWNER_MASK:
            new += 1
        if not atomic_cas_u64(self.mm, g_off, gen, new & _U64):
            _ofd_lock(fd, self.at(p, "place_pid"), lock=False)
            return None
        return p, owner_of(p, new)

    def claim_and_bound(self):
        """What a sender's M1 reads: the claim word, the claim cursor, and the bound its room is
        counted from (None: none to count from now).  Here the read cursor (unaligned: none)."""
        rd, word, c = self.positions()
        return word, c, None if rd & 7 else rd

    def may_die_with_claim(self, p):
        """Whether a sender of place p may die with its claim committed: the place's dead claim,
        if any, lies behind the read cursor (a new sender of the place then never waits for it,
        S0d: the victim's receiver may be its own thread)."""
        dp, dl = self.u64(self.at(p, "place_dead_claim")), self.u64(self.at(p, "place_dead_length"))
        return dp == 0 or dp - 1 + dl <= self.u64(self.R)

    def stall(self, hold):
        """A stall of one of STALLS' kinds for hold seconds (CYWHIP_FUZZ_DEBUG: how the stalls
        ended, on stderr now and then)."""
        how = self.rng.choice(self.STALLS)
        ended = self.stall_as(how, hold)
        if self.debug:
            key = f"{how}: {ended}"
            self.stalls[key] = self.stalls.get(key, 0) + 1
            print(f"mutator stalls: {sorted(self.stalls.items())}", file=sys.stderr, flush=True)

    def stall_as(self, how, hold):
        """Act as a sender stopped in its claim (or the claim bit held by a dead owner) for hold
        seconds, then leave as that sender would; returns how it ended."""
        if how == "dead_bit":
            return self.stall_as_dead_owner(hold)
        return self.stall_as_sender(how, hold)

    def stall_as_dead_owner(self, hold):
        """The owner of a place's earlier generation (dead: a later sender counted past it, or the
        place is free) holding the free claim word, as a sender that took it and died; put back
        as a taker that found no room frees it (T3)."""
        p = self.rng.randrange(self.senders)
        gen = self.u64(self.at(p, "place_generation"))
        word = self.u64(self.W)
        if gen < 1 or word & OWNER_MASK:
            return "bit taken"
        self.flip(self.W, word, (word & ~OWNER_MASK) | owner_of(p, gen - 1), hold)
        return "held"

    def stall_as_sender(self, how, hold):
        """A sender's steps up to a stop (how): its place's lock taken ("lock"), the claim bit
        taken (M1; "bit": then died, or freed it, T3), its intent stored (M2; "intent": then died,
        an intent a takeover's T2 clears or S0 voids) or its claim committed (M3; "claim"); held
        for hold seconds; then it dies (a dead claim: stepped over) or publishes its claim as a
        void record (M4-M6)."""
        rng, mm, capacity, ring, W = self.rng, self.mm, self.capacity, self.ring, self.W
        taken = self.free_place()
        if taken is None:
            return "no place"
        p, me = taken
        lock = self.at(p, "place_pid")
        try:
            if how == "lock":
                time.sleep(hold)
                return "held"
            word, c, b = self.claim_and_bound()                              # M1 (G1)
            if b is None or word & OWNER_MASK or c < b or c - b > capacity:
                return "bit taken or no bound"
            rec = rng.choice((16, 24, 32))
            i = c % capacity
            pad = capacity - i if i + rec > capacity else 0
            need = pad + rec
            if c + need - b > capacity or not atomic_cas_u64(mm, W, word, claim_word(c, me)):
                return "no room or lost"
            if how == "bit":
                time.sleep(hold)
                if rng.random() < 0.5:
                    return "died holding the bit"
                atomic_cas_u64(mm, W, claim_word(c, me), claim_word(c, 0))   # T3
                return "freed the bit"
            self.store(self.at(p, "place_intent"), 0)                        # M2
            self.store(self.at(p, "place_intent_length"), need)
            self.store(self.at(p, "place_intent"), c + 1)
            h = c + pad
            j = h % capacity
            if self.zeroes_seqs:                                             # G2
                if pad >= HEADER:
                    self.store(ring + i + 8, 0)
                self.store(ring + j + 8, 0)
            if how == "intent":
                time.sleep(hold)
                if rng.random() < 0.5:
                    return "died with its intent"    # a takeover's T2 clears it, or S0 voids it
            if not atomic_cas_u64(mm, W, claim_word(c, me), claim_word(c + need, 0)):   # M3
                return "taken over"
            time.sleep(hold)
            if rng.random() < 0.5 and self.may_die_with_claim(p):
                return "died with its claim"         # the receivers step over it (R3-R4, G4)
            if pad >= HEADER:                                                # M4
                struct.pack_into("<II", mm, ring + i, pad, 1)
                self.store(ring + i + 8, c + 1)
            struct.pack_into("<II", mm, ring + j, rec, 2)                    # M5: a void record
            self.store(ring + j + 8, h + 1)
            self.store(self.at(p, "place_intent"), 0)                        # M6
            return "published a void"
        finally:
            _ofd_lock(self.fd, lock, lock=False)

    # -------------------------------------------------------------- the loop

    def step(self, hold):
        if self.rng.random() < self.headers_share:
            self.header_step(hold)
        else:
            self.word_step(hold)

    def run(self):
        """Rewrite and stall until the round's process is gone."""
        mutate_until_parent_goes(self.rng, self.parent, self.strict, self.stall, self.repair, self.step,
                                 self.STALL_SHARE, [0.0005, 0.005, 0.05], self.rest)


# ------------------------------------------------------------------ the victim

class _Unchecked:
    """The allocation check of a receive while sender threads run: none (tracemalloc counts
    every thread's allocations)."""

    def start(self):
        pass

    def check(self, what, count):
        pass


def _race_victim(name, rng, kw, capacity, cap, senders, strict, threads, size, seconds, counters, stream):
    """Open senders and the receiver, send from them at once (threads, or interleaved calls),
    receive, close, in a loop for ``seconds``; exit with a failure code on an impossible result,
    a torn, invented or reordered message in a strict round, or a late call."""
    from cywhip._testing.fuzz import RACE_HANG_SECONDS
    # CYWHIP_FUZZ_DEBUG=N: the round's deliveries and its N commonest refusals on stderr at its end.
    debug = {} if os.environ.get("CYWHIP_FUZZ_DEBUG") else None
    calls, alloc, _ = race_victim_setup(counters, stream, strict, rng, cap,
                                        "a wild round: values a sound channel could hold, and plain stores", debug)
    fail, call = calls.fail, calls.call
    if threads:
        alloc = _Unchecked()
        sys.setswitchinterval(rng.choice([0.0001, 0.0005, 0.005]))

    def open_sender():
        tx = call("open sender", lambda: Sender(name, **kw))
        if tx is not None:
            calls.seen[3] += 1
        return tx

    def send(tx, log, srng, timeout):
        send_one(tx, log, srng, lambda: size(srng), cap, timeout)

    def receive(rx, timeout):
        receive_one(rx, stream, alloc, rng, timeout)

    def sender_thread(srng, stop):
        while not stop.is_set():
            tx = open_sender()
            if tx is None:
                time.sleep(srng.choice([0, 0.0005, 0.002]))
                continue
            log = stream.sender()
            for _ in range(srng.choice([1, 2, 4, 8, 16])):
                if stop.is_set():
                    break
                timeout = srng.choice([0, 0, 0.0005, 0.002])
                call("send (thread)", send, tx, log, srng, timeout, timeout=timeout)
            call("close sender", tx.close)

    stepped = [0, 0]       # (with CYWHIP_FUZZ_DEBUG) dead claims stepped over, voids, by the receivers

    def close_receiver(rx):
        if debug is not None:
            try:
                for k, v in enumerate(rx._skipped):
                    stepped[k] += v
            except Exception:
                pass
        call("close receiver", rx.close)

    def check_depth(end):
        depth = call("depth", lambda: end.depth)
        if depth is not None and not 0 <= depth <= capacity:
            fail(BAD_MESSAGE, f"depth {depth} of a ring of {capacity} bytes")

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        signal.alarm(RACE_HANG_SECONDS)
        # Every sender place in use, or one left for the mutator's stalls.
        count = rng.randint(1, senders if rng.random() < 0.5 else senders - 1)
        if threads:
            rx = call("open receiver", lambda: Receiver(name, **kw)) if rng.random() < 0.9 else None
            calls.seen[3] += rx is not None
            stop = threading.Event()
            workers = [threading.Thread(target=sender_thread, args=(random.Random(rng.random()), stop), daemon=True)
                       for _ in range(count)]
            for t in workers:
                t.start()
            until = time.monotonic() + rng.choice([0.002, 0.01, 0.03, 0.1])
            while time.monotonic() < until:
                if rx is None:
                    time.sleep(0.001)
                    continue
                timeout = rng.choice([0, 0, 0.0005, 0.002])
                call("receive", receive, rx, timeout, timeout=timeout)
                if rng.random() < 0.05:
                    check_depth(rx)
            stop.set()
            # Receive while the senders finish: a sender opening meanwhile may wait for the
            # receiver to pass its place's earlier dead claim (S0d).
            while any(t.is_alive() for t in workers):
                if rx is not None:
                    call("receive", receive, rx, 0.0005, timeout=0.0005)
                for t in workers:
                    t.join(0.0005)
            if rx is not None:
                close_receiver(rx)
        else:
            # Senders before the receiver: a sender that must wait for the receiver to pass its
            # place's earlier dead claim (S0d) raises ChannelBusyError while none is open.
            txs = [(tx, stream.sender()) for tx in (open_sender() for _ in range(count)) if tx is not None]
            rx = call("open receiver", lambda: Receiver(name, **kw)) if rng.random() < 0.9 else None
            calls.seen[3] += rx is not None
            for _ in range(rng.choice([0, 1, 2, 4, 8, 16])):
                ends = [("sender", e) for e in txs] + ([("receiver", rx)] if rx is not None else [])
                rng.shuffle(ends)
                for label, end in ends:
                    timeout = rng.choice([0, 0, 0.0005, 0.002])
                    if label == "sender":
                        call("send", send, end[0], end[1], rng, timeout, timeout=timeout)
                    else:
                        call("receive", receive, end, timeout, timeout=timeout)
                if rx is not None and rng.random() < 0.05:
                    check_depth(rx)
            for tx, _ in txs:
                call("close sender", tx.close)
            if rx is not None:
                close_receiver(rx)
        calls.iteration_done()
    signal.alarm(0)
    if debug is not None:
        top = sorted(debug.items(), key=lambda kv: -kv[1])[:int(os.environ["CYWHIP_FUZZ_DEBUG"])]
        print(f"round {'strict' if strict else 'wild'} ({'threads' if threads else 'interleaved'}, {senders} "
              f"senders): iterations {calls.seen[0]}, opened {calls.seen[3]}, sent {stream.next}, delivered "
              f"{stream.delivered} (not whole {stream.loose}), dead claims stepped over {stepped[0]}, voids {stepped[1]}, calls {calls.seen[1]}, refused {calls.seen[2]}: {top}",
              file=sys.stderr, flush=True)

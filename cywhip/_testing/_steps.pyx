# cython: language_level=3
"""Test machinery that needs the ends' C fields: the many-senders send protocol of a Sender
one step at a time (cywhip._testing.fanin kills a sender between any two steps), and how an
end's one-thread guard is held, and the codec's size contract (measure)."""
from libc.stdint cimport uint32_t, uint64_t, int64_t
from libc.string cimport memcpy

from cywhip.includes.c_atomics cimport cw_load_relaxed_u64
from cywhip.includes.c_guard cimport cw_bias_rec, cw_guard_holder
from cywhip._end cimport _End
from cywhip._channel cimport Sender
from cywhip.includes.c_layout cimport cw_var_record_size_with, CW_VAR_MANY_HEADER_SIZE, CW_VOID_LENGTH
from cywhip._ring cimport (
    ring_t, ring_unclaimed, ring_claim_look, ring_claim_intent, ring_claim_cas, ring_write_slot, ring_commit_length,
    ring_commit_seq, ring_commit_clear, ring_publish, ring_bytes_take_bit, ring_bytes_claim_held,
    ring_bytes_claim_step, ring_bytes_commit_step,
)


cdef class SenderSteps:
    """The many-senders send protocol of a Sender one step at a time, for tests that kill a
    sender between any two steps (fanin.run_step).  Each method is one step of
    docs/protocol.md, made with the same ring functions a send uses."""
    cdef Sender sender
    cdef uint64_t c

    def __init__(self, Sender sender not None):
        sender._check_open()
        if not sender.ring.many:
            raise ValueError("steps are for a Sender of a channel with max_senders > 1")
        self.sender = sender

    def intent(self):
        """S1 and S2: load the claim cursor, check for room, say in the place what is claimed."""
        cdef ring_t *r = &self.sender.ring
        if ring_unclaimed(r) <= 0:
            raise RuntimeError("the channel is full")
        self.c = ring_claim_look(r)
        ring_claim_intent(r, self.c)
        return self.c

    def claim(self):
        """S3: move the claim cursor past the sequence the intent names."""
        cdef uint64_t c = self.c
        if not ring_claim_cas(&self.sender.ring, &c):
            raise RuntimeError(f"the claim cursor moved from {self.c} to {c}")

    def write(self, const unsigned char[:] data, Py_ssize_t upto):
        """S4, in part: the first upto bytes of the payload."""
        if upto > data.shape[0] or upto > self.sender.message_length:
            raise ValueError(f"upto={upto} is past the payload")
        if upto:
            memcpy(ring_write_slot(&self.sender.ring), &data[0], upto)

    def length(self, uint32_t n):
        """S4's end: the message's length."""
        ring_commit_length(&self.sender.ring, n)

    def publish(self):
        """S5: store seq."""
        ring_commit_seq(&self.sender.ring)

    def clear(self):
        """S6: withdraw the intent."""
        ring_commit_clear(&self.sender.ring)

    def wake(self):
        """After S6: wake a sleeping receiver."""
        ring_publish(&self.sender.ring)


cdef class BytesSenderSteps:
    """The send protocol of a Sender of a byte channel of many senders one step at a time
    (docs/protocol.md, "Many senders on a byte ring": M1-M6, T0-T2), for tests that kill a
    sender between any two steps (cywhip._testing.bytes_steps).  Each method is one step, made
    with the ring functions a send uses."""
    cdef Sender sender
    cdef uint32_t length

    def __init__(self, Sender sender not None):
        sender._check_open()
        if not (sender.ring.bytes and sender.ring.many):
            raise ValueError("steps are for a Sender of a byte channel with max_senders > 1")
        self.sender = sender

    def take(self, Py_ssize_t n, bint stop_after_t1=False):
        """M1 (or T0-T2 where a dead sender holds the claim bit): take the bit for a message
        of n bytes; then work out its room (padding first?) without committing anything.
        Returns (the claim's cursor, its padding, its bytes)."""
        cdef ring_t *r = &self.sender.ring
        cdef int64_t st
        if n < 0 or n > self.sender.message_length:
            raise ValueError(f"n={n} is not a message length of this channel")
        r.want_bytes = <uint64_t>n
        self.length = <uint32_t>n
        st = ring_bytes_take_bit(r, 1 if stop_after_t1 else 2)
        if st <= 0:
            raise RuntimeError(f"the claim bit was not taken ({st}, busy {r.bit_busy})")
        if stop_after_t1:
            return r.claim_at, None, None
        st = ring_bytes_claim_held(r, cw_var_record_size_with(n, CW_VAR_MANY_HEADER_SIZE), False)
        if st <= 0:
            raise RuntimeError(f"no room at {r.claim_at} for {n} bytes ({st})")
        return r.claim_at, r.pad, r.claim_end - r.claim_at

    def intent(self):
        """M2: the intent (position and bytes) in the place."""
        ring_bytes_claim_step(&self.sender.ring, 2)

    def commit(self):
        """M3: the claim committed, the bit freed."""
        ring_bytes_claim_step(&self.sender.ring, 3)

    def pad(self):
        """M4: the padding record published (if the claim has one of 16 bytes or more)."""
        ring_bytes_claim_step(&self.sender.ring, 4)

    def write(self, const unsigned char[:] data, Py_ssize_t upto):
        """M5, in part: the first upto bytes of the payload."""
        if upto > data.shape[0] or upto > self.length:
            raise ValueError(f"upto={upto} is past the payload")
        if upto:
            memcpy(ring_write_slot(&self.sender.ring), &data[0], upto)

    def header(self, bint void=False):
        """M5's first half: the header's length and kind (void: a claim without a message)."""
        ring_bytes_commit_step(&self.sender.ring, CW_VOID_LENGTH if void else self.length, 1)

    def publish(self):
        """M5's end: seq, published."""
        ring_bytes_commit_step(&self.sender.ring, self.length, 2)

    def clear(self):
        """M6: withdraw the intent."""
        ring_bytes_commit_step(&self.sender.ring, self.length, 3)

    def wake(self):
        """After M6: wake a sleeping receiver."""
        ring_publish(&self.sender.ring)


def guard_state(end):
    """How end's one-thread guard is held now: "fast" (by the thread the end is biased to,
    without a compare-and-swap), "slow" (by compare-and-swap) or "free"; and whether the end
    is biased to a thread."""
    cdef _End e = <_End?>end
    cdef cw_bias_rec *rec = e.bias
    if rec != NULL and rec.in_call == <void *>&e.busy:
        return "fast", True
    return ("slow" if cw_guard_holder(&e.busy) else "free"), rec != NULL


def measure(end, msg):
    """What end's codec says encoding msg will take (Codec.measure: the byte channels' size
    contract), or -1 if it cannot tell first; an object end keeps the pickled pieces for the
    send of msg that follows."""
    cdef _End e = <_End?>end
    e._check_open()
    return e.codec.measure(msg)


def forget(end):
    """Drop what measure() kept (Codec.forget)."""
    cdef _End e = <_End?>end
    e._check_open()
    e.codec.forget()

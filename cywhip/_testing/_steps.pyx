# cython: language_level=3
"""Test machinery that needs the ends' C fields: the many-senders send protocol of a Sender
one step at a time (cywhip._testing.fanin kills a sender between any two steps), and how an
end's one-thread guard is held, and the codec's size contract (measure)."""
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy

from cywhip.includes.c_atomics cimport cw_load_relaxed_u64
from cywhip.includes.c_guard cimport cw_bias_rec, cw_guard_holder
from cywhip._end cimport _End
from cywhip._channel cimport Sender
from cywhip._ring cimport (
    ring_t, ring_unclaimed, ring_claim_look, ring_claim_intent, ring_claim_cas, ring_write_slot, ring_commit_length,
    ring_commit_seq, ring_commit_clear, ring_publish,
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

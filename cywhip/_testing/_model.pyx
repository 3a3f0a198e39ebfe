# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Test scaffolding over the ring and the layout, compiled but outside the product's rooms.

RingModel drives both ends of one ring in private memory through the same inline ring
functions the channels use; layout() reports the shared layout as the compiler laid it out;
slot_size() and slot_offset() are the layout's record descriptor (layout.h) for the fuzzer
and the tests, which must not compute a slot's size or place themselves.
"""
from libc.errno cimport ETIMEDOUT
from libc.stdint cimport uint32_t, uint64_t, int64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy
from posix.time cimport timespec

from cywhip.includes.c_atomics cimport (
    cw_store_relaxed_u32, cw_load_relaxed_u32, cw_exchange_u32, cw_fence_seq_cst, cw_load_relaxed_u64,
    cw_cas_acq_rel_u64,
)
from cywhip.includes.c_futex cimport cw_futex_wait, cw_futex_wake
from cywhip.includes.c_layout cimport (
    cw_header, cw_place, cw_group, cw_many_slot_header, cw_place_offset, cw_slots_offset,
    cw_fixed_slot_size, cw_fixed_slot_offset, cw_slot_header_size,
    cw_var_record_size, cw_var_capacity, cw_var_max_length,
    CW_HEADER_SIZE, CW_SLOT_HEADER_SIZE, CW_MANY_SLOT_HEADER_SIZE, CW_SLOT_ALIGN, CW_PLACE_SIZE,
    CW_GROUPS_LOCK_BYTE, cw_var_record_size, cw_var_capacity, CW_VAR_MANY_HEADER_SIZE,
    cw_var_record_size_with, cw_var_max_length_with, cw_var_header_size,
)
from cywhip._ring cimport (
    ring_t, ring_attach, ring_interrupt, ring_announce_sleep, ring_free, ring_available, ring_write_slot,
    ring_commit, ring_publish, ring_read_length, ring_read_slot, ring_consume, ring_release,
)


def slot_size(uint64_t message_length, uint64_t max_senders=1):
    """Bytes per slot of a channel of fixed-size records (layout.h's cw_fixed_slot_size)."""
    return cw_fixed_slot_size(message_length, max_senders)


def slot_header_size(uint64_t max_senders=1):
    """Bytes before the payload in every slot (layout.h's cw_slot_header_size)."""
    return cw_slot_header_size(max_senders)


def slot_offset(uint64_t slot_size, uint64_t index):
    """Where slot index starts, from the first slot (layout.h's cw_fixed_slot_offset)."""
    return cw_fixed_slot_offset(slot_size, index)


def record_size(uint64_t length):
    """Bytes a message of length bytes takes in a byte channel's ring (layout.h's
    cw_var_record_size): its header and its payload padded to 8."""
    return cw_var_record_size(length)


def ring_bytes(uint64_t max_queued_bytes):
    """The ring's bytes of a byte channel asked for max_queued_bytes (layout.h's cw_var_capacity)."""
    return cw_var_capacity(max_queued_bytes)


cdef class RingModel:
    """Both ends of one ring in private memory, driven from Python by tests.

    Exercises the same inline functions the channel uses: cursor arithmetic,
    index wrap-around, the free/available checks and the slot lengths.
    """
    cdef ring_t tx
    cdef ring_t rx
    cdef cw_header *hdr
    cdef size_t size

    def __cinit__(self, uint64_t capacity, uint64_t message_length, uint64_t start=0):
        if capacity < 1 or message_length < 1:
            raise ValueError(f"capacity and message_length must be >= 1, got {capacity} and {message_length}")
        cdef uint64_t slot_size = cw_fixed_slot_size(message_length, 1)
        self.size = CW_HEADER_SIZE + cw_fixed_slot_offset(slot_size, capacity)   # the end of the last slot
        self.hdr = <cw_header *>calloc(1, self.size)
        if self.hdr == NULL:
            raise MemoryError()
        self.hdr.capacity = capacity
        self.hdr.message_length = message_length
        self.hdr.slot_size = slot_size
        self.hdr.write_cursor = start
        self.hdr.read_cursor = start
        ring_attach(&self.tx, self.hdr, CW_HEADER_SIZE, capacity, message_length, 0, 1, -1, -1)
        ring_attach(&self.rx, self.hdr, CW_HEADER_SIZE, capacity, message_length, 0, 1, -1, -1)

    def __dealloc__(self):
        free(self.hdr)

    @property
    def write_cursor(self):
        return self.hdr.write_cursor

    @property
    def read_cursor(self):
        return self.hdr.read_cursor

    @property
    def write_index(self):
        return self.tx.write_index

    @property
    def read_index(self):
        return self.rx.read_index

    def free(self):
        return ring_free(&self.tx)

    def available(self):
        return ring_available(&self.rx)

    def send_batch(self, list messages):
        """Commit as many messages as fit and publish once; return how many."""
        cdef Py_ssize_t k = 0
        cdef bytes m
        for m in messages:
            if ring_free(&self.tx) <= 0:
                break
            if <uint64_t>len(m) > self.tx.message_length:
                raise ValueError(f"message of {len(m)} bytes, message_length is {self.tx.message_length}")
            memcpy(ring_write_slot(&self.tx), <char *>m, len(m))
            ring_commit(&self.tx, <uint32_t>len(m))
            k += 1
        ring_publish(&self.tx)
        return k

    def recv_batch(self, Py_ssize_t max_count):
        """Take up to max_count messages and release once."""
        cdef list out = []
        cdef int64_t n
        while len(out) < max_count and ring_available(&self.rx) > 0:
            n = ring_read_length(&self.rx)
            if n < 0:
                raise ValueError("corrupt slot length")
            out.append(ring_read_slot(&self.rx)[:n])
            ring_consume(&self.rx)
        ring_release(&self.rx)
        return out

    def reattach(self):
        """Reattach both ends from the shared cursors, as a restarted process would."""
        if (ring_attach(&self.tx, self.hdr, CW_HEADER_SIZE, self.tx.capacity, self.tx.message_length,
                        0, 1, -1, -1)
                or ring_attach(&self.rx, self.hdr, CW_HEADER_SIZE, self.rx.capacity, self.rx.message_length,
                               0, 1, -1, -1)):
            raise ValueError("impossible cursors")

    def interrupt_then_sleep(self, bint sending, double timeout):
        """Announce a sleep, let close() land, then sleep as ring_wait() would: the window
        between ring_wait()'s last check of stop and its futex wait.  Returns how the sleep
        ended: "woken" (the word had changed) or "timed out"."""
        cdef ring_t *r = &self.tx if sending else &self.rx
        cdef uint32_t *word = &r.hdr.sender_waiting if sending else &r.hdr.receiver_waiting
        cdef timespec ts
        cdef int rc
        r.stop = 0
        cw_store_relaxed_u32(word, 1)
        cw_fence_seq_cst()
        ring_interrupt(r, sending)
        ts.tv_sec = <long>timeout
        ts.tv_nsec = <long>((timeout - ts.tv_sec) * 1e9)
        rc = cw_futex_wait(word, 1, &ts)
        cw_store_relaxed_u32(word, 0)
        r.stop = 0
        return "timed out" if rc == ETIMEDOUT else "woken"

    def sleep_after_another_announces(self, bint sending, double timeout):
        """Two ends that share the waiting word (as many senders, or group members, do): one
        announces its sleep and found nothing; the other end's progress clears the word and
        wakes nobody yet; a second sharer announces its own sleep; only then does the first
        reach its futex wait.  Returns how that wait ended: "woken" (the word had changed) or
        "timed out" (it slept through the wake-up)."""
        cdef ring_t *r = &self.tx if sending else &self.rx
        cdef uint32_t *word = &r.hdr.sender_waiting if sending else &r.hdr.receiver_waiting
        cdef uint32_t first, second
        cdef timespec ts
        cdef int rc
        cw_store_relaxed_u32(word, 0)
        ring_announce_sleep(word, True, &first)
        if cw_load_relaxed_u32(word) and cw_exchange_u32(word, 0):
            cw_futex_wake(word, 1 << 30)
        ring_announce_sleep(word, True, &second)
        ts.tv_sec = <long>timeout
        ts.tv_nsec = <long>((timeout - ts.tv_sec) * 1e9)
        rc = cw_futex_wait(word, first, &ts)
        cw_store_relaxed_u32(word, 0)
        return "timed out" if rc == ETIMEDOUT else "woken"

    def corrupt_cursors(self, uint64_t write, uint64_t read):
        self.hdr.write_cursor = write
        self.hdr.read_cursor = read


def var_record_size(uint64_t length, uint64_t max_senders=1):
    """Bytes a record of a message of length bytes takes in a byte ring (cw_var_record_size_with,
    for the record headers of a channel of max_senders senders)."""
    return cw_var_record_size_with(length, cw_var_header_size(max_senders))


def var_capacity(uint64_t max_queued_bytes):
    """A byte ring's bytes for max_queued_bytes (cw_var_capacity)."""
    return cw_var_capacity(max_queued_bytes)


def var_max_length(uint64_t capacity, uint64_t max_senders=1):
    """The longest message a byte ring of capacity bytes accepts (cw_var_max_length_with, for
    the record headers of a channel of max_senders senders)."""
    return cw_var_max_length_with(capacity, cw_var_header_size(max_senders))


def atomic_xor_u64(buf, Py_ssize_t offset, uint64_t mask):
    """XOR the 8-byte word at offset (a multiple of 8) of a writable buffer, a shared mapping,
    with mask in one atomic step; return the word as it was.  A racing fuzzer flips a word
    so: whatever an end stored there meanwhile, flipping twice leaves that value, or that
    value flipped, never an older value written back."""
    cdef unsigned char[::1] view = buf
    if offset < 0 or offset % 8 or offset + 8 > view.shape[0]:
        raise ValueError(f"offset {offset} is not an aligned word of a {view.shape[0]}-byte buffer")
    cdef uint64_t *p = <uint64_t *>&view[offset]
    cdef uint64_t old = cw_load_relaxed_u64(p)
    while not cw_cas_acq_rel_u64(p, &old, old ^ mask):
        pass
    return old


def atomic_cas_u64(buf, Py_ssize_t offset, uint64_t expected, uint64_t desired):
    """Compare-and-swap the 8-byte word at offset (a multiple of 8) of a writable buffer, a
    shared mapping: store desired if it holds expected, in one atomic step; return True if it
    did.  A racing fuzzer writes a wrong value and puts the right one back so: a value an end
    stored meanwhile is never overwritten, by the wrong value or by an older one."""
    cdef unsigned char[::1] view = buf
    if offset < 0 or offset % 8 or offset + 8 > view.shape[0]:
        raise ValueError(f"offset {offset} is not an aligned word of a {view.shape[0]}-byte buffer")
    cdef uint64_t *p = <uint64_t *>&view[offset]
    cdef uint64_t old = expected
    return bool(cw_cas_acq_rel_u64(p, &old, desired))


def layout():
    """Offsets and sizes of the shared layout as the compiler laid it out (for tests and docs)."""
    cdef cw_header h
    cdef cw_place p
    cdef cw_many_slot_header ms
    cdef cw_group gr
    cdef char *base = <char *>&h
    return {
        "header_size": CW_HEADER_SIZE,
        "slot_header_size": CW_SLOT_HEADER_SIZE,
        "many_slot_header_size": CW_MANY_SLOT_HEADER_SIZE,
        "slot_seq": <char *>&ms.seq - <char *>&ms,
        "slot_align": CW_SLOT_ALIGN,
        "magic": <char *>&h.magic - base,
        "version": <char *>&h.version - base,
        "header_size_field": <char *>&h.header_size - base,
        "message_length": <char *>&h.message_length - base,
        "capacity": <char *>&h.capacity - base,
        "records": <char *>&h.records - base,
        "slot_size": <char *>&h.slot_size - base,
        "file_size": <char *>&h.file_size - base,
        "type_fingerprint": <char *>&h.type_fingerprint - base,
        "type_size": <char *>&h.type_size - base,
        "creator_pid": <char *>&h.creator_pid - base,
        "created_ns": <char *>&h.created_ns - base,
        "write_cursor": <char *>&h.write_cursor - base,
        "read_cursor": <char *>&h.read_cursor - base,
        "sender_waiting": <char *>&h.sender_waiting - base,
        "receiver_waiting": <char *>&h.receiver_waiting - base,
        "topology": <char *>&h.topology - base,
        "max_senders": <char *>&h.max_senders - base,
        "max_receivers": <char *>&h.max_receivers - base,
        "place_size": <char *>&h.place_size - base,
        "records": <char *>&h.records - base,
        "place_pid": <char *>&p.pid - <char *>&p,
        "place_starts": <char *>&p.starts - <char *>&p,
        "place_intent": <char *>&p.intent - <char *>&p,
        "sizeof_place": sizeof(cw_place),
        "places": cw_place_offset(0),
        "place_bytes": CW_PLACE_SIZE,
        # A channel of one sender and one receiver: its two places and its first slot.
        "sender_place": cw_place_offset(0),
        "receiver_place": cw_place_offset(1),
        "slots": cw_slots_offset(1, 1),
        "type_description": <char *>&h.type_description[0] - base,
        "sizeof_header": sizeof(cw_header),
        "groups_gen": <char *>&h.groups_gen - base,
        "place_group": <char *>&p.group - <char *>&p,
        "place_hold_start": <char *>&p.hold_start - <char *>&p,
        "place_hold_end": <char *>&p.hold_end - <char *>&p,
        "place_intent_length": <char *>&p.intent_length - <char *>&p,
        "place_dead_claim": <char *>&p.dead_claim - <char *>&p,
        "place_dead_length": <char *>&p.dead_length - <char *>&p,
        "place_generation": <char *>&p.generation - <char *>&p,
        "var_many_header_size": CW_VAR_MANY_HEADER_SIZE,
        "group_next": <char *>&gr.next - <char *>&gr,
        "group_lock": <char *>&gr.lock - <char *>&gr,
        "group_epoch": <char *>&gr.epoch - <char *>&gr,
        "group_members": <char *>&gr.members - <char *>&gr,
        "group_flags": <char *>&gr.flags - <char *>&gr,
        "group_name_len": <char *>&gr.name_len - <char *>&gr,
        "group_name": <char *>&gr.name[0] - <char *>&gr,
        "sizeof_group": sizeof(cw_group),
        "groups_lock_byte": CW_GROUPS_LOCK_BYTE,
    }

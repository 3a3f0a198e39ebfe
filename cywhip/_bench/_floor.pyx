# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Floors for the benchmarks: a minimal SPSC ring, a futex ping-pong, and the Python call floor.

No Python runs per message in the first two: each call is one nogil loop over a
buffer that two processes map (a file in /dev/shm).  They show what the hardware
gives, so that cywhip's figures can be read as a fraction of it.  The third,
CallFloor, shows what a Python call of a Sender's send() or a Receiver's recv()
costs before it does any work: its send() does nothing, its recv() returns a
fresh bytes object of the message's length, as every real receive must.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport uint32_t, uint64_t, int64_t
from libc.string cimport memcpy, memset

from cywhip.includes.c_atomics cimport (
    cw_load_acquire_u64, cw_store_release_u64, cw_load_relaxed_u32, cw_store_relaxed_u32,
    cw_cpu_relax,
)
from cywhip.includes.c_futex cimport cw_futex_wait, cw_futex_wake
from cywhip._ring cimport monotonic_ns
from cywhip.includes.c_copy cimport cw_copy

# Layout of the floor ring: head (written by the sender) at 0, tail (written
# by the receiver) at 128, slots from 256.  Its capacity (in records) is a power
# of two, RING_SLOTS unless the caller gives another: the same on both sides.
cdef enum:
    HEAD = 0
    TAIL = 128
    SLOTS = 256
RING_SLOTS = 65536
MAX_RECORD = 256


def ring_bytes(int record_size, Py_ssize_t capacity=RING_SLOTS):
    """Bytes of shared memory the floor ring needs for capacity records of record_size bytes."""
    return SLOTS + capacity * record_size


cdef uint64_t _check(unsigned char[::1] shm, int record_size, Py_ssize_t capacity,
                     int smallest=1) except 0:
    """The index mask of a ring of capacity records in shm, after checking them."""
    if not smallest <= record_size <= MAX_RECORD:
        raise ValueError(f"record size {record_size} is not {smallest} to {MAX_RECORD}")
    if capacity < 2 or capacity & (capacity - 1):
        raise ValueError(f"capacity {capacity} is not a power of two of at least 2")
    if shm.shape[0] < ring_bytes(record_size, capacity):
        raise ValueError(f"a buffer of {shm.shape[0]} bytes is smaller than a ring of {capacity} "
                         f"records of {record_size} bytes ({ring_bytes(record_size, capacity)})")
    return <uint64_t>capacity - 1


def ring_send(unsigned char[::1] shm, Py_ssize_t count, int record_size,
              Py_ssize_t capacity=RING_SLOTS):
    """Send count records of record_size bytes through the floor ring (spinning while full)."""
    cdef char *base = <char *>&shm[0]
    cdef uint64_t *head = <uint64_t *>(base + HEAD)
    cdef uint64_t *tail = <uint64_t *>(base + TAIL)
    cdef char *slots = base + SLOTS
    cdef uint64_t h = 0, t, free, k, j
    cdef char record[256]
    cdef uint64_t mask = _check(shm, record_size, capacity), cap = mask + 1
    memset(record, 7, sizeof(record))
    with nogil:
        while h < <uint64_t>count:
            t = cw_load_acquire_u64(tail)
            free = cap - (h - t)
            if free == 0:
                cw_cpu_relax()
                continue
            k = <uint64_t>count - h
            if k > free:
                k = free
            if k > cap // 4:
                k = cap // 4
            for j in range(k):
                memcpy(slots + ((h + j) & mask) * record_size, record, record_size)
            h += k
            cw_store_release_u64(head, h)


def ring_recv(unsigned char[::1] shm, Py_ssize_t count, int record_size,
              Py_ssize_t capacity=RING_SLOTS):
    """Receive count records; return the seconds from the first record to the last."""
    cdef char *base = <char *>&shm[0]
    cdef uint64_t *head = <uint64_t *>(base + HEAD)
    cdef uint64_t *tail = <uint64_t *>(base + TAIL)
    cdef char *slots = base + SLOTS
    cdef uint64_t t = 0, h, j
    cdef int64_t start = 0, end = 0
    cdef char out[256]
    cdef uint64_t mask = _check(shm, record_size, capacity), cap = mask + 1
    with nogil:
        while t < <uint64_t>count:
            h = cw_load_acquire_u64(head)
            if h == t:
                cw_cpu_relax()
                continue
            if start == 0:
                start = monotonic_ns()
            for j in range(t, h):
                memcpy(out, slots + (j & mask) * record_size, record_size)
            t = h
            cw_store_release_u64(tail, t)
        end = monotonic_ns()
    return (end - start) / 1e9


def ring_send_each(unsigned char[::1] shm, Py_ssize_t count, int record_size,
                   Py_ssize_t capacity=RING_SLOTS):
    """Send count records through the floor ring one at a time: a store-release of head after
    each record (per-message publish), the receiver's tail reloaded only when the ring looks full.

    Each record carries its number in its first 8 bytes, written just before it is copied
    into its slot, as the benchmark loops through cywhip's Cython API do.  record_size >= 8."""
    cdef char *base = <char *>&shm[0]
    cdef uint64_t *head = <uint64_t *>(base + HEAD)
    cdef uint64_t *tail = <uint64_t *>(base + TAIL)
    cdef char *slots = base + SLOTS
    cdef uint64_t h = 0, t = 0
    cdef char record[256]
    cdef uint64_t mask = _check(shm, record_size, capacity, 8), cap = mask + 1
    memset(record, 7, sizeof(record))
    with nogil:
        while h < <uint64_t>count:
            if h - t == cap:
                t = cw_load_acquire_u64(tail)
                if h - t == cap:
                    cw_cpu_relax()
                    continue
            (<uint64_t *>record)[0] = h
            cw_copy(slots + (h & mask) * record_size, record, record_size)
            h += 1
            cw_store_release_u64(head, h)


def ring_recv_each(unsigned char[::1] shm, Py_ssize_t count, int record_size,
                   Py_ssize_t capacity=RING_SLOTS):
    """Receive count records one at a time: a store-release of tail after each record, head
    reloaded only when the records known to be published are used up; each record's number
    checked.  Returns (the seconds from the first record to the last, records whose number
    was wrong)."""
    cdef char *base = <char *>&shm[0]
    cdef uint64_t *head = <uint64_t *>(base + HEAD)
    cdef uint64_t *tail = <uint64_t *>(base + TAIL)
    cdef char *slots = base + SLOTS
    cdef uint64_t t = 0, h = 0, wrong = 0
    cdef int64_t start = 0, end = 0
    cdef char out[256]
    cdef uint64_t mask = _check(shm, record_size, capacity, 8), cap = mask + 1
    memset(out, 0, sizeof(out))
    with nogil:
        while t < <uint64_t>count:
            if t == h:
                h = cw_load_acquire_u64(head)
                if t == h:
                    cw_cpu_relax()
                    continue
                if start == 0:
                    start = monotonic_ns()
            cw_copy(out, slots + (t & mask) * record_size, record_size)
            if (<uint64_t *>out)[0] != t:
                wrong += 1
            t += 1
            cw_store_release_u64(tail, t)
        end = monotonic_ns()
    return (end - start) / 1e9, wrong


def futex_pingpong(unsigned char[::1] shm, Py_ssize_t count, bint ping, int64_t[::1] rtt_ns=None):
    """One side of a pure-blocking futex ping-pong over two words in shm.

    The pinging side stores each round trip's nanoseconds in rtt_ns.
    """
    cdef char *base = <char *>&shm[0]
    cdef uint32_t *to_pong = <uint32_t *>base
    cdef uint32_t *to_ping = <uint32_t *>(base + 128)
    cdef uint32_t *mine
    cdef uint32_t *theirs
    cdef uint32_t i, v
    cdef int64_t t0
    if shm.shape[0] < 256:
        raise ValueError("futex_pingpong needs 256 bytes")
    if ping and (rtt_ns is None or rtt_ns.shape[0] < count):
        raise ValueError("the pinging side needs rtt_ns with room for count values")
    mine = to_pong if ping else to_ping
    theirs = to_ping if ping else to_pong
    with nogil:
        for i in range(1, <uint32_t>count + 1):
            if ping:
                t0 = monotonic_ns()
                cw_store_relaxed_u32(mine, i)
                cw_futex_wake(mine, 1)
            while True:
                v = cw_load_relaxed_u32(theirs)
                if v == i:
                    break
                cw_futex_wait(theirs, v, NULL)
            if ping:
                rtt_ns[i - 1] = monotonic_ns() - t0
            else:
                cw_store_relaxed_u32(mine, i)
                cw_futex_wake(mine, 1)


cdef class CallFloor:
    """The Python call floor of single send/recv: the calls a Sender and a Receiver take,
    doing no work but what every receive of bytes does (a fresh bytes object of
    message_length bytes, copied from a buffer)."""
    cdef Py_ssize_t length
    cdef char buf[256]

    def __init__(self, Py_ssize_t message_length):
        if not 0 <= message_length <= MAX_RECORD:
            raise ValueError(f"message_length {message_length} is not 0 to {MAX_RECORD}")
        self.length = message_length
        memset(self.buf, 7, sizeof(self.buf))

    def send(self, msg, timeout=None):
        """Take a message and do nothing with it."""

    def recv(self, timeout=None):
        """Return a fresh bytes object of message_length bytes."""
        return PyBytes_FromStringAndSize(self.buf, self.length)

# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Raw C floors for the benchmarks: a minimal SPSC ring and a futex ping-pong.

No Python runs per message here: each call is one nogil loop over a buffer
that two processes map (a file in /dev/shm).  They show what the hardware
gives, so that cywhip's figures can be read as a fraction of it.
"""
from libc.stdint cimport uint32_t, uint64_t, int64_t
from libc.string cimport memcpy, memset

from cywhip.includes.c_atomics cimport (
    cw_load_acquire_u64, cw_store_release_u64, cw_load_relaxed_u32, cw_store_relaxed_u32,
    cw_cpu_relax,
)
from cywhip.includes.c_futex cimport cw_futex_wait, cw_futex_wake
from cywhip._ring cimport monotonic_ns

# Layout of the floor ring: head (written by the sender) at 0, tail (written
# by the receiver) at 128, slots from 256.
cdef enum:
    HEAD = 0
    TAIL = 128
    SLOTS = 256
    CAP = 65536
RING_SLOTS = CAP
MAX_RECORD = 256


def ring_bytes(int record_size):
    """Bytes of shared memory the floor ring needs for records of record_size bytes."""
    return SLOTS + RING_SLOTS * record_size


def ring_send(unsigned char[::1] shm, Py_ssize_t count, int record_size):
    """Send count records of record_size bytes through the floor ring (spinning while full)."""
    cdef char *base = <char *>&shm[0]
    cdef uint64_t *head = <uint64_t *>(base + HEAD)
    cdef uint64_t *tail = <uint64_t *>(base + TAIL)
    cdef char *slots = base + SLOTS
    cdef uint64_t h = 0, t, free, k, j, cap = CAP
    cdef char record[256]
    if not 0 < record_size <= MAX_RECORD or shm.shape[0] < ring_bytes(record_size):
        raise ValueError(f"bad record size {record_size} or buffer of {shm.shape[0]} bytes")
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
                memcpy(slots + ((h + j) % CAP) * record_size, record, record_size)
            h += k
            cw_store_release_u64(head, h)


def ring_recv(unsigned char[::1] shm, Py_ssize_t count, int record_size):
    """Receive count records; return the seconds from the first record to the last."""
    cdef char *base = <char *>&shm[0]
    cdef uint64_t *head = <uint64_t *>(base + HEAD)
    cdef uint64_t *tail = <uint64_t *>(base + TAIL)
    cdef char *slots = base + SLOTS
    cdef uint64_t t = 0, h, j, cap = CAP
    cdef int64_t start = 0, end = 0
    cdef char out[256]
    if not 0 < record_size <= MAX_RECORD or shm.shape[0] < ring_bytes(record_size):
        raise ValueError(f"bad record size {record_size} or buffer of {shm.shape[0]} bytes")
    with nogil:
        while t < <uint64_t>count:
            h = cw_load_acquire_u64(head)
            if h == t:
                cw_cpu_relax()
                continue
            if start == 0:
                start = monotonic_ns()
            for j in range(t, h):
                memcpy(out, slots + (j % CAP) * record_size, record_size)
            t = h
            cw_store_release_u64(tail, t)
        end = monotonic_ns()
    return (end - start) / 1e9


def ring_send_each(unsigned char[::1] shm, Py_ssize_t count, int record_size):
    """Send count records through the floor ring one at a time: a store-release of head after
    each record (per-message publish), the receiver's tail reloaded only when the ring looks full."""
    cdef char *base = <char *>&shm[0]
    cdef uint64_t *head = <uint64_t *>(base + HEAD)
    cdef uint64_t *tail = <uint64_t *>(base + TAIL)
    cdef char *slots = base + SLOTS
    cdef uint64_t h = 0, t = 0, cap = CAP
    cdef char record[256]
    if not 0 < record_size <= MAX_RECORD or shm.shape[0] < ring_bytes(record_size):
        raise ValueError(f"bad record size {record_size} or buffer of {shm.shape[0]} bytes")
    memset(record, 7, sizeof(record))
    with nogil:
        while h < <uint64_t>count:
            if h - t == cap:
                t = cw_load_acquire_u64(tail)
                if h - t == cap:
                    cw_cpu_relax()
                    continue
            memcpy(slots + (h % CAP) * record_size, record, record_size)
            h += 1
            cw_store_release_u64(head, h)


def ring_recv_each(unsigned char[::1] shm, Py_ssize_t count, int record_size):
    """Receive count records one at a time: a store-release of tail after each record, head
    reloaded only when the records known to be published are used up.  Returns the seconds
    from the first record to the last."""
    cdef char *base = <char *>&shm[0]
    cdef uint64_t *head = <uint64_t *>(base + HEAD)
    cdef uint64_t *tail = <uint64_t *>(base + TAIL)
    cdef char *slots = base + SLOTS
    cdef uint64_t t = 0, h = 0, acc = 0
    cdef int64_t start = 0, end = 0
    cdef char out[256]
    if not 0 < record_size <= MAX_RECORD or shm.shape[0] < ring_bytes(record_size):
        raise ValueError(f"bad record size {record_size} or buffer of {shm.shape[0]} bytes")
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
            memcpy(out, slots + (t % CAP) * record_size, record_size)
            # Use what was copied, so that the compiler keeps the copy.
            acc += (<uint64_t *>out)[0]
            t += 1
            cw_store_release_u64(tail, t)
        end = monotonic_ns()
        # Past the two cursors' lines, inside the 256-byte header.
        (<uint64_t *>(base + TAIL + 64))[0] = acc
    return (end - start) / 1e9


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

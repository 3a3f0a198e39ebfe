# cython: language_level=3
"""The single-producer/single-consumer protocol over a channel's slots.

Nothing here touches a Python object: every function is ``nogil`` and
``noexcept`` and reports through its return value.  The sender owns
``write_cursor``; the receiver owns ``read_cursor``; each keeps a private
copy of the other's cursor and refreshes it only when the copy says the ring
is full (sender) or empty (receiver).  See docs/protocol.md.
"""
from libc.stdint cimport uint32_t, uint64_t, int64_t
from libc.string cimport memcpy

from cywhip.includes.c_atomics cimport (
    cw_load_acquire_u64, cw_store_release_u64, cw_load_relaxed_u32,
    cw_exchange_u32, cw_fence_seq_cst, cw_prefetch_write,
)
from cywhip.includes.c_futex cimport cw_futex_wake
from cywhip.includes.c_layout cimport cw_header, cw_slot_header, CW_SLOT_HEADER_SIZE

# Results of ring_wait().
cdef enum:
    WAIT_READY = 1      # the condition holds: free slots (sender) or messages (receiver)
    WAIT_TIMEOUT = 0    # the deadline passed
    WAIT_CORRUPT = -1   # a cursor read from shared memory is impossible
    WAIT_AGAIN = -2     # slept one slice or a signal arrived: check signals, call again
    WAIT_STOPPED = -3   # ring.stop was set by close()

cdef struct ring_t:
    cw_header *hdr
    char *slots
    uint64_t slots_offset
    uint64_t capacity
    uint64_t message_length
    uint64_t slot_size
    int64_t spin_ns
    # Sender-private.
    uint64_t write         # next cursor to fill; == write_cursor after a publish
    uint64_t write_index   # write % capacity
    uint64_t read_cache    # last read_cursor seen
    # Receiver-private.
    uint64_t read          # next cursor to take; read_cursor lags it until a release
    uint64_t read_index    # read % capacity
    uint64_t write_cache   # last write_cursor seen
    # Set by close() from another thread to end a wait.
    uint32_t stop
    # The impossible values behind the last WAIT_CORRUPT / -1, for error messages:
    # a cursor or a slot length as it was read (once) from shared memory.
    uint64_t bad_cursor
    uint64_t bad_length

cdef int ring_attach(ring_t *r, cw_header *hdr, uint64_t slots_offset, uint64_t capacity,
                     uint64_t message_length, int64_t spin_ns) noexcept nogil
cdef int ring_wait(ring_t *r, bint sending, int64_t deadline_ns) noexcept nogil
cdef void ring_interrupt(ring_t *r, bint sending) noexcept nogil
cdef int64_t ring_depth(ring_t *r) noexcept nogil
cdef uint64_t ring_taken(ring_t *r) noexcept nogil
cdef int64_t monotonic_ns() noexcept nogil


# ---------------------------------------------------------------- sender side

cdef inline int64_t ring_refresh_free(ring_t *r) noexcept nogil:
    """Reload read_cursor; return the free slots, or -1 if the cursors are impossible."""
    # Acquire pairs with the receiver's release of read_cursor: once we see
    # it, the receiver has finished reading every slot before it.
    cdef uint64_t rd = cw_load_acquire_u64(&r.hdr.read_cursor)
    # Unsigned: also catches rd > write.
    if r.write - rd > r.capacity:
        r.bad_cursor = rd
        return -1
    r.read_cache = rd
    return <int64_t>(r.capacity - (r.write - rd))

cdef inline int64_t ring_free(ring_t *r) noexcept nogil:
    """Free slots, from the cached read cursor while it says there are some."""
    cdef uint64_t used = r.write - r.read_cache
    if used < r.capacity:
        return <int64_t>(r.capacity - used)
    return ring_refresh_free(r)

cdef inline char *ring_write_slot(ring_t *r) noexcept nogil:
    """Payload of the slot at the write cursor (caller checked ring_free() > 0)."""
    return r.slots + r.write_index * r.slot_size + CW_SLOT_HEADER_SIZE

cdef inline void ring_commit(ring_t *r, uint32_t length) noexcept nogil:
    """Finish the slot at the write cursor; invisible to the receiver until ring_publish()."""
    (<cw_slot_header *>(r.slots + r.write_index * r.slot_size)).length = length
    r.write += 1
    r.write_index += 1
    if r.write_index == r.capacity:
        r.write_index = 0

cdef inline void ring_publish(ring_t *r) noexcept nogil:
    """Make every committed slot visible with one store; wake a sleeping receiver."""
    # Release publishes the slot payloads and lengths written before it;
    # pairs with the receiver's acquire load of write_cursor.
    cw_store_release_u64(&r.hdr.write_cursor, r.write)
    # Orders that store before the load of receiver_waiting below; pairs
    # with the receiver's fence between setting receiver_waiting and
    # re-reading write_cursor, so one of the two always sees the other.
    cw_fence_seq_cst()
    if cw_load_relaxed_u32(&r.hdr.receiver_waiting) and cw_exchange_u32(&r.hdr.receiver_waiting, 0):
        cw_futex_wake(&r.hdr.receiver_waiting, 1)


# -------------------------------------------------------------- receiver side

cdef inline int64_t ring_available(ring_t *r) noexcept nogil:
    """Messages waiting, reloading write_cursor only when the cached copy is used up; -1 if impossible."""
    cdef uint64_t w = r.write_cache
    if w != r.read:
        return <int64_t>(w - r.read)
    # Acquire pairs with the sender's release in ring_publish(): the slots
    # before w are fully written once we see w.
    w = cw_load_acquire_u64(&r.hdr.write_cursor)
    if w - r.read > r.capacity:
        r.bad_cursor = w
        return -1
    r.write_cache = w
    return <int64_t>(w - r.read)

cdef inline int64_t ring_read_length(ring_t *r) noexcept nogil:
    """Length of the message at the read cursor, read once and checked; -1 if impossible."""
    cdef uint32_t n = cw_load_relaxed_u32(
        &(<cw_slot_header *>(r.slots + r.read_index * r.slot_size)).length)
    if n > r.message_length:
        r.bad_length = n
        return -1
    return n

cdef inline char *ring_read_slot(ring_t *r) noexcept nogil:
    return r.slots + r.read_index * r.slot_size + CW_SLOT_HEADER_SIZE

cdef inline void ring_consume(ring_t *r) noexcept nogil:
    """Step past the message at the read cursor; the sender may reuse it after ring_release()."""
    r.read += 1
    r.read_index += 1
    if r.read_index == r.capacity:
        r.read_index = 0

cdef inline void ring_rewind(ring_t *r, uint64_t read) noexcept nogil:
    """Un-consume back to cursor read (taken before, not yet released): those messages stay first in line."""
    r.read = read
    r.read_index = read % r.capacity

cdef inline Py_ssize_t ring_lend_run(ring_t *r, Py_ssize_t k, uint32_t record_size,
                                     uint32_t *lengths) noexcept nogil:
    """Check the next k available messages (k >= 1) for a borrow, stopping at the ring's end.

    Each slot length is read once into lengths[i] and checked (at most
    message_length; exactly record_size if that is not 0).  Returns how many
    form the run; 0 if the first is impossible (its length in r.bad_length).
    """
    cdef Py_ssize_t i
    cdef uint32_t n
    if <uint64_t>k > r.capacity - r.read_index:
        k = <Py_ssize_t>(r.capacity - r.read_index)
    for i in range(k):
        n = cw_load_relaxed_u32(&(<cw_slot_header *>(r.slots + (r.read_index + i) * r.slot_size)).length)
        if n > r.message_length or (record_size != 0 and n != record_size):
            r.bad_length = n
            return i
        lengths[i] = n
    return k

cdef inline uint64_t ring_read_offset(ring_t *r) noexcept nogil:
    """Where in the channel file the payload at the read cursor starts."""
    return r.slots_offset + r.read_index * r.slot_size + CW_SLOT_HEADER_SIZE

cdef inline void ring_consume_run(ring_t *r, uint64_t k) noexcept nogil:
    """Step past k messages lent by ring_lend_run(); the sender may reuse them after ring_release()."""
    r.read += k
    r.read_index += k
    if r.read_index == r.capacity:
        r.read_index = 0

cdef inline void ring_release(ring_t *r) noexcept nogil:
    """Hand every consumed slot back to the sender with one store; wake a sleeping sender."""
    # Release: our reads of the consumed slots happen before the sender
    # can see them free; pairs with the sender's acquire of read_cursor.
    cw_store_release_u64(&r.hdr.read_cursor, r.read)
    # Same handshake as ring_publish(), mirrored.
    cw_fence_seq_cst()
    if cw_load_relaxed_u32(&r.hdr.sender_waiting) and cw_exchange_u32(&r.hdr.sender_waiting, 0):
        cw_futex_wake(&r.hdr.sender_waiting, 1)


# ----------------------------------------------------------- typed record runs

cdef enum:
    PREFETCH_SLOTS = 8

cdef inline void _copy_record(char *dst, const char *src, size_t size) noexcept nogil:
    # Constant sizes let the compiler emit a few moves instead of a call.
    if size == 8:
        memcpy(dst, src, 8)
    elif size == 16:
        memcpy(dst, src, 16)
    elif size == 32:
        memcpy(dst, src, 32)
    elif size == 64:
        memcpy(dst, src, 64)
    else:
        memcpy(dst, src, size)

cdef inline void ring_write_records(ring_t *r, const char *src, Py_ssize_t stride,
                                    Py_ssize_t count, uint32_t size) noexcept nogil:
    """Commit count records of size bytes taken every stride bytes from src (caller checked room)."""
    cdef Py_ssize_t i
    cdef char *slot
    cdef uint64_t ahead
    for i in range(count):
        slot = r.slots + r.write_index * r.slot_size
        # The slots were last read by the receiver's core: fetch lines a few
        # slots ahead for writing, so those transfers overlap the copies.
        ahead = r.write_index + PREFETCH_SLOTS
        if ahead >= r.capacity:
            ahead %= r.capacity
        cw_prefetch_write(r.slots + ahead * r.slot_size)
        (<cw_slot_header *>slot).length = size
        _copy_record(slot + CW_SLOT_HEADER_SIZE, src + i * stride, size)
        r.write += 1
        r.write_index += 1
        if r.write_index == r.capacity:
            r.write_index = 0

cdef inline Py_ssize_t ring_read_records(ring_t *r, char *dst, Py_ssize_t stride,
                                         Py_ssize_t count, uint32_t size) noexcept nogil:
    """Consume up to count records of exactly size bytes into dst every stride bytes (caller
    saw count available).  Stops before a slot whose length is not size; returns how many."""
    cdef Py_ssize_t i
    cdef const char *slot
    cdef uint32_t n
    for i in range(count):
        slot = r.slots + r.read_index * r.slot_size
        n = cw_load_relaxed_u32(&(<cw_slot_header *>slot).length)
        if n != size:
            r.bad_length = n
            return i
        _copy_record(dst + i * stride, slot + CW_SLOT_HEADER_SIZE, size)
        r.read += 1
        r.read_index += 1
        if r.read_index == r.capacity:
            r.read_index = 0
    return count

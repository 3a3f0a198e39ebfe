# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The Cython API's calls (declared in capi.pxd, documented in docs/api.md).

Each call takes the end's one-thread guard (without a compare-and-swap in the
thread the end is biased to, else by one, as a Python call does), runs the
ring's call steps (_ring.pxd, "calls": the same ones the Python Sender and
Receiver run) and gives the guard back.  Nothing here holds
or needs the GIL, except handle().
"""
import cywhip

from cpython.ref cimport Py_INCREF
from libc.stdint cimport int64_t, uint32_t, uint64_t, INT64_MAX
from cywhip.includes.c_copy cimport cw_copy

from cywhip.includes.c_atomics cimport cw_load_acquire_i32
from cywhip.includes.c_guard cimport (
    cw_guard_take, cw_guard_give, cw_guard_take_biased, cw_guard_give_biased, cw_guard_bias_to,
    cw_guard_take_fast, cw_guard_give_fast,
    cw_bias_rec, CW_GUARD_NOGIL,
)
from cywhip.includes.c_bias_rec cimport cw_bias_init, cw_bias_mine, cw_bias_records_claimed
from cywhip._end cimport _End, cw_handle
from cywhip._channel cimport Sender, Receiver
from cywhip._ring cimport (
    ring_t, ring_claim, ring_write_slot, ring_commit, ring_publish, ring_available, ring_available_one,
    ring_available_now, ring_fd_arm,
    ring_read_slot, ring_send_wait, ring_send_records, ring_recv_wait, ring_recv_peek, ring_recv_done,
    ring_consume, ring_release, ring_room_cached, ring_fixed_peek, ring_fixed_consume, ring_fixed_commit,
    ring_recv_records, monotonic_ns, membarrier_refused,
    WAIT_READY, WAIT_TIMEOUT, WAIT_STOPPED, WAIT_AGAIN, WAIT_INTERRUPTED,
)


# ----------------------------------------------------------------- the handle

cdef Handle *_handle(object end, int version) except NULL:
    cdef _End e
    if version != API_VERSION:
        raise ImportError(
            f"a module compiled against version {version} of cywhip's Cython API cannot use "
            f"cywhip {cywhip.__version__}, whose Cython API is version {API_VERSION}: compile "
            f"it again against this cywhip (cywhip.get_include())")
    if isinstance(end, Receiver):
        if (<Receiver>end).thread is not None:
            raise TypeError(
                f"cywhip.capi.handle() needs a Receiver without on_message/on_batch; "
                f"Receiver {(<Receiver>end).name!r} delivers its messages to a thread of its own")
    elif not isinstance(end, Sender):
        raise TypeError(f"cywhip.capi.handle() takes a cywhip Sender or Receiver, not "
                        f"{type(end).__name__}")
    e = <_End>end
    e._check_open()
    if e.message_type is object:
        raise TypeError(
            f"cywhip.capi.handle() moves bytes; {type(end).__name__} {e.name!r} carries Python "
            f"objects (message_type=object), which its Python calls pickle and unpickle: use "
            f"those, or a channel of bytes or records for the Cython API")
    if not e.handle_held:
        e.handle.ring = &e.ring
        e.handle.busy = &e.busy
        e.handle.bias = &e.bias
        e.handle.closing = &e.closing
        e.handle.sending = e.sending
        e.handle.record_size = <uint32_t>e.record_size
        e.handle.chunk = <uint32_t>max(1, min(e.max_queued_messages // 4, 4096))
        e.handle.plain = not e.ring.many and not e.ring.groups and not e.ring.bytes
        # The handle lives inside the end: the end stays alive until it closes.
        Py_INCREF(e)
        e.handle_held = 1
    return <Handle *>&e.handle


# ------------------------------------------------------------------- helpers

# Whether ends may be biased to a thread in this process (includes/guard.h).
_biased = bool(cw_bias_init(membarrier_refused()))


# Test seam (it must sit here: the records are this module's, includes/bias_rec.h).
def _records_claimed():
    """For tests: how many threads of this process hold a guard record now."""
    return cw_bias_records_claimed()


cdef inline int _begin(cw_handle *c) noexcept nogil:
    """Take the end's guard for this call: OK, BUSY (another call holds it) or CLOSED.

    The thread the end is biased to takes it without a compare-and-swap; any
    other takes it the slow way (includes/guard.h)."""
    if not cw_guard_take_biased(c.busy, c.bias) and not cw_guard_take(c.busy, c.bias, CW_GUARD_NOGIL):
        # close() sets closing before it takes the guard itself.
        return CLOSED if cw_load_acquire_i32(c.closing) else BUSY
    # The guard's acquire brings what its last holder did: a close (ring.hdr NULL), or
    # the request of a close() waiting for the guard.
    if cw_load_acquire_i32(c.closing) or c.ring.hdr == NULL:
        _give(c)
        return CLOSED
    return OK


cdef inline void _give(cw_handle *c) noexcept nogil:
    """Give the guard back (its release publishes this call's changes to the ring); a call
    that took it the slow way first biases the end to its thread."""
    cdef cw_bias_rec *rec
    if cw_guard_give_biased(c.bias):
        return
    rec = cw_bias_mine()
    if rec != NULL:
        cw_guard_bias_to(c.bias, rec)
    cw_guard_give(c.busy)


cdef inline int _end(cw_handle *c, int status) noexcept nogil:
    """Give the guard back."""
    c.ring.want = 1
    _give(c)
    return status


cdef inline int64_t _deadline(int64_t timeout_ns) noexcept nogil:
    """The CLOCK_MONOTONIC deadline of a relative timeout; -1 (none) for a negative one."""
    cdef int64_t now
    if timeout_ns < 0:
        return -1
    now = monotonic_ns()
    if timeout_ns > INT64_MAX - now:
        return -1
    return now + timeout_ns


cdef inline int _status(int waited) noexcept nogil:
    """The status of a wait that did not end ready (WAIT_AGAIN is waited out by the caller)."""
    if waited == WAIT_TIMEOUT:
        return TIMEOUT
    if waited == WAIT_STOPPED:
        return CLOSED
    if waited == WAIT_INTERRUPTED:
        return INTERRUPTED
    return CORRUPT


cdef inline int _send_wait(ring_t *r, int64_t timeout_ns) noexcept nogil:
    """Wait for room (with many senders: claim a slot); OK or why not."""
    cdef int64_t deadline = _deadline(timeout_ns), free
    cdef int waited
    while True:
        waited = ring_send_wait(r, deadline, 0, &free)
        if waited == WAIT_READY:
            return OK
        if waited != WAIT_AGAIN:
            return _status(waited)


cdef inline int _recv_wait(ring_t *r, int64_t timeout_ns, int64_t *avail) noexcept nogil:
    """Wait for a message; OK (avail[0] waiting) or why not."""
    cdef int64_t deadline = _deadline(timeout_ns)
    cdef int waited
    while True:
        waited = ring_recv_wait(r, deadline, 0, avail)
        if waited == WAIT_READY:
            return OK
        if waited != WAIT_AGAIN:
            return _status(waited)


cdef inline int _check_send(cw_handle *c, size_t n) noexcept nogil:
    if not c.sending:
        return WRONG_END
    if n > c.ring.message_length:
        return TOO_LONG
    if c.record_size != 0 and n != c.record_size:
        return WRONG_LENGTH
    return OK


cdef inline int _begin_send(cw_handle *c, size_t n) noexcept nogil:
    """_begin() a send of n bytes: OK with the guard held, or why not (the guard not held)."""
    cdef int st = _begin(c)
    if st != OK:
        return st
    st = _check_send(c, n)
    if st != OK:
        return _end(c, st)
    return OK


cdef inline int _put(ring_t *r, const void *data, size_t n) noexcept nogil:
    """Fill the slot at the write cursor (room seen, or claimed) and publish it."""
    cw_copy(ring_write_slot(r), data, n)
    ring_commit(r, <uint32_t>n)
    ring_publish(r)
    return OK


cdef inline int _take(cw_handle *c, ring_t *r, void *dst, size_t capacity, size_t *n) noexcept nogil:
    """Copy out the message first in line (one is waiting) and take it; a message longer than
    capacity stays first in line (TOO_LONG, n[0] its length)."""
    cdef int64_t length = ring_recv_peek(r, c.record_size)
    if length < 0:
        return CORRUPT
    n[0] = <size_t>length
    if <size_t>length > capacity:
        return TOO_LONG
    cw_copy(dst, ring_read_slot(r), <size_t>length)
    ring_recv_done(r)
    return OK


# ------------------------------------------------------------ the short ways
# One message per call on a one-to-one channel, from the thread the end is
# biased to, with room (or a message) already in sight: the steps of the calls
# below and nothing else, so that a loop of calls keeps many messages in flight.
# Anything else (another thread, a wait, a closing end, a bad length, a value
# read from shared memory that fails its check) goes the whole way, which
# starts over and reads shared memory afresh.

cdef inline cw_bias_rec *_take_short(cw_handle *c) noexcept nogil:
    """The guard taken by the biased thread's fast path, the end open: that thread's record;
    else NULL (the guard not held)."""
    cdef cw_bias_rec *rec = cw_guard_take_fast(c.busy, c.bias)
    if rec == NULL:
        return NULL
    if cw_load_acquire_i32(c.closing) or c.ring.hdr == NULL:
        cw_guard_give_fast(rec)
        return NULL
    return rec


cdef inline bint _send_short(cw_handle *c, const void *data, size_t n) noexcept nogil:
    """Send by the short way: True if sent, False if the call must go the whole way."""
    cdef ring_t *r = c.ring
    cdef cw_bias_rec *rec
    if not c.plain or not c.sending or n > r.message_length or (c.record_size != 0 and n != c.record_size):
        return False
    rec = _take_short(c)
    if rec == NULL:
        return False
    if not ring_room_cached(r):
        # Full as last seen: the whole way reloads the read cursor (and waits).
        cw_guard_give_fast(rec)
        return False
    # _put() of a slot channel (the short way is for no other).
    cw_copy(ring_write_slot(r), data, n)
    ring_fixed_commit(r, <uint32_t>n)
    ring_publish(r)
    cw_guard_give_fast(rec)
    return True


cdef inline bint _recv_short(cw_handle *c, void *dst, size_t capacity, size_t *n) noexcept nogil:
    """Receive by the short way: True if taken (n[0] its length), False if the call must go the
    whole way."""
    cdef ring_t *r = c.ring
    cdef cw_bias_rec *rec
    cdef int64_t length
    if not c.plain or c.sending:
        return False
    rec = _take_short(c)
    if rec == NULL:
        return False
    if ring_available_one(r) <= 0:
        # Nothing waiting, or impossible cursors: the whole way waits or reports them.
        cw_guard_give_fast(rec)
        return False
    # Read once, checked (at most message_length, record_size if any), and only this copy used.
    length = ring_fixed_peek(r, c.record_size)
    if length < 0 or <uint64_t>length > capacity:
        cw_guard_give_fast(rec)
        return False
    cw_copy(dst, ring_read_slot(r), length)
    n[0] = length
    ring_fixed_consume(r)
    ring_release(r)
    cw_guard_give_fast(rec)
    return True


# --------------------------------------------------------------------- sending

cdef int _send_whole(cw_handle *c, const void *data, size_t n, int64_t timeout_ns,
                     bint trying) noexcept nogil:
    """send() (or, trying, try_send()) the whole way; kept out of line, so that the short way
    in front of it saves few registers."""
    cdef ring_t *r = c.ring
    cdef int64_t free
    cdef int st = _begin_send(c, n)
    if st != OK:
        return st
    # A byte channel claims room for this message's record.
    r.want_bytes = n
    free = ring_claim(r)
    if free <= 0:
        if free < 0:
            return _end(c, CORRUPT)
        if trying:
            # An end waiting on its descriptor (fileno()) arms it, as try_send() in Python;
            # the look that follows may find room after all.
            if not (r.fd_wait and ring_fd_arm(r, True, True) > 0):
                return _end(c, FULL)
            free = ring_claim(r)
            if free <= 0:
                return _end(c, FULL if free == 0 else CORRUPT)
            return _end(c, _put(r, data, n))
        st = _send_wait(r, timeout_ns)
        if st != OK:
            return _end(c, st)
    return _end(c, _put(r, data, n))


# Called through a pointer set at import, so that the compiler keeps it out of line.
cdef int (*_send_whole_p)(cw_handle *, const void *, size_t, int64_t, bint) noexcept nogil
_send_whole_p = _send_whole


cdef int send(Handle *h, const void *data, size_t n, int64_t timeout_ns) noexcept nogil:
    if _send_short(<cw_handle *>h, data, n):
        return OK
    return _send_whole_p(<cw_handle *>h, data, n, timeout_ns, False)


cdef int try_send(Handle *h, const void *data, size_t n) noexcept nogil:
    if _send_short(<cw_handle *>h, data, n):
        return OK
    return _send_whole_p(<cw_handle *>h, data, n, 0, True)


cdef int send_records(Handle *h, const void *src, size_t count, size_t stride, size_t *sent,
                      int64_t timeout_ns) noexcept nogil:
    cdef cw_handle *c = <cw_handle *>h
    cdef ring_t *r = c.ring
    cdef Py_ssize_t done = 0
    cdef int64_t deadline
    cdef int waited
    cdef uint32_t size
    cdef int st = _begin(c)
    sent[0] = 0
    if st != OK:
        return st
    if not c.sending:
        return _end(c, WRONG_END)
    size = c.record_size if c.record_size != 0 else <uint32_t>r.message_length
    deadline = _deadline(timeout_ns) if count else -1
    while True:
        waited = ring_send_records(r, <const char *>src, <Py_ssize_t>stride, <Py_ssize_t>count, size,
                                   c.chunk, deadline, 0, &done)
        if waited != WAIT_AGAIN:
            break
    sent[0] = <size_t>done
    return _end(c, OK if waited == WAIT_READY else _status(waited))


# ------------------------------------------------------------------- receiving

cdef int _recv_whole(cw_handle *c, void *dst, size_t capacity, size_t *n, int64_t timeout_ns,
                     bint trying) noexcept nogil:
    """recv() (or, trying, try_recv()) the whole way; kept out of line, as _send_whole()."""
    cdef ring_t *r = c.ring
    cdef int64_t avail
    cdef int st = _begin(c)
    n[0] = 0
    if st != OK:
        return st
    if c.sending:
        return _end(c, WRONG_END)
    if trying:
        # As try_recv() in Python: a hole left by a dead sender is resolved at once.
        avail = ring_available_now(r)
        if avail <= 0:
            return _end(c, EMPTY if avail == 0 else CORRUPT)
        return _end(c, _take(c, r, dst, capacity, n))
    avail = ring_available(r)
    if avail <= 0:
        if avail < 0:
            return _end(c, CORRUPT)
        st = _recv_wait(r, timeout_ns, &avail)
        if st != OK:
            return _end(c, st)
    return _end(c, _take(c, r, dst, capacity, n))


cdef int (*_recv_whole_p)(cw_handle *, void *, size_t, size_t *, int64_t, bint) noexcept nogil
_recv_whole_p = _recv_whole


cdef int recv(Handle *h, void *dst, size_t capacity, size_t *n, int64_t timeout_ns) noexcept nogil:
    if _recv_short(<cw_handle *>h, dst, capacity, n):
        return OK
    return _recv_whole_p(<cw_handle *>h, dst, capacity, n, timeout_ns, False)


cdef int try_recv(Handle *h, void *dst, size_t capacity, size_t *n) noexcept nogil:
    if _recv_short(<cw_handle *>h, dst, capacity, n):
        return OK
    return _recv_whole_p(<cw_handle *>h, dst, capacity, n, 0, True)


cdef int recv_records(Handle *h, void *dst, size_t max_count, size_t stride, size_t *got,
                      int64_t timeout_ns) noexcept nogil:
    cdef cw_handle *c = <cw_handle *>h
    cdef ring_t *r = c.ring
    cdef int64_t avail
    cdef Py_ssize_t k
    cdef uint32_t size
    cdef int st = _begin(c)
    got[0] = 0
    if st != OK:
        return st
    if c.sending:
        return _end(c, WRONG_END)
    if max_count == 0:
        return _end(c, OK)
    # A member of a receiver group claims up to this many while others share its group.
    r.want = max_count
    avail = ring_available(r)
    if avail <= 0:
        if avail < 0:
            return _end(c, CORRUPT)
        st = _recv_wait(r, timeout_ns, &avail)
        if st != OK:
            return _end(c, st)
    k = <Py_ssize_t>avail if <uint64_t>avail < max_count else <Py_ssize_t>max_count
    size = c.record_size if c.record_size != 0 else <uint32_t>r.message_length
    k = ring_recv_records(r, <char *>dst, <Py_ssize_t>stride, k, size)
    if k == 0:
        # The first message waiting is not a whole record.  On a typed channel, or over
        # message_length, that is corruption; on an untyped channel, a shorter message,
        # left first in line for recv().
        if c.record_size != 0 or r.bad_length > r.message_length:
            return _end(c, CORRUPT)
        return _end(c, WRONG_LENGTH)
    got[0] = <size_t>k
    return _end(c, OK)

# cython: language_level=3
"""The lifecycle every kind of end shares: open, claim, one thread at a time, fork, close."""
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t, uintptr_t

from cywhip.includes.c_atomics cimport cw_load_acquire_i32, cw_store_release_i32
from cywhip.includes.c_guard cimport cw_guard_take, cw_guard_give, cw_bias_rec, cw_thread_self, CW_GUARD_CALL

from cywhip._codec cimport Codec
from cywhip._region cimport Region
from cywhip._ring cimport ring_t
from cywhip.includes.c_layout cimport cw_group


# What a handle of the Cython API (cywhip.capi) points at: the C struct behind the opaque
# cywhip_handle of capi.h.  Users' modules see only a pointer, so its layout may change
# freely.  It lives inside its end (_End.handle) and is filled by cywhip.capi.handle().
cdef struct cw_handle:
    ring_t *ring
    int32_t *busy          # the end's one-thread guard
    cw_bias_rec **bias     # the thread the guard is biased to (includes/guard.h)
    int32_t *closing       # the end's request to stop
    uint32_t sending
    uint32_t record_size   # typed channels: every message is exactly this long; else 0
    uint32_t chunk         # send_records publishes (and wakes the receiver) every chunk records
    uint32_t plain         # a one-to-one channel (one sender, no receiver groups): send and recv
                           # may take their short way (cywhip.capi)


cdef class _End:
    cdef ring_t ring
    # The Region (shared file, mapping, claimed place); None once closed or in a forked child.
    cdef object region
    cdef Codec codec
    cdef long owner_pid
    # The one-thread-at-a-time guard (includes/guard.h): CW_GUARD_CALL while a Python call
    # (or a closing thread) holds it, CW_GUARD_NOGIL while a call of the Cython API does;
    # taken by compare-and-swap (or, by the thread bias names, by the handshake of
    # includes/guard.h), so two threads never both get it, GIL or not.  busy_thread
    # is the thread of the Python call that holds it (cw_thread_self()).
    cdef int32_t busy
    cdef uintptr_t busy_thread
    # The thread that takes the guard without a compare-and-swap (its record), or NULL:
    # set by a call of the Cython API, ended by any other taker (includes/guard.h).
    cdef cw_bias_rec *bias
    cdef bint sending
    # close() asked a call in progress to stop; the call closes the end on its way out.
    # Written by the closing thread, read by the call's: atomic (_closing(), _ask_to_close()).
    cdef int32_t closing
    # The end was inherited by a forked child: it belongs to the parent.
    cdef int forked
    cdef readonly str name
    cdef readonly Py_ssize_t message_length
    cdef readonly Py_ssize_t max_queued_messages
    # A byte channel's ring in bytes; None for a slot channel.
    cdef readonly object max_queued_bytes
    cdef readonly Py_ssize_t max_senders
    cdef readonly Py_ssize_t max_receivers
    cdef Py_ssize_t record_size
    # The Cython API's handle of this end (cywhip.capi.handle()); while it is held the
    # end holds a reference to itself, dropped when it closes (never in a forked child,
    # nor when closed by the exit handler: see _drop_handle_reference()).
    cdef cw_handle handle
    cdef bint handle_held
    cdef object __weakref__

    cdef int _open(self, name, message_length, max_queued_messages, int end, object spin_time,
                   object mode, object message_type, object serializer, object deserializer,
                   object max_senders=*, object max_receivers=*, object group=*,
                   object durable=*, object max_queued_bytes=*) except -1
    cdef int _check_open(self) except -1
    cdef int _raise_closed(self) except -1
    cdef int _refuse(self) except -1
    cdef int _wait(self, int64_t deadline) except -1
    cdef int _waited(self, int st) except -1
    cdef int _ready_now(self) except -1
    cdef int _ready_peek(self) except -1
    cdef int _raise_corrupt(self) except -1
    cdef str _group_name(self, cw_group *e)
    cdef list _groups_at(self, uint64_t position)
    cdef Region _attach(self, tuple args)
    cdef int _adopt(self, tuple open_args) except -1
    cdef void _finish_close(self)
    cdef void _drop_handle_reference(self)
    cdef void _abandon(self)
    cdef int _close(self) except -1
    cdef int _close_when_free(self) except -1
    cdef int _open_fd(self) except -1


# _End._waited(): wait again.
cdef enum:
    WAITED_AGAIN = 2


cdef int64_t deadline_ns(object timeout) except -2
cpdef int check_count(object max_count) except -1


cdef inline bint _closing(_End end) noexcept:
    """Whether close() has asked the call in progress to stop."""
    return cw_load_acquire_i32(&end.closing) != 0


cdef inline int _enter(_End end) except -1:
    """Start a call on an end: it must be open, not closing and not in use by another call."""
    if end.region is None or _closing(end) or not cw_guard_take(&end.busy, &end.bias, CW_GUARD_CALL):
        end._refuse()
    end.busy_thread = cw_thread_self()
    if end.region is None or _closing(end):
        # Closed between the check and the guard: give the guard back.
        _leave(end)
        end._raise_closed()
    return 0


cdef inline int _leave(_End end) except -1:
    """End a call; if close() came meanwhile, close now, before giving the guard back (a
    call of the Cython API in another thread may take it the moment it is free)."""
    end.ring.want = 1
    if _closing(end):
        end._finish_close()
    cw_guard_give(&end.busy)
    return 0

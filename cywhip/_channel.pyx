# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Python-facing ends of a channel: Sender, Receiver, WriteBuffer, ReadBuffer.

Nothing here touches a cursor directly: the ring's inline functions do.
Each end is used by one thread at a time (a second concurrent call raises
instead of corrupting the ring); close() from another thread ends a blocked
call.
"""
import atexit
import ctypes
import os
import threading
import weakref

from cpython.buffer cimport (
    PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_WRITABLE, PyBUF_STRIDED, PyBUF_STRIDED_RO,
    PyBUF_FORMAT, PyBUF_ND, PyBUF_STRIDES,
)
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_CheckExact
from cpython.exc cimport PyErr_CheckSignals
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.ref cimport Py_INCREF
from libc.stdint cimport uint32_t, uint64_t, int64_t
from libc.string cimport memcpy

from cywhip._region cimport Region, END_SENDER, END_RECEIVER
from cywhip.includes.c_atomics cimport cw_load_relaxed_u32
from cywhip.includes.c_layout cimport cw_slot_header, CW_SLOT_HEADER_SIZE, CW_HEADER_SIZE, CW_PAGE_SIZE
from libc.errno cimport errno
from posix.mman cimport mmap, munmap, PROT_READ, MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_FAILED

cdef extern from "<sys/mman.h>" nogil:
    enum:
        MAP_ANONYMOUS
from cywhip._ring cimport (
    ring_t, ring_attach, ring_wait, ring_interrupt, monotonic_ns,
    ring_free, ring_write_slot, ring_commit, ring_publish,
    ring_available, ring_read_length, ring_read_slot, ring_consume, ring_release,
    ring_write_records, ring_read_records,
    WAIT_READY, WAIT_TIMEOUT, WAIT_CORRUPT, WAIT_AGAIN, WAIT_STOPPED,
)

from cywhip._region import check_geometry
from cywhip._types import record_type, _numpy as _types_numpy
from cywhip.errors import (
    ChannelClosedError, ChannelCorruptError, MessageTooLongError, ReceiveTimeout, SendTimeout,
)

# Copies at least this long run with the GIL released.
DEF NOGIL_COPY_BYTES = 65536
# Longest accepted timeout or spin, in seconds (keeps nanosecond deadlines in range).
DEF MAX_SECONDS = 1e9

DEFAULT_MAX_QUEUED_MESSAGES = 1024
DEFAULT_SPIN_TIME = 50e-6

# ctypes types whose instances may be written to and read from a message.
# Pointers are left out: an address means nothing in another process.
_CTYPES_BASES = (ctypes.Structure, ctypes.Union, ctypes.Array, ctypes._SimpleCData)


# ------------------------------------------------------------------ fork safety

# Bumped in every child after os.fork(); an end created under another value
# belongs to an ancestor process and refuses to work.
cdef unsigned long _fork_generation = 0
_live_ends = weakref.WeakSet()


def _after_fork_in_child():
    global _fork_generation
    _fork_generation += 1
    for end in list(_live_ends):
        (<_End>end)._abandon()


os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _close_all_at_exit():
    for end in list(_live_ends):
        try:
            end.close()
        except Exception:
            pass


# ---------------------------------------------------------------------- helpers

cdef int64_t _deadline(object timeout) except -2:
    """Absolute CLOCK_MONOTONIC deadline in ns for a timeout in seconds; -1 for None."""
    if timeout is None:
        return -1
    cdef double t
    try:
        t = timeout
    except TypeError:
        raise TypeError(f"timeout must be a number of seconds or None, not {type(timeout).__name__} ({timeout!r})") from None
    if not t >= 0:
        raise ValueError(f"timeout must be a non-negative number of seconds or None, got {timeout!r}")
    if t > MAX_SECONDS:
        t = MAX_SECONDS
    return monotonic_ns() + <int64_t>(t * 1e9)


cdef int64_t _spin_ns(object spin_time) except -1:
    cdef double t
    try:
        t = spin_time
    except TypeError:
        raise TypeError(f"spin_time must be a number of seconds, not {type(spin_time).__name__} ({spin_time!r})") from None
    if not (0 <= t <= 1):
        raise ValueError(f"spin_time must be between 0 and 1 second, got {spin_time!r}")
    return <int64_t>(t * 1e9)


cdef object _check_mode(object mode):
    if isinstance(mode, bool) or not isinstance(mode, int):
        raise TypeError(f"mode must be an int, not {type(mode).__name__} ({mode!r})")
    # An end reads and writes the channel: only the owner (0o600), or the owner and
    # the group (0o660), can ever use it.  0o620 or 0o640 would let no group member open it.
    if mode != 0o600 and mode != 0o660:
        raise ValueError(f"mode must be 0o600 (this user) or 0o660 (this user and the file's "
                         f"group, both read-write), got {mode:#o}")
    return mode


cdef int _check_count(object max_count) except -1:
    if isinstance(max_count, bool) or not isinstance(max_count, int):
        raise TypeError(f"max_count must be an int, not {type(max_count).__name__} ({max_count!r})")
    if max_count < 1:
        raise ValueError(f"max_count must be at least 1, got {max_count}")
    return 0


cdef object _numpy():
    np = _types_numpy()
    if np is None:
        raise ModuleNotFoundError("this needs NumPy: pip install cywhip[numpy]")
    return np


cdef object _check_ctype(object ctype):
    if not (isinstance(ctype, type) and issubclass(ctype, _CTYPES_BASES)):
        raise TypeError(f"expected a ctypes type (Structure, Union, Array or simple type), got {ctype!r}")


# ----------------------------------------------------------------------- buffers

cdef class WriteBuffer:
    """Where a ``message_serializer`` writes one message, straight into its slot.

    Valid only during the serializer call it is passed to.
    """

    def __cinit__(self):
        self.data = NULL
        self.pos = 0
        self.limit = 0

    cdef inline void _lend(self, char *data, Py_ssize_t limit) noexcept:
        self.data = data
        self.pos = 0
        self.limit = limit

    cdef inline Py_ssize_t _take_back(self) noexcept:
        cdef Py_ssize_t n = self.pos
        self.data = NULL
        self.pos = 0
        self.limit = 0
        return n

    cdef int _append(self, const char *src, Py_ssize_t n) except -1:
        if self.data == NULL:
            raise ChannelClosedError("a WriteBuffer is valid only inside the message_serializer call it was passed to")
        if n > self.limit - self.pos:
            raise MessageTooLongError(
                f"writing {n} bytes at offset {self.pos} makes the message {self.pos + n} bytes "
                f"long; message_length is {self.limit}")
        memcpy(self.data + self.pos, src, n)
        self.pos += n
        return 0

    cdef int _append_object(self, object obj, str what) except -1:
        cdef Py_buffer view
        try:
            PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE)
        except (TypeError, BufferError):
            raise TypeError(f"{what} needs a ctypes instance or a contiguous bytes-like object, "
                            f"not {type(obj).__name__}") from None
        try:
            self._append(<const char *>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)
        return 0

    def write(self, obj):
        """Append the bytes of a ctypes instance (structure, array, simple type) or a bytes-like object."""
        if PyBytes_CheckExact(obj):
            self._append(PyBytes_AS_STRING(obj), PyBytes_GET_SIZE(obj))
            return
        if isinstance(obj, ctypes._Pointer):
            raise TypeError(f"cannot write a ctypes pointer ({type(obj).__name__}): an address means nothing in another process")
        self._append_object(obj, "write()")

    def write_bytes(self, data):
        """Append a bytes-like object."""
        self._append_object(data, "write_bytes()")

    @property
    def position(self):
        """Bytes written so far."""
        return self.pos

    @property
    def remaining(self):
        """Bytes that may still be written."""
        return self.limit - self.pos


cdef class ReadBuffer:
    """What a ``message_deserializer`` reads one message from.

    Valid only during the deserializer call it is passed to.
    """

    def __cinit__(self):
        self.data = NULL
        self.pos = 0
        self.length = 0

    cdef inline void _lend(self, const char *data, Py_ssize_t length) noexcept:
        self.data = data
        self.pos = 0
        self.length = length

    cdef inline void _take_back(self) noexcept:
        self.data = NULL
        self.pos = 0
        self.length = 0

    cdef int _check(self, Py_ssize_t n, object what) except -1:
        if self.data == NULL:
            raise ChannelClosedError("a ReadBuffer is valid only inside the message_deserializer call it was passed to")
        if n > self.length - self.pos:
            raise ValueError(f"reading {what} ({n} bytes) at offset {self.pos} runs past the end "
                             f"of the {self.length}-byte message")
        return 0

    def read(self, ctype):
        """Read the next ``sizeof(ctype)`` bytes as a new instance of the ctypes type ``ctype``."""
        cdef Py_buffer view
        _check_ctype(ctype)
        obj = ctype.__new__(ctype)
        PyObject_GetBuffer(obj, &view, PyBUF_WRITABLE)
        try:
            self._check(view.len, ctype.__name__)
            memcpy(view.buf, self.data + self.pos, view.len)
            self.pos += view.len
        finally:
            PyBuffer_Release(&view)
        return obj

    def read_bytes(self, n=None):
        """Read the next ``n`` bytes (all that remain if ``n`` is None) as ``bytes``."""
        cdef Py_ssize_t k
        if n is None:
            k = self.length - self.pos
        else:
            k = n
            if k < 0:
                raise ValueError(f"read_bytes() needs a non-negative count, got {n}")
        self._check(k, "bytes")
        out = PyBytes_FromStringAndSize(self.data + self.pos, k)
        self.pos += k
        return out

    def __len__(self):
        return self.length

    @property
    def position(self):
        """Bytes read so far."""
        return self.pos

    @property
    def remaining(self):
        """Bytes of the message not read yet."""
        return self.length - self.pos


# -------------------------------------------------------------------------- ends

cdef class _End:
    """What a Sender and a Receiver share: the region, the ring, closing, fork safety."""

    def __cinit__(self):
        self.region = None
        self.generation = _fork_generation
        self.owner_pid = os.getpid()
        self.busy = 0
        self.closing = 0
        self.forked = 0

    cdef int _open(self, name, message_length, max_queued_messages, int end,
                   object spin_time, object mode, object message_type) except -1:
        if self.region is not None:
            raise RuntimeError(f"{type(self).__name__} is already open")
        cdef int64_t spin_ns = _spin_ns(spin_time)
        rtype = None
        if message_type is not None:
            rtype = record_type(message_type)
            if message_length is None:
                message_length = rtype.size
            elif message_length != rtype.size:
                raise ValueError(f"message_length={message_length!r} disagrees with message_type "
                                 f"{message_type!r}, whose records are {rtype.size} bytes; "
                                 f"leave message_length out")
        elif message_length is None:
            raise TypeError(f"{type(self).__name__}() needs message_length (the largest message "
                            f"in bytes) or message_type")
        message_length, max_queued_messages = check_geometry(message_length, max_queued_messages)
        cdef Region region = Region.open(name, message_length, max_queued_messages, end,
                                         rtype=rtype, mode=_check_mode(mode))
        if ring_attach(&self.ring, region.hdr, spin_ns) != 0:
            write, read = region.hdr.write_cursor, region.hdr.read_cursor
            region.close()
            raise ChannelCorruptError(
                f"channel {region.name!r} is corrupt: write cursor {write}, read cursor {read}, "
                f"max_queued_messages {max_queued_messages}")
        self.region = region
        self.name = region.name
        self.message_length = message_length
        self.max_queued_messages = max_queued_messages
        self.rtype = rtype
        self.record_size = rtype.size if rtype is not None else 0
        self.ctype = rtype.ctype if rtype is not None else None
        _live_ends.add(self)
        return 0

    cdef int _check_array(self, object arr, str what) except -1:
        """arr must be an array of this channel's records."""
        if self.record_size == 0:
            raise TypeError(f"{what}() needs a typed channel: open the end with message_type=...")
        dt = getattr(arr, "dtype", None)
        if dt is None or not self.rtype.accepts_dtype(dt):
            got = type(arr).__name__ + (f" of dtype {dt}" if dt is not None else "")
            raise TypeError(f"{what}() needs a NumPy array of the channel's records "
                            f"({self.rtype.description}), got {got}")
        return 0

    @property
    def message_type(self):
        """The ctypes type or NumPy dtype of a typed end; None for an untyped one."""
        return self.rtype.source if self.rtype is not None else None

    cdef int _raise_closed(self) except -1:
        kind = type(self).__name__
        if self.forked:
            raise ChannelClosedError(
                f"{kind} {self.name!r} belongs to process {self.owner_pid}; it cannot be used in "
                f"process {os.getpid()}, which was forked from it. Open a new {kind} in the child.")
        if self.region is None and self.name is None:
            raise ChannelClosedError(f"{kind} was never opened")
        raise ChannelClosedError(f"{kind} {self.name!r} is closed")

    cdef int _refuse(self) except -1:
        """Raise for a call that _enter() turned away."""
        if self.region is None or self.generation != _fork_generation or self.closing:
            self._raise_closed()
        raise RuntimeError(
            f"{type(self).__name__} {self.name!r} is already in use by another call; "
            f"an end may be used by one thread at a time")

    cdef int _wait(self, bint sending, int64_t deadline) except -1:
        """Wait for room (sending) or a message; 1 when ready, 0 on timeout."""
        cdef int st
        while True:
            with nogil:
                st = ring_wait(&self.ring, sending, deadline)
            if st == WAIT_READY:
                return 1
            if st == WAIT_TIMEOUT:
                return 0
            if st == WAIT_CORRUPT:
                self._raise_corrupt()
            if st == WAIT_STOPPED:
                self._raise_closed()
            # WAIT_AGAIN: a slice of sleep ended or a signal arrived.
            PyErr_CheckSignals()

    cdef int _raise_corrupt(self) except -1:
        cdef Region region = self.region
        raise ChannelCorruptError(
            f"channel {self.name!r} is corrupt: write cursor {region.hdr.write_cursor}, "
            f"read cursor {region.hdr.read_cursor}, max_queued_messages {self.max_queued_messages}")

    cdef void _finish_close(self):
        region = self.region
        self.region = None
        self.ring.hdr = NULL
        if region is not None:
            region.close()
        _live_ends.discard(self)

    cdef void _abandon(self):
        """In a forked child: drop this process's copy of the mapping without touching shared memory."""
        self.forked = 1
        if self.region is not None:
            (<Region>self.region).unmap()
            self.region = None
            self.ring.hdr = NULL

    cdef int _close(self) except -1:
        """Close now, or, while another call is using the end, stop it and let it close on the way out."""
        if self.region is None:
            return 0
        if self.generation != _fork_generation:
            self._abandon()
            return 0
        if self.busy:
            self.closing = 1
            ring_interrupt(&self.ring)
            return 0
        self._finish_close()
        return 0

    def __enter__(self):
        if self.region is None:
            self._raise_closed()
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def closed(self):
        """True once close() has run (or in a process forked after this end was opened)."""
        return self.region is None or self.generation != _fork_generation

    @property
    def depth(self):
        """Messages in the ring right now (a snapshot)."""
        if self.region is None or self.generation != _fork_generation:
            self._raise_closed()
        cdef Region region = self.region
        return region.hdr.write_cursor - region.hdr.read_cursor

    def __reduce__(self):
        raise TypeError(f"a {type(self).__name__} cannot be pickled or sent to another process; "
                        f"open one there by the channel name ({self.name!r})")

    def __repr__(self):
        state = "closed" if self.closed else "open"
        return (f"<{type(self).__name__} {self.name!r} message_length={self.message_length} "
                f"max_queued_messages={self.max_queued_messages} {state}>")


# ------------------------------------------------------------ entering an end

cdef inline int _enter(_End end) except -1:
    """Start a call on an end: it must be open, ours (not a fork's) and not in use."""
    if end.region is None or end.generation != _fork_generation or end.closing or end.busy:
        end._refuse()
    end.busy = 1
    return 0


cdef inline int _leave(_End end) except -1:
    end.busy = 0
    if end.closing:
        end._finish_close()
    return 0


cdef class Sender(_End):
    """The sending end of channel ``name``.

    ``message_serializer(msg, write_buffer)`` writes a message into its slot;
    without one, messages are bytes-like objects copied as they are.
    """

    def __init__(self, name, message_serializer=None, message_length=None,
                 max_queued_messages=DEFAULT_MAX_QUEUED_MESSAGES, *, message_type=None,
                 spin_time=DEFAULT_SPIN_TIME, mode=0o600):
        if message_serializer is not None and not callable(message_serializer):
            raise TypeError(f"message_serializer must be callable, got {message_serializer!r}")
        if message_serializer is not None and message_type is not None:
            raise TypeError("a typed Sender takes no message_serializer: its records are copied as they are")
        self.serializer = message_serializer
        self.wbuf = WriteBuffer()
        self.publish_every = 0
        self._open(name, message_length, max_queued_messages, END_SENDER, spin_time, mode, message_type)
        # Publish a long send_many() in steps, so the receiver starts early.
        self.publish_every = max(1, min(self.max_queued_messages // 4, 256))

    cdef inline int _put(self, object msg) except -1:
        """Write msg into the slot at the write cursor and commit it (not yet published)."""
        cdef Py_ssize_t n
        if self.serializer is None and PyBytes_CheckExact(msg) and self.record_size == 0:
            n = PyBytes_GET_SIZE(msg)
            if n <= self.message_length and n < NOGIL_COPY_BYTES:
                memcpy(ring_write_slot(&self.ring), PyBytes_AS_STRING(msg), n)
                ring_commit(&self.ring, <uint32_t>n)
                return 0
        return self._put_general(msg)

    cdef int _put_general(self, object msg) except -1:
        """_put() for serializers, other bytes-like objects and long messages."""
        cdef char *slot = ring_write_slot(&self.ring)
        cdef const char *src
        cdef Py_ssize_t n
        cdef Py_buffer view
        cdef WriteBuffer wb
        if self.record_size:
            return self._put_record(msg)
        if self.serializer is not None:
            wb = self.wbuf
            wb._lend(slot, self.message_length)
            try:
                self.serializer(msg, wb)
            finally:
                n = wb._take_back()
        else:
            try:
                PyObject_GetBuffer(msg, &view, PyBUF_SIMPLE)
            except (TypeError, BufferError):
                raise TypeError(f"without a message_serializer, messages must be contiguous "
                                f"bytes-like objects, not {type(msg).__name__}") from None
            try:
                n = view.len
                if n > self.message_length:
                    self._raise_too_long(n)
                src = <const char *>view.buf
                if n < NOGIL_COPY_BYTES:
                    memcpy(slot, src, n)
                else:
                    with nogil:
                        memcpy(slot, src, n)
            finally:
                PyBuffer_Release(&view)
        ring_commit(&self.ring, <uint32_t>n)
        return 0

    cdef int _put_record(self, object msg) except -1:
        """_put() for typed channels: msg must be one record of the channel's type."""
        cdef Py_buffer view
        if self.ctype is not None:
            if not isinstance(msg, self.ctype):
                raise TypeError(f"channel {self.name!r} carries {self.ctype.__name__} records, "
                                f"not {type(msg).__name__}")
        else:
            dt = getattr(msg, "dtype", None)
            if dt is None or getattr(msg, "size", 1) != 1 or not self.rtype.accepts_dtype(dt):
                got = type(msg).__name__ + (f" of dtype {dt}" if dt is not None else "")
                raise TypeError(f"channel {self.name!r} carries single records of dtype {self.rtype.dtype}, "
                                f"got {got}; use send_array() for arrays")
        PyObject_GetBuffer(msg, &view, PyBUF_SIMPLE)
        try:
            if view.len != self.record_size:
                raise TypeError(f"a {type(msg).__name__} of {view.len} bytes is not one "
                                f"{self.record_size}-byte record")
            memcpy(ring_write_slot(&self.ring), view.buf, self.record_size)
        finally:
            PyBuffer_Release(&view)
        ring_commit(&self.ring, <uint32_t>self.record_size)
        return 0

    def send_array(self, arr, timeout=None):
        """Send every record of a 1-D NumPy array of the channel's record type; return how many.

        The array may be strided.  Records are copied straight into the ring
        with the GIL released, published once per run of free slots.  Waits
        while the ring is full; after ``timeout`` seconds raises SendTimeout,
        whose ``sent`` says how many records went out.
        """
        cdef Py_buffer view
        cdef Py_ssize_t i = 0, n, k, stride, chunk
        cdef int64_t free, deadline
        cdef int st = WAIT_READY
        cdef uint32_t size = <uint32_t>self.record_size
        cdef const char *base
        self._check_array(arr, "send_array")
        PyObject_GetBuffer(arr, &view, PyBUF_STRIDED_RO)
        try:
            if view.ndim != 1:
                raise ValueError(f"send_array() needs a 1-D array of records, got shape {arr.shape}")
            n = view.shape[0]
            stride = view.strides[0]
            base = <const char *>view.buf
            chunk = max(1, min(self.max_queued_messages // 4, 4096))
            _enter(self)
            try:
                deadline = _deadline(timeout)
                while i < n:
                    with nogil:
                        while i < n:
                            free = ring_free(&self.ring)
                            if free <= 0:
                                st = ring_wait(&self.ring, True, deadline)
                                if st != WAIT_READY:
                                    break
                                continue
                            k = n - i
                            if k > free:
                                k = free
                            if k > chunk:
                                k = chunk
                            ring_write_records(&self.ring, base + i * stride, stride, k, size)
                            ring_publish(&self.ring)
                            i += k
                    if i < n:
                        if st == WAIT_TIMEOUT:
                            raise SendTimeout(f"channel {self.name!r} stayed full for {timeout} s; "
                                              f"{i} of {n} records were sent", sent=i)
                        if st == WAIT_CORRUPT:
                            self._raise_corrupt()
                        if st == WAIT_STOPPED:
                            self._raise_closed()
                        PyErr_CheckSignals()
                return n
            finally:
                _leave(self)
        finally:
            PyBuffer_Release(&view)

    cdef int _raise_too_long(self, Py_ssize_t n) except -1:
        raise MessageTooLongError(f"message is {n} bytes, longer than message_length={self.message_length} "
                                  f"of channel {self.name!r}")

    def send(self, msg, timeout=None):
        """Send one message; wait while the ring is full (raise SendTimeout, a queue.Full, after timeout seconds)."""
        _enter(self)
        try:
            if ring_free(&self.ring) <= 0:
                if not self._wait(True, _deadline(timeout)):
                    raise SendTimeout(f"channel {self.name!r} stayed full "
                                      f"({self.max_queued_messages} messages queued) for {timeout} s")
            self._put(msg)
            ring_publish(&self.ring)
        finally:
            _leave(self)

    def try_send(self, msg):
        """Send one message if there is room right now; return whether it was sent."""
        cdef int64_t free
        _enter(self)
        try:
            free = ring_free(&self.ring)
            if free < 0:
                self._raise_corrupt()
            if free == 0:
                return False
            self._put(msg)
            ring_publish(&self.ring)
            return True
        finally:
            _leave(self)

    def send_many(self, messages, timeout=None):
        """Send every message of an iterable, publishing in batches; return how many were sent.

        Waits while the ring is full.  If ``timeout`` seconds pass first, raises
        SendTimeout whose ``sent`` says how many went out.  If the serializer
        raises, the messages before the failing one are sent.
        """
        cdef int64_t free
        cdef Py_ssize_t pending = 0, sent = 0
        cdef Py_ssize_t publish_every = self.publish_every
        cdef int64_t deadline = -1
        cdef bint have_deadline = False
        _enter(self)
        try:
            free = ring_free(&self.ring)
            for msg in messages:
                if free <= 0:
                    if pending:
                        ring_publish(&self.ring)
                        pending = 0
                    free = ring_free(&self.ring)
                    if free <= 0:
                        if not have_deadline:
                            deadline = _deadline(timeout)
                            have_deadline = True
                        if not self._wait(True, deadline):
                            raise SendTimeout(
                                f"channel {self.name!r} stayed full ({self.max_queued_messages} messages "
                                f"queued) for {timeout} s; {sent} messages of this call were sent",
                                sent=sent)
                        free = ring_free(&self.ring)
                self._put(msg)
                free -= 1
                sent += 1
                pending += 1
                if pending >= publish_every:
                    ring_publish(&self.ring)
                    pending = 0
            return sent
        finally:
            if pending:
                ring_publish(&self.ring)
            _leave(self)

    @property
    def published(self):
        """Messages ever published on this channel (its write cursor).

        A restarted sender can resume a numbered stream from here: every
        message below it reached the ring, none above it did.
        """
        if self.region is None or self.generation != _fork_generation:
            self._raise_closed()
        return self.ring.write

    def close(self):
        """Close this end.  Queued messages stay in the channel for a receiver."""
        self._close()


cdef class Receiver(_End):
    """The receiving end of channel ``name``.

    With ``on_message``, a background thread calls ``on_message(msg)`` for
    each message in order; otherwise call ``recv()``, ``try_recv()``,
    ``recv_many()`` or iterate.  ``message_deserializer(read_buffer)``
    builds a message; without one, messages arrive as ``bytes``.
    """

    def __init__(self, name, message_deserializer=None, message_length=None,
                 max_queued_messages=DEFAULT_MAX_QUEUED_MESSAGES, on_message=None, *,
                 message_type=None, on_batch=None, on_error=None,
                 spin_time=DEFAULT_SPIN_TIME, mode=0o600):
        for what, fn in (("message_deserializer", message_deserializer), ("on_message", on_message),
                         ("on_batch", on_batch), ("on_error", on_error)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{what} must be callable, got {fn!r}")
        if on_message is not None and on_batch is not None:
            raise TypeError("give on_message or on_batch, not both")
        if on_error is not None and on_message is None and on_batch is None:
            raise TypeError("on_error applies only to a Receiver with on_message or on_batch")
        if message_deserializer is not None and message_type is not None:
            raise TypeError("a typed Receiver takes no message_deserializer: its records are built directly")
        self.deserializer = message_deserializer
        self.on_message = on_message
        self.on_batch = on_batch
        self.on_error = on_error
        self.rbuf = ReadBuffer()
        self.thread = None
        self.error = None
        self._open(name, message_length, max_queued_messages, END_RECEIVER, spin_time, mode, message_type)
        if on_message is not None or on_batch is not None:
            self.busy = 1
            self.thread = threading.Thread(target=self._run, name=f"cywhip-receiver-{self.name}",
                                           daemon=True)
            self.thread.start()

    cdef object _take(self):
        """Build the message at the read cursor (caller saw one available); does not consume it."""
        cdef int64_t n = ring_read_length(&self.ring)
        cdef const char *slot = ring_read_slot(&self.ring)
        cdef char *dst
        cdef ReadBuffer rb
        if n < 0:
            raise ChannelCorruptError(
                f"channel {self.name!r} is corrupt: the message at cursor {self.ring.read} claims a "
                f"length over message_length={self.message_length}")
        if self.record_size:
            return self._take_record(n, slot)
        if self.deserializer is None:
            if n < NOGIL_COPY_BYTES:
                return PyBytes_FromStringAndSize(slot, n)
            out = PyBytes_FromStringAndSize(NULL, n)
            dst = PyBytes_AS_STRING(out)
            with nogil:
                memcpy(dst, slot, n)
            return out
        rb = self.rbuf
        rb._lend(slot, n)
        try:
            return self.deserializer(rb)
        finally:
            rb._take_back()

    cdef object _take_record(self, int64_t n, const char *slot):
        """One record of a typed channel as a ctypes instance or a NumPy record."""
        cdef Py_buffer view
        if n != self.record_size:
            self._raise_bad_record(n)
        if self.ctype is not None:
            out = self.ctype.__new__(self.ctype)
        else:
            out = _numpy().empty(1, self.rtype.dtype)
        PyObject_GetBuffer(out, &view, PyBUF_WRITABLE)
        memcpy(view.buf, slot, n)
        PyBuffer_Release(&view)
        return out if self.ctype is not None else out[0]

    cdef int _raise_corrupt_length(self, int64_t n) except -1:
        raise ChannelCorruptError(
            f"channel {self.name!r} is corrupt: the message at cursor {self.ring.read} claims "
            f"{n} bytes, over message_length={self.message_length}")

    cdef int _raise_bad_record(self, int64_t n) except -1:
        raise ChannelCorruptError(
            f"channel {self.name!r} is corrupt: the message at cursor {self.ring.read} is {n} bytes, "
            f"but its records are {self.record_size} bytes")

    cdef int64_t _await(self, object timeout) except -1:
        """Wait for at least one message; return how many are waiting."""
        cdef int64_t avail = ring_available(&self.ring)
        if avail > 0:
            return avail
        if not self._wait(False, _deadline(timeout)):
            raise ReceiveTimeout(f"no message arrived on channel {self.name!r} within {timeout} s")
        return ring_available(&self.ring)

    cdef Py_ssize_t _copy_records(self, char *dst, Py_ssize_t stride, Py_ssize_t k) except -1:
        """Take k waiting records into dst (GIL released); a wrong-sized slot stops the run."""
        cdef Py_ssize_t got
        cdef uint32_t size = <uint32_t>self.record_size
        with nogil:
            got = ring_read_records(&self.ring, dst, stride, k, size)
        if got:
            self._release()
        else:
            self._raise_bad_record(ring_read_length(&self.ring))
        return got

    def recv_into(self, out, timeout=None):
        """Fill a 1-D NumPy array of the channel's records with waiting records; return how many.

        Waits for at least one; takes as many as are waiting and fit, copied
        with the GIL released.
        """
        cdef Py_buffer view
        cdef Py_ssize_t room
        self._check_array(out, "recv_into")
        try:
            PyObject_GetBuffer(out, &view, PyBUF_STRIDED | PyBUF_WRITABLE)
        except (BufferError, ValueError):
            raise ValueError("recv_into() needs a writable array") from None
        try:
            if view.ndim != 1:
                raise ValueError(f"recv_into() needs a 1-D array of records, got shape {out.shape}")
            room = view.shape[0]
            if room < 1:
                raise ValueError("recv_into() needs room for at least one record, got an empty array")
            self._enter_pull()
            try:
                room = min(room, self._await(timeout))
                return self._copy_records(<char *>view.buf, view.strides[0], room)
            finally:
                _leave(self)
        finally:
            PyBuffer_Release(&view)

    def recv_array(self, max_count, timeout=None):
        """Wait for at least one record, then take all waiting up to ``max_count`` as a new NumPy array."""
        cdef Py_buffer view
        cdef Py_ssize_t k, got
        if self.record_size == 0:
            raise TypeError("recv_array() needs a typed channel: open the end with message_type=...")
        _check_count(max_count)
        np = _numpy()
        dtype = self.rtype.dtype
        self._enter_pull()
        try:
            k = min(max_count, self._await(timeout))
            out = np.empty(k, dtype)
            PyObject_GetBuffer(out, &view, PyBUF_STRIDED | PyBUF_WRITABLE)
            try:
                got = self._copy_records(<char *>view.buf, view.strides[0], k)
            finally:
                PyBuffer_Release(&view)
            return out if got == k else out[:got]
        finally:
            _leave(self)

    def borrow(self, max_count=None, timeout=None):
        """Lend waiting messages without copying: ``with receiver.borrow(n) as batch: ...``.

        ``batch`` is a read-only NumPy array over the ring for NumPy channels,
        else a list of read-only memoryviews, one per message.  Entering waits
        for at least one message and lends up to ``max_count`` (at most up to
        the ring's end).  The messages are taken when the block exits.  Then
        the memoryviews lent are released, so using them raises ValueError;
        an array (which NumPy cannot revoke), or anything derived from the
        views, reads zeros from then on -- never slots the sender may be
        rewriting.  A borrow costs three system calls (a private mapping of
        the lent slots), so it pays off for large batches.
        """
        if max_count is not None:
            _check_count(max_count)
        return _Lease(self, max_count, timeout)

    cdef inline void _release(self) noexcept:
        """Hand taken messages back to the sender."""
        ring_release(&self.ring)

    cdef list _take_bytes(self, Py_ssize_t k):
        """Consume k available messages (k >= 1) as a list of bytes."""
        cdef list out = PyList_New(k)
        cdef Py_ssize_t i
        cdef int64_t n
        cdef object b
        for i in range(k):
            n = ring_read_length(&self.ring)
            if n < 0 or n >= NOGIL_COPY_BYTES:
                b = self._take()
            else:
                b = PyBytes_FromStringAndSize(ring_read_slot(&self.ring), n)
            Py_INCREF(b)
            PyList_SET_ITEM(out, i, b)
            ring_consume(&self.ring)
        return out

    cdef int _enter_pull(self) except -1:
        if self.thread is not None:
            if self.region is None or self.generation != _fork_generation:
                self._raise_closed()
            raise RuntimeError(f"Receiver {self.name!r} delivers its messages to on_message/on_batch; "
                               f"recv() and friends are for a Receiver without them")
        return _enter(self)

    def recv(self, timeout=None):
        """Take the next message; wait for one (raise ReceiveTimeout, a queue.Empty, after timeout seconds)."""
        self._enter_pull()
        try:
            if ring_available(&self.ring) <= 0:
                if not self._wait(False, _deadline(timeout)):
                    raise ReceiveTimeout(f"no message arrived on channel {self.name!r} within {timeout} s")
            msg = self._take()
            ring_consume(&self.ring)
            self._release()
            return msg
        finally:
            _leave(self)

    def try_recv(self):
        """Take the next message if one is waiting, else return None."""
        cdef int64_t avail
        self._enter_pull()
        try:
            avail = ring_available(&self.ring)
            if avail < 0:
                self._raise_corrupt()
            if avail == 0:
                return None
            msg = self._take()
            ring_consume(&self.ring)
            self._release()
            return msg
        finally:
            _leave(self)

    def recv_many(self, max_count, timeout=None):
        """Wait for at least one message, then take all that are waiting, up to ``max_count``; return a list.

        If the deserializer raises after some messages were built, those are
        returned and the failing message stays first in line.
        """
        cdef Py_ssize_t k, i, limit
        cdef int64_t avail
        cdef list out
        _check_count(max_count)
        limit = min(max_count, self.max_queued_messages)
        self._enter_pull()
        try:
            avail = ring_available(&self.ring)
            if avail <= 0:
                if not self._wait(False, _deadline(timeout)):
                    raise ReceiveTimeout(f"no message arrived on channel {self.name!r} within {timeout} s")
                avail = ring_available(&self.ring)
            k = avail if avail < limit else limit
            if self.deserializer is None and self.record_size == 0:
                return self._take_bytes(k)
            out = []
            for i in range(k):
                try:
                    msg = self._take()
                except Exception:
                    if i == 0:
                        raise
                    break
                out.append(msg)
                ring_consume(&self.ring)
            return out
        finally:
            self._release()
            _leave(self)

    def __iter__(self):
        return self

    def __next__(self):
        """The next message, waiting as long as it takes; stops when the receiver is closed."""
        try:
            return self.recv()
        except ChannelClosedError:
            if self.closed or self.closing:
                raise StopIteration from None
            raise

    def _run(self):
        """The on_message thread: wait with the GIL released, deliver, release one message at a time."""
        cdef int64_t avail
        cdef int st
        try:
            while not self.ring.stop:
                avail = ring_available(&self.ring)
                if avail == 0:
                    with nogil:
                        st = ring_wait(&self.ring, False, -1)
                    if st == WAIT_CORRUPT:
                        self._raise_corrupt()
                    continue
                if avail < 0:
                    self._raise_corrupt()
                if self.on_batch is not None:
                    self._deliver_batch(avail)
                    continue
                try:
                    self.on_message(self._take())
                except Exception as exc:
                    if self.on_error is None:
                        raise
                    # The error hook has seen it: the message counts as taken.
                    self.on_error(exc)
                ring_consume(&self.ring)
                self._release()
        except BaseException as exc:
            # The message that failed stays in the ring for the next receiver;
            # close() re-raises the error in the caller.
            self.error = exc
        finally:
            self.busy = 0
            if self.closing:
                self._finish_close()

    cdef int _deliver_batch(self, int64_t avail) except -1:
        """Build everything waiting into one batch and hand it to on_batch; take it once that returns."""
        cdef uint64_t read = self.ring.read, read_index = self.ring.read_index
        cdef Py_ssize_t k = min(avail, self.max_queued_messages)
        cdef Py_ssize_t i
        cdef Py_buffer view
        try:
            if self.rtype is not None and self.rtype.kind == "numpy":
                batch = _numpy().empty(k, self.rtype.dtype)
                PyObject_GetBuffer(batch, &view, PyBUF_STRIDED | PyBUF_WRITABLE)
                try:
                    with nogil:
                        k = ring_read_records(&self.ring, <char *>view.buf, view.strides[0], k,
                                              <uint32_t>self.record_size)
                finally:
                    PyBuffer_Release(&view)
                if k == 0:
                    self._raise_bad_record(ring_read_length(&self.ring))
                batch = batch[:k]
            elif self.deserializer is None and self.record_size == 0:
                batch = self._take_bytes(k)
            else:
                batch = []
                for i in range(k):
                    batch.append(self._take())
                    ring_consume(&self.ring)
            self.on_batch(batch)
        except Exception as exc:
            if self.on_error is None:
                # Nothing of the batch is taken: it is delivered again to the next receiver.
                self.ring.read = read
                self.ring.read_index = read_index
                raise
            self.on_error(exc)
        self._release()
        return 0

    @property
    def taken(self):
        """Messages ever taken from this channel (its read cursor)."""
        if self.region is None or self.generation != _fork_generation:
            self._raise_closed()
        return (<Region>self.region).hdr.read_cursor

    @property
    def running(self):
        """True while the on_message thread is delivering messages."""
        return self.thread is not None and self.thread.is_alive()

    @property
    def exception(self):
        """The error that stopped the on_message thread, if one did."""
        return self.error

    def close(self):
        """Close this end; stop and join the on_message thread.

        Messages not yet taken stay in the channel for the next receiver.  If
        the on_message thread stopped on an error, close() raises it.
        """
        thread = self.thread
        if thread is not None and self.region is not None and self.generation == _fork_generation:
            self.closing = 1
            ring_interrupt(&self.ring)
            if thread is not threading.current_thread():
                thread.join()
            if not self.busy:
                # The thread has ended (perhaps long ago, on an error).
                self._finish_close()
        else:
            self._close()
        err = self.error
        if err is not None:
            self.error = None
            raise err


cdef class _Lease:
    """The context manager borrow() returns: lends waiting messages in place, takes them on exit.

    The messages are lent through a read-only mapping of just their pages,
    made for this lease.  On exit that mapping is replaced, in one mmap call,
    by zero pages, and only then are the messages handed back to the sender:
    a view kept past the block can never read a slot being rewritten, nor
    memory that is gone.
    """

    def __cinit__(self, Receiver receiver, object max_count, object timeout):
        self.receiver = receiver
        self.max_count = max_count
        self.timeout = timeout
        self.map = NULL
        self.map_size = 0
        self.base = NULL
        self.count = 0
        self.span = 0
        self.one = 1
        self.entered = 0
        self.exited = 0
        self.views = None

    def __dealloc__(self):
        if self.map != NULL:
            munmap(self.map, self.map_size)

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        if self.base == NULL or self.exited:
            raise ValueError("these borrowed messages were already taken; use them inside the with block")
        if flags & PyBUF_WRITABLE:
            raise BufferError("borrowed messages are read-only")
        buffer.buf = <void *>self.base
        buffer.obj = self
        buffer.len = self.span
        buffer.readonly = 1
        buffer.itemsize = 1
        buffer.format = NULL
        if flags & PyBUF_FORMAT:
            buffer.format = b"B"
        buffer.ndim = 1
        buffer.shape = &self.span if flags & PyBUF_ND else NULL
        buffer.strides = &self.one if flags & PyBUF_STRIDES else NULL
        buffer.suboffsets = NULL
        buffer.internal = NULL

    def __enter__(self):
        cdef Receiver r = self.receiver
        cdef Region region
        cdef Py_ssize_t k, i, slot_size, offset, first
        cdef int64_t n
        cdef void *m
        if self.entered:
            raise RuntimeError("a borrow() can be entered once")
        r._enter_pull()
        try:
            k = r._await(self.timeout)
            if self.max_count is not None and k > self.max_count:
                k = self.max_count
            # One contiguous run of slots: stop at the end of the ring.
            if <uint64_t>k > r.ring.capacity - r.ring.read_index:
                k = r.ring.capacity - r.ring.read_index
            slot_size = r.ring.slot_size
            lengths = []
            for i in range(k):
                n = cw_load_relaxed_u32(&(<cw_slot_header *>(
                    r.ring.slots + (r.ring.read_index + i) * slot_size)).length)
                if n > r.message_length or (r.record_size and n != r.record_size):
                    if i == 0:
                        if r.record_size:
                            r._raise_bad_record(n)
                        r._raise_corrupt_length(n)
                    k = i
                    break
                lengths.append(n)
            region = r.region
            first = CW_HEADER_SIZE + r.ring.read_index * slot_size + CW_SLOT_HEADER_SIZE
            offset = first % CW_PAGE_SIZE
            self.span = (k - 1) * slot_size + r.message_length
            self.map_size = (offset + self.span + CW_PAGE_SIZE - 1) // CW_PAGE_SIZE * CW_PAGE_SIZE
            m = mmap(NULL, self.map_size, PROT_READ, MAP_SHARED, region.fd, first - offset)
            if m == MAP_FAILED:
                raise OSError(errno, f"cannot map borrowed messages of channel {r.name!r}")
            self.map = m
            self.base = <const char *>m + offset
            self.count = k
            whole = memoryview(self)
            if r.rtype is not None and r.rtype.kind == "numpy":
                batch = _numpy().ndarray((k,), r.rtype.dtype, buffer=whole, strides=(slot_size,))
                self.views = [whole]
            else:
                batch = [whole[i * slot_size:i * slot_size + lengths[i]] for i in range(k)]
                self.views = [whole] + batch
            self.entered = 1
            return batch
        except BaseException:
            self.base = NULL
            _leave(r)
            raise

    def __exit__(self, *exc):
        cdef Receiver r = self.receiver
        cdef uint64_t index
        cdef void *m
        if not self.entered or self.exited:
            return
        self.exited = 1
        for view in self.views:
            try:
                view.release()
            except BufferError:
                pass   # a view derived from it lives on; it will read zeros
        self.views = None
        # Zero pages over the lent ones, in one step, before the sender may
        # rewrite the slots.  Should that fail, dropping the mapping is the
        # safe fallback: the sender's writes can then never be seen.
        m = mmap(self.map, self.map_size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
        if m == MAP_FAILED:
            munmap(self.map, self.map_size)
            self.map = NULL
        if r.region is not None and r.generation == _fork_generation:
            index = r.ring.read_index + self.count
            r.ring.read += self.count
            r.ring.read_index = 0 if index == r.ring.capacity else index
            r._release()
        _leave(r)

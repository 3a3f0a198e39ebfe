# cython: language_level=3
"""Each call of cywhip's Cython API, reachable from Python for tests/test_capi.py.

Built by the tests as a user's module is (cimport cywhip.capi, cywhip.get_include()).  Every
wrapper takes the end, gets its handle and makes one call with the GIL released; it returns
the call's status (and what it produced).
"""
from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy

from cywhip cimport capi

STATUS = {
    capi.OK: "OK", capi.TIMEOUT: "TIMEOUT", capi.FULL: "FULL", capi.EMPTY: "EMPTY",
    capi.CLOSED: "CLOSED", capi.TOO_LONG: "TOO_LONG", capi.CORRUPT: "CORRUPT",
    capi.INTERRUPTED: "INTERRUPTED", capi.BUSY: "BUSY", capi.WRONG_LENGTH: "WRONG_LENGTH",
    capi.WRONG_END: "WRONG_END",
}
API_VERSION = capi.API_VERSION


def handle_address(end):
    """The handle's address (the same for every call on one end).  Every wrapper below takes
    an end, or such an address: a handle kept from before its end closed."""
    return <size_t>capi.handle(end)


cdef capi.Handle *_h(end) except NULL:
    if isinstance(end, int):
        return <capi.Handle *><size_t>end
    return capi.handle(end)


def send(end, bytes data, int64_t timeout_ns=-1):
    cdef capi.Handle *h = _h(end)
    cdef const char *p = data
    cdef size_t n = len(data)
    cdef int st
    with nogil:
        st = capi.send(h, p, n, timeout_ns)
    return STATUS[st]


def try_send(end, bytes data):
    cdef capi.Handle *h = _h(end)
    cdef const char *p = data
    cdef size_t n = len(data)
    cdef int st
    with nogil:
        st = capi.try_send(h, p, n)
    return STATUS[st]


def send_records(end, bytes data, size_t count, size_t stride, int64_t timeout_ns=-1):
    """Send count records taken every stride bytes of data; return (status, sent)."""
    cdef capi.Handle *h = _h(end)
    cdef const char *p = data
    cdef size_t sent = 12345
    cdef int st
    if count and (count - 1) * stride >= <size_t>len(data):
        raise ValueError("data is too short for count records")
    with nogil:
        st = capi.send_records(h, p, count, stride, &sent, timeout_ns)
    return STATUS[st], sent


def recv(end, size_t capacity, int64_t timeout_ns=-1):
    """Return (status, n, the bytes copied out, or None unless OK)."""
    cdef capi.Handle *h = _h(end)
    cdef char *buf = <char *>malloc(capacity + 1)
    cdef size_t n = 12345
    cdef int st
    if buf == NULL:
        raise MemoryError()
    try:
        with nogil:
            st = capi.recv(h, buf, capacity, &n, timeout_ns)
        return STATUS[st], n, buf[:n] if st == capi.OK else None
    finally:
        free(buf)


def try_recv(end, size_t capacity):
    cdef capi.Handle *h = _h(end)
    cdef char *buf = <char *>malloc(capacity + 1)
    cdef size_t n = 12345
    cdef int st
    if buf == NULL:
        raise MemoryError()
    try:
        with nogil:
            st = capi.try_recv(h, buf, capacity, &n)
        return STATUS[st], n, buf[:n] if st == capi.OK else None
    finally:
        free(buf)


def recv_records(end, size_t max_count, size_t stride, int64_t timeout_ns=-1):
    """Return (status, got, the got * stride bytes filled)."""
    cdef capi.Handle *h = _h(end)
    cdef char *buf = <char *>malloc(max_count * stride + 1)
    cdef size_t got = 12345
    cdef int st
    if buf == NULL:
        raise MemoryError()
    try:
        with nogil:
            st = capi.recv_records(h, buf, max_count, stride, &got, timeout_ns)
        return STATUS[st], got, buf[:got * stride]
    finally:
        free(buf)


def send_numbered(end, int64_t first, int64_t count, size_t size=8):
    """Send count messages of size bytes carrying first, first + 1, ... in their first 8 bytes,
    one capi.send() each, in one nogil loop; return (status, how many were sent)."""
    cdef capi.Handle *h = _h(end)
    cdef char buf[64]
    cdef int64_t i = 0, v
    cdef int st = capi.OK
    if not 8 <= size <= 64:
        raise ValueError("size must be 8 to 64")
    with nogil:
        while i < count:
            v = first + i
            memcpy(buf, &v, 8)
            st = capi.send(h, buf, size, -1)
            if st != capi.OK:
                break
            i += 1
    return STATUS[st], i


def recv_numbers(end, int64_t count):
    """Receive count messages, one capi.recv() each, in one nogil loop; return (status, the
    numbers in their first 8 bytes, as one bytes object of native int64s)."""
    cdef capi.Handle *h = _h(end)
    cdef int64_t *out = <int64_t *>malloc(<size_t>count * 8 + 8)
    cdef char buf[64]
    cdef size_t n
    cdef int64_t i = 0
    cdef int st = capi.OK
    if out == NULL:
        raise MemoryError()
    try:
        with nogil:
            while i < count:
                st = capi.recv(h, buf, sizeof(buf), &n, -1)
                if st != capi.OK:
                    break
                memcpy(&out[i], buf, 8)
                i += 1
        return STATUS[st], (<char *>out)[:i * 8]
    finally:
        free(out)


def send_numbered_busy(end, int64_t first, int64_t count, int64_t timeout_ns=-1):
    """As send_numbered() with 8-byte messages, but a send that finds the end BUSY (another
    thread's call holds it) is tried again; return (status, how many were sent, BUSY count)."""
    cdef capi.Handle *h = _h(end)
    cdef int64_t i = 0, v, busy = 0
    cdef int st = capi.OK
    with nogil:
        while i < count:
            v = first + i
            st = capi.send(h, &v, 8, timeout_ns)
            if st == capi.BUSY:
                busy += 1
                continue
            if st != capi.OK:
                break
            i += 1
    return STATUS[st], i, busy

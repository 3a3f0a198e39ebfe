# cython: language_level=3
"""Benchmark loops through cywhip's Cython API.

Not compiled with cywhip: cywhip._bench.capi builds it when a benchmark needs
it, the way a user's module is built (cimport cywhip.capi, cywhip.get_include()).
Every message carries its number in its first 8 bytes, and the receiving loops
check every one.
"""
from cpython.exc cimport PyErr_CheckSignals
from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memset
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from cywhip cimport capi

cdef enum:
    MAX_SIZE = 256      # bytes per message
    MAX_BLOCK = 4096    # messages per block


cdef inline int64_t _now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1_000_000_000 + ts.tv_nsec


cdef int _check(int status, str what) except -1:
    if status == capi.INTERRUPTED:
        PyErr_CheckSignals()
    elif status != capi.OK:
        raise RuntimeError(f"capi.{what}() returned status {status}")
    return 0


def send_each(sender, int64_t count, int size):
    """Send count messages of size bytes, one capi.send() each."""
    cdef capi.Handle *h = capi.handle(sender)
    cdef char buf[MAX_SIZE]
    cdef int64_t i = 0
    cdef int status = capi.OK
    if not 8 <= size <= MAX_SIZE:
        raise ValueError(f"size must be 8 to {MAX_SIZE}")
    memset(buf, 7, sizeof(buf))
    while i < count:
        with nogil:
            while i < count:
                (<int64_t *>buf)[0] = i
                status = capi.send(h, buf, <size_t>size, -1)
                if status != capi.OK:
                    break
                i += 1
        _check(status, "send")
    return i


def recv_each(receiver, int64_t count, int size):
    """Receive count messages, one capi.recv() each, checking each one's number.

    Returns (seconds from the first message to the last, messages that were wrong).
    """
    cdef capi.Handle *h = capi.handle(receiver)
    cdef char buf[MAX_SIZE]
    cdef size_t n
    cdef int64_t i = 0, wrong = 0, start = 0
    cdef int status = capi.OK
    if not 8 <= size <= MAX_SIZE:
        raise ValueError(f"size must be 8 to {MAX_SIZE}")
    while i < count:
        with nogil:
            while i < count:
                status = capi.recv(h, buf, sizeof(buf), &n, -1)
                if status != capi.OK:
                    break
                if i == 0:
                    start = _now_ns()
                if n != <size_t>size or (<int64_t *>buf)[0] != i:
                    wrong += 1
                i += 1
        _check(status, "recv")
    return (_now_ns() - start) / 1e9, wrong


def send_blocks(sender, int64_t count, int size, int block):
    """Send count messages of size bytes, block of them per capi.send_records()."""
    cdef capi.Handle *h = capi.handle(sender)
    cdef char *buf
    cdef int64_t i = 0
    cdef size_t j, k, sent
    cdef int status = capi.OK
    if not 8 <= size <= MAX_SIZE or not 1 <= block <= MAX_BLOCK:
        raise ValueError("bad size or block")
    buf = <char *>malloc(<size_t>size * block)
    if buf == NULL:
        raise MemoryError()
    try:
        memset(buf, 7, <size_t>size * block)
        while i < count:
            with nogil:
                while i < count:
                    k = <size_t>(count - i) if count - i < block else <size_t>block
                    for j in range(k):
                        (<int64_t *>(buf + j * size))[0] = i + <int64_t>j
                    status = capi.send_records(h, buf, k, <size_t>size, &sent, -1)
                    i += <int64_t>sent
                    if status != capi.OK:
                        break
            _check(status, "send_records")
    finally:
        free(buf)
    return i


def recv_blocks(receiver, int64_t count, int size, int block):
    """Receive count messages of size bytes, up to block per capi.recv_records(), checking each.

    Returns (seconds from the first message to the last, messages that were wrong).
    """
    cdef capi.Handle *h = capi.handle(receiver)
    cdef char *buf
    cdef int64_t i = 0, wrong = 0, start = 0
    cdef size_t j, got
    cdef int status = capi.OK
    if not 8 <= size <= MAX_SIZE or not 1 <= block <= MAX_BLOCK:
        raise ValueError("bad size or block")
    buf = <char *>malloc(<size_t>size * block)
    if buf == NULL:
        raise MemoryError()
    try:
        while i < count:
            with nogil:
                while i < count:
                    status = capi.recv_records(h, buf, <size_t>block, <size_t>size, &got, -1)
                    if status != capi.OK:
                        break
                    if i == 0:
                        start = _now_ns()
                    for j in range(got):
                        if (<int64_t *>(buf + j * size))[0] != i + <int64_t>j:
                            wrong += 1
                    i += <int64_t>got
            _check(status, "recv_records")
    finally:
        free(buf)
    return (_now_ns() - start) / 1e9, wrong

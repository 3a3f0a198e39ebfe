# examples/capi/consumer.pyx
# cython: language_level=3
from cpython.exc cimport PyErr_CheckSignals
from libc.stdint cimport int64_t
from cywhip cimport capi

cdef struct Tick:
    int64_t seq
    double price


cdef inline bint wrong(const Tick *tick, int64_t seq) noexcept nogil:
    return tick.seq != seq or tick.price != 100.0 + 0.25 * (seq % 1000)


def consume(receiver, int64_t count):
    """Take count ticks, one capi.recv() each, checking every one; return how many were wrong."""
    cdef capi.Handle *h = capi.handle(receiver)
    cdef Tick tick
    cdef size_t n
    cdef int64_t i = 0, bad = 0
    cdef int status = capi.OK
    while i < count:
        with nogil:
            while i < count:
                status = capi.recv(h, &tick, sizeof(tick), &n, -1)   # -1: wait for a message
                if status != capi.OK:
                    break
                if n != sizeof(tick) or wrong(&tick, i):
                    bad += 1
                i += 1
        if status == capi.INTERRUPTED:
            PyErr_CheckSignals()
        elif status != capi.OK:
            raise RuntimeError(f"capi.recv() returned status {status}")
    return bad


def consume_blocks(receiver, int64_t count):
    """The same, taking up to 256 waiting ticks per capi.recv_records()."""
    cdef capi.Handle *h = capi.handle(receiver)
    cdef Tick block[256]
    cdef int64_t i = 0, bad = 0
    cdef size_t j, got
    cdef int status = capi.OK
    while i < count:
        with nogil:
            while i < count:
                status = capi.recv_records(h, block, 256, sizeof(Tick), &got, -1)
                if status != capi.OK:
                    break
                for j in range(got):
                    if wrong(&block[j], i + <int64_t>j):
                        bad += 1
                i += <int64_t>got
        if status == capi.INTERRUPTED:
            PyErr_CheckSignals()
        elif status != capi.OK:
            raise RuntimeError(f"capi.recv_records() returned status {status}")
    return bad

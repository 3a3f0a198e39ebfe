# examples/capi/producer.pyx
# cython: language_level=3
from cpython.exc cimport PyErr_CheckSignals
from libc.stdint cimport int64_t
from cywhip cimport capi

cdef struct Tick:
    int64_t seq
    double price


cdef inline void fill(Tick *tick, int64_t seq) noexcept nogil:
    tick.seq = seq
    tick.price = 100.0 + 0.25 * (seq % 1000)


def produce(sender, int64_t count):
    """Send ticks 0 .. count - 1, one capi.send() each, from a loop that never holds the GIL."""
    cdef capi.Handle *h = capi.handle(sender)
    cdef Tick tick
    cdef int64_t i = 0
    cdef int status = capi.OK
    while i < count:
        with nogil:
            while i < count:
                fill(&tick, i)
                status = capi.send(h, &tick, sizeof(tick), -1)   # -1: wait while the ring is full
                if status != capi.OK:
                    break
                i += 1
        if status == capi.INTERRUPTED:
            PyErr_CheckSignals()       # a signal came while it waited: run Python's handlers
        elif status != capi.OK:
            raise RuntimeError(f"capi.send() returned status {status}")
    return i


def produce_blocks(sender, int64_t count):
    """The same ticks, 256 per capi.send_records()."""
    cdef capi.Handle *h = capi.handle(sender)
    cdef Tick block[256]
    cdef int64_t i = 0
    cdef size_t j, k, sent
    cdef int status = capi.OK
    while i < count:
        with nogil:
            while i < count:
                k = <size_t>min(count - i, 256)
                for j in range(k):
                    fill(&block[j], i + <int64_t>j)
                status = capi.send_records(h, block, k, sizeof(Tick), &sent, -1)
                i += <int64_t>sent
                if status != capi.OK:
                    break
        if status == capi.INTERRUPTED:
            PyErr_CheckSignals()
        elif status != capi.OK:
            raise RuntimeError(f"capi.send_records() returned status {status}")
    return i

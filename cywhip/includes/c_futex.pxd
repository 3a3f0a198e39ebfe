from libc.stdint cimport uint32_t
from posix.time cimport timespec

cdef extern from "futex.h" nogil:
    int cw_futex_wait(uint32_t *addr, uint32_t expected, const timespec *timeout) noexcept
    void cw_futex_wake(uint32_t *addr, int count) noexcept

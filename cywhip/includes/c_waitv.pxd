from libc.stdint cimport uint32_t, uint64_t, int64_t

cdef extern from "waitv.h" nogil:
    enum:
        CW_WAITV_MAX
    ctypedef struct cw_waitv_t:
        uint64_t val
        uint64_t uaddr
        uint32_t flags
        uint32_t reserved
    void cw_waitv_set(cw_waitv_t *w, uint32_t *addr, uint32_t expected) noexcept
    int cw_futex_waitv(cw_waitv_t *waiters, unsigned int n) noexcept
    int cw_futex_waitv_until(cw_waitv_t *waiters, unsigned int n, int64_t deadline_ns) noexcept

from libc.stdint cimport int32_t

cdef extern from "guard.h" nogil:
    bint cw_guard_take(int32_t *busy) noexcept
    void cw_guard_give(int32_t *busy) noexcept

from libc.stdint cimport int32_t

cdef extern from "guard.h" nogil:
    enum:
        CW_GUARD_FREE
        CW_GUARD_CALL
        CW_GUARD_NOGIL
    bint cw_guard_take(int32_t *busy, int32_t who) noexcept
    void cw_guard_give(int32_t *busy) noexcept
    int32_t cw_guard_holder(const int32_t *busy) noexcept

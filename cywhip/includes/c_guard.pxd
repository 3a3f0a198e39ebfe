from libc.stdint cimport int32_t, uintptr_t

cdef extern from "guard.h" nogil:
    enum:
        CW_GUARD_FREE
        CW_GUARD_CALL
        CW_GUARD_NOGIL
    ctypedef struct cw_bias_rec:
        void *in_call
    bint cw_guard_take(int32_t *busy, cw_bias_rec **bias, int32_t who) noexcept
    void cw_guard_give(int32_t *busy) noexcept
    bint cw_guard_take_biased(int32_t *busy, cw_bias_rec **bias) noexcept
    cw_bias_rec *cw_guard_take_fast(int32_t *busy, cw_bias_rec **bias) noexcept
    void cw_guard_give_fast(cw_bias_rec *rec) noexcept
    bint cw_guard_give_biased(cw_bias_rec **bias) noexcept
    void cw_guard_bias_to(cw_bias_rec **bias, cw_bias_rec *rec) noexcept
    int32_t cw_guard_holder(const int32_t *busy) noexcept
    uintptr_t cw_thread_self() noexcept

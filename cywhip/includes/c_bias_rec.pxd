from cywhip.includes.c_guard cimport cw_bias_rec

cdef extern from "bias_rec.h" nogil:
    int cw_bias_init(int refused) noexcept
    cw_bias_rec *cw_bias_mine() noexcept
    int cw_bias_records_claimed() noexcept

cdef extern from "membarrier.h" nogil:
    int cw_membarrier_register() noexcept
    int cw_membarrier_global() noexcept

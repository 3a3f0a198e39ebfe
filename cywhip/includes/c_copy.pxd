cdef extern from "copy.h" nogil:
    void cw_copy(void *dst, const void *src, size_t n) noexcept

from libc.stdint cimport int32_t, uint32_t, uint64_t, int64_t

cdef extern from "atomics.h" nogil:
    uint64_t cw_load_acquire_u64(const uint64_t *p) noexcept
    uint64_t cw_load_relaxed_u64(const uint64_t *p) noexcept
    void cw_store_release_u64(uint64_t *p, uint64_t v) noexcept
    void cw_store_relaxed_u64(uint64_t *p, uint64_t v) noexcept
    bint cw_cas_acq_rel_u64(uint64_t *p, uint64_t *expected, uint64_t desired) noexcept
    uint64_t cw_fetch_add_relaxed_u64(uint64_t *p, uint64_t v) noexcept
    uint32_t cw_load_relaxed_u32(const uint32_t *p) noexcept
    uint32_t cw_load_acquire_u32(const uint32_t *p) noexcept
    void cw_store_release_u32(uint32_t *p, uint32_t v) noexcept
    void cw_store_relaxed_u32(uint32_t *p, uint32_t v) noexcept
    uint32_t cw_exchange_u32(uint32_t *p, uint32_t v) noexcept
    bint cw_cas_u32(uint32_t *p, uint32_t *expected, uint32_t desired) noexcept
    int64_t cw_load_relaxed_i64(const int64_t *p) noexcept
    void cw_store_relaxed_i64(int64_t *p, int64_t v) noexcept
    void cw_fence_seq_cst() noexcept
    void cw_compiler_fence() noexcept
    void cw_cpu_relax() noexcept
    void cw_prefetch_write(const void *p) noexcept
    void cw_store_release_i32(int32_t *p, int32_t v) noexcept
    int32_t cw_load_acquire_i32(const int32_t *p) noexcept

/* In C because Cython has no syntax for atomic accesses or memory ordering. */
#ifndef CYWHIP_ATOMICS_H
#define CYWHIP_ATOMICS_H

#include <stdint.h>

/*
 * Every access to a word that the other process also touches goes through
 * one of these.  The ordering is in the name; the caller comments what a
 * release publishes and which acquire pairs with it.  GCC's __atomic
 * builtins implement the C11 memory model on plain (non-_Atomic) memory,
 * which is what a shared mapping gives us.
 */

static inline uint64_t cw_load_acquire_u64(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline uint64_t cw_load_relaxed_u64(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline void cw_store_release_u64(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static inline void cw_store_relaxed_u64(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

static inline uint64_t cw_fetch_add_relaxed_u64(uint64_t *p, uint64_t v)
{
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

/* Compare-and-swap: if *p == *expected, store desired and return 1; else
 * load *p into *expected and return 0.  Acquire-release on success (its
 * release publishes the stores before it to whoever acquires *p), acquire
 * on failure. */
static inline int cw_cas_acq_rel_u64(uint64_t *p, uint64_t *expected, uint64_t desired)
{
    return __atomic_compare_exchange_n(p, expected, desired, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

static inline uint32_t cw_load_acquire_u32(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void cw_store_release_u32(uint32_t *p, uint32_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static inline uint32_t cw_load_relaxed_u32(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline void cw_store_relaxed_u32(uint32_t *p, uint32_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

static inline uint32_t cw_exchange_u32(uint32_t *p, uint32_t v)
{
    return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
}

/* Compare-and-swap of a 32-bit word, sequentially consistent (a read-modify-write even when
 * desired equals *expected: a later fence orders it as a store).  On failure *expected
 * becomes the value found. */
static inline int cw_cas_u32(uint32_t *p, uint32_t *expected, uint32_t desired)
{
    return __atomic_compare_exchange_n(p, expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
}

static inline void cw_store_release_i32(int32_t *p, int32_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static inline int32_t cw_load_acquire_i32(const int32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline int64_t cw_load_relaxed_i64(const int64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline void cw_store_relaxed_i64(int64_t *p, int64_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

/* Orders every earlier load and store before every later one (StoreLoad
 * included); the sleep/wake handshake needs exactly this. */
static inline void cw_fence_seq_cst(void)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

static inline void cw_compiler_fence(void)
{
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
}

/* A pause for spin loops; also a compiler barrier, so loop conditions are reloaded. */
static inline void cw_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __asm__ __volatile__("pause" ::: "memory");
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

/* Ask for the cache line at p in a writable state ahead of a store. */
static inline void cw_prefetch_write(const void *p)
{
    __builtin_prefetch(p, 1, 3);
}

#endif

/* In C because taking the guard needs an atomic compare-and-swap, which Cython cannot spell. */
#ifndef CYWHIP_GUARD_H
#define CYWHIP_GUARD_H

#include <stdint.h>

/*
 * The one-thread-at-a-time guard of an end: *busy is 0 while no call uses
 * it, else who holds it: CW_GUARD_CALL (a Python call, or a thread closing
 * the end) or CW_GUARD_NOGIL (a call of the Cython API, cywhip.api).
 *
 * Calls of the Cython API run without the GIL, so the GIL cannot serialise
 * the guard: it is taken by a compare-and-swap from 0 (acquire: the call sees
 * the ring as the previous holder left it) and given back by a release store
 * (publishing this call's changes to the ring to the next holder).  An end is
 * unmapped only by a thread that holds the guard, so no call is ever inside a
 * mapping that goes away.
 */

enum { CW_GUARD_FREE = 0, CW_GUARD_CALL = 1, CW_GUARD_NOGIL = 2 };

static inline int cw_guard_take(int32_t *busy, int32_t who)
{
    int32_t expected = CW_GUARD_FREE;
    return __atomic_compare_exchange_n(busy, &expected, who, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}

static inline void cw_guard_give(int32_t *busy)
{
    __atomic_store_n(busy, CW_GUARD_FREE, __ATOMIC_RELEASE);
}

/* Who holds the guard right now (a snapshot): CW_GUARD_FREE, _CALL or _NOGIL. */
static inline int32_t cw_guard_holder(const int32_t *busy)
{
    return __atomic_load_n(busy, __ATOMIC_ACQUIRE);
}

#endif

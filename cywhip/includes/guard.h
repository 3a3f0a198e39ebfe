/* In C because what the guard needs depends on how the interpreter was built (Py_GIL_DISABLED). */
#ifndef CYWHIP_GUARD_H
#define CYWHIP_GUARD_H

#include <Python.h>
#include <stdint.h>

/*
 * The one-thread-at-a-time guard of an end: *busy is 1 while a call uses it.
 *
 * With the GIL, no other thread of the process runs between the check and the
 * store below (neither releases the GIL), so a plain check-and-set already
 * lets exactly one call in and costs nothing.  A free-threaded build has no
 * such lock: there the guard is taken by an atomic compare-and-swap (acquire:
 * the call sees what the previous one did) and given back with a release store.
 */

static inline int cw_guard_take(int32_t *busy)
{
#ifdef Py_GIL_DISABLED
    int32_t expected = 0;
    return __atomic_compare_exchange_n(busy, &expected, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
#else
    if (*busy)
        return 0;
    *busy = 1;
    return 1;
#endif
}

static inline void cw_guard_give(int32_t *busy)
{
#ifdef Py_GIL_DISABLED
    __atomic_store_n(busy, 0, __ATOMIC_RELEASE);
#else
    *busy = 0;
#endif
}

#endif

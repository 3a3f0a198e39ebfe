/* In C for thread-local storage and a thread-exit hook, which Cython cannot spell.
 * Included by cywhip.capi only: one set of records per process. */
#ifndef CYWHIP_BIAS_REC_H
#define CYWHIP_BIAS_REC_H

#include <pthread.h>
#include <stddef.h>

#include "guard.h"
#include "membarrier.h"

/* The records of threads that call the Cython API (guard.h, "Biased to one thread").
 * A thread beyond these takes every guard the slow way. */
enum { CW_BIAS_RECS = 1024 };

static cw_bias_rec cw_bias_recs[CW_BIAS_RECS];
static __thread cw_bias_rec *cw_bias_own;
static __thread int cw_bias_asked;
static pthread_key_t cw_bias_key;
static int cw_bias_on;

static void cw_bias_release(void *p)
{
    cw_bias_rec *rec = (cw_bias_rec *)p;
    /* An end still biased to this record now names nobody (a later thread that is given
     * the same thread pointer does not hold it), until another thread claims it. */
    __atomic_store_n(&rec->thread, (uintptr_t)0, __ATOMIC_RELAXED);
    __atomic_store_n(&rec->in_call, NULL, __ATOMIC_RELEASE);
    __atomic_store_n(&rec->claimed, 0, __ATOMIC_RELEASE);
}

/* In a forked child only the forking thread lives on: give the others' records back. */
static void cw_bias_after_fork(void)
{
    int i;
    for (i = 0; i < CW_BIAS_RECS; i++)
        if (cw_bias_recs[i].claimed && cw_bias_recs[i].thread != cw_thread_self())
            cw_bias_release(&cw_bias_recs[i]);
}

/* Once, when cywhip.capi is imported: whether ends may be biased in this process (not if
 * refused, CYWHIP_NO_MEMBARRIER; else the kernel's private expedited membarrier, and a
 * thread-exit hook to give records back). */
static int cw_bias_init(int refused)
{
    if (!refused && cw_membarrier_register_private()
            && pthread_key_create(&cw_bias_key, cw_bias_release) == 0
            && pthread_atfork(NULL, NULL, cw_bias_after_fork) == 0)
        cw_bias_on = 1;
    return cw_bias_on;
}

/* How many records threads hold now (for tests). */
static int cw_bias_records_claimed(void)
{
    int i, n = 0;
    for (i = 0; i < CW_BIAS_RECS; i++)
        n += __atomic_load_n(&cw_bias_recs[i].claimed, __ATOMIC_RELAXED) != 0;
    return n;
}

/* This thread's record, claimed when it first takes a guard the slow way (the fast path
 * needs no thread-local look-up: the record names its thread); NULL if there is none. */
static inline cw_bias_rec *cw_bias_mine(void)
{
    int i;
    int32_t expected;
    cw_bias_rec *rec = cw_bias_own;
    if (rec != NULL || cw_bias_asked)
        return rec;
    cw_bias_asked = 1;
    if (!cw_bias_on)
        return NULL;
    for (i = 0; i < CW_BIAS_RECS; i++) {
        expected = 0;
        if (__atomic_load_n(&cw_bias_recs[i].claimed, __ATOMIC_RELAXED) == 0
                && __atomic_compare_exchange_n(&cw_bias_recs[i].claimed, &expected, 1, 0,
                                               __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
            rec = &cw_bias_recs[i];
            __atomic_store_n(&rec->thread, cw_thread_self(), __ATOMIC_RELAXED);
            if (pthread_setspecific(cw_bias_key, rec) != 0) {
                cw_bias_release(rec);
                return NULL;
            }
            cw_bias_own = rec;
            return rec;
        }
    }
    return NULL;
}

#endif

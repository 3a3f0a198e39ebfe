/* In C because taking the guard needs an atomic compare-and-swap, which Cython cannot spell. */
#ifndef CYWHIP_GUARD_H
#define CYWHIP_GUARD_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "atomics.h"
#include "membarrier.h"

/*
 * The one-thread-at-a-time guard of an end: *busy is 0 while no call uses
 * it, else who holds it: CW_GUARD_CALL (a Python call, or a thread closing
 * the end) or CW_GUARD_NOGIL (a call of the Cython API, cywhip.capi).
 *
 * Calls of the Cython API run without the GIL, so the GIL cannot serialise
 * the guard: it is taken by a compare-and-swap from 0 (acquire: the call sees
 * the ring as the previous holder left it) and given back by a release store
 * (publishing this call's changes to the ring to the next holder).  An end is
 * unmapped only by a thread that holds the guard, so no call is ever inside a
 * mapping that goes away.
 *
 * Biased to one thread.  A compare-and-swap drains the store buffer, and on a
 * channel whose other end is spinning the stores of the last call's publish
 * wait there for their cache lines: a call of the Cython API would pay that
 * every time.  So the thread that last made such a call on an end (its
 * owner, named by *bias) takes the guard without one: it stores the end's
 * busy word's address in its own record (in_call), then loads busy, and
 * goes on if busy is 0 and it still owns the end.  Everyone else takes busy
 * by compare-and-swap and then, if the end has an owner, has the kernel run
 * a barrier on every CPU of this process (membarrier(2)) before it loads the
 * owner's in_call: either the owner sees busy taken, or the taker sees the
 * owner inside (a Dekker handshake whose one fence is the taker's, made
 * heavy).  If both see the other, the owner gives way and the taker waits a
 * moment for it to (an owner really inside a call makes it give way: BUSY).
 * A taker that finds the owner idle ends the bias;
 * a call of the Cython API that took the guard the slow way sets it to its
 * own thread before giving the guard back.
 *
 * A record belongs to one thread at a time and only that thread writes its
 * in_call, so a thread that read an old owner's name can never overwrite
 * another's record.  Records live in cywhip.capi (never freed), and a thread's
 * record is given back when it exits; the next thread that gets it owns the
 * ends it names, which is sound for the same reason.
 */

enum { CW_GUARD_FREE = 0, CW_GUARD_CALL = 1, CW_GUARD_NOGIL = 2 };

/* The calling thread's thread pointer: unique among the threads alive, and read without a
 * call (the x86-64 and AArch64 ABIs keep it in a register; pthread_self() elsewhere).  A
 * record names its thread by it. */
static inline uintptr_t cw_thread_self(void)
{
    uintptr_t tp;
#if defined(__x86_64__) && defined(__GNUC__)
    /* The x86-64 TLS ABI: the word at %fs:0 is the thread control block's own address. */
    __asm__("mov %%fs:0, %0" : "=r"(tp));
#elif defined(__aarch64__) && defined(__GNUC__)
    __asm__("mrs %0, tpidr_el0" : "=r"(tp));
#else
    tp = (uintptr_t)pthread_self();
#endif
    return tp;
}

/* Each in a pair of cache lines of its own (the adjacent-line prefetcher moves lines in
 * pairs), as the header's cursors are. */
typedef struct cw_bias_rec {
    void *in_call;          /* the busy word of the end this thread is in a call on, or NULL */
    uintptr_t thread;       /* the thread that holds this record (cw_thread_self()); 0 while none does */
    int32_t claimed;        /* a thread holds this record */
} __attribute__((aligned(128))) cw_bias_rec;

/* How long a taker waits for an owner it saw inside to leave: an owner on its way in that
 * saw the taker gives way within a few instructions; one really inside makes the taker
 * give way (BUSY) after this many pauses. */
enum { CW_GUARD_SPINS = 1024 };

/* Take the guard the slow way: 1 if taken, 0 if another call holds it (or the end's owner
 * is inside a call of its own). */
static inline int cw_guard_take(int32_t *busy, cw_bias_rec **bias, int32_t who)
{
    int32_t expected = CW_GUARD_FREE;
    cw_bias_rec *owner;
    int i;
    if (!__atomic_compare_exchange_n(busy, &expected, who, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
        return 0;
    owner = __atomic_load_n(bias, __ATOMIC_RELAXED);
    if (owner != NULL) {
        /* Our store of busy, a barrier on every CPU of this process, then the owner's
         * in_call.  The owner's own thread (a call nested in a signal handler, or one whose
         * fast path found busy taken) sees its record in program order, and needs none. */
        if (__atomic_load_n(&owner->thread, __ATOMIC_RELAXED) == cw_thread_self()) {
            /* Its own call is inside and cannot leave while this one waits. */
            if (owner->in_call == (void *)busy) {
                __atomic_store_n(busy, CW_GUARD_FREE, __ATOMIC_RELEASE);
                return 0;
            }
        } else if (cw_membarrier_private() != 0) {
            __atomic_store_n(busy, CW_GUARD_FREE, __ATOMIC_RELEASE);
            return 0;
        }
        /* From here on the owner's fast path sees busy taken and gives way; wait a little
         * for one on its way in to do so.  Acquire: once it is out, we see its last call. */
        for (i = 0; __atomic_load_n(&owner->in_call, __ATOMIC_ACQUIRE) == (void *)busy; i++) {
            if (i == CW_GUARD_SPINS) {
                __atomic_store_n(busy, CW_GUARD_FREE, __ATOMIC_RELEASE);
                return 0;
            }
            cw_cpu_relax();
        }
        __atomic_store_n(bias, NULL, __ATOMIC_RELAXED);
    }
    return 1;
}

static inline void cw_guard_give(int32_t *busy)
{
    __atomic_store_n(busy, CW_GUARD_FREE, __ATOMIC_RELEASE);
}

/* The record of the thread the end is biased to, if that is the calling thread; else NULL. */
static inline cw_bias_rec *cw_guard_owned(cw_bias_rec **bias)
{
    cw_bias_rec *rec = __atomic_load_n(bias, __ATOMIC_RELAXED);
    if (rec == NULL || __atomic_load_n(&rec->thread, __ATOMIC_RELAXED) != cw_thread_self())
        return NULL;
    return rec;
}

/* Take the guard by the owner's fast path: the calling thread's record if the end is biased
 * to this thread and it took the guard (give it back with cw_guard_give_fast() or
 * cw_guard_give_biased()); NULL if it must take it the slow way. */
static inline cw_bias_rec *cw_guard_take_fast(int32_t *busy, cw_bias_rec **bias)
{
    cw_bias_rec *rec = cw_guard_owned(bias);
    /* in_call already set: a call nested in one of this thread's (a signal handler's);
     * the slow way refuses it on the same end. */
    if (rec == NULL || rec->in_call != NULL)
        return NULL;
    __atomic_store_n(&rec->in_call, (void *)busy, __ATOMIC_RELAXED);
    /* The compiler keeps the store before the loads; the CPU may not, and a taker's
     * membarrier covers that. */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    /* Acquire: a slow holder's release of busy brings what it did, its change of the
     * owner included. */
    if (__atomic_load_n(busy, __ATOMIC_ACQUIRE) == CW_GUARD_FREE
            && __atomic_load_n(bias, __ATOMIC_RELAXED) == rec)
        return rec;
    __atomic_store_n(&rec->in_call, NULL, __ATOMIC_RELEASE);
    return NULL;
}

/* cw_guard_take_fast() as a yes or no: 1 if the end is biased to this thread and it
 * took the guard; 0 if it must take it the slow way. */
static inline int cw_guard_take_biased(int32_t *busy, cw_bias_rec **bias)
{
    return cw_guard_take_fast(busy, bias) != NULL;
}

/* Give back the guard cw_guard_take_fast() took with rec (release: the next holder sees this
 * call's work). */
static inline void cw_guard_give_fast(cw_bias_rec *rec)
{
    __atomic_store_n(&rec->in_call, NULL, __ATOMIC_RELEASE);
}

/* Give the guard back if the caller, which holds it, holds it by the fast path (release:
 * the next holder sees this call's work): 1 if it did, 0 if it holds it the slow way.
 * While the slow way holds it, bias is NULL (the taker cleared it, and only a holder sets
 * it); while the fast path does, it names the holder's record and nobody changes it. */
static inline int cw_guard_give_biased(cw_bias_rec **bias)
{
    cw_bias_rec *rec = __atomic_load_n(bias, __ATOMIC_RELAXED);
    if (rec == NULL)
        return 0;
    __atomic_store_n(&rec->in_call, NULL, __ATOMIC_RELEASE);
    return 1;
}

/* Bias the end to the thread of rec (the caller holds the guard the slow way). */
static inline void cw_guard_bias_to(cw_bias_rec **bias, cw_bias_rec *rec)
{
    __atomic_store_n(bias, rec, __ATOMIC_RELAXED);
}

/* Who holds the guard right now by the slow way (a snapshot): CW_GUARD_FREE, _CALL or _NOGIL. */
static inline int32_t cw_guard_holder(const int32_t *busy)
{
    return __atomic_load_n(busy, __ATOMIC_ACQUIRE);
}

#endif

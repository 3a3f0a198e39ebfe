/* In C because glibc has no futex_waitv() wrapper; the raw syscall is reached through syscall(2). */
#ifndef CYWHIP_WAITV_H
#define CYWHIP_WAITV_H

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/futex.h>

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449   /* the same number on x86-64 and aarch64 (Linux >= 5.16) */
#endif
#ifndef FUTEX2_SIZE_U32
#define FUTEX2_SIZE_U32 0x02
#endif

/* One sleep on up to CW_WAITV_MAX 32-bit words at once, each with its expected value.
 * The words are shared (not FUTEX2_PRIVATE) futexes, woken by FUTEX_WAKE without the
 * private flag, like the rest of cywhip (see futex.h). */
#define CW_WAITV_MAX 128

typedef struct {
    uint64_t val;
    uint64_t uaddr;
    uint32_t flags;
    uint32_t reserved;
} cw_waitv_t;

static inline void cw_waitv_set(cw_waitv_t *w, uint32_t *addr, uint32_t expected)
{
    w->val = expected;
    w->uaddr = (uint64_t)(uintptr_t)addr;
    w->flags = FUTEX2_SIZE_U32;
    w->reserved = 0;
}

/* Sleep until one of the n words is woken, with no time limit.  Returns the index of a
 * woken word (>= 0), or -errno: -EAGAIN when a word already differed from its expected
 * value, -EINTR on a signal, -EFAULT for an address no longer mapped, -ENOSYS before
 * Linux 5.16. */
static inline int cw_futex_waitv(cw_waitv_t *waiters, unsigned int n)
{
    long r = syscall(SYS_futex_waitv, waiters, n, 0, NULL, CLOCK_MONOTONIC);
    if (r >= 0)
        return (int)r;
    return -errno;
}

/* As cw_futex_waitv(), until CLOCK_MONOTONIC reaches deadline_ns: -ETIMEDOUT then (at once
 * if it has passed). */
static inline int cw_futex_waitv_until(cw_waitv_t *waiters, unsigned int n, int64_t deadline_ns)
{
    struct timespec ts;
    long r;
    if (deadline_ns < 0)
        deadline_ns = 0;
    ts.tv_sec = deadline_ns / 1000000000;
    ts.tv_nsec = deadline_ns % 1000000000;
    r = syscall(SYS_futex_waitv, waiters, n, 0, &ts, CLOCK_MONOTONIC);
    if (r >= 0)
        return (int)r;
    return -errno;
}

#endif

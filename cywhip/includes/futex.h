/* In C because glibc has no futex() wrapper; the raw syscall is reached through syscall(2). */
#ifndef CYWHIP_FUTEX_H
#define CYWHIP_FUTEX_H

#include <errno.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/futex.h>

/*
 * Shared (not FUTEX_PRIVATE) futexes: the words live in a mapping that two
 * processes share, so the kernel keys them by page, not by address space.
 */

/* Sleep while *addr == expected, for at most `timeout` (NULL: no limit).
 * Returns 0 when woken or when *addr already differed, otherwise errno:
 * ETIMEDOUT, EINTR (a signal arrived). */
static inline int cw_futex_wait(uint32_t *addr, uint32_t expected,
                                const struct timespec *timeout)
{
    long r = syscall(SYS_futex, addr, FUTEX_WAIT, expected, timeout, NULL, 0);
    if (r == 0)
        return 0;
    if (errno == EAGAIN)
        return 0;
    return errno;
}

/* Wake up to `count` sleepers on addr. */
static inline void cw_futex_wake(uint32_t *addr, int count)
{
    syscall(SYS_futex, addr, FUTEX_WAKE, count, NULL, NULL, 0);
}

#endif

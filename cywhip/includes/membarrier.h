/* In C because glibc has no membarrier() wrapper; the raw syscall is reached through syscall(2). */
#ifndef CYWHIP_MEMBARRIER_H
#define CYWHIP_MEMBARRIER_H

#include <errno.h>
#include <unistd.h>
#include <sys/syscall.h>

/*
 * An asymmetric fence for the sleep/wake handshake (docs/protocol.md, "Wake-ups").
 *
 * The end that publishes (a sender storing write_cursor, a receiver storing
 * read_cursor) then loads the other end's waiting word needs its store
 * ordered before that load.  A full fence there costs a drain of the store
 * buffer on every message.  membarrier(2) moves that cost to the end about
 * to sleep, which is rare: it announces its sleep, then asks the kernel for
 * a memory barrier on every CPU that runs a registered process, and only
 * then looks again.  A process that is registered may publish with a
 * compiler barrier alone.
 *
 * The numbers are the kernel's ABI (linux/membarrier.h, Linux 4.16), spelled
 * here so that older headers build.
 */
enum {
    CW_MEMBARRIER_CMD_QUERY = 0,
    CW_MEMBARRIER_CMD_GLOBAL = 1 << 0,
    CW_MEMBARRIER_CMD_GLOBAL_EXPEDITED = 1 << 1,
    CW_MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED = 1 << 2,
    CW_MEMBARRIER_CMD_PRIVATE_EXPEDITED = 1 << 3,
    CW_MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED = 1 << 4,
};

/* Register this process for the expedited barriers of command cmd, if the kernel has both
 * it and its registration reg: 1 if registered, 0 if not. */
static inline int cw_membarrier_register_for(long cmd, long reg)
{
#ifdef SYS_membarrier
    long q = syscall(SYS_membarrier, CW_MEMBARRIER_CMD_QUERY, 0, 0);
    if (q < 0 || (q & (cmd | reg)) != (cmd | reg))
        return 0;
    return syscall(SYS_membarrier, reg, 0, 0) == 0;
#else
    (void)cmd;
    (void)reg;
    return 0;
#endif
}

/* Register this process to take part in others' global expedited barriers.
 * 1 if it is registered (its publishes may skip the fence), 0 if not.  The
 * registration belongs to the address space: it is kept across fork (the
 * child's is a copy) and dropped at exec. */
static inline int cw_membarrier_register(void)
{
    return cw_membarrier_register_for(CW_MEMBARRIER_CMD_GLOBAL_EXPEDITED,
                                      CW_MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED);
}

/* A full memory barrier on every CPU now running a registered process, and
 * on this one.  0; 1 if this kernel has no such barrier (then no process on it
 * can have registered, and no publisher skips its fence); -1 if the kernel
 * refused it (a filter forbids it, or it failed): then a registered publisher
 * may not have seen this end's announcement, and the caller must not sleep
 * for long. */
static inline int cw_membarrier_global(void)
{
#ifdef SYS_membarrier
    if (syscall(SYS_membarrier, CW_MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) == 0)
        return 0;
    return (errno == ENOSYS || errno == EINVAL) ? 1 : -1;
#else
    return 1;
#endif
}

/* Register this process for its own private expedited barriers (the biased one-thread
 * guard, guard.h).  1 if registered, 0 if not. */
static inline int cw_membarrier_register_private(void)
{
    return cw_membarrier_register_for(CW_MEMBARRIER_CMD_PRIVATE_EXPEDITED,
                                      CW_MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED);
}

/* A full memory barrier on every CPU now running a thread of this process: the
 * expedited one, or, should the kernel refuse it, the slow one every kernel with
 * membarrier has (it waits for every CPU to pass a barrier).  0, or -1 if both
 * were refused. */
static inline int cw_membarrier_private(void)
{
#ifdef SYS_membarrier
    if (syscall(SYS_membarrier, CW_MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0)
        return 0;
    return syscall(SYS_membarrier, CW_MEMBARRIER_CMD_GLOBAL, 0, 0) == 0 ? 0 : -1;
#else
    return -1;
#endif
}

#endif

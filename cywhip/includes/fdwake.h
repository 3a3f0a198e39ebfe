/* Waking an end through a file descriptor (docs/protocol.md, "Waiting on a file descriptor").
 *
 * An end that waits on a descriptor (fileno(), the asyncio face) binds a datagram socket in
 * the abstract namespace of AF_UNIX under a name every end of the channel can work out: the
 * channel file's inode and device, its creation time, the end's kind and place, and how many
 * ends have held that place.  The end hands out an epoll descriptor holding that socket (and,
 * when its sleep is in slices, a timerfd), so one descriptor says "look again" for both.
 * Whoever wakes it sends one byte to that name, without blocking.  Abstract names vanish with
 * their last descriptor: nothing to clean after a crash.
 */
#ifndef CYWHIP_FDWAKE_H
#define CYWHIP_FDWAKE_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>

/* The waiting word's bit that says "an end waiting on a descriptor announced here": whoever
 * clears the word sends the wake bytes.  The low 31 bits are a futex sleeper's value (1, or a
 * shared word's token); an end alone on its word that waits on a descriptor only stores the
 * bit, and its waker skips the FUTEX_WAKE. */
#define CW_WAIT_FD 0x80000000u
#define CW_WAIT_FUTEX 0x7fffffffu

/* Room for a name prefix: "cywhip.w.<ino>.<dev>.<created>." in hex, with the leading NUL. */
#define CW_WAKE_PREFIX_MAX 64

/* The prefix of every wake name of one channel file; its length (with the leading NUL). */
static inline int cw_fdwake_prefix(char *buf, uint64_t dev, uint64_t ino, uint64_t created)
{
    int n;
    buf[0] = 0;
    n = snprintf(buf + 1, CW_WAKE_PREFIX_MAX - 1, "cywhip.w.%llx.%llx.%llx.",
                 (unsigned long long)ino, (unsigned long long)dev, (unsigned long long)created);
    if (n < 0 || n >= CW_WAKE_PREFIX_MAX - 1)
        return 0;
    return n + 1;
}

/* The address of place `index` of kind `kind` ('s' or 'r') held for the `starts`-th time. */
static inline socklen_t cw_fdwake_addr(struct sockaddr_un *a, const char *prefix, int plen,
                                       char kind, uint32_t index, uint64_t starts)
{
    int n;
    memset(a, 0, sizeof(*a));
    a->sun_family = AF_UNIX;
    memcpy(a->sun_path, prefix, (size_t)plen);
    n = snprintf(a->sun_path + plen, sizeof(a->sun_path) - (size_t)plen, "%c%u.%llx",
                 kind, (unsigned)index, (unsigned long long)starts);
    if (n < 0 || (size_t)n >= sizeof(a->sun_path) - (size_t)plen)
        n = (int)(sizeof(a->sun_path) - (size_t)plen) - 1;
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)plen + (size_t)n);
}

/* The unbound socket this process sends wake bytes from, made at first need. */
static int cw_fdwake_out = -1;

static inline int cw_fdwake_out_socket(void)
{
    int s = __atomic_load_n(&cw_fdwake_out, __ATOMIC_ACQUIRE);
    int expected = -1;
    if (s >= 0)
        return s;
    s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0)
        return -1;
    if (!__atomic_compare_exchange_n(&cw_fdwake_out, &expected, s, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        close(s);
        return expected;
    }
    return s;
}

/* Send one wake byte to a.  0: sent, or the receiving socket's queue is full (so it is
 * readable already); 1: nobody listens there; else an errno.  A byte waiting to be read is
 * charged to the socket that sent it: should this process's socket have run out of room (many
 * wakes not yet read), one fresh socket tries again, so that EAGAIN then means what it says:
 * the receiver's queue is full. */
static inline int cw_fdwake_send(const struct sockaddr_un *a, socklen_t len)
{
    char b = 1;
    int s = cw_fdwake_out_socket(), t, e;
    if (s < 0)
        return errno;
    if (sendto(s, &b, 1, MSG_DONTWAIT | MSG_NOSIGNAL, (const struct sockaddr *)a, len) == 1)
        return 0;
    e = errno;
    if (e == EAGAIN) {
        t = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (t < 0)
            return 0;
        if (sendto(t, &b, 1, MSG_DONTWAIT | MSG_NOSIGNAL, (const struct sockaddr *)a, len) == 1)
            e = 0;
        else
            e = errno;
        close(t);
        if (e == EAGAIN)
            return 0;
    }
    if (e == ECONNREFUSED || e == ENOENT)
        return 1;
    return e;
}

/* The waiter's socket, bound to a; -errno on failure (EADDRINUSE: another socket holds it). */
static inline int cw_fdwake_bind(const struct sockaddr_un *a, socklen_t len)
{
    int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), e;
    if (s < 0)
        return -errno;
    if (bind(s, (const struct sockaddr *)a, len) != 0) {
        e = errno;
        close(s);
        return -e;
    }
    return s;
}

/* Have ep watch fd for reading: 0, or -errno. */
static inline int cw_fdwake_watch(int ep, int fd)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -errno;
}

/* An epoll descriptor watching fd for reading; -errno on failure. */
static inline int cw_fdwake_epoll(int fd)
{
    int ep = epoll_create1(EPOLL_CLOEXEC), e;
    if (ep < 0)
        return -errno;
    e = cw_fdwake_watch(ep, fd);
    if (e != 0) {
        close(ep);
        return e;
    }
    return ep;
}

/* Move ep from watching old to watching new_fd (a socket bound under a new name). */
static inline int cw_fdwake_swap(int ep, int old, int new_fd)
{
    struct epoll_event ev;
    int e = cw_fdwake_watch(ep, new_fd);
    if (e != 0)
        return e;
    memset(&ev, 0, sizeof(ev));
    epoll_ctl(ep, EPOLL_CTL_DEL, old, &ev);
    return 0;
}

/* Read every byte waiting on the waiter's socket. */
static inline void cw_fdwake_drain(int s)
{
    char buf[64];
    while (recv(s, buf, sizeof(buf), MSG_DONTWAIT) >= 0)
        ;
}

/* Make the timer (created and watched by ep at first need) fire in ns; -errno on failure. */
static inline int cw_fdwake_timer_set(int ep, int *timer, int64_t ns)
{
    struct itimerspec its;
    int t = *timer, e;
    if (t < 0) {
        t = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (t < 0)
            return -errno;
        e = cw_fdwake_watch(ep, t);
        if (e != 0) {
            close(t);
            return e;
        }
        *timer = t;
    }
    if (ns < 1)
        ns = 1;
    memset(&its, 0, sizeof(its));
    its.it_value.tv_sec = ns / 1000000000;
    its.it_value.tv_nsec = ns % 1000000000;
    if (timerfd_settime(t, 0, &its, NULL) != 0)
        return -errno;
    return 0;
}

/* Stop the timer and read its expiry, if any: it no longer makes ep readable. */
static inline void cw_fdwake_timer_clear(int timer)
{
    struct itimerspec its;
    uint64_t n;
    if (timer < 0)
        return;
    memset(&its, 0, sizeof(its));
    timerfd_settime(timer, 0, &its, NULL);
    if (read(timer, &n, sizeof(n)) < 0) {
        /* EAGAIN: it had not fired. */
    }
}

#endif

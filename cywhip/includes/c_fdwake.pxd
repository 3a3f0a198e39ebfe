from libc.stdint cimport int64_t, uint32_t, uint64_t

cdef extern from "<sys/un.h>" nogil:
    cdef struct sockaddr_un:
        pass

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t

cdef extern from "fdwake.h" nogil:
    const uint32_t CW_WAIT_FD
    const uint32_t CW_WAIT_FUTEX
    const int CW_WAKE_PREFIX_MAX
    int cw_fdwake_prefix(char *buf, uint64_t dev, uint64_t ino, uint64_t created) noexcept
    socklen_t cw_fdwake_addr(sockaddr_un *a, const char *prefix, int plen, char kind,
                             uint32_t index, uint64_t starts) noexcept
    int cw_fdwake_send(const sockaddr_un *a, socklen_t len) noexcept
    int cw_fdwake_bind(const sockaddr_un *a, socklen_t len) noexcept
    int cw_fdwake_epoll(int fd) noexcept
    int cw_fdwake_swap(int ep, int old, int new_fd) noexcept
    void cw_fdwake_drain(int s) noexcept
    int cw_fdwake_timer_set(int ep, int *timer, int64_t ns) noexcept
    void cw_fdwake_timer_clear(int timer) noexcept

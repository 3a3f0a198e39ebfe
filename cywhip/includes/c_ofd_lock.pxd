cdef extern from "ofd_lock.h" nogil:
    int cw_ofd_trylock(int fd, long offset) noexcept
    int cw_ofd_unlock(int fd, long offset) noexcept
    int cw_ofd_is_locked(int fd, long offset) noexcept

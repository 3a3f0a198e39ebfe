/* In C because F_OFD_SETLK and F_OFD_GETLK are only defined with _GNU_SOURCE, before any libc header. */
#ifndef CYWHIP_OFD_LOCK_H
#define CYWHIP_OFD_LOCK_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <string.h>

/*
 * Open-file-description byte locks: owned by the open file, not by the
 * process, so two opens in one process conflict, and the kernel drops the
 * lock when the last descriptor to it closes, which includes process death.
 */
#ifndef F_OFD_GETLK
#define F_OFD_GETLK 36
#define F_OFD_SETLK 37
#endif

/* A request of the given type (F_WRLCK, F_UNLCK) for the one byte at offset. */
static inline struct flock cw_ofd_byte(short type, long offset)
{
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = offset;
    fl.l_len = 1;
    return fl;
}

/* Try to take a write lock on one byte.  0 on success, else errno
 * (EAGAIN/EACCES: someone else holds it). */
static inline int cw_ofd_trylock(int fd, long offset)
{
    struct flock fl = cw_ofd_byte(F_WRLCK, offset);
    if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
        return 0;
    return errno;
}

/* Release this open file description's lock on one byte.  0 on success, else errno. */
static inline int cw_ofd_unlock(int fd, long offset)
{
    struct flock fl = cw_ofd_byte(F_UNLCK, offset);
    if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
        return 0;
    return errno;
}

/* 1 if some other open file description holds a lock on the byte, 0 if
 * not, -errno on failure. */
static inline int cw_ofd_is_locked(int fd, long offset)
{
    struct flock fl = cw_ofd_byte(F_WRLCK, offset);
    if (fcntl(fd, F_OFD_GETLK, &fl) != 0)
        return -errno;
    return fl.l_type != F_UNLCK;
}

#endif

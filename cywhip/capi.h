/* cywhip's Cython API: the C names behind cywhip/capi.pxd (a C header so that a C file of a
 * user's extension may use them too).  See docs/api.md. */
#ifndef CYWHIP_CAPI_H
#define CYWHIP_CAPI_H

/*
 * The version of this API.  A module compiled against one version is refused by a cywhip of
 * another: cywhip.capi.handle() raises ImportError naming both.  It changes only when a
 * change would break modules compiled before it (a call's arguments or meaning); a call
 * or a status added later keeps it.
 */
#define CYWHIP_API_VERSION 1

/* An end as the API's calls see it: opaque, only ever a pointer. */
typedef struct cywhip_handle cywhip_handle;

/* What every call returns. */
enum {
    CYWHIP_OK = 0,            /* done */
    CYWHIP_TIMEOUT = 1,       /* the timeout passed first (a timeout of 0: it would have to wait) */
    CYWHIP_FULL = 2,          /* try_send: no room right now */
    CYWHIP_EMPTY = 3,         /* try_recv: no message right now */
    CYWHIP_CLOSED = 4,        /* the end is closed, or close() came during the call */
    CYWHIP_TOO_LONG = 5,      /* send: over message_length, nothing sent; recv: over capacity, kept */
    CYWHIP_CORRUPT = 6,       /* shared memory holds values no correct peer writes */
    CYWHIP_INTERRUPTED = 7,   /* a signal arrived while the call slept: check signals, call again */
    CYWHIP_BUSY = 8,          /* another call (another thread) is using the end right now */
    CYWHIP_WRONG_LENGTH = 9,  /* not a whole record: a typed send of another size, or
                                 recv_records at a message that is not message_length long */
    CYWHIP_WRONG_END = 10     /* a send on a Receiver's handle, or a receive on a Sender's */
};

#endif

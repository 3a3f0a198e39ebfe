# cython: language_level=3
"""cywhip's Cython API: send and receive from other extensions' nogil code.

    from cywhip cimport capi
    cdef capi.Handle *h = capi.handle(end)      # a Sender, or a Receiver without on_message
    with nogil:
        st = capi.send(h, &record, sizeof(record), -1)

Functions and an opaque handle only: no class layout, so a module compiled
against this file keeps working when cywhip's own types change.  Every call is
nogil and noexcept and returns a status.  docs/api.md says what each does.
"""
from libc.stdint cimport int64_t

cdef extern from "cywhip/capi.h":
    # An end as the calls see it: opaque, only ever a pointer.
    ctypedef struct Handle "cywhip_handle":
        pass

    # The version of this API, compiled into the module that cimports it and checked by
    # handle() against the installed cywhip's.
    enum:
        API_VERSION "CYWHIP_API_VERSION"

    # The statuses every call returns.
    enum:
        OK "CYWHIP_OK"
        TIMEOUT "CYWHIP_TIMEOUT"
        FULL "CYWHIP_FULL"
        EMPTY "CYWHIP_EMPTY"
        CLOSED "CYWHIP_CLOSED"
        TOO_LONG "CYWHIP_TOO_LONG"
        CORRUPT "CYWHIP_CORRUPT"
        INTERRUPTED "CYWHIP_INTERRUPTED"
        BUSY "CYWHIP_BUSY"
        WRONG_LENGTH "CYWHIP_WRONG_LENGTH"
        WRONG_END "CYWHIP_WRONG_END"


# Needs the GIL; raises TypeError for anything but a Sender or a Receiver without on_message/
# on_batch, ChannelClosedError for a closed end, ImportError for a module compiled against
# another API_VERSION.  Call handle() rather than this.
cdef Handle *_handle(object end, int version) except NULL

# Sending.  timeout_ns: -1 (any negative) waits as long as it takes, 0 never waits.
cdef int send(Handle *h, const void *data, size_t n, int64_t timeout_ns) noexcept nogil
cdef int try_send(Handle *h, const void *data, size_t n) noexcept nogil
cdef int send_records(Handle *h, const void *src, size_t count, size_t stride, size_t *sent,
                      int64_t timeout_ns) noexcept nogil

# Receiving.
cdef int recv(Handle *h, void *dst, size_t capacity, size_t *n, int64_t timeout_ns) noexcept nogil
cdef int try_recv(Handle *h, void *dst, size_t capacity, size_t *n) noexcept nogil
cdef int recv_records(Handle *h, void *dst, size_t max_count, size_t stride, size_t *got,
                      int64_t timeout_ns) noexcept nogil


cdef inline Handle *handle(object end) except NULL:
    """The handle of ``end``, valid while it is open (the end stays alive until it closes).

    Needs the GIL.  The module calling it passes the API_VERSION it was compiled with.
    """
    return _handle(end, API_VERSION)

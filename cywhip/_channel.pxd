# cython: language_level=3
cimport cython
from libc.stdint cimport int64_t
from cywhip._ring cimport ring_t


cdef class WriteBuffer:
    cdef char *data
    cdef Py_ssize_t pos
    cdef Py_ssize_t limit

    cdef void _lend(self, char *data, Py_ssize_t limit) noexcept
    cdef Py_ssize_t _take_back(self) noexcept
    cdef int _append(self, const char *src, Py_ssize_t n) except -1
    cdef int _append_object(self, object obj, str what) except -1


cdef class ReadBuffer:
    cdef const char *data
    cdef Py_ssize_t pos
    cdef Py_ssize_t length

    cdef void _lend(self, const char *data, Py_ssize_t length) noexcept
    cdef void _take_back(self) noexcept
    cdef int _check(self, Py_ssize_t n, object what) except -1


cdef class _End:
    cdef ring_t ring
    cdef object region
    cdef unsigned long generation
    cdef long owner_pid
    cdef int busy
    cdef unsigned long busy_thread
    cdef bint sending
    cdef int closing
    cdef int forked
    cdef readonly str name
    cdef readonly Py_ssize_t message_length
    cdef readonly Py_ssize_t max_queued_messages
    cdef object rtype
    cdef object ctype
    cdef Py_ssize_t record_size
    cdef object __weakref__

    cdef int _open(self, name, message_length, max_queued_messages, int end,
                   object spin_time, object mode, object message_type) except -1
    cdef int _raise_closed(self) except -1
    cdef int _refuse(self) except -1
    cdef int _wait(self, bint sending, int64_t deadline) except -1
    cdef int _raise_corrupt(self) except -1
    cdef void _finish_close(self)
    cdef void _abandon(self)
    cdef int _close(self) except -1
    cdef int _await_release(self) except -1
    cdef int _get_records(self, object arr, Py_buffer *view, int flags, str what) except -1


@cython.final
cdef class Sender(_End):
    cdef object serializer
    cdef WriteBuffer wbuf
    cdef Py_ssize_t publish_every

    cdef int _put(self, object msg) except -1
    cdef int _put_general(self, object msg) except -1
    cdef int _raise_too_long(self, Py_ssize_t n) except -1
    cdef int _put_record(self, object msg) except -1


@cython.final
cdef class Receiver(_End):
    cdef object deserializer
    cdef object on_message
    cdef object on_error
    cdef object on_batch
    cdef ReadBuffer rbuf
    cdef object thread
    cdef object error

    cdef object take_error
    cdef object _take(self)
    cdef object _take_at(self, int64_t n)
    cdef list _take_list(self, Py_ssize_t k)
    cdef object _take_record(self, int64_t n, const char *slot)
    cdef int _raise_corrupt_length(self) except -1
    cdef int _raise_bad_record(self, int64_t n) except -1
    cdef int64_t _await(self, object timeout) except -1
    cdef Py_ssize_t _copy_records(self, char *dst, Py_ssize_t stride, Py_ssize_t k) except -1
    cdef void _release(self) noexcept
    cdef int _deliver_batch(self, int64_t avail) except -1
    cdef list _take_bytes(self, Py_ssize_t k)
    cdef int _enter_pull(self) except -1


cdef class _Lease:
    cdef Receiver receiver
    cdef object max_count
    cdef object timeout
    cdef void *map
    cdef size_t map_size
    cdef const char *base
    cdef Py_ssize_t count
    cdef Py_ssize_t span
    cdef Py_ssize_t one
    cdef int entered
    cdef int exited
    cdef list views

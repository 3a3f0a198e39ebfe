# cython: language_level=3
cimport cython
from libc.stdint cimport int64_t, uint64_t
from cywhip._end cimport _End


@cython.final
cdef class Sender(_End):
    cdef Py_ssize_t publish_every

    cdef int _raise_timeout(self, object timeout, object sent) except -1
    cdef int _measure(self, object msg) except -1
    cdef int _put(self, object msg) except -1
    cdef int _put_bytes(self, object msg) except -1
    cdef int _put_plain(self, object msg) except -1
    cdef int _send_bytes(self, object msg, object timeout) except -1
    cdef bint _send_now_bytes(self, object msg) except -1
    cdef int _put_claimed(self, object msg) except -1
    cdef int64_t _claim(self, int64_t deadline, object timeout, object sent) except -1
    cdef bint _send_now(self, object msg) except -1


@cython.final
cdef class Receiver(_End):
    cdef object on_message
    cdef object on_error
    cdef object on_batch
    cdef object thread
    cdef object error
    # The error of a message a batch stopped before (see _take_list()).
    cdef object take_error

    cdef object _take(self)
    cdef object _take_one(self)
    cdef object _take_bytes(self)
    cdef object _take_one_bytes(self)
    cdef object _recv_now(self, object nothing)
    cdef list _recv_many_now(self, Py_ssize_t max_count)
    cdef int _raise_bad_length(self) except -1
    cdef list _take_list(self, Py_ssize_t k)
    cdef list _take_list_bytes(self, Py_ssize_t k)
    cdef Py_ssize_t _copy_records(self, char *dst, Py_ssize_t stride, Py_ssize_t k) except -1
    cdef int _enter_pull(self) except -1
    cdef int64_t _await(self, object timeout) except -1
    cdef int _deliver_batch(self, int64_t avail) except -1


cdef class Reservation:
    cdef Sender sender
    cdef Py_ssize_t size
    cdef Py_ssize_t used
    cdef object timeout
    cdef char *buf
    # Buffers exported and not yet released (memoryviews, NumPy arrays over the reservation).
    cdef Py_ssize_t exports
    cdef int state
    cdef Py_ssize_t one
    cdef object view

    cdef int _finish(self, bint send) except -1


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

    cdef list _lend_records(self, Receiver r, Py_ssize_t k)

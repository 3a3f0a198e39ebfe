# cython: language_level=3
"""Message forms: how a message goes into a slot and comes out of one.

One Codec per end, chosen once when the end opens (bytes, serializer and
deserializer callbacks, ctypes records, NumPy records, pickled Python objects);
the ends call it through these cdef methods and never ask which form it is.
"""
from libc.stdint cimport uint32_t


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


cdef class Codec:
    # The channel's name, for error messages.
    cdef str name
    cdef Py_ssize_t message_length
    # The RecordType of a typed form; None for bytes and callbacks.
    cdef object rtype
    # Bytes per record for typed forms, 0 otherwise.
    cdef Py_ssize_t record_size
    # on_batch and borrow() hand out one NumPy array rather than a list.
    cdef bint batches_as_array

    cdef Py_ssize_t measure(self, object msg) except -2
    cdef void forget(self) noexcept
    cdef Py_ssize_t encode(self, char *slot, object msg) except -1
    cdef object decode(self, const char *slot, Py_ssize_t n)
    cdef object lend(self, object whole, Py_ssize_t k, Py_ssize_t slot_size, list lengths, list offsets)
    cdef object new_batch(self, Py_ssize_t k)
    cdef int get_records(self, object arr, Py_buffer *view, int flags, str what) except -1
    cdef int _raise_too_long(self, Py_ssize_t n) except -1


cdef class BytesCodec(Codec):
    pass


cdef class ObjectCodec(Codec):
    # What measure() pickled, kept for the encode() of the same object that follows at once:
    # the object, its pickle stream, the raw views of its out-of-band buffers, the encoded size.
    cdef object kept_msg
    cdef bytes kept_main
    cdef list kept_views
    cdef Py_ssize_t kept_size
    cdef uint32_t kept_flags
    # The pickler, its output and the buffers it found: made once, used for every message.
    cdef object pickler
    cdef object out
    cdef list found

    cdef Py_ssize_t _pickle(self, object msg) except -1
    cdef int _corrupt(self, Py_ssize_t n, str why) except -1


cdef class CallbackCodec(Codec):
    cdef object serializer
    cdef object deserializer
    cdef WriteBuffer wbuf
    cdef ReadBuffer rbuf


cdef class CtypesCodec(Codec):
    cdef object ctype


cdef class NumpyCodec(Codec):
    cdef object dtype
    cdef object np


cdef Codec choose_codec(str name, Py_ssize_t message_length, object rtype,
                        object serializer, object deserializer)

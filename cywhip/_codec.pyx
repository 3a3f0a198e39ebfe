# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Message forms: WriteBuffer, ReadBuffer, and one Codec class per form.

A Codec writes one message into a slot's payload (``encode``, returning the
length) and builds one from a payload whose length the ring has checked
(``decode``).  It knows nothing of cursors or waiting: the ends do that and
call the codec chosen for them when they opened.  Adding a message form is
adding a class here and a line in ``choose_codec``.
"""
import ctypes

from cpython.buffer cimport (
    PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_WRITABLE,
)
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_CheckExact
from libc.string cimport memcpy

from cywhip.includes.c_copy cimport cw_copy
from cywhip.includes.c_layout cimport cw_fixed_slot_offset

from cywhip._types import CTYPES_BASES, check_pointer_free, require_numpy
from cywhip.errors import ChannelClosedError, MessageTooLongError

# Copies at least this long run with the GIL released.
cdef enum:
    NOGIL_COPY_BYTES = 65536

# Every ctypes instance, pointers included: their types are checked for pointers.
_CTYPES_ANY = CTYPES_BASES + (ctypes._Pointer, ctypes._CFuncPtr)


cdef inline void _copy(char *dst, const char *src, Py_ssize_t n) noexcept:
    if n < NOGIL_COPY_BYTES:
        # Up to 64 bytes in moves of eight, without a call into libc (includes/copy.h).
        cw_copy(dst, src, <size_t>n)
    else:
        with nogil:
            memcpy(dst, src, n)


# ----------------------------------------------------------------------- buffers

cdef class WriteBuffer:
    """Where a ``message_serializer`` writes one message, straight into its slot.

    Valid only during the serializer call it is passed to.
    """

    def __cinit__(self):
        self.data = NULL
        self.pos = 0
        self.limit = 0

    cdef inline void _lend(self, char *data, Py_ssize_t limit) noexcept:
        self.data = data
        self.pos = 0
        self.limit = limit

    cdef inline Py_ssize_t _take_back(self) noexcept:
        cdef Py_ssize_t n = self.pos
        self.data = NULL
        self.pos = 0
        self.limit = 0
        return n

    cdef int _append(self, const char *src, Py_ssize_t n) except -1:
        if self.data == NULL:
            raise ChannelClosedError("a WriteBuffer is valid only inside the message_serializer call it was passed to")
        if n > self.limit - self.pos:
            raise MessageTooLongError(
                f"writing {n} bytes at offset {self.pos} makes the message {self.pos + n} bytes "
                f"long; message_length is {self.limit}")
        memcpy(self.data + self.pos, src, n)
        self.pos += n
        return 0

    cdef int _append_object(self, object obj, str what) except -1:
        cdef Py_buffer view
        try:
            PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE)
        except (TypeError, BufferError):
            raise TypeError(f"{what} needs a ctypes instance or a contiguous bytes-like object, "
                            f"not {type(obj).__name__}") from None
        try:
            self._append(<const char *>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)
        return 0

    def write(self, obj):
        """Append the bytes of a ctypes instance (structure, array, simple type) or a bytes-like object."""
        if PyBytes_CheckExact(obj):
            self._append(PyBytes_AS_STRING(obj), PyBytes_GET_SIZE(obj))
            return
        if isinstance(obj, _CTYPES_ANY):
            check_pointer_free(type(obj))
        self._append_object(obj, "write()")

    def write_bytes(self, data):
        """Append a bytes-like object."""
        self._append_object(data, "write_bytes()")

    @property
    def position(self):
        """Bytes written so far."""
        return self.pos

    @property
    def remaining(self):
        """Bytes that may still be written."""
        return self.limit - self.pos


cdef class ReadBuffer:
    """What a ``message_deserializer`` reads one message from.

    Valid only during the deserializer call it is passed to.
    """

    def __cinit__(self):
        self.data = NULL
        self.pos = 0
        self.length = 0

    cdef inline void _lend(self, const char *data, Py_ssize_t length) noexcept:
        self.data = data
        self.pos = 0
        self.length = length

    cdef inline void _take_back(self) noexcept:
        self.data = NULL
        self.pos = 0
        self.length = 0

    cdef int _check(self, Py_ssize_t n, object what) except -1:
        if self.data == NULL:
            raise ChannelClosedError("a ReadBuffer is valid only inside the message_deserializer call it was passed to")
        if n > self.length - self.pos:
            raise ValueError(f"reading {what} ({n} bytes) at offset {self.pos} runs past the end "
                             f"of the {self.length}-byte message")
        return 0

    def read(self, ctype):
        """Read the next ``sizeof(ctype)`` bytes as a new instance of the ctypes type ``ctype``.

        Types that hold pointers anywhere (``c_char_p``, ``c_void_p``,
        ``py_object``, pointer fields) are refused: the peer would choose an
        address this process then follows.
        """
        cdef Py_buffer view
        if not (isinstance(ctype, type) and issubclass(ctype, CTYPES_BASES)):
            raise TypeError(f"expected a ctypes type (Structure, Union, Array or simple type), got {ctype!r}")
        check_pointer_free(ctype)
        obj = ctype.__new__(ctype)
        PyObject_GetBuffer(obj, &view, PyBUF_WRITABLE)
        try:
            self._check(view.len, ctype.__name__)
            memcpy(view.buf, self.data + self.pos, view.len)
            self.pos += view.len
        finally:
            PyBuffer_Release(&view)
        return obj

    def read_bytes(self, n=None):
        """Read the next ``n`` bytes (all that remain if ``n`` is None) as ``bytes``."""
        cdef Py_ssize_t k
        if n is None:
            k = self.length - self.pos
        else:
            k = n
            if k < 0:
                raise ValueError(f"read_bytes() needs a non-negative count, got {n}")
        self._check(k, "bytes")
        out = PyBytes_FromStringAndSize(self.data + self.pos, k)
        self.pos += k
        return out

    def __len__(self):
        return self.length

    @property
    def position(self):
        """Bytes read so far."""
        return self.pos

    @property
    def remaining(self):
        """Bytes of the message not read yet."""
        return self.length - self.pos


# ------------------------------------------------------------------------ codecs

cdef class Codec:
    """One message form.  The base class is abstract: choose_codec() picks a subclass."""

    cdef Py_ssize_t encode(self, char *slot, object msg) except -1:
        """Write msg into the payload at slot (room for message_length bytes); return its length."""
        raise NotImplementedError

    cdef object decode(self, const char *slot, Py_ssize_t n):
        """Build a message from the n-byte payload at slot (n checked by the ring and the end)."""
        raise NotImplementedError

    cdef object lend(self, object whole, Py_ssize_t k, Py_ssize_t slot_size, list lengths):
        """What borrow() hands out for k messages viewed through the memoryview whole (its
        payloads slot_size bytes apart, the layout's record descriptor)."""
        cdef Py_ssize_t i, at
        cdef list out = []
        for i in range(k):
            at = <Py_ssize_t>cw_fixed_slot_offset(slot_size, i)
            out.append(whole[at:at + lengths[i]])
        return out

    cdef object new_batch(self, Py_ssize_t k):
        """A new NumPy array for k records (typed forms only)."""
        raise TypeError("a typed channel is needed for arrays: open the end with message_type=...")

    cdef int get_records(self, object arr, Py_buffer *view, int flags, str what) except -1:
        """Export arr's buffer as a 1-D run of this channel's records (typed forms only)."""
        raise TypeError(f"{what}() needs a typed channel: open the end with message_type=...")

    cdef int _raise_too_long(self, Py_ssize_t n) except -1:
        raise MessageTooLongError(f"message is {n} bytes, longer than message_length={self.message_length} "
                                  f"of channel {self.name!r}")


cdef class BytesCodec(Codec):
    """Untyped, no callbacks: a message is any contiguous bytes-like object; it arrives as bytes."""

    cdef Py_ssize_t encode(self, char *slot, object msg) except -1:
        cdef Py_ssize_t n
        cdef Py_buffer view
        if PyBytes_CheckExact(msg):
            n = PyBytes_GET_SIZE(msg)
            if n > self.message_length:
                self._raise_too_long(n)
            _copy(slot, PyBytes_AS_STRING(msg), n)
            return n
        try:
            PyObject_GetBuffer(msg, &view, PyBUF_SIMPLE)
        except (TypeError, BufferError):
            raise TypeError(f"without a message_serializer, messages must be contiguous "
                            f"bytes-like objects, not {type(msg).__name__}") from None
        try:
            n = view.len
            if n > self.message_length:
                self._raise_too_long(n)
            _copy(slot, <const char *>view.buf, n)
        finally:
            PyBuffer_Release(&view)
        return n

    cdef object decode(self, const char *slot, Py_ssize_t n):
        if n < NOGIL_COPY_BYTES:
            return PyBytes_FromStringAndSize(slot, n)
        out = PyBytes_FromStringAndSize(NULL, n)
        _copy(PyBytes_AS_STRING(out), slot, n)
        return out


cdef class CallbackCodec(Codec):
    """The WhIPCrack form: serializer(msg, WriteBuffer) and deserializer(ReadBuffer) -> msg.

    A sender's codec has only a serializer and decodes nothing; a receiver's
    has only a deserializer (without one, the receiver uses BytesCodec).
    """

    cdef Py_ssize_t encode(self, char *slot, object msg) except -1:
        cdef WriteBuffer wb = self.wbuf
        wb._lend(slot, self.message_length)
        try:
            self.serializer(msg, wb)
        finally:
            n = wb._take_back()
        return n

    cdef object decode(self, const char *slot, Py_ssize_t n):
        cdef ReadBuffer rb = self.rbuf
        rb._lend(slot, n)
        try:
            return self.deserializer(rb)
        finally:
            rb._take_back()


cdef int _get_records(Codec codec, object np, object arr, Py_buffer *view, int flags, str what) except -1:
    """Export arr's buffer as a 1-D run of codec's records, judged by the buffer itself.

    Only NumPy's own ndarray exports exactly what its dtype attribute says;
    anything else (a subclass may override __buffer__, any object may carry a
    dtype attribute) is read through the buffer it exports, and the record
    size is checked on the exported buffer in every case.
    """
    src = arr
    if type(arr) is not np.ndarray:
        try:
            src = np.asarray(memoryview(arr))
        except (TypeError, ValueError, BufferError, NotImplementedError):
            src = None
    dt = getattr(src, "dtype", None) if src is not None else None
    if dt is None or not codec.rtype.accepts_dtype(dt):
        raise TypeError(f"{what}() needs a NumPy array of the channel's records "
                        f"({codec.rtype.description}, {codec.record_size}-byte records), got "
                        f"{type(arr).__name__}" + (f" exporting {dt}" if dt is not None else ""))
    try:
        PyObject_GetBuffer(src, view, flags)
    except (BufferError, ValueError) as exc:
        need = "a writable array" if flags & PyBUF_WRITABLE else "an array whose buffer it can read"
        raise ValueError(f"{what}() needs {need}: {exc}") from None
    ndim, itemsize = view.ndim, view.itemsize
    if ndim != 1 or itemsize != codec.record_size:
        PyBuffer_Release(view)
        if ndim != 1:
            raise ValueError(f"{what}() needs a 1-D array of records, got {ndim} dimensions")
        raise TypeError(f"{what}() needs the channel's {codec.record_size}-byte records; the array "
                        f"exports {itemsize}-byte items")
    return 0


cdef inline int _copy_record_in(Codec codec, char *slot, object msg) except -1:
    cdef Py_buffer view
    PyObject_GetBuffer(msg, &view, PyBUF_SIMPLE)
    try:
        if view.len != codec.record_size:
            raise TypeError(f"a {type(msg).__name__} of {view.len} bytes is not one "
                            f"{codec.record_size}-byte record")
        memcpy(slot, view.buf, codec.record_size)
    finally:
        PyBuffer_Release(&view)
    return 0


cdef class CtypesCodec(Codec):
    """Records of a ctypes type: instances in, instances out; arrays through NumPy's equivalent dtype."""

    cdef Py_ssize_t encode(self, char *slot, object msg) except -1:
        if not isinstance(msg, self.ctype):
            name = self.ctype.__name__
            hint = (f": build one from {self.record_size} bytes with {name}.from_buffer_copy(data)"
                    if isinstance(msg, (bytes, bytearray, memoryview)) else
                    f": send {name} instances, or a NumPy array of them with send_array()"
                    if hasattr(msg, "dtype") else f": send {name} instances")
            raise TypeError(f"channel {self.name!r} carries {name} records "
                            f"({self.record_size} bytes), not {type(msg).__name__}{hint}")
        _copy_record_in(self, slot, msg)
        return self.record_size

    cdef object decode(self, const char *slot, Py_ssize_t n):
        cdef Py_buffer view
        out = self.ctype.__new__(self.ctype)
        PyObject_GetBuffer(out, &view, PyBUF_WRITABLE)
        memcpy(view.buf, slot, n)
        PyBuffer_Release(&view)
        return out

    cdef object new_batch(self, Py_ssize_t k):
        return require_numpy().empty(k, self.rtype.dtype)

    cdef int get_records(self, object arr, Py_buffer *view, int flags, str what) except -1:
        return _get_records(self, require_numpy(), arr, view, flags, what)


cdef class NumpyCodec(Codec):
    """Records of a NumPy dtype: single records or whole arrays; batches and borrows are arrays."""

    cdef Py_ssize_t encode(self, char *slot, object msg) except -1:
        dt = getattr(msg, "dtype", None)
        if dt is None or getattr(msg, "size", 1) != 1 or not self.rtype.accepts_dtype(dt):
            got = type(msg).__name__ + (f" of dtype {dt}" if dt is not None else "")
            if dt is None and isinstance(msg, (bytes, bytearray, memoryview)):
                hint = (f"send a record of that dtype (numpy.frombuffer(data, dtype)[0] makes one "
                        f"from {self.record_size} bytes)")
            elif dt is not None and getattr(msg, "size", 1) != 1 and self.rtype.accepts_dtype(dt):
                hint = "send() takes one record: use send_array() for an array of them"
            else:
                hint = "send() takes one record of that dtype (send_array() an array of them)"
            raise TypeError(f"channel {self.name!r} carries single records of dtype {self.dtype}, "
                            f"got {got}: {hint}")
        _copy_record_in(self, slot, msg)
        return self.record_size

    cdef object decode(self, const char *slot, Py_ssize_t n):
        cdef Py_buffer view
        out = self.np.empty(1, self.dtype)
        PyObject_GetBuffer(out, &view, PyBUF_WRITABLE)
        memcpy(view.buf, slot, n)
        PyBuffer_Release(&view)
        return out[0]

    cdef object lend(self, object whole, Py_ssize_t k, Py_ssize_t slot_size, list lengths):
        return self.np.ndarray((k,), self.dtype, buffer=whole, strides=(slot_size,))

    cdef object new_batch(self, Py_ssize_t k):
        return self.np.empty(k, self.dtype)

    cdef int get_records(self, object arr, Py_buffer *view, int flags, str what) except -1:
        return _get_records(self, self.np, arr, view, flags, what)


cdef Codec choose_codec(str name, Py_ssize_t message_length, object rtype,
                        object serializer, object deserializer):
    """The codec for an end: typed (rtype given), callbacks, or bytes."""
    cdef Codec codec
    cdef CallbackCodec cb
    cdef CtypesCodec ct
    cdef NumpyCodec nc
    if rtype is not None and rtype.kind == "ctypes":
        codec = ct = CtypesCodec.__new__(CtypesCodec)
        ct.ctype = rtype.ctype
    elif rtype is not None:
        codec = nc = NumpyCodec.__new__(NumpyCodec)
        nc.np = require_numpy()
        nc.dtype = rtype.dtype
        codec.batches_as_array = True
    elif serializer is not None or deserializer is not None:
        codec = cb = CallbackCodec.__new__(CallbackCodec)
        cb.serializer = serializer
        cb.deserializer = deserializer
        cb.wbuf = WriteBuffer()
        cb.rbuf = ReadBuffer()
    else:
        codec = BytesCodec.__new__(BytesCodec)
    codec.name = name
    codec.message_length = message_length
    codec.rtype = rtype
    codec.record_size = rtype.size if rtype is not None else 0
    return codec

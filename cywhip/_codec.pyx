# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Message forms: WriteBuffer, ReadBuffer, and one Codec class per form.

A Codec writes one message into a slot's payload (``encode``, returning the
length) and builds one from a payload whose length the ring has checked
(``decode``).  It knows nothing of cursors or waiting: the ends do that and
call the codec chosen for them when they opened.  Adding a message form is
adding a class here and a line in ``choose_codec``.
"""
import ctypes
import io

cimport cython
import pickle

from cpython.buffer cimport (
    PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_WRITABLE,
)
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_CheckExact
from cpython.bytearray cimport PyByteArray_FromStringAndSize, PyByteArray_AS_STRING, PyByteArray_CheckExact
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy, memset

from cywhip.includes.c_copy cimport cw_copy
from cywhip.includes.c_layout cimport cw_fixed_slot_offset

from cywhip._types import CTYPES_BASES, check_pointer_free, require_numpy
from cywhip.errors import ChannelClosedError, ChannelCorruptError, MessageTooLongError

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

    cdef Py_ssize_t measure(self, object msg) except -2:
        """The exact number of bytes encode(msg) writes, if this form knows it before encoding;
        -1 if it does not (a serializer callback: the sender then claims message_length).

        A form that has to do the work of encoding to know (objects: pickling) keeps what it
        computed for the encode() of the same message that follows at once; a sender that
        measured a message and then does not encode it calls forget()."""
        return -1

    cdef void forget(self) noexcept:
        """Drop what measure() kept for an encode() that will not come."""
        pass

    cdef Py_ssize_t encode(self, char *slot, object msg) except -1:
        """Write msg into the payload at slot (room for message_length bytes); return its length."""
        raise NotImplementedError

    cdef object decode(self, const char *slot, Py_ssize_t n):
        """Build a message from the n-byte payload at slot (n checked by the ring and the end)."""
        raise NotImplementedError

    cdef object lend(self, object whole, Py_ssize_t k, Py_ssize_t slot_size, list lengths, list offsets):
        """What borrow() hands out for k messages viewed through the memoryview whole (its
        payloads slot_size bytes apart, the layout's record descriptor; on a byte channel, at
        offsets, which the ring's records gave)."""
        cdef Py_ssize_t i, at
        cdef list out = []
        for i in range(k):
            at = <Py_ssize_t>cw_fixed_slot_offset(slot_size, i) if offsets is None else offsets[i]
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

    cdef Py_ssize_t measure(self, object msg) except -2:
        cdef Py_buffer view
        cdef Py_ssize_t n
        if PyBytes_CheckExact(msg):
            return PyBytes_GET_SIZE(msg)
        try:
            PyObject_GetBuffer(msg, &view, PyBUF_SIMPLE)
        except (TypeError, BufferError):
            return -1    # not bytes-like: encode() says so
        n = view.len
        PyBuffer_Release(&view)
        return n

    cdef object decode(self, const char *slot, Py_ssize_t n):
        if n < NOGIL_COPY_BYTES:
            return PyBytes_FromStringAndSize(slot, n)
        out = PyBytes_FromStringAndSize(NULL, n)
        _copy(PyBytes_AS_STRING(out), slot, n)
        return out


# An object message (docs/protocol.md, "Object messages"), all integers little-endian:
#   [u32 count][u32 flags][u64 pickle length][u64 length of buffer i, for i < count]
#   [pickle stream][buffer 0][buffer 1]...
# each buffer starting at an offset that is a multiple of 8 (zero bytes before it), the last
# ending the message.
cdef enum:
    OBJECT_HEAD = 16
    # The flag: bytearrays went out of band, as persistent ids (the receiver unpickles them
    # with an Unpickler that takes them back; without the flag, pickle.loads does).
    OBJECT_BYTEARRAYS = 1

cdef object _PickleBuffer = pickle.PickleBuffer
cdef object _loads = pickle.loads
cdef object _BytesIO = io.BytesIO


@cython.binding(False)
def _persistent_id(obj):
    """A bytearray goes out of band, as a PickleBuffer (pickle keeps bytearrays in the stream;
    NumPy arrays and PickleBuffers it sends out of band by itself)."""
    if PyByteArray_CheckExact(obj):
        return _PickleBuffer(obj)
    return None


@cython.binding(False)
def _persistent_load(pid):
    """The buffer made for a bytearray sent out of band: a bytearray already."""
    return pid if PyByteArray_CheckExact(pid) else bytearray(pid)


class _Pickler(pickle.Pickler):
    # Builtins, not methods: pickle calls them with the object alone, without a Python frame.
    persistent_id = _persistent_id


class _Unpickler(pickle.Unpickler):
    persistent_load = _persistent_load


cdef inline Py_ssize_t _align8(Py_ssize_t n) noexcept:
    return (n + 7) & ~(<Py_ssize_t>7)


cdef class ObjectCodec(Codec):
    """Any picklable object (message_type=object): pickle protocol 5, its out-of-band buffers
    (NumPy arrays, bytearrays, PickleBuffers) copied straight from their memory into the
    slot, and out of it into one new bytearray each; the pickle stream is the rest.

    pickle.loads runs code the stream names: a receiver trusts its senders as itself.
    """

    cdef Py_ssize_t _pickle(self, object msg) except -1:
        """Pickle msg; keep the stream and the raw views of its buffers; return the encoded size."""
        cdef list found
        cdef list views = []
        cdef Py_ssize_t size
        cdef uint32_t flags = 0
        self.forget()
        if self.pickler is None:
            # One pickler per end, used again for every message (one call at a time).
            self.found = []
            self.out = _BytesIO()
            self.pickler = _Pickler(self.out, protocol=5, buffer_callback=self.found.append)
        found = self.found
        out = self.out
        try:
            self.pickler.dump(msg)
            main = out.getvalue()
            for pb in found:
                # Contiguous: pickle refuses a PickleBuffer of any other before it gets here.
                view = pb.raw()
                if PyByteArray_CheckExact(view.obj):
                    flags |= OBJECT_BYTEARRAYS
                views.append(view)
        finally:
            # Nothing of msg stays referenced by the pickler (the views hold what is needed).
            self.pickler.clear_memo()
            out.seek(0)
            out.truncate()
            found.clear()
        self.kept_flags = flags
        size = OBJECT_HEAD + 8 * len(views) + len(main)
        for v in views:
            size = _align8(size) + len(v)
        self.kept_msg = msg
        self.kept_main = main
        self.kept_views = views
        self.kept_size = size
        return size

    cdef Py_ssize_t measure(self, object msg) except -2:
        return self._pickle(msg)

    cdef void forget(self) noexcept:
        # Dropping the views releases the exporters' buffers (a bytearray can be resized again).
        self.kept_msg = None
        self.kept_main = None
        self.kept_views = None
        self.kept_size = 0
        self.kept_flags = 0

    cdef Py_ssize_t encode(self, char *slot, object msg) except -1:
        cdef Py_ssize_t size, pos, n, k, count
        cdef uint32_t head32[2]
        cdef uint64_t length
        cdef Py_buffer view
        if self.kept_main is None or self.kept_msg is not msg:
            self._pickle(msg)
        try:
            size = self.kept_size
            if size > self.message_length:
                self._raise_too_long(size)
            main = self.kept_main
            views = self.kept_views
            count = len(views)
            head32[0] = <uint32_t>count
            head32[1] = self.kept_flags
            memcpy(slot, head32, 8)
            length = <uint64_t>PyBytes_GET_SIZE(main)
            memcpy(slot + 8, &length, 8)
            for k in range(count):
                length = <uint64_t>len(views[k])
                memcpy(slot + OBJECT_HEAD + 8 * k, &length, 8)
            pos = OBJECT_HEAD + 8 * count
            _copy(slot + pos, PyBytes_AS_STRING(main), PyBytes_GET_SIZE(main))
            pos += PyBytes_GET_SIZE(main)
            for v in views:
                PyObject_GetBuffer(v, &view, PyBUF_SIMPLE)
                try:
                    n = view.len
                    if _align8(pos) + n > size:
                        raise RuntimeError(f"an out-of-band buffer of the message changed size "
                                           f"while it was being sent ({n} bytes now)")
                    memset(slot + pos, 0, _align8(pos) - pos)
                    pos = _align8(pos)
                    _copy(slot + pos, <const char *>view.buf, n)
                    pos += n
                finally:
                    PyBuffer_Release(&view)
            return pos
        finally:
            self.forget()

    cdef int _corrupt(self, Py_ssize_t n, str why) except -1:
        raise ChannelCorruptError(f"channel {self.name!r} is corrupt: the {n}-byte object message "
                                  f"at the read cursor {why}")

    cdef object decode(self, const char *slot, Py_ssize_t n):
        cdef uint32_t head32[2]
        cdef uint32_t flags
        cdef uint64_t main_len, length
        cdef Py_ssize_t count, head, pos, k
        cdef uint64_t *lengths = NULL
        cdef list bufs = []
        if n < OBJECT_HEAD:
            self._corrupt(n, f"is shorter than the {OBJECT_HEAD}-byte head of one")
        # Each word of the head read once, into locals; only they are used.
        memcpy(head32, slot, 8)
        memcpy(&main_len, slot + 8, 8)
        flags = head32[1]
        if flags & ~(<uint32_t>OBJECT_BYTEARRAYS):
            self._corrupt(n, f"has flags {flags:#x}, where only {OBJECT_BYTEARRAYS:#x} is defined")
        count = head32[0]
        if count > (n - OBJECT_HEAD) // 8:
            self._corrupt(n, f"claims {count} out-of-band buffers, whose lengths alone take "
                             f"{OBJECT_HEAD + 8 * count} bytes")
        head = OBJECT_HEAD + 8 * count
        if main_len > <uint64_t>(n - head):
            self._corrupt(n, f"claims a pickle stream of {main_len} bytes after its {head}-byte "
                             f"head")
        if count:
            lengths = <uint64_t *>PyMem_Malloc(count * sizeof(uint64_t))
            if lengths == NULL:
                raise MemoryError()
        try:
            pos = head + <Py_ssize_t>main_len
            for k in range(count):
                memcpy(&length, slot + OBJECT_HEAD + 8 * k, 8)
                pos = _align8(pos)
                if pos > n or length > <uint64_t>(n - pos):
                    self._corrupt(n, f"claims {length} bytes for out-of-band buffer {k} of {count}, "
                                     f"at offset {pos}")
                lengths[k] = length
                pos += <Py_ssize_t>length
            if pos != n:
                self._corrupt(n, f"ends its pickle stream ({main_len} bytes) and {count} "
                                 f"out-of-band buffers at offset {pos}")
            main = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>main_len)
            _copy(PyBytes_AS_STRING(main), slot + head, <Py_ssize_t>main_len)
            pos = head + <Py_ssize_t>main_len
            for k in range(count):
                pos = _align8(pos)
                buf = PyByteArray_FromStringAndSize(NULL, <Py_ssize_t>lengths[k])
                _copy(PyByteArray_AS_STRING(buf), slot + pos, <Py_ssize_t>lengths[k])
                bufs.append(buf)
                pos += <Py_ssize_t>lengths[k]
        finally:
            PyMem_Free(lengths)
        if flags & OBJECT_BYTEARRAYS:
            return _Unpickler(_BytesIO(main), buffers=bufs).load()
        return _loads(main, buffers=bufs)

    cdef object lend(self, object whole, Py_ssize_t k, Py_ssize_t slot_size, list lengths, list offsets):
        raise TypeError(f"borrow() lends the bytes of messages where they lie; channel "
                        f"{self.name!r} carries Python objects (message_type=object), which are "
                        f"unpickled into new objects: take them with recv() or recv_many()")

    cdef object new_batch(self, Py_ssize_t k):
        raise TypeError(f"channel {self.name!r} carries Python objects (message_type=object), "
                        f"not fixed-size records: take them with recv() or recv_many()")

    cdef int get_records(self, object arr, Py_buffer *view, int flags, str what) except -1:
        use = "send() it as a message" if what == "send_array" else "take it with recv()"
        raise TypeError(f"{what}() moves arrays of fixed-size records of a typed channel; channel "
                        f"{self.name!r} carries Python objects (message_type=object): an array "
                        f"is one object there, copied once each way: {use}")

    cdef int _raise_too_long(self, Py_ssize_t n) except -1:
        raise MessageTooLongError(f"the pickled message is {n} bytes (its pickle stream, its "
                                  f"out-of-band buffers and their lengths), longer than "
                                  f"message_length={self.message_length} of channel {self.name!r}: "
                                  f"give the channel a larger message_length")


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

    cdef object lend(self, object whole, Py_ssize_t k, Py_ssize_t slot_size, list lengths, list offsets):
        return self.np.ndarray((k,), self.dtype, buffer=whole, strides=(slot_size,))

    cdef object new_batch(self, Py_ssize_t k):
        return self.np.empty(k, self.dtype)

    cdef int get_records(self, object arr, Py_buffer *view, int flags, str what) except -1:
        return _get_records(self, self.np, arr, view, flags, what)


cdef Codec choose_codec(str name, Py_ssize_t message_length, object rtype,
                        object serializer, object deserializer):
    """The codec for an end: Python objects, typed (rtype given), callbacks, or bytes."""
    cdef Codec codec
    cdef CallbackCodec cb
    cdef CtypesCodec ct
    cdef NumpyCodec nc
    if rtype is not None and rtype.kind == "object":
        codec = ObjectCodec.__new__(ObjectCodec)
    elif rtype is not None and rtype.kind == "ctypes":
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

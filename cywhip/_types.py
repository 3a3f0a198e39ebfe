"""Record types of typed channels: ctypes types and NumPy dtypes, described the same way.

Both ends of a typed channel must agree on the record layout.  A layout is
reduced to a canonical description -- every field's name, offset, kind,
size and byte order, nested structures and arrays included, and the record
size -- so that a ctypes Structure and the NumPy dtype with the same layout
describe identically and may talk to each other.  The channel header keeps
the description and a 64-bit fingerprint of it.
"""
import ctypes
import hashlib
import sys

__all__ = ["RecordType", "record_type", "check_pointer_free", "require_numpy", "CTYPES_BASES",
           "OBJECT_FORM", "form_mismatch"]

_NATIVE = "<" if sys.byteorder == "little" else ">"
# ctypes types whose instances may cross processes (once checked for pointers).
CTYPES_BASES = (ctypes.Structure, ctypes.Union, ctypes.Array, ctypes._SimpleCData)

# ctypes simple type codes -> (kind, size); kinds follow NumPy's dtype.kind.
_CTYPES_CODES = {
    "b": "i", "h": "i", "i": "i", "l": "i", "q": "i",
    "B": "u", "H": "u", "I": "u", "L": "u", "Q": "u",
    "f": "f", "d": "f", "g": "f",
    "?": "b", "c": "S",
}
_BIG = tuple(t for t in (getattr(ctypes, "BigEndianStructure", None), getattr(ctypes, "BigEndianUnion", None)) if t)
_LITTLE = tuple(t for t in (getattr(ctypes, "LittleEndianStructure", None), getattr(ctypes, "LittleEndianUnion", None)) if t)


def _leaf(kind, size, order):
    if size == 1:
        order = "|"
    return f"{order}{kind}{size}"


def _ctypes_desc(t, order):
    """Canonical description of ctypes type t; order is the byte order its simple fields use."""
    if isinstance(t, type) and issubclass(t, (ctypes.Structure, ctypes.Union)):
        if issubclass(t, _BIG):
            order = ">"
        elif issubclass(t, _LITTLE):
            order = "<"
        parts = []
        for field in t._fields_:
            if len(field) != 2:
                raise TypeError(f"{t.__name__}.{field[0]}: bit fields are not supported in typed channels")
            name = field[0]
            cfield = getattr(t, name)
            parts.append(f"{name}@{cfield.offset}:{_ctypes_desc(field[1], order)}")
        return "{" + ",".join(parts) + f"}}{ctypes.sizeof(t)}"
    if isinstance(t, type) and issubclass(t, ctypes.Array):
        return f"[{t._length_}]{_ctypes_desc(t._type_, order)}"
    if isinstance(t, type) and issubclass(t, ctypes._SimpleCData):
        code = t._type_
        if code not in _CTYPES_CODES:
            raise TypeError(f"ctypes type {t.__name__} (code {code!r}) cannot be sent: "
                            f"pointers and strings mean nothing in another process")
        if getattr(t, "__ctype_le__" if _NATIVE == "<" else "__ctype_be__", t) is not t:
            # A byte-swapped type (as used by a foreign-endian structure).
            order = ">" if _NATIVE == "<" else "<"
        return _leaf(_CTYPES_CODES[code], ctypes.sizeof(t), order)
    if isinstance(t, type) and issubclass(t, ctypes._Pointer):
        raise TypeError(f"ctypes pointer type {t.__name__} cannot be sent: an address means nothing "
                        f"in another process")
    raise TypeError(f"expected a ctypes Structure, Union, Array or simple type, got {t!r}")


_POINTER_CODES = {"z": "c_char_p", "Z": "c_wchar_p", "P": "c_void_p", "O": "py_object"}
_pointer_free = {}


def _pointer_in(t):
    """Where ctypes type t holds a pointer, as a phrase; None if nowhere."""
    if isinstance(t, type) and issubclass(t, (ctypes._Pointer, ctypes._CFuncPtr)):
        return f"{t.__name__} is a pointer"
    if isinstance(t, type) and issubclass(t, (ctypes.Structure, ctypes.Union)):
        for field in t._fields_:
            inner = _pointer_in(field[1])
            if inner is not None:
                return f"field {field[0]!r}: {inner}"
        return None
    if isinstance(t, type) and issubclass(t, ctypes.Array):
        inner = _pointer_in(t._type_)
        return None if inner is None else f"its items: {inner}"
    if isinstance(t, type) and issubclass(t, ctypes._SimpleCData):
        code = getattr(t, "_type_", None)
        if code in _POINTER_CODES:
            return f"{t.__name__} holds an address ({_POINTER_CODES[code]})"
    return None


def check_pointer_free(t):
    """Raise TypeError if ctypes type t holds a pointer anywhere: an address from another
    process must never be followed here, nor one of ours handed out."""
    try:
        found = _pointer_free[t]
    except (KeyError, TypeError):
        found = _pointer_in(t)
        try:
            _pointer_free[t] = found
        except TypeError:
            pass
    if found is not None:
        raise TypeError(f"ctypes type {t.__name__} cannot cross processes: {found}; "
                        f"an address means nothing in another process")


def _numpy_desc(dt):
    if dt.fields is not None:
        parts = []
        for name in sorted(dt.names, key=lambda n: dt.fields[n][1]):
            fdt, offset = dt.fields[name][:2]
            parts.append(f"{name}@{offset}:{_numpy_desc(fdt)}")
        return "{" + ",".join(parts) + f"}}{dt.itemsize}"
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        count = 1
        for n in shape:
            count *= n
        return f"[{count}]{_numpy_desc(base)}"
    if dt.kind in "OV" or dt.hasobject:
        raise TypeError(f"NumPy dtype {dt} cannot be sent: it holds Python objects or untyped bytes "
                        f"(for a channel of pickled Python objects, give message_type=object)")
    order = dt.byteorder
    if order == "=":
        order = _NATIVE
    leaf = _leaf(dt.kind, dt.itemsize, order)
    if dt.kind in "mM":
        # The unit is part of the value's meaning: M8[s] and M8[ns] must not meet.
        unit, count = _numpy().datetime_data(dt)
        leaf += f"[{count if count != 1 else ''}{unit}]"
    return leaf


class RecordType:
    """A record type of a typed channel: the user's type, its size, description and fingerprint."""

    __slots__ = ("source", "kind", "size", "description", "fingerprint", "ctype", "_dtype")

    def __init__(self, source):
        self.source = source
        self.ctype = None
        self._dtype = None
        if isinstance(source, type) and issubclass(source, ctypes._Pointer):
            _ctypes_desc(source, _NATIVE)   # raises, naming the pointer type
        if isinstance(source, type) and issubclass(source, CTYPES_BASES):
            self.kind = "ctypes"
            self.ctype = source
            self.size = ctypes.sizeof(source)
            body = _ctypes_desc(source, _NATIVE)
        else:
            np = _numpy()
            if np is None:
                raise TypeError(f"message_type must be a ctypes type, or a NumPy dtype with NumPy "
                                f"installed (pip install cywhip[numpy]); got {source!r}")
            try:
                dt = np.dtype(source)
            except TypeError:
                raise TypeError(f"message_type must be a ctypes type or a NumPy dtype, got {source!r}") from None
            self.kind = "numpy"
            self._dtype = dt
            self.size = dt.itemsize
            body = _numpy_desc(dt)
        if self.size < 1:
            raise ValueError(f"message_type {source!r} has size 0; records need at least one byte")
        # A bare scalar or array describes itself; wrap so every description names the size.
        self.description = body if body.startswith("{") else f"{body}={self.size}"
        digest = hashlib.blake2b(self.description.encode(), digest_size=8).digest()
        self.fingerprint = int.from_bytes(digest, "little") or 1

    @property
    def dtype(self):
        """The NumPy dtype of these records (NumPy required; for ctypes types, NumPy's equivalent)."""
        if self._dtype is None:
            self._dtype = require_numpy().dtype(self.ctype)
        return self._dtype

    def accepts_dtype(self, dt):
        """Whether an array of dtype dt holds exactly these records."""
        if dt is self._dtype:
            return True
        try:
            return _numpy_desc(dt) == _strip(self.description)
        except TypeError:
            return False

    def __repr__(self):
        return f"<RecordType {self.kind} {self.size} bytes {self.description}>"


def _strip(description):
    """The description without the size suffix added for bare scalars and arrays."""
    if not description.startswith("{") and "=" in description:
        return description.rsplit("=", 1)[0]
    return description


def record_type(message_type):
    """RecordType for a ctypes type or NumPy dtype (cached per type object)."""
    try:
        return _cache[message_type]
    except (KeyError, TypeError):
        pass
    rt = RecordType(message_type)
    try:
        _cache[message_type] = rt
    except TypeError:
        pass
    return rt


_cache = {}


def _numpy():
    try:
        import numpy
    except ImportError:
        return None
    return numpy


def require_numpy():
    """NumPy, or ModuleNotFoundError saying how to install it."""
    np = _numpy()
    if np is None:
        raise ModuleNotFoundError("this needs NumPy: pip install cywhip[numpy]")
    return np


def first_difference(a, b):
    """Where two descriptions first differ, as a short phrase for an error message."""
    if a == b:
        return None
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    start = max(a.rfind(",", 0, i), a.rfind("{", 0, i)) + 1
    end_a = min([k for k in (a.find(",", i), a.find("}", i)) if k >= 0] or [len(a)])
    end_b = min([k for k in (b.find(",", i), b.find("}", i)) if k >= 0] or [len(b)])
    return f"{a[start:end_a] or '(end)'} vs {b[start:end_b] or '(end)'}"


class ObjectForm:
    """The form of a channel of Python objects (``message_type=object``, cywhip._codec.ObjectCodec).

    Not a record type: its messages are pickled and vary in size.  It has a fingerprint and a
    description of its own in the channel header, so that an end of any other form (bytes,
    typed records) and an object end never share a channel.
    """

    __slots__ = ()
    kind = "object"
    source = object
    size = 0
    description = "object (pickle protocol 5, out-of-band buffers)"
    fingerprint = int.from_bytes(hashlib.blake2b(description.encode(), digest_size=8).digest(), "little") or 1

    def __repr__(self):
        return f"<ObjectForm {self.description}>"


OBJECT_FORM = ObjectForm()


def _form(fingerprint, description, size):
    if fingerprint == OBJECT_FORM.fingerprint:
        return "Python objects (message_type=object)"
    if fingerprint == 0:
        return "bytes (untyped)"
    return f"typed records {description} of {size} bytes"


def form_mismatch(theirs, ours):
    """Why a channel and an end of different forms cannot meet when one of them carries Python
    objects, as a phrase for ChannelMismatchError; None if neither does.  theirs and ours are
    (fingerprint, description, record size)."""
    if OBJECT_FORM.fingerprint not in (theirs[0], ours[0]):
        return None
    if theirs[0] == ours[0]:
        return (f"records Python objects with a record size of {theirs[2]} (0 expected): its "
                f"header is damaged; remove it with cywhip.unlink() and start again")
    return (f"carries {_form(*theirs)}; this end is for {_form(*ours)}: every end of a channel of "
            f"objects gives message_type=object (its messages are pickled; bytes or records "
            f"cannot be read from them or written among them)")

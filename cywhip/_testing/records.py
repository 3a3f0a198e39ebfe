"""Record types for typed-channel tests, and a peer that sends or checks numbered records.

    python -m cywhip._testing.records send|recv NAME KIND COUNT

KIND is ``ctypes`` (a structure with mixed fields, a nested structure and
arrays) or ``numpy`` (an aligned structured dtype with padding and a
sub-array).  Record ``i`` is made by ``make(KIND, i)``; the receiver checks
every field of every record and prints one JSON line.
"""
import ctypes
import json
import sys

from cywhip import Receiver, Sender


class Inner(ctypes.Structure):
    _fields_ = [("flag", ctypes.c_bool), ("code", ctypes.c_char), ("ratio", ctypes.c_float)]


class Mixed(ctypes.Structure):
    _fields_ = [
        ("seq", ctypes.c_int64),
        ("small", ctypes.c_int8),
        ("half", ctypes.c_uint16),
        ("inner", Inner),
        ("values", ctypes.c_double * 3),
        ("grid", (ctypes.c_int32 * 2) * 2),
        ("tail", ctypes.c_uint8),
    ]


def numpy_dtype():
    import numpy as np
    return np.dtype([("seq", "<i8"), ("small", "i1"), ("value", "<f8"), ("pair", "<i4", (2,)),
                     ("flag", "?")], align=True)


def make(kind, i):
    if kind == "ctypes":
        return Mixed(i, i % 100 - 50, i % 65536, Inner(i % 2 == 0, bytes([65 + i % 26]), i / 4),
                     (ctypes.c_double * 3)(i, -i, i / 2),
                     ((ctypes.c_int32 * 2) * 2)((ctypes.c_int32 * 2)(i, i + 1), (ctypes.c_int32 * 2)(i + 2, i + 3)),
                     i % 256)
    raise ValueError(kind)


def make_array(lo, hi):
    import numpy as np
    arr = np.zeros(hi - lo, numpy_dtype())
    seq = np.arange(lo, hi)
    arr["seq"] = seq
    arr["small"] = seq % 100 - 50
    arr["value"] = seq / 3
    arr["pair"][:, 0] = seq
    arr["pair"][:, 1] = -seq
    arr["flag"] = seq % 3 == 0
    return arr


def fields(rec):
    """A ctypes Mixed record as plain values, for comparison."""
    return (rec.seq, rec.small, rec.half, rec.inner.flag, rec.inner.code, rec.inner.ratio,
            list(rec.values), [list(row) for row in rec.grid], rec.tail)


def main(argv=None):
    role, name, kind, count = (argv or sys.argv[1:])[:4]
    count = int(count)
    if kind == "ctypes":
        if role == "send":
            with Sender(name, message_type=Mixed, max_queued_messages=64) as s:
                half = count // 2
                for i in range(half):
                    s.send(make(kind, i), timeout=30)
                s.send_many((make(kind, i) for i in range(half, count)), timeout=30)
            return 0
        bad = None
        with Receiver(name, message_type=Mixed, max_queued_messages=64) as r:
            i = 0
            while i < count:
                for rec in r.recv_many(count - i, timeout=30):
                    if not isinstance(rec, Mixed) or fields(rec) != fields(make(kind, i)):
                        bad = bad or i
                    i += 1
        print(json.dumps({"received": i, "bad": bad}))
        return 0
    import numpy as np
    if role == "send":
        with Sender(name, message_type=numpy_dtype(), max_queued_messages=64) as s:
            arr = make_array(0, count)
            s.send_array(arr[: count // 2], timeout=30)
            s.send_array(arr[count // 2:], timeout=30)
        return 0
    got = []
    with Receiver(name, message_type=numpy_dtype(), max_queued_messages=64) as r:
        n = 0
        while n < count:
            part = r.recv_array(count - n, timeout=30)
            got.append(part)
            n += len(part)
    arr = np.concatenate(got)
    print(json.dumps({"received": len(arr), "bad": None if np.array_equal(arr, make_array(0, count)) else 0}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

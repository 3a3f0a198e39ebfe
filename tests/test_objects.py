"""message_type=object: Python objects pickled with protocol 5, their out-of-band buffers (NumPy
arrays, bytearrays) copied straight between their own memory and the ring."""
import asyncio
import os
import pickle
import re
import struct
import threading
import tracemalloc

import pytest

import cywhip
import cywhip.asyncio as ca
from cywhip import (
    ChannelCorruptError, ChannelMismatchError, MessageTooLongError, Receiver, Sender,
)
from cywhip._testing._model import layout, slot_header_size
from cywhip._testing._steps import forget, measure

np = pytest.importorskip("numpy")

KW = {"message_length": 1 << 16, "max_queued_messages": 8, "message_type": object}


@pytest.fixture
def pair(channel):
    with Sender(channel, **KW) as tx, Receiver(channel, **KW) as rx:
        yield tx, rx


def same(a, b):
    """Deep equality that compares NumPy arrays by dtype, shape and contents."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape
                and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, dict):
        return type(a) is type(b) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def arrays():
    base = np.arange(60, dtype=np.float64).reshape(6, 10)
    tick = np.dtype([("t", "<i8"), ("price", "<f8"), ("side", "u1")], align=True)
    return {
        "float64": base,
        "int8": np.arange(-50, 50, dtype=np.int8),
        "uint16 big-endian": np.arange(300, dtype=">u2"),
        "complex128": np.array([1 + 2j, -3.5j, np.nan]),
        "bool": np.array([True, False, True]),
        "datetime64[ms]": np.array(["2026-01-01T00:00:00.001", "1970-01-01"], dtype="M8[ms]"),
        "structured": np.zeros(4, tick),
        "zero-d": np.array(7.5),
        "empty": np.empty((0, 3), np.int32),
        # Not C-contiguous: a transposed (Fortran-ordered) view, and strided views.
        "transposed": base.T,
        "every other column": base[:, ::2],
        "reversed": base[::-1, ::-3],
    }


# ------------------------------------------------------------------- round trips

@pytest.mark.parametrize("obj", [
    None, 0, -1.5, "text é", b"bytes", [1, [2, [3]], (4, 5)], {"a": 1, "b": {"c": [None, True]}},
    set(range(5)), bytearray(b"a bytearray"), bytearray(), {"empty": bytearray(), "list": []},
], ids=repr)
def test_plain_objects_cross_unchanged(pair, obj):
    tx, rx = pair
    tx.send(obj)
    got = rx.recv(timeout=10)
    assert got == obj and type(got) is type(obj)


@pytest.mark.parametrize("kind", list(arrays()))
def test_numpy_arrays_of_every_kind_cross_nested_in_a_dict(pair, kind):
    tx, rx = pair
    arr = arrays()[kind]
    msg = {"kind": kind, "data": [arr, {"again": arr}], "scale": 2}
    tx.send(msg)
    got = rx.recv(timeout=10)
    assert same(got, msg)
    # Each array arrives as an array of its own, writable (it owns a fresh buffer).
    assert got["data"][0] is not arr
    if got["data"][0].size:
        got["data"][0].flat[0] = got["data"][0].flat[0]


def test_all_arrays_in_one_message_and_a_bytearray_beside_them(pair):
    tx, rx = pair
    msg = {**arrays(), "raw": bytearray(range(256)) * 3}
    tx.send(msg)
    assert same(rx.recv(timeout=10), msg)


def test_a_dict_with_a_1_mib_float64_array(channel):
    arr = np.random.default_rng(1).standard_normal(1 << 17)        # 1 MiB
    kw = dict(KW, message_length=(1 << 20) + 4096)
    with Sender(channel, **kw) as tx, Receiver(channel, **kw) as rx:
        assert tx.message_type is object and rx.message_type is object
        for i in range(3):
            tx.send({"step": i, "values": arr})
            got = rx.recv(timeout=10)
            assert got["step"] == i and got["values"].dtype == np.float64
            assert np.array_equal(got["values"], arr)


# ------------------------------------------------------------------- one copy

@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["ndarray", "bytearray"])
def test_a_64_mib_buffer_is_copied_once_each_way_and_never_into_an_intermediate_bytes(channel, kind):
    # tracemalloc counts every allocation of Python and NumPy (the ring is shared memory, not
    # counted).  Sending copies the buffer straight into the ring: nothing near its size is
    # allocated.  Receiving allocates its one new buffer: one buffer's worth.  A pickle stream
    # holding the buffer, or a bytes copy on the way, would add one buffer's worth more.
    size = 64 << 20
    arr = np.ones(size // 8) if kind == "ndarray" else bytearray(b"\x01") * size
    kw = dict(KW, message_length=size + 4096, max_queued_messages=3)    # a 192 MiB ring
    with Sender(channel, **kw) as tx, Receiver(channel, **kw) as rx:
        tracemalloc.start()
        try:
            tx.send({"a": arr, "label": "big"})
            _, sent_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            got = rx.recv(timeout=30)
            _, recv_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert type(got["a"]) is type(arr) and got["label"] == "big"
        assert np.array_equal(got["a"], arr) if kind == "ndarray" else got["a"] == arr
    assert sent_peak < size // 16, f"send allocated {sent_peak} bytes for a {size}-byte {kind}"
    assert recv_peak < size * 1.5, f"recv allocated {recv_peak} bytes for a {size}-byte {kind}"


# ------------------------------------------------------------------- limits and errors

def test_a_message_longer_than_message_length_is_refused_naming_both_and_nothing_is_sent(pair):
    tx, rx = pair
    big = {"a": np.zeros(KW["message_length"] // 8)}
    with pytest.raises(MessageTooLongError) as err:
        tx.send(big)
    encoded = measure(tx, big)
    forget(tx)
    assert encoded > KW["message_length"]
    assert f"{encoded} bytes" in str(err.value) and f"message_length={KW['message_length']}" in str(err.value)
    assert rx.depth == 0 and tx.published == 0
    tx.send("next")
    assert rx.recv(timeout=10) == "next"


class Unpicklable:
    def __reduce__(self):
        raise ValueError("this object refuses to be pickled")


@pytest.mark.parametrize("bad", [Unpicklable(), {"fn": lambda: 1}, [1, threading.Lock()]],
                         ids=["reduce raises", "lambda", "lock"])
def test_an_unpicklable_object_raises_its_own_error_and_sends_nothing(pair, bad):
    tx, rx = pair
    with pytest.raises((ValueError, pickle.PicklingError, AttributeError, TypeError)) as err:
        tx.send(bad)
    if isinstance(bad, Unpicklable):
        assert err.type is ValueError and "refuses to be pickled" in str(err.value)
    assert rx.depth == 0 and tx.published == 0
    assert tx.try_send({"after": 1})
    assert rx.recv(timeout=10) == {"after": 1}


def test_send_many_sends_the_objects_before_an_unpicklable_one(pair):
    tx, rx = pair
    with pytest.raises(ValueError):
        tx.send_many([{"n": 0}, [1], Unpicklable(), "never"])
    assert rx.recv_many(10, timeout=10) == [{"n": 0}, [1]]


@pytest.mark.parametrize("offset, fmt, value, words", [
    (0, "<I", 0xFFFFFFFF, r"claims 4294967295 out-of-band buffers, whose lengths alone take 34359738376 bytes"),
    (0, "<I", 5, r"(for out-of-band buffer \d of 5, at offset|and 5 out-of-band buffers at offset)"),
    (4, "<I", 9, r"has flags 0x9, where only 0x1 is defined"),
    (8, "<Q", 1 << 62, rf"claims a pickle stream of {1 << 62} bytes after its 24-byte head"),
    (8, "<Q", 3, r"ends its pickle stream \(3 bytes\) and 1 out-of-band buffers at offset 160"),
    (16, "<Q", (1 << 64) - 1, rf"claims {(1 << 64) - 1} bytes for out-of-band buffer 0 of 1, at offset"),
    (16, "<Q", 1 << 40, rf"claims {1 << 40} bytes for out-of-band buffer 0 of 1"),
    (16, "<Q", 8, r"ends its pickle stream \(\d+ bytes\) and 1 out-of-band buffers at offset"),
])
def test_corrupt_counts_and_lengths_in_the_ring_raise_channel_corrupt_error_naming_them(
        pair, channel, mapped, offset, fmt, value, words):
    tx, rx = pair
    msg = {"a": np.arange(16, dtype=np.int64)}
    tx.send(msg)
    at = layout()["slots"] + slot_header_size(1)
    with mapped(channel) as mm:
        saved = mm[at:at + 64]
        struct.pack_into(fmt, mm, at + offset, value)
        for _ in range(2):      # the message stays first in line, and says so again
            with pytest.raises(ChannelCorruptError) as err:
                rx.recv(timeout=10)
            assert re.search(words, str(err.value)), str(err.value)
            assert repr(channel) in str(err.value)
        assert rx.taken == 0
        mm[at:at + 64] = saved
    assert same(rx.recv(timeout=10), msg)


def test_a_message_shorter_than_the_head_of_an_object_message_is_corrupt(pair, channel, mapped):
    tx, rx = pair
    tx.send(None)
    with mapped(channel) as mm:
        struct.pack_into("<I", mm, layout()["slots"], 12)      # the slot's length
        with pytest.raises(ChannelCorruptError, match="12-byte object message.*shorter than the 16-byte head"):
            rx.recv(timeout=10)


# ------------------------------------------------------------------- forms meeting

def test_an_object_channel_and_an_end_of_another_form_never_meet(channel):
    import ctypes
    with Sender(channel, **KW):
        for make in (lambda: Receiver(channel, message_length=KW["message_length"], max_queued_messages=8),
                     lambda: Sender(channel, message_length=KW["message_length"], max_queued_messages=8,
                                    max_senders=1),
                     lambda: Receiver(channel, message_type=ctypes.c_int64, max_queued_messages=8)):
            with pytest.raises(ChannelMismatchError) as err:
                make()
            text = str(err.value)
            assert "carries Python objects (message_type=object)" in text, text
            assert "this end is for bytes (untyped)" in text or "this end is for typed records <i8" in text, text
    cywhip.unlink(channel)
    with Sender(channel, message_length=64, max_queued_messages=8):
        with pytest.raises(ChannelMismatchError, match=r"carries bytes \(untyped\); this end is for "
                                                       r"Python objects \(message_type=object\)"):
            Receiver(channel, message_length=64, max_queued_messages=8, message_type=object)
    cywhip.unlink(channel)
    with Sender(channel, message_type=np.dtype("<f8"), max_queued_messages=8):
        with pytest.raises(ChannelMismatchError, match=r"carries typed records <f8=8 of 8 bytes; this end "
                                                       r"is for Python objects"):
            Receiver(channel, message_length=8, max_queued_messages=8, message_type=object)


def test_an_object_end_needs_message_length_and_takes_no_callbacks(channel):
    with pytest.raises(TypeError, match=r"message_type=object\) needs message_length"):
        Sender(channel, message_type=object)
    with pytest.raises(TypeError, match="takes no message_serializer"):
        Sender(channel, lambda m, b: None, message_length=64, message_type=object)
    with pytest.raises(TypeError, match="give message_type=object"):
        Sender(channel, message_type=np.dtype(object))
    assert not os.path.exists(f"/dev/shm/cywhip.{channel}")


def test_array_calls_and_borrow_say_why_they_do_not_apply(pair):
    tx, rx = pair
    arr = np.zeros(4)
    with pytest.raises(TypeError, match=r"send_array\(\) moves arrays of fixed-size records.*send\(\) it"):
        tx.send_array(arr)
    with pytest.raises(TypeError, match=r"recv_into\(\) moves arrays.*take it with recv\(\)"):
        rx.recv_into(arr, timeout=0)
    with pytest.raises(TypeError, match=r"recv_array\(\) needs a typed channel"):
        rx.recv_array(4, timeout=0)
    tx.send({"x": arr})
    with pytest.raises(TypeError, match=r"borrow\(\) lends the bytes.*unpickled"):
        with rx.borrow(timeout=10):
            pass
    assert same(rx.recv(timeout=10), {"x": arr})      # still there


# ------------------------------------------------------------------- every call

def test_recv_try_recv_recv_many_iteration_and_send_many(pair):
    tx, rx = pair
    msgs = [{"i": i, "a": np.full(3, i)} for i in range(6)]
    assert tx.send_many(msgs) == 6
    assert same(rx.recv(timeout=10), msgs[0])
    assert same(rx.try_recv(), msgs[1])
    assert same(rx.recv_many(3, timeout=10), msgs[2:5])
    tx.send(None)
    got = []
    for m in rx:
        got.append(m)
        if m is None:
            break
    assert same(got, [msgs[5], None])
    assert rx.try_recv() is None and rx.depth == 0     # None also means nothing waiting: see depth


def test_on_message_and_on_batch_deliver_objects(channel):
    got, done = [], threading.Event()

    def on_message(m):
        got.append(m)
        if len(got) == 4:
            done.set()

    with Sender(channel, **KW) as tx:
        with Receiver(channel, on_message=on_message, **KW):
            tx.send_many([{"n": i, "a": np.arange(i)} for i in range(4)])
            assert done.wait(10)
        assert same(got, [{"n": i, "a": np.arange(i)} for i in range(4)])
        batches, seen = [], threading.Event()

        def on_batch(batch):
            assert type(batch) is list
            batches.append(batch)
            if sum(map(len, batches)) == 5:
                seen.set()

        tx.send_many([[i, bytearray(b"x" * i)] for i in range(5)])
        with Receiver(channel, on_batch=on_batch, **KW):
            assert seen.wait(10)
        assert [m for b in batches for m in b] == [[i, bytearray(b"x" * i)] for i in range(5)]


def test_asyncio_ends_carry_objects(channel, run):
    async def main():
        async with ca.Sender(channel, **KW) as tx, ca.Receiver(channel, **KW) as rx:
            assert tx.message_type is object and rx.message_type is object
            waiting = asyncio.ensure_future(rx.recv(timeout=10))
            await asyncio.sleep(0.01)
            await tx.send({"a": np.arange(5.0)})
            assert same(await waiting, {"a": np.arange(5.0)})
            assert await tx.send_many([[i] for i in range(5)]) == 5
            assert await rx.recv_many(3, timeout=10) == [[0], [1], [2]]
            assert rx.try_recv() == [3]
            got = []
            async for m in rx:
                got.append(m)
                break
            assert got == [[4]]
            assert tx.try_send(None) and rx.try_recv() is None
            with pytest.raises(TypeError, match="send_array"):
                await tx.send_array(np.zeros(3))
    run(main())


def test_many_senders_carry_objects_and_an_unpicklable_one_voids_only_its_slot(channel):
    kw = dict(KW, max_senders=2)
    with Sender(channel, **kw) as a, Sender(channel, **kw) as b, Receiver(channel, **kw) as rx:
        a.send({"from": "a", "x": np.arange(3)})
        with pytest.raises(ValueError, match="refuses"):
            b.send(Unpicklable())
        b.send({"from": "b", "x": bytearray(b"b")})
        a.send_many([("a", i) for i in range(3)])
        got = [rx.recv(timeout=10) for _ in range(5)]
        assert same(got, [{"from": "a", "x": np.arange(3)}, {"from": "b", "x": bytearray(b"b")},
                          ("a", 0), ("a", 1), ("a", 2)])
        assert rx._skipped == (0, 1)      # the unpicklable object's slot, published void


def test_receiver_groups_carry_objects_to_every_group(channel):
    kw = dict(KW, max_receivers=2)
    with Sender(channel, **kw) as tx, Receiver(channel, group="g", **kw) as g, \
            Receiver(channel, group="h", **kw) as h:
        msgs = [{"n": i, "a": np.arange(i, dtype=np.uint8)} for i in range(4)]
        tx.send_many(msgs)
        assert same(g.recv_many(10, timeout=10), msgs)
        assert same([h.recv(timeout=10) for _ in msgs], msgs)


def test_two_members_of_one_group_share_objects_each_taken_once(channel):
    kw = dict(KW, max_receivers=2)
    with Sender(channel, **kw) as tx, Receiver(channel, group="g", **kw) as m1, \
            Receiver(channel, group="g", **kw) as m2:
        tx.send_many([{"n": i, "a": np.full(2, i)} for i in range(6)])
        got = m1.recv_many(3, timeout=10)
        got += m2.recv_many(10, timeout=10)
        while len(got) < 6:
            got += m1.recv_many(10, timeout=10)
        assert sorted(m["n"] for m in got) == list(range(6))
        assert all(np.array_equal(m["a"], np.full(2, m["n"])) for m in got)


# ------------------------------------------------------------------- the size contract

class Counted:
    pickled = 0

    def __init__(self, data):
        self.data = data

    def __reduce__(self):
        Counted.pickled += 1
        return Counted, (self.data,)


def test_measure_is_the_encoded_length_and_the_send_that_follows_pickles_nothing_again(pair, channel,
                                                                                       mapped):
    tx, rx = pair
    msg = Counted({"a": np.arange(10, dtype=np.int16), "b": bytearray(b"xyz"), "s": "s" * 11})
    Counted.pickled = 0
    n = measure(tx, msg)
    assert Counted.pickled == 1
    tx.send(msg)
    assert Counted.pickled == 1              # the pieces measure() kept
    with mapped(channel) as mm:
        assert struct.unpack_from("<I", mm, layout()["slots"])[0] == n
    assert same(rx.recv(timeout=10).data, msg.data)
    tx.send(msg)                             # no measure: encode pickles by itself
    assert Counted.pickled == 2
    other = Counted([1])
    measure(tx, msg)
    tx.send(other)                           # not the object measured: pickled afresh
    assert Counted.pickled == 4 and rx.recv_many(2, timeout=10)[1].data == [1]


def test_forget_lets_a_measured_bytearray_be_resized_again(pair):
    tx, _ = pair
    buf = bytearray(100)
    measure(tx, {"b": buf})
    with pytest.raises(BufferError):
        buf.extend(b"more")                  # exported to the kept pickle pieces
    forget(tx)
    buf.extend(b"more")
    assert len(buf) == 104


def test_bytes_ends_measure_their_messages_and_serializer_ends_cannot(channel):
    with Sender(channel, message_length=64, max_queued_messages=8) as tx:
        assert measure(tx, b"abc") == 3
        assert measure(tx, bytearray(5)) == 5
        assert measure(tx, memoryview(b"123456")[1:]) == 5
        assert measure(tx, np.zeros(3)) == 24
        assert measure(tx, 12) == -1         # not bytes-like: send() says why
    cywhip.unlink(channel)
    with Sender(channel, lambda m, b: b.write_bytes(m), message_length=64, max_queued_messages=8) as tx:
        assert measure(tx, b"abc") == -1

"""Regression tests for holes in the checks on shared memory, error paths and buffers."""
import ctypes
import mmap
import os
import struct
import sys
import textwrap
import time

import pytest

import cywhip
from cywhip import ChannelClosedError, ChannelCorruptError, Receiver, Sender
from cywhip._region import channel_path
from cywhip._testing._model import layout

np = pytest.importorskip("numpy")

# Where slot 0 starts in a channel of one sender and one receiver.
SLOTS = layout()["slots"]


def _wait_for(predicate, seconds=10):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def _header(channel):
    """A writable mapping of the channel's header page, as a hostile process would hold it."""
    fd = os.open(channel_path(channel), os.O_RDWR)
    try:
        return mmap.mmap(fd, 4096)
    finally:
        os.close(fd)


# ------------------------------------------------------------ geometry read once

FLIP_CAPACITY = textwrap.dedent("""
    import mmap, os, struct, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR)
    mm = mmap.mmap(fd, 4096)
    off = int(sys.argv[2])
    print("ready", flush=True)
    end = time.monotonic() + float(sys.argv[3])
    while time.monotonic() < end:
        for value in (4, 0, 1 << 40, 4):
            struct.pack_into("<Q", mm, off, value)
""")

OPEN_IN_A_LOOP = textwrap.dedent("""
    import sys, time, cywhip
    from cywhip import CywhipError
    end = time.monotonic() + float(sys.argv[2])
    opened = refused = 0
    while time.monotonic() < end:
        try:
            with cywhip.Sender(sys.argv[1], message_length=8, max_queued_messages=4) as s:
                s.try_send(b"x")
            with cywhip.Receiver(sys.argv[1], message_length=8, max_queued_messages=4) as r:
                m = r.try_recv()
                assert m is None or (type(m) is bytes and len(m) <= 8), m
            opened += 1
        except CywhipError:
            refused += 1
    print(opened, refused, flush=True)
""")


@pytest.mark.timeout(60)
def test_geometry_rewritten_while_an_end_opens_never_crashes_the_opener(channel, peers):
    Sender(channel, message_length=8, max_queued_messages=4).close()
    flipper = peers.start(channel_path(channel), layout()["capacity"], 4, script=FLIP_CAPACITY)
    assert flipper.stdout.readline().strip() == "ready"
    opener = peers.start(channel, 3, script=OPEN_IN_A_LOOP)
    rc, out, err = peers.finish(opener, timeout=30)
    assert rc == 0, f"the opener died with {rc} (negative: a signal): {err[-2000:]}"
    opened, refused = map(int, out.split())
    assert opened + refused > 0


# ------------------------------------------------- on_batch with a failing deserializer

def _fails_on_bad(buffer):
    data = buffer.read_bytes()
    if data == b"bad":
        raise ValueError("cannot decode bad")
    return data


def test_on_batch_with_on_error_delivers_around_a_message_that_fails_to_decode(channel):
    with Sender(channel, message_length=8, max_queued_messages=16) as s:
        s.send_many([b"a", b"b", b"bad", b"c"])
        batches, errors = [], []
        r = Receiver(channel, _fails_on_bad, message_length=8, max_queued_messages=16,
                     on_batch=batches.append, on_error=errors.append)
        try:
            _wait_for(lambda: sum(map(len, batches)) >= 3)
            time.sleep(0.1)
            assert r.taken == 4
        finally:
            r.close()
    assert [m for b in batches for m in b] == [b"a", b"b", b"c"]
    assert batches[0] == [b"a", b"b"]
    assert len(errors) == 1 and "cannot decode bad" in str(errors[0])


def test_on_batch_without_on_error_delivers_what_came_before_a_bad_message_and_keeps_it(channel):
    with Sender(channel, message_length=8, max_queued_messages=16) as s:
        s.send_many([b"a", b"b", b"bad", b"c"])
        batches = []
        r = Receiver(channel, _fails_on_bad, message_length=8, max_queued_messages=16,
                     on_batch=batches.append)
        _wait_for(lambda: not r.running)
        with pytest.raises(ValueError, match="cannot decode bad"):
            r.close()
        assert batches == [[b"a", b"b"]]
        with Receiver(channel, message_length=8, max_queued_messages=16) as r2:
            assert r2.recv_many(10, timeout=1) == [b"bad", b"c"]


def test_numpy_on_batch_with_on_error_skips_a_slot_of_the_wrong_length_once(channel):
    dt = np.dtype([("x", "<i8")])
    with Sender(channel, message_type=dt, max_queued_messages=16) as s:
        s.send_array(np.array([(1,), (2,), (3,)], dt))
        # Shorten the second slot's length, as a hostile or broken peer could.
        mm = _map_whole(channel)
        slot_size = 16
        struct.pack_into("<I", mm, SLOTS + 1 * slot_size, 3)
        batches, errors = [], []
        r = Receiver(channel, message_type=dt, max_queued_messages=16,
                     on_batch=lambda b: batches.append(b["x"].tolist()), on_error=errors.append)
        try:
            _wait_for(lambda: sum(map(len, batches)) >= 2)
            time.sleep(0.1)
        finally:
            r.close()
            mm.close()
    assert [x for b in batches for x in b] == [1, 3]
    assert len(errors) == 1 and isinstance(errors[0], ChannelCorruptError)
    assert "3 bytes" in str(errors[0])


def _map_whole(channel):
    fd = os.open(channel_path(channel), os.O_RDWR)
    try:
        return mmap.mmap(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


# -------------------------------------------------- recv_many and BaseException

class Interrupt(BaseException):
    pass


def test_recv_many_interrupted_by_a_base_exception_leaves_every_message_in_the_ring(channel):
    calls = []

    def deser(buffer):
        calls.append(1)
        if len(calls) == 3:
            raise Interrupt()
        return buffer.read_bytes()

    with Sender(channel, message_length=8, max_queued_messages=16) as s:
        s.send_many([b"1", b"2", b"3", b"4"])
        with Receiver(channel, deser, message_length=8, max_queued_messages=16) as r:
            with pytest.raises(Interrupt):
                r.recv_many(10)
            assert r.taken == 0
            assert r.recv_many(10) == [b"1", b"2", b"3", b"4"]


def test_recv_many_of_bytes_returns_what_came_before_a_corrupt_slot_and_loses_nothing(channel):
    with Sender(channel, message_length=8, max_queued_messages=16) as s, \
            Receiver(channel, message_length=8, max_queued_messages=16) as r:
        s.send_many([b"a", b"b", b"c"])
        mm = _map_whole(channel)
        try:
            struct.pack_into("<I", mm, SLOTS + 16, 1000)   # slot 1 claims 1000 bytes
            assert r.recv_many(10) == [b"a"]
            assert r.taken == 1
            with pytest.raises(ChannelCorruptError, match="claims 1000 bytes"):
                r.recv_many(10)
            assert r.taken == 1
        finally:
            mm.close()


# --------------------------------------------------------- buffers, not attributes

class PretendArray(bytearray):
    """A bytes-like object that claims to be an array of records."""
    dtype = None
    shape = None


def test_send_array_checks_the_exported_buffer_not_a_dtype_attribute(channel):
    dt = np.dtype([("x", "<i8"), ("y", "<f8")])
    fake = PretendArray(b"\x01" * 64)
    fake.dtype = dt
    fake.shape = (64,)
    with Sender(channel, message_type=dt, max_queued_messages=128) as s, \
            Receiver(channel, message_type=dt, max_queued_messages=128) as r:
        with pytest.raises(TypeError, match="16-byte records"):
            s.send_array(fake)
        assert r.depth == 0


def test_recv_into_checks_the_exported_buffer_not_a_dtype_attribute(channel):
    dt = np.dtype([("x", "<i8"), ("y", "<f8")] + [(f"p{i}", "<f8") for i in range(254)])
    fake = PretendArray(64)
    fake.dtype = dt
    fake.shape = (64,)
    with Sender(channel, message_type=dt, max_queued_messages=4) as s, \
            Receiver(channel, message_type=dt, max_queued_messages=4) as r:
        s.send_array(np.zeros(2, dt))
        with pytest.raises(TypeError, match=f"{dt.itemsize}-byte records"):
            r.recv_into(fake, timeout=0)
        assert bytes(fake) == bytes(64)
        assert r.depth == 2


def test_an_ndarray_subclass_exporting_another_buffer_is_refused(channel):
    if sys.version_info < (3, 12):
        pytest.skip("__buffer__ overrides need Python 3.12")
    dt = np.dtype([("x", "<i8"), ("y", "<f8")])

    class Liar(np.ndarray):
        def __buffer__(self, flags):
            return memoryview(bytearray(8))

    arr = np.zeros(4, dt).view(Liar)
    with Sender(channel, message_type=dt, max_queued_messages=8) as s:
        with pytest.raises(TypeError):
            s.send_array(arr)


# ------------------------------------------------------------- close waits for the call

def test_close_from_another_thread_returns_once_the_blocked_call_has_let_go(channel, in_thread):
    for _ in range(20):
        r = Receiver(channel, message_length=8, max_queued_messages=4)
        t, outcome = in_thread(lambda: r.recv())
        time.sleep(0.02)
        r.close()
        assert r.closed
        # The place is free at once: a replacement opens without a busy error.
        Receiver(channel, message_length=8, max_queued_messages=4).close()
        t.join(5)
        assert isinstance(outcome[0], ChannelClosedError)


def test_a_send_many_that_never_waits_stops_when_closed_from_another_thread(channel, in_thread):
    sent_after_close = []
    s = Sender(channel, message_length=8, max_queued_messages=1 << 16)
    r = Receiver(channel, message_length=8, max_queued_messages=1 << 16)
    state = {"closed": False}

    def endless():
        while True:
            if state["closed"]:
                sent_after_close.append(1)
            yield b"x"

    def drain():
        while not state["closed"]:
            r.recv_many(4096, timeout=1)

    t, outcome = in_thread(lambda: s.send_many(endless()))
    d, _ = in_thread(drain)
    time.sleep(0.05)
    s.close()
    state["closed"] = True
    t.join(5)
    assert not t.is_alive()
    assert isinstance(outcome[0], ChannelClosedError)
    assert sent_after_close == []
    d.join(5)
    r.close()


# --------------------------------------------------------------- datetime units

def test_datetime64_ends_of_different_units_do_not_meet(channel):
    with Sender(channel, message_type=np.dtype("M8[s]"), max_queued_messages=4):
        with pytest.raises(cywhip.ChannelMismatchError, match=r"M8\[ns\]"):
            Receiver(channel, message_type=np.dtype("M8[ns]"), max_queued_messages=4)


def test_timedelta64_units_are_part_of_a_structured_record(channel):
    a = np.dtype([("t", "m8[ms]"), ("v", "<f8")])
    b = np.dtype([("t", "m8[us]"), ("v", "<f8")])
    with Sender(channel, message_type=a, max_queued_messages=4):
        with pytest.raises(cywhip.ChannelMismatchError, match=r"m8\[ms\].*m8\[us\]|m8\[us\].*m8\[ms\]"):
            Receiver(channel, message_type=b, max_queued_messages=4)
    with Sender(channel + "2", message_type=a, max_queued_messages=4) as s, \
            Receiver(channel + "2", message_type=a, max_queued_messages=4) as r:
        s.send_array(np.array([(np.timedelta64(1500, "ms"), 2.5)], a))
        got = r.recv_array(1, timeout=1)
        assert got["t"][0] == np.timedelta64(1500, "ms")
    cywhip.unlink(channel + "2")


# --------------------------------------------------------------- ReadBuffer pointers

class WithPointer(ctypes.Structure):
    _fields_ = [("n", ctypes.c_int64), ("p", ctypes.c_void_p)]


@pytest.mark.parametrize("ctype", [ctypes.c_char_p, ctypes.c_void_p, ctypes.py_object,
                                   ctypes.c_wchar_p, WithPointer, ctypes.POINTER(ctypes.c_int),
                                   ctypes.c_void_p * 2])
def test_read_buffer_refuses_types_that_hold_pointers(channel, ctype):
    seen = []

    def deser(buffer):
        try:
            return buffer.read(ctype)
        except TypeError as exc:
            seen.append(str(exc))
            return None

    with Sender(channel, message_length=32, max_queued_messages=4) as s, \
            Receiver(channel, deser, message_length=32, max_queued_messages=4) as r:
        s.send(b"\x41" * 16)
        assert r.recv(timeout=1) is None
    assert seen and ctype.__name__ in seen[0]


# ------------------------------------------------------------- borrow and fork

@pytest.mark.timeout(30)
def test_a_child_forked_during_a_borrow_does_not_keep_the_receiver_claimed(channel):
    with Sender(channel, message_length=8, max_queued_messages=16) as s:
        s.send_many([b"a", b"b"])
        r = Receiver(channel, message_length=8, max_queued_messages=16)
        lease = r.borrow()
        lease.__enter__()
        rfd, wfd = os.pipe()
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            # os.fork() has run the at-fork handlers here: this process's copy of
            # the receiver is dropped; only inherited mappings could still hold it.
            os.close(wfd)
            os.write(ready_w, b"r")
            os.read(rfd, 1)   # stay alive until the parent has checked
            os._exit(0)
        os.close(rfd)
        os.close(ready_w)
        try:
            assert os.read(ready_r, 1) == b"r"
            lease.__exit__(None, None, None)
            r.close()
            Receiver(channel, message_length=8, max_queued_messages=16).close()
        finally:
            os.close(wfd)
            os.close(ready_r)
            os.waitpid(pid, 0)


# ------------------------------------------------------------- interrupt window

def test_an_interrupt_just_before_the_sleep_ends_it_at_once():
    from cywhip._testing._model import RingModel
    ring = RingModel(4, 8)
    # The receiver announced its sleep and found nothing; close() lands now, before the
    # futex wait: the wait must not sleep out its slice.
    assert ring.interrupt_then_sleep(sending=False, timeout=0.5) != "timed out"


# ------------------------------------------------------------- small errors

def test_a_corrupt_slot_length_is_named_in_the_error(channel):
    with Sender(channel, message_length=8, max_queued_messages=4) as s, \
            Receiver(channel, message_length=8, max_queued_messages=4) as r:
        s.send(b"abc")
        mm = _map_whole(channel)
        try:
            struct.pack_into("<I", mm, SLOTS, 1000)
            with pytest.raises(ChannelCorruptError, match="1000 bytes"):
                r.recv(timeout=1)
        finally:
            mm.close()


def test_a_bad_record_length_is_named_in_the_error(channel):
    dt = np.dtype([("x", "<i8")])
    with Sender(channel, message_type=dt, max_queued_messages=4) as s, \
            Receiver(channel, message_type=dt, max_queued_messages=4) as r:
        s.send_array(np.zeros(1, dt))
        mm = _map_whole(channel)
        try:
            struct.pack_into("<I", mm, SLOTS, 1000)
            with pytest.raises(ChannelCorruptError, match="is 1000 bytes"):
                r.recv_array(4, timeout=1)
            with pytest.raises(ChannelCorruptError, match="is 1000 bytes"):
                r.recv_into(np.zeros(4, dt), timeout=1)
        finally:
            mm.close()


def test_iterating_a_receiver_in_a_forked_child_raises_closed(channel):
    with Receiver(channel, message_length=8, max_queued_messages=4) as r:
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                for _ in r:
                    code = 4
                    break
                else:
                    code = 5   # ended silently
            except ChannelClosedError:
                code = 0
            except BaseException:
                code = 6
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0, os.WEXITSTATUS(status)

"""The Python ends (Sender, Receiver) in one process: sending, receiving, buffers, errors, lifecycle."""
import ctypes
import os
import queue
import stat
import threading
import time

import pytest

import cywhip
from cywhip import (
    ChannelBusyError, ChannelClosedError, ChannelMismatchError, CywhipError, MessageTooLongError,
    ReadBuffer, Receiver, ReceiveTimeout, Sender, SendTimeout, WriteBuffer,
)
from cywhip._region import channel_path


class Point(ctypes.Structure):
    _fields_ = [("seq", ctypes.c_int64), ("x", ctypes.c_double), ("y", ctypes.c_double), ("k", ctypes.c_int64)]


def pair(name, length=32, capacity=8, **kw):
    return (Sender(name, message_length=length, max_queued_messages=capacity, **kw),
            Receiver(name, message_length=length, max_queued_messages=capacity))


def test_bytes_sent_arrive_as_bytes_in_order(channel):
    s, r = pair(channel)
    with s, r:
        for i in range(20):
            s.send(b"m%d" % i)
            assert r.recv(timeout=1) == b"m%d" % i


def test_messages_shorter_than_message_length_keep_their_length(channel):
    s, r = pair(channel, length=16)
    with s, r:
        s.send_many([b"", b"a", b"x" * 16, bytearray(b"ba"), memoryview(b"mv")])
        assert r.recv_many(10) == [b"", b"a", b"x" * 16, b"ba", b"mv"]


def test_the_whipcrack_example_round_trips_through_serializer_and_deserializer(channel):
    got = []
    done = threading.Event()

    def on_message(msg):
        got.append((msg.seq, msg.x, msg.y, msg.k))
        if len(got) == 3:
            done.set()

    sender = Sender(name=channel, message_serializer=lambda m, b: b.write(m),
                    message_length=32, max_queued_messages=200)
    receiver = Receiver(name=channel, message_deserializer=lambda b: b.read(Point),
                        message_length=32, max_queued_messages=200, on_message=on_message)
    with sender, receiver:
        sender.send(Point(1, 0.5, 0.25, 7))
        sender.send_many([Point(2, 1.0, 0.5, 14), Point(3, 1.5, 0.75, 21)])
        assert done.wait(10)
    assert got == [(1, 0.5, 0.25, 7), (2, 1.0, 0.5, 14), (3, 1.5, 0.75, 21)]


def test_write_and_read_buffers_handle_ctypes_arrays_simple_types_and_bytes(channel):
    def ser(msg, buf):
        assert isinstance(buf, WriteBuffer)
        buf.write(ctypes.c_uint16(msg))
        buf.write((ctypes.c_int32 * 2)(msg, -msg))
        buf.write_bytes(b"tail")
        assert buf.position == 14 and buf.remaining == 2

    def de(buf):
        assert isinstance(buf, ReadBuffer) and len(buf) == 14
        a = buf.read(ctypes.c_uint16).value
        b = list(buf.read(ctypes.c_int32 * 2))
        rest = buf.read_bytes()
        assert buf.remaining == 0
        return a, b, rest

    s = Sender(channel, message_serializer=ser, message_length=16, max_queued_messages=4)
    r = Receiver(channel, message_deserializer=de, message_length=16, max_queued_messages=4)
    with s, r:
        s.send(7)
        assert r.recv(timeout=1) == (7, [7, -7], b"tail")


def test_writing_past_message_length_raises_and_sends_nothing(channel):
    def ser(msg, buf):
        buf.write(b"12345678")
        buf.write(b"9")

    s = Sender(channel, message_serializer=ser, message_length=8, max_queued_messages=4)
    r = Receiver(channel, message_length=8, max_queued_messages=4)
    with s, r:
        with pytest.raises(MessageTooLongError, match=r"offset 8 makes the message 9 bytes long; message_length is 8"):
            s.send("x")
        assert r.try_recv() is None


def test_reading_past_the_end_of_a_message_raises(channel):
    s = Sender(channel, message_length=16, max_queued_messages=4)
    r = Receiver(channel, message_deserializer=lambda b: b.read(Point), message_length=16,
                 max_queued_messages=4)
    with s, r:
        s.send(b"short")
        with pytest.raises(ValueError, match=r"reading Point \(32 bytes\) at offset 0 runs past the end of the 5-byte message"):
            r.recv(timeout=1)


def test_buffers_cannot_be_used_after_their_callback_returns(channel):
    kept = []
    s = Sender(channel, message_serializer=lambda m, b: kept.append(b), message_length=8,
               max_queued_messages=4)
    with s:
        s.send(1)
        with pytest.raises(ChannelClosedError, match="only inside the message_serializer"):
            kept[0].write(b"late")


def test_a_ctypes_pointer_is_refused(channel):
    s = Sender(channel, message_serializer=lambda m, b: b.write(m), message_length=8, max_queued_messages=4)
    with s:
        with pytest.raises(TypeError, match="pointer"):
            s.send(ctypes.pointer(ctypes.c_int(1)))


def test_an_oversize_message_raises_value_error_naming_both_lengths(channel):
    s, r = pair(channel, length=32)
    with s, r:
        with pytest.raises(ValueError, match=r"message is 33 bytes, longer than message_length=32"):
            s.send(b"x" * 33)
        with pytest.raises(MessageTooLongError, match="40 bytes"):
            s.send_many([b"ok", bytearray(40)])
        assert r.recv_many(10) == [b"ok"]


def test_a_non_bytes_message_without_serializer_is_a_type_error(channel):
    s, _ = pair(channel)
    with s:
        with pytest.raises(TypeError, match="bytes-like objects, not str"):
            s.send("text")


def test_a_timed_out_send_raises_queue_full(channel):
    s, r = pair(channel, capacity=2)
    with s, r:
        s.send(b"1")
        s.send(b"2")
        t0 = time.monotonic()
        with pytest.raises(queue.Full) as info:
            s.send(b"3", timeout=0.2)
        assert time.monotonic() - t0 >= 0.19
        assert isinstance(info.value, SendTimeout) and isinstance(info.value, CywhipError)
        assert s.try_send(b"3") is False


def test_a_timed_out_send_many_says_how_many_went_out(channel):
    s, r = pair(channel, capacity=3)
    with s, r:
        with pytest.raises(SendTimeout) as info:
            s.send_many([b"a", b"b", b"c", b"d", b"e"], timeout=0.1)
        assert info.value.sent == 3
        assert r.recv_many(10) == [b"a", b"b", b"c"]


def test_a_timed_out_recv_raises_queue_empty(channel):
    _, r = pair(channel)
    with r:
        t0 = time.monotonic()
        with pytest.raises(queue.Empty) as info:
            r.recv(timeout=0.2)
        assert time.monotonic() - t0 >= 0.19
        assert isinstance(info.value, ReceiveTimeout)
        with pytest.raises(queue.Empty):
            r.recv_many(5, timeout=0)
        assert r.try_recv() is None


@pytest.mark.parametrize("bad", [-1, float("nan"), "1"])
def test_a_bad_timeout_is_refused_naming_it(channel, bad):
    _, r = pair(channel)
    with r:
        with pytest.raises((ValueError, TypeError), match=repr(bad) if bad == bad else "nan"):
            r.recv(timeout=bad)


def test_recv_many_takes_all_waiting_up_to_max_count(channel):
    s, r = pair(channel, capacity=16)
    with s, r:
        s.send_many([b"%d" % i for i in range(10)])
        assert r.recv_many(4) == [b"0", b"1", b"2", b"3"]
        assert r.recv_many(100) == [b"%d" % i for i in range(4, 10)]
        with pytest.raises(ValueError, match="at least 1, got 0"):
            r.recv_many(0)


def test_recv_many_waits_for_the_first_message(channel):
    s, r = pair(channel)
    with s, r:
        threading.Timer(0.1, s.send, (b"late",)).start()
        assert r.recv_many(5, timeout=5) == [b"late"]


def test_a_receiver_is_iterable_and_iteration_ends_when_it_is_closed(channel):
    s, r = pair(channel)
    got = []
    with s:
        s.send_many([b"a", b"b"])

        def consume():
            for msg in r:
                got.append(msg)

        t = threading.Thread(target=consume)
        t.start()
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        r.close()
        t.join(5)
    assert not t.is_alive()
    assert got == [b"a", b"b"]


def test_a_send_blocked_on_a_full_ring_resumes_when_the_receiver_takes_one(channel):
    s, r = pair(channel, capacity=1)
    with s, r:
        s.send(b"first")
        threading.Timer(0.1, r.recv).start()
        s.send(b"second", timeout=5)
        assert r.recv(timeout=1) == b"second"


def test_messages_queue_while_no_receiver_exists_and_try_send_reports_a_full_ring(channel):
    with Sender(channel, message_length=8, max_queued_messages=3) as s:
        assert [s.try_send(b"%d" % i) for i in range(4)] == [True, True, True, False]
        assert s.depth == 3
    with Receiver(channel, message_length=8, max_queued_messages=3) as r:
        assert r.recv_many(10) == [b"0", b"1", b"2"]


def test_a_new_receiver_resumes_after_the_last_message_taken(channel):
    s = Sender(channel, message_length=8, max_queued_messages=16)
    with s:
        s.send_many([b"%d" % i for i in range(10)])
        with Receiver(channel, message_length=8, max_queued_messages=16) as r1:
            assert r1.recv_many(4) == [b"0", b"1", b"2", b"3"]
        with Receiver(channel, message_length=8, max_queued_messages=16) as r2:
            assert r2.recv_many(10) == [b"%d" % i for i in range(4, 10)]


def test_a_restarted_sender_continues_the_stream(channel):
    r = Receiver(channel, message_length=8, max_queued_messages=16)
    with r:
        for part in range(3):
            with Sender(channel, message_length=8, max_queued_messages=16) as s:
                s.send_many([b"%d-%d" % (part, i) for i in range(3)])
        assert r.recv_many(20) == [b"%d-%d" % (p, i) for p in range(3) for i in range(3)]


@pytest.mark.parametrize("what,kwargs,message", [
    ("message_length", dict(message_length=64, max_queued_messages=8),
     r"exists with message_length=32, this end asked for message_length=64"),
    ("max_queued_messages", dict(message_length=32, max_queued_messages=9),
     r"exists with max_queued_messages=8, this end asked for max_queued_messages=9"),
])
def test_a_geometry_mismatch_names_both_values(channel, what, kwargs, message):
    with Sender(channel, message_length=32, max_queued_messages=8):
        with pytest.raises(ChannelMismatchError, match=message):
            Receiver(channel, **kwargs)
        with pytest.raises(ValueError):
            Receiver(channel, **kwargs)


def test_a_second_end_of_the_same_kind_is_refused_naming_the_holder(channel):
    with Sender(channel, message_length=8, max_queued_messages=4), \
            Receiver(channel, message_length=8, max_queued_messages=4):
        with pytest.raises(ChannelBusyError, match=rf"already has a sender: process {os.getpid()} \(this process\) holds it; close the sender"):
            Sender(channel, message_length=8, max_queued_messages=4)
        with pytest.raises(ChannelBusyError, match="already has a receiver") as info:
            Receiver(channel, message_length=8, max_queued_messages=4)
        assert info.value.pid == os.getpid()
    # Closing released the claims.
    Sender(channel, message_length=8, max_queued_messages=4).close()


def test_every_use_of_a_closed_end_raises(channel):
    s, r = pair(channel)
    s.close()
    r.close()
    s.close()  # closing twice is harmless
    for call in (lambda: s.send(b"x"), lambda: s.try_send(b"x"), lambda: s.send_many([b"x"]),
                 lambda: r.recv(), lambda: r.try_recv(), lambda: r.recv_many(1),
                 lambda: s.depth, lambda: s.__enter__()):
        with pytest.raises(ChannelClosedError, match="is closed"):
            call()
    assert s.closed and r.closed


def test_close_from_another_thread_ends_a_blocked_recv(channel, in_thread):
    _, r = pair(channel)
    t, outcome = in_thread(r.recv)
    time.sleep(0.1)
    r.close()
    t.join(5)
    assert not t.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], ChannelClosedError)
    assert r.closed


def test_an_end_used_from_two_threads_at_once_refuses_the_second(channel, in_thread):
    _, r = pair(channel)
    with r:
        t, outcome = in_thread(r.recv)
        time.sleep(0.1)
        with pytest.raises(RuntimeError, match="one thread at a time"):
            r.try_recv()
        r.close()
        t.join(5)
    assert not t.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], ChannelClosedError)


def test_on_message_receiver_delivers_in_order_and_close_joins_its_thread(channel):
    got = []
    s = Sender(channel, message_length=8, max_queued_messages=4)
    r = Receiver(channel, message_length=8, max_queued_messages=4, on_message=got.append)
    with s:
        s.send_many([b"%d" % i for i in range(100)], timeout=10)
        deadline = time.monotonic() + 10
        while len(got) < 100 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert r.running
        r.close()
    assert not r.running
    assert got == [b"%d" % i for i in range(100)]
    with pytest.raises(RuntimeError, match="on_message"):
        Receiver(channel, message_length=8, max_queued_messages=4, on_message=print).recv()


def test_an_on_message_error_stops_the_thread_keeps_the_message_and_reaches_close(channel):
    seen = []

    def on_message(msg):
        seen.append(msg)
        if msg == b"bad":
            raise KeyError("boom")

    with Sender(channel, message_length=8, max_queued_messages=4) as s:
        s.send_many([b"ok", b"bad", b"after"])
        r = Receiver(channel, message_length=8, max_queued_messages=4, on_message=on_message)
        deadline = time.monotonic() + 10
        while r.running and time.monotonic() < deadline:
            time.sleep(0.01)
        assert isinstance(r.exception, KeyError)
        with pytest.raises(KeyError, match="boom"):
            r.close()
        # The failing message was not taken: the next receiver gets it first.
        with Receiver(channel, message_length=8, max_queued_messages=4) as r2:
            assert r2.recv_many(10) == [b"bad", b"after"]
    assert seen == [b"ok", b"bad"]


def test_an_on_error_hook_sees_the_error_and_delivery_goes_on(channel):
    errors, got = [], []

    def on_message(msg):
        if msg == b"bad":
            raise ValueError(msg)
        got.append(msg)

    with Sender(channel, message_length=8, max_queued_messages=4) as s:
        r = Receiver(channel, message_length=8, max_queued_messages=4, on_message=on_message,
                     on_error=errors.append)
        s.send_many([b"a", b"bad", b"b"])
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        r.close()
    assert got == [b"a", b"b"]
    assert [str(e) for e in errors] == ["b'bad'"]


def test_a_failing_deserializer_in_recv_many_returns_what_came_before_and_keeps_the_rest(channel):
    def de(buf):
        data = buf.read_bytes()
        if data == b"bad":
            raise ValueError("cannot parse")
        return data

    s = Sender(channel, message_length=8, max_queued_messages=8)
    r = Receiver(channel, message_deserializer=de, message_length=8, max_queued_messages=8)
    with s, r:
        s.send_many([b"a", b"b", b"bad", b"c"])
        assert r.recv_many(10) == [b"a", b"b"]
        with pytest.raises(ValueError, match="cannot parse"):
            r.recv_many(10)
        with pytest.raises(ValueError, match="cannot parse"):
            r.recv()


@pytest.mark.parametrize("name,error,message", [
    ("", ValueError, "must not be empty"),
    ("a/b", ValueError, "must not contain '/'"),
    ("a\0b", ValueError, "NUL"),
    ("x" * 201, ValueError, "201 bytes, the limit is 200"),
    (b"bytes", TypeError, "must be a str, not bytes"),
    (".", ValueError, r"must not be '\.': choose a name with other characters too"),
    ("..", ValueError, r"must not be '\.\.'"),
    ("Global\\..", ValueError, r"must not be '\.\.'"),
])
def test_invalid_channel_names_are_refused(name, error, message):
    with pytest.raises(error, match=message):
        Sender(name, message_length=8)


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(message_length=0), ValueError, "message_length must be at least 1, got 0"),
    (dict(message_length=-5), ValueError, "got -5"),
    (dict(message_length=8, max_queued_messages=0), ValueError, "max_queued_messages must be at least 1, got 0"),
    (dict(message_length="8"), TypeError, r"message_length must be an int, not str \('8'\)"),
    (dict(message_length=2**40), ValueError, "message_length must be at most"),
    (dict(), TypeError, "needs message_length"),
    (dict(message_length=8, spin_time=-1), ValueError, "spin_time must be between 0 and 1 second, got -1"),
])
def test_invalid_sizes_are_refused_naming_the_value(channel, kwargs, error, message):
    with pytest.raises(error, match=message):
        Sender(channel, **kwargs)
    assert not os.path.exists(channel_path(channel))


def test_a_ring_larger_than_dev_shm_is_refused_and_leaves_no_file(channel):
    with pytest.raises(OSError, match="bytes free"):
        Sender(channel, message_length=2**30, max_queued_messages=2**20)
    assert not os.path.exists(channel_path(channel))
    # This process's temporary files only (.cywhip.<pid>.<random>.tmp): tests in other processes
    # may be creating channels at the same moment.
    assert not [f for f in os.listdir("/dev/shm") if f.startswith(f".cywhip.{os.getpid()}.")]


def test_global_prefix_is_accepted_and_ignored(channel):
    with Sender("Global\\" + channel, message_length=8, max_queued_messages=2) as s, \
            Receiver(channel, message_length=8, max_queued_messages=2) as r:
        s.send(b"hi")
        assert r.recv(timeout=1) == b"hi"


def test_the_channel_file_is_created_mode_0600_and_unlink_removes_it(channel):
    with Sender(channel, message_length=8, max_queued_messages=2):
        st = os.stat(channel_path(channel))
        assert stat.S_IMODE(st.st_mode) == 0o600
    cywhip.unlink(channel)
    assert not os.path.exists(channel_path(channel))
    with pytest.raises(FileNotFoundError, match=repr(channel)):
        cywhip.unlink(channel)
    cywhip.unlink(channel, missing_ok=True)


def test_a_symlink_in_place_of_a_channel_is_refused(channel, tmp_path):
    target = tmp_path / "target"
    target.write_bytes(b"\0" * 8192)
    os.symlink(target, channel_path(channel))
    try:
        with pytest.raises(PermissionError, match="symbolic link"):
            Receiver(channel, message_length=8, max_queued_messages=2)
    finally:
        os.unlink(channel_path(channel))


def test_a_file_that_is_not_a_channel_is_refused(channel):
    with open(channel_path(channel), "wb") as f:
        f.write(b"\xff" * 8192)
    os.chmod(channel_path(channel), 0o600)
    with pytest.raises(cywhip.ChannelCorruptError, match="not a cywhip channel"):
        Receiver(channel, message_length=8, max_queued_messages=2)


def test_import_on_an_unsupported_platform_fails_with_a_clear_message():
    import subprocess
    import sys
    code = "import sys; sys.platform = 'darwin'; import cywhip"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "ImportError: cywhip needs CPython 3.10 or newer on Linux (x86-64 or aarch64); this is" in out.stderr
    assert "darwin" in out.stderr

"""Typed channels: ctypes and NumPy records, array batches, borrowed views, on_batch, nogil loops."""
import ctypes
import json
import textwrap
import threading
import time

import pytest

np = pytest.importorskip("numpy")

import cywhip  # noqa: E402
from cywhip import ChannelMismatchError, Receiver, Sender  # noqa: E402
from cywhip._ring import LINE_TRACED  # noqa: E402
from cywhip._testing.records import Mixed, fields, make, make_array, numpy_dtype  # noqa: E402

RECORD = np.dtype([("seq", "<i8"), ("a", "<i8"), ("b", "<i8"), ("c", "<i8")])


class Point(ctypes.Structure):
    _fields_ = [("seq", ctypes.c_int64), ("x", ctypes.c_double), ("y", ctypes.c_double), ("k", ctypes.c_int64)]


def typed_pair(name, message_type, capacity=64, **kw):
    return (Sender(name, message_type=message_type, max_queued_messages=capacity),
            Receiver(name, message_type=message_type, max_queued_messages=capacity, **kw))


# ---------------------------------------------------------------- across processes

@pytest.mark.parametrize("kind", ["ctypes", "numpy"])
def test_typed_records_cross_processes_field_for_field(channel, peers, kind):
    count = 5000
    receiver = peers.start(channel, kind, count, script="import sys; from cywhip._testing.records import main; "
                                                         "sys.exit(main(['recv'] + sys.argv[1:]))")
    sender = peers.start(channel, kind, count, script="import sys; from cywhip._testing.records import main; "
                                                       "sys.exit(main(['send'] + sys.argv[1:]))")
    rc, out, err = peers.finish(receiver)
    assert rc == 0, err
    assert json.loads(out) == {"received": count, "bad": None}
    assert peers.finish(sender)[0] == 0


@pytest.mark.timeout(180)
def test_ten_million_records_round_trip_through_send_array_and_recv_into(channel, peers):
    count = 10_000_000
    receiver = peers.start("recv", channel, "--count", count, "--mode", "recv_into", "--capacity", 65536)
    sender = peers.start("send", channel, "--count", count, "--mode", "send_array", "--capacity", 65536)
    rc, out, err = peers.finish(receiver, timeout=150)
    assert rc == 0, err
    report = json.loads(out)
    assert report["received"] == count and report["in_order"], report
    assert report["last"] == count - 1
    assert peers.finish(sender)[0] == 0


@pytest.mark.parametrize("mode", ["on_batch", "borrow"])
def test_every_record_arrives_in_order_across_processes_through(channel, peers, mode):
    count = 300_000
    receiver = peers.start("recv", channel, "--count", count, "--mode", mode, "--capacity", 4096)
    peers.start("send", channel, "--count", count, "--mode", "send_array", "--capacity", 4096)
    rc, out, err = peers.finish(receiver)
    assert rc == 0, err
    report = json.loads(out)
    assert report["received"] == count and report["in_order"], report


# ------------------------------------------------------------------- in process

def test_a_ctypes_channel_sends_and_receives_instances(channel):
    s, r = typed_pair(channel, Mixed)
    with s, r:
        assert s.message_length == ctypes.sizeof(Mixed) and s.message_type is Mixed
        s.send(make("ctypes", 7))
        s.send_many([make("ctypes", 8), make("ctypes", 9)])
        got = [r.recv(timeout=1)] + r.recv_many(10)
        assert all(isinstance(g, Mixed) for g in got)
        assert [fields(g) for g in got] == [fields(make("ctypes", i)) for i in (7, 8, 9)]


def test_simple_ctypes_types_and_arrays_are_channels_too(channel):
    s, r = typed_pair(channel, ctypes.c_double * 4)
    with s, r:
        s.send((ctypes.c_double * 4)(1, 2, 3, 4))
        assert list(r.recv(timeout=1)) == [1, 2, 3, 4]
    s, r = typed_pair(channel + "i", ctypes.c_int32)
    try:
        with s, r:
            s.send(ctypes.c_int32(-5))
            assert s.send_array(np.arange(3, dtype=np.int32)) == 3
            assert r.recv(timeout=1).value == -5
            assert r.recv_array(10).tolist() == [0, 1, 2]
    finally:
        cywhip.unlink(channel + "i")


def test_a_ctypes_sender_and_a_numpy_receiver_with_the_same_layout_interoperate(channel):
    with Sender(channel, message_type=Point, max_queued_messages=16) as s, \
            Receiver(channel, message_type=np.dtype(Point), max_queued_messages=16) as r:
        s.send(Point(1, 0.5, 0.25, 7))
        rec = r.recv(timeout=1)
        assert rec.tolist() == (1, 0.5, 0.25, 7)
        arr = np.zeros(3, np.dtype(Point))
        arr["seq"] = [10, 11, 12]
        assert s.send_array(arr) == 3
        assert r.recv_array(10)["seq"].tolist() == [10, 11, 12]


def test_send_array_takes_strided_arrays_and_recv_into_fills_strided_ones(channel):
    s, r = typed_pair(channel, RECORD, capacity=16)
    with s, r:
        src = np.zeros(40, RECORD)
        src["seq"] = np.arange(40)
        assert s.send_array(src[::4]) == 10
        out = np.zeros(30, RECORD)
        assert r.recv_into(out[::3]) == 10
        assert out["seq"][::3].tolist() == list(range(0, 40, 4))


def test_send_array_blocks_on_a_full_ring_and_times_out_saying_how_many_went(channel):
    s, r = typed_pair(channel, RECORD, capacity=8)
    with s, r:
        with pytest.raises(cywhip.SendTimeout) as info:
            s.send_array(np.zeros(20, RECORD), timeout=0.1)
        assert info.value.sent == 8
        assert len(r.recv_array(100)) == 8
        with pytest.raises(cywhip.ReceiveTimeout):
            r.recv_array(1, timeout=0.05)


def test_recv_array_and_recv_into_wait_for_one_and_take_what_is_waiting(channel):
    s, r = typed_pair(channel, RECORD, capacity=64)
    with s, r:
        timer = threading.Timer(0.1, s.send_array, (np.ones(5, RECORD),))
        timer.start()
        assert len(r.recv_array(100, timeout=5)) == 5
        timer.join(5)   # the sending thread may still be on its way out of send_array()
        s.send_array(np.ones(9, RECORD))
        out = np.zeros(4, RECORD)
        assert r.recv_into(out) == 4
        assert r.recv_into(out) == 4
        assert r.recv_into(out) == 1
        with pytest.raises(cywhip.ReceiveTimeout):
            r.recv_into(out, timeout=0.05)


def test_arrays_of_the_wrong_type_or_shape_are_refused(channel):
    s, r = typed_pair(channel, RECORD)
    with s, r:
        with pytest.raises(TypeError, match="send_array.. needs a NumPy array of the channel's records"):
            s.send_array(np.zeros(3, "<i8"))
        with pytest.raises(ValueError, match="1-D"):
            s.send_array(np.zeros((2, 2), RECORD))
        with pytest.raises(ValueError, match="writable"):
            out = np.zeros(3, RECORD)
            out.setflags(write=False)
            r.recv_into(out)
        with pytest.raises(TypeError, match="single records of dtype"):
            s.send(np.zeros(3, RECORD))
        with pytest.raises(TypeError, match="carries single records"):
            s.send(b"x" * 32)
    with Sender(channel + "u", message_length=8) as u:
        try:
            with pytest.raises(TypeError, match="needs a typed channel"):
                u.send_array(np.zeros(1, "<i8"))
        finally:
            cywhip.unlink(channel + "u")


@pytest.mark.parametrize("other,difference", [
    (np.dtype([("seq", "<i8"), ("a", "<i8"), ("b", "<i8"), ("c", "<f8")]), "c@24:<i8 vs c@24:<f8"),
    (np.dtype([("seq", "<i8"), ("a", "<i8"), ("b", "<i8"), ("d", "<i8")]), "c@24:<i8 vs d@24:<i8"),
    (np.dtype([("seq", ">i8"), ("a", "<i8"), ("b", "<i8"), ("c", "<i8")]), "seq@0:<i8 vs seq@0:>i8"),
])
def test_a_record_type_mismatch_says_what_differs(channel, other, difference):
    with Sender(channel, message_type=RECORD, max_queued_messages=8):
        with pytest.raises(ChannelMismatchError, match=f"they differ at {difference}"):
            Receiver(channel, message_type=other, max_queued_messages=8)


def test_a_record_size_mismatch_names_both_sizes(channel):
    with Sender(channel, message_type=RECORD, max_queued_messages=8):
        with pytest.raises(ChannelMismatchError, match=r"\(32 bytes\); this end's message_type is .* \(24 bytes\)"):
            Receiver(channel, message_type=np.dtype(RECORD.descr[:3]), max_queued_messages=8)


def test_big_endian_ctypes_structures_differ_from_native_ones(channel):
    class BE(ctypes.BigEndianStructure):
        _fields_ = Point._fields_

    with Sender(channel, message_type=Point, max_queued_messages=8):
        with pytest.raises(ChannelMismatchError, match="seq@0:<i8 vs seq@0:>i8"):
            Receiver(channel, message_type=BE, max_queued_messages=8)


def test_an_untyped_receiver_may_read_a_typed_channel_as_bytes(channel):
    with Sender(channel, message_type=Point, max_queued_messages=8) as s, \
            Receiver(channel, message_length=32, max_queued_messages=8) as r:
        s.send(Point(1, 2, 3, 4))
        assert r.recv(timeout=1) == bytes(Point(1, 2, 3, 4))


def test_an_untyped_sender_on_a_typed_channel_and_a_typed_end_on_an_untyped_one_are_refused(channel):
    with Receiver(channel, message_type=Point, max_queued_messages=8):
        with pytest.raises(ChannelMismatchError, match="an untyped sender could write records of another layout"):
            Sender(channel, message_length=32, max_queued_messages=8)
    cywhip.unlink(channel)
    with Receiver(channel, message_length=32, max_queued_messages=8):
        with pytest.raises(ChannelMismatchError, match="was created untyped"):
            Sender(channel, message_type=Point, max_queued_messages=8)


@pytest.mark.parametrize("bad,message", [
    (ctypes.POINTER(ctypes.c_int), "pointer type LP_c_int cannot be sent"),
    (ctypes.c_char_p, "pointers and strings mean nothing in another process"),
    (np.dtype("O"), "holds Python objects"),
    ("not a type", "must be a ctypes type or a NumPy dtype"),
])
def test_types_that_cannot_cross_processes_are_refused(channel, bad, message):
    with pytest.raises(TypeError, match=message):
        Sender(channel, message_type=bad)


def test_bit_fields_are_refused(channel):
    class Bits(ctypes.Structure):
        _fields_ = [("a", ctypes.c_int, 3)]

    with pytest.raises(TypeError, match="bit fields"):
        Sender(channel, message_type=Bits)


def test_message_length_must_agree_with_message_type(channel):
    with pytest.raises(ValueError, match=r"message_length=16 disagrees with message_type .* 32 bytes"):
        Sender(channel, message_type=Point, message_length=16)
    with pytest.raises(TypeError, match="no message_serializer"):
        Sender(channel, message_type=Point, message_serializer=print)


def test_numpy_records_keep_alignment_and_padding(channel):
    dt = numpy_dtype()
    assert dt.itemsize == 40 and dt.isalignedstruct
    s, r = typed_pair(channel, dt)
    with s, r:
        s.send_array(make_array(0, 20))
        got = r.recv_array(100)
        assert np.array_equal(got, make_array(0, 20))
        s.send(make_array(5, 6)[0])
        rec = r.recv(timeout=1)
        assert (rec["seq"], rec["small"], rec["value"], rec["pair"].tolist(), rec["flag"]) == \
            (5, -45, 5 / 3, [5, -5], False)


# ------------------------------------------------------------------------ borrow()

def test_borrowed_records_are_read_only_views_taken_on_exit(channel):
    s, r = typed_pair(channel, RECORD, capacity=16)
    with s, r:
        arr = np.zeros(6, RECORD)
        arr["seq"] = np.arange(6)
        s.send_array(arr)
        with r.borrow(4) as batch:
            assert batch["seq"].tolist() == [0, 1, 2, 3]
            assert not batch.flags.writeable
            with pytest.raises(ValueError):
                batch["seq"][0] = 9
        assert r.taken == 4
        assert r.recv_array(10)["seq"].tolist() == [4, 5]


def test_a_borrowed_memoryview_raises_after_the_block(channel):
    s, r = typed_pair(channel, Point)
    with s, r:
        s.send(Point(1, 2, 3, 4))
        with r.borrow() as batch:
            view = batch[0]
            assert Point.from_buffer_copy(view).seq == 1
            assert view.readonly
        with pytest.raises(ValueError, match="released"):
            view[0]
        assert r.taken == 1


def test_an_array_kept_past_the_block_reads_zeros_never_the_senders_new_records(channel):
    s, r = typed_pair(channel, RECORD, capacity=4)
    with s, r:
        s.send_array(np.ones(4, RECORD))
        with r.borrow() as batch:
            kept = batch[1:]
            assert kept["seq"].tolist() == [1, 1, 1]
        assert r.taken == 4
        s.send_array(np.full(4, 7, RECORD))      # rewrites every slot
        assert kept["seq"].tolist() == [0, 0, 0]
        assert batch["a"].tolist() == [0, 0, 0, 0]
        assert r.recv_array(10)["seq"].tolist() == [7, 7, 7, 7]


def test_a_view_derived_from_a_borrowed_memoryview_reads_zeros_after_the_block(channel):
    with Sender(channel, message_length=8, max_queued_messages=2) as s, \
            Receiver(channel, message_length=8, max_queued_messages=2) as r:
        s.send(b"secret!!")
        with r.borrow() as views:
            derived = np.frombuffer(views[0], np.uint8)
        s.send_many([b"new-one!", b"new-two!"])
        assert bytes(derived) == bytes(8)


def test_closing_the_receiver_after_a_borrow_leaves_kept_views_readable(channel):
    s, r = typed_pair(channel, RECORD, capacity=4)
    with s:
        s.send_array(np.full(2, 7, RECORD))
        with r.borrow() as batch:
            assert batch["seq"].tolist() == [7, 7]
        r.close()
        assert batch["seq"].tolist() == [0, 0]   # zeros, and no crash


def test_untyped_channels_lend_one_view_per_message(channel):
    with Sender(channel, message_length=16, max_queued_messages=8) as s, \
            Receiver(channel, message_length=16, max_queued_messages=8) as r:
        s.send_many([b"a", b"bb", b""])
        with r.borrow(10) as views:
            assert [bytes(v) for v in views] == [b"a", b"bb", b""]


# ------------------------------------------------------------------------ on_batch

def test_on_batch_gets_everything_waiting_in_order(channel):
    batches = []
    done = threading.Event()

    def on_batch(batch):
        batches.append(batch)
        if sum(len(b) for b in batches) >= 100:
            done.set()

    with Sender(channel, message_length=8, max_queued_messages=32) as s:
        r = Receiver(channel, message_length=8, max_queued_messages=32, on_batch=on_batch)
        s.send_many([b"%d" % i for i in range(100)], timeout=10)
        assert done.wait(10)
        r.close()
    assert all(isinstance(b, list) for b in batches)
    assert [m for b in batches for m in b] == [b"%d" % i for i in range(100)]


def test_a_failing_on_batch_leaves_its_batch_for_the_next_receiver(channel):
    def on_batch(batch):
        raise RuntimeError("no")

    with Sender(channel, message_type=RECORD, max_queued_messages=16) as s:
        arr = np.zeros(5, RECORD)
        arr["seq"] = np.arange(5)
        s.send_array(arr)
        r = Receiver(channel, message_type=RECORD, max_queued_messages=16, on_batch=on_batch)
        deadline = time.monotonic() + 10
        while r.running and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(RuntimeError, match="no"):
            r.close()
        with Receiver(channel, message_type=RECORD, max_queued_messages=16) as r2:
            assert r2.recv_array(10)["seq"].tolist() == [0, 1, 2, 3, 4]


# ------------------------------------------------------------- nogil beside threads

def _spin(seconds):
    """Pure-Python work for a while: it runs only while this thread holds the GIL."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(1000):
            pass


RECEIVING_PROCESS = textwrap.dedent("""
    import json, sys, threading, time
    import numpy as np
    import cywhip
    name, total = sys.argv[1], int(sys.argv[2])
    dt = np.dtype([("seq", "<i8"), ("a", "<i8"), ("b", "<i8"), ("c", "<i8")])

    def share(seconds):
        # The part of a spell of pure-Python spinning this thread spent on a CPU: it sleeps
        # (and the share drops) whenever another thread holds the GIL.
        cpu, wall = time.thread_time(), time.perf_counter()
        end = wall + seconds
        while time.perf_counter() < end:
            for _ in range(1000):
                pass
        return (time.thread_time() - cpu) / (time.perf_counter() - wall)

    # Best of short measures: noise on a shared machine only ever lowers a measure.
    solo = max(share(0.1) for _ in range(5))
    got = [0]
    r = cywhip.Receiver(name, message_type=dt, max_queued_messages=65536,
                        on_batch=lambda b: got.__setitem__(0, got[0] + len(b)))
    print("ready", flush=True)
    while got[0] == 0:
        time.sleep(0.001)
    before = got[0]
    busy = max(share(0.1) for _ in range(10))
    during = got[0] - before
    deadline = time.monotonic() + 60
    while got[0] < total and time.monotonic() < deadline:
        time.sleep(0.01)
    r.close()
    print(json.dumps({"solo": solo, "busy": busy, "received": got[0], "during": during}))
""")

STREAMING_SENDER = textwrap.dedent("""
    import sys, time
    import numpy as np
    import cywhip
    name, total = sys.argv[1], int(sys.argv[2])
    dt = np.dtype([("seq", "<i8"), ("a", "<i8"), ("b", "<i8"), ("c", "<i8")])
    chunk = np.zeros(20000, dt)
    with cywhip.Sender(name, message_type=dt, max_queued_messages=65536) as s:
        sent = 0
        while sent < total:
            sent += s.send_array(chunk, timeout=30)
            time.sleep(0.002)
""")


@pytest.mark.skipif(LINE_TRACED, reason="a build with line tracing (CYWHIP_DEBUG=1) takes the GIL "
                                         "on every line of its nogil code")
@pytest.mark.timeout(120)
def test_a_receiving_thread_leaves_the_main_thread_on_the_cpu(channel, peers):
    total = 4_000_000
    receiver = peers.start(channel, total, script=RECEIVING_PROCESS)
    assert receiver.stdout.readline().strip() == "ready"
    sender = peers.start(channel, total, script=STREAMING_SENDER)
    rc, out, err = peers.finish(receiver, timeout=100)
    assert rc == 0, err
    report = json.loads(out)
    assert report["received"] == total
    # Records kept arriving while the main thread spun ...
    assert report["during"] > 0
    # ... and the main thread stayed on a CPU nearly as much as alone (a receive loop that held
    # the GIL, even one sharing it turn about, would leave it half or less).
    assert report["busy"] >= 0.6 * report["solo"], report
    assert peers.finish(sender)[0] == 0


def test_a_receive_blocked_in_one_thread_does_not_stall_the_others(channel, in_thread):
    r = Receiver(channel, message_length=8, max_queued_messages=4)
    t, outcome = in_thread(r.recv)
    time.sleep(0.05)  # past the spin phase: the receiver now sleeps in the kernel
    clock = time.pthread_getcpuclockid(t.ident)
    cpu_before, wall_before = time.clock_gettime(clock), time.perf_counter()
    # Pure-Python work in this thread: it can only run while the blocked receive has let go of
    # the GIL (a receive that kept the GIL would stall it until the end of the test).
    _spin(0.3)
    cpu = time.clock_gettime(clock) - cpu_before
    wall = time.perf_counter() - wall_before
    assert t.is_alive() and outcome == []
    r.close()
    t.join(5)
    assert not t.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], cywhip.ChannelClosedError)
    # The blocked thread sleeps rather than spins: coarse, a tenth of a core at most.
    assert cpu < 0.1 * wall, (cpu, wall)


def test_on_batch_on_a_ctypes_channel_gets_lists_of_instances(channel):
    got = []
    done = threading.Event()

    def on_batch(batch):
        got.extend(batch)
        if len(got) >= 50:
            done.set()

    with Sender(channel, message_type=Point, max_queued_messages=16) as s:
        r = Receiver(channel, message_type=Point, max_queued_messages=16, on_batch=on_batch)
        s.send_many((Point(i, i / 2, 0, -i) for i in range(50)), timeout=10)
        assert done.wait(10)
        r.close()
    assert all(isinstance(p, Point) for p in got)
    assert [(p.seq, p.x, p.k) for p in got] == [(i, i / 2, -i) for i in range(50)]

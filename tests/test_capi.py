"""The Cython API (cywhip.capi), called from extensions built here as users build theirs.

Once per session, two builds run side by side in a temporary directory, each with Cython and
setuptools against the installed cywhip (cywhip.get_include(), its capi.pxd and capi.h):
the worked example of docs/api.md (examples/capi/: producer.pyx, consumer.pyx and its setup.py;
tests/test_examples.py checks that docs/api.md shows these files), and capi_shim.pyx (beside this file: each call reachable from Python) with a module
compiled against a capi.h whose version was changed, and one written against the API's
former name (cimport cywhip.api).
"""
import ctypes
import gc
import json
import os
import pathlib
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import types
import weakref

import pytest

import cywhip
from cywhip import ChannelClosedError, Receiver, Sender

HERE = pathlib.Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "capi"

SHIM_SETUP = """
import cywhip
from Cython.Build import cythonize
from setuptools import Extension, setup

# Quick to compile: these modules make one call at a time.
quick = ["-O0", "-g0"]
setup(script_args=["build_ext", "--inplace"], ext_modules=cythonize([
    Extension("capi_shim", ["capi_shim.pyx"], include_dirs=[cywhip.get_include()], extra_compile_args=quick),
    # The fake capi.h comes first: the module is compiled against another API_VERSION.
    Extension("capi_fake_version", ["capi_fake_version.pyx"], include_dirs=["fake", cywhip.get_include()],
              extra_compile_args=quick),
    Extension("capi_former_name", ["capi_former_name.pyx"], include_dirs=[cywhip.get_include()],
              extra_compile_args=quick),
], include_path=[cywhip.get_include()], quiet=True))
"""

FAKE_VERSION_PYX = """# cython: language_level=3
from cywhip cimport capi

def handle(end):
    return <size_t>capi.handle(end)
"""

# A module written against the API's former name, cywhip.api, kept for a release.
FORMER_NAME_PYX = """# cython: language_level=3
from cywhip cimport api
from cywhip.api cimport Handle

def handle(end):
    cdef Handle *h = api.handle(end)
    return <size_t>h

def try_send(end, bytes data):
    return api.try_send(api.handle(end), <const char *>data, len(data)) == api.OK
"""


def example_files():
    """The files of the Cython API's worked example (examples/capi/)."""
    files = {p.name: p.read_text() for p in EXAMPLE.iterdir() if p.suffix in (".pyx", ".py")}
    assert {"producer.pyx", "consumer.pyx", "setup.py"} <= set(files), files.keys()
    return files


def api_version(header):
    return int(re.search(r"#define CYWHIP_API_VERSION (\d+)", header).group(1))


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """Build the worked example and the shim once; their directories come first on sys.path."""
    root = tmp_path_factory.mktemp("capi")
    example, shim = root / "example", root / "shim"
    example.mkdir()
    (shim / "fake" / "cywhip").mkdir(parents=True)
    for name, body in example_files().items():
        (example / name).write_text(body)
    shutil.copy(HERE / "capi_shim.pyx", shim)
    (shim / "capi_fake_version.pyx").write_text(FAKE_VERSION_PYX)
    (shim / "capi_former_name.pyx").write_text(FORMER_NAME_PYX)
    header = (pathlib.Path(cywhip.get_include()) / "cywhip" / "capi.h").read_text()
    version = api_version(header)
    fake = version + 1
    (shim / "fake" / "cywhip" / "capi.h").write_text(
        header.replace(f"#define CYWHIP_API_VERSION {version}\n", f"#define CYWHIP_API_VERSION {fake}\n"))
    builds = [subprocess.Popen([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=example,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
              subprocess.Popen([sys.executable, "-c", SHIM_SETUP], cwd=shim,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)]
    for proc in builds:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-6000:]
    sys.path[:0] = [str(example), str(shim)]
    import capi_shim
    yield types.SimpleNamespace(example=example, shim=capi_shim, shim_dir=shim, version=version, fake=fake)
    for d in (str(example), str(shim)):
        sys.path.remove(d)


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.001)


def start(fn, *args):
    """Run fn(*args) in a thread; return the thread and a list that gets its result."""
    out = []
    t = threading.Thread(target=lambda: out.append(fn(*args)), daemon=True)
    t.start()
    return t, out


def status(result):
    return result if isinstance(result, str) else result[0]


def start_call(fn, *args):
    """Run the shim call fn(*args) in a thread, calling again while it finds the end BUSY (the
    probes of wait_busy() hold it for a moment); return the thread and a list for its result."""
    def call():
        while True:
            result = fn(*args)
            if status(result) != "BUSY":
                return result
    return start(call)


def wait_busy(shim, end, data=None):
    """Wait until a call in another thread holds end: a try call here then gets BUSY."""
    probe = (lambda: shim.try_recv(end, 64)) if data is None else (lambda: shim.try_send(end, data))
    wait_until(lambda: status(probe()) == "BUSY")


# ------------------------------------------------------ the worked example, between processes

CONSUMER = """
import json, sys, time
import cywhip, consumer
name, count, blocks = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "blocks"
with cywhip.Receiver(name, message_length=16, max_queued_messages=4096) as rx:
    t0 = time.perf_counter()
    bad = (consumer.consume_blocks if blocks else consumer.consume)(rx, count)
    print(json.dumps({"bad": bad, "taken": rx.taken, "seconds": time.perf_counter() - t0}))
"""

PRODUCER = """
import sys
import cywhip, producer
name, count, blocks = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "blocks"
with cywhip.Sender(name, message_length=16, max_queued_messages=4096) as tx:
    print((producer.produce_blocks if blocks else producer.produce)(tx, count))
"""


def run_example(built, peers, channel, count, mode):
    receiver = peers.start(channel, count, mode, script=CONSUMER, cwd=built.example)
    sender = peers.start(channel, count, mode, script=PRODUCER, cwd=built.example)
    rc, out, err = peers.finish(receiver, timeout=100)
    assert rc == 0, err
    report = json.loads(out)
    rc, sent, err = peers.finish(sender)
    assert rc == 0, err
    assert int(sent) == count
    return report


@pytest.mark.timeout(120)
def test_the_worked_examples_scripts_run_as_written_and_remove_their_channel(built, peers):
    name = "capi-ticks"
    if os.path.exists(f"/dev/shm/cywhip.{name}"):
        cywhip.remove_stale([name])    # left by an earlier run that died
    try:
        receiver = subprocess.Popen([sys.executable, "receive_ticks.py"], cwd=built.example,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sender = subprocess.Popen([sys.executable, "send_ticks.py"], cwd=built.example,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        peers.procs += [receiver, sender]
        assert peers.finish(sender, timeout=100) == (0, "sent 1000000\n", "")
        assert peers.finish(receiver, timeout=100) == (0, "wrong: 0\n", "")
        assert not os.path.exists(f"/dev/shm/cywhip.{name}")
    finally:
        cywhip.unlink(name, missing_ok=True)


@pytest.mark.timeout(120)
def test_ten_million_ticks_cross_between_processes_one_call_each_every_one_checked(built, peers, channel):
    report = run_example(built, peers, channel, 10_000_000, "one")
    assert report["bad"] == 0 and report["taken"] == 10_000_000, report


@pytest.mark.timeout(120)
def test_ten_million_ticks_cross_between_processes_in_blocks_every_one_checked(built, peers, channel):
    report = run_example(built, peers, channel, 10_000_000, "blocks")
    assert report["bad"] == 0 and report["taken"] == 10_000_000, report


@pytest.mark.timeout(60)
def test_a_nogil_receive_loop_in_a_thread_leaves_python_running_beside_it(built, peers, channel):
    import consumer
    count = 2_000_000
    with Receiver(channel, message_length=16, max_queued_messages=4096) as rx:
        t, out = start(consumer.consume, rx, count)
        sender = peers.start(channel, count, "one", script=PRODUCER, cwd=built.example)
        # Python work in this thread while the other receives: count loop turns, and
        # note how far the receive had got (rx.taken reads the shared cursor) at each.
        turns, seen = 0, set()
        while t.is_alive():
            turns += 1
            if turns % 1000 == 0:
                seen.add(rx.taken)
        t.join()
        assert peers.finish(sender)[0] == 0
        assert out == [0] and rx.taken == count
    mid = {v for v in seen if 0 < v < count}
    assert turns > 10_000 and len(mid) >= 2, (turns, sorted(seen)[:10])


# -------------------------------------------------------------------------------- the handle

def test_handle_takes_a_sender_or_a_pulling_receiver_and_nothing_else(built, channel):
    shim = built.shim
    with pytest.raises(TypeError, match="takes a cywhip Sender or Receiver, not object"):
        shim.handle_address(object())
    with Sender(channel, message_length=8) as tx, Receiver(channel, message_length=8) as rx:
        assert shim.handle_address(tx) == shim.handle_address(tx) != shim.handle_address(rx)
    with pytest.raises(ChannelClosedError):
        shim.handle_address(tx)
    with Receiver(channel, message_length=8, on_message=lambda m: None) as pushing:
        with pytest.raises(TypeError, match="without on_message/on_batch"):
            shim.handle_address(pushing)
    cywhip.unlink(channel)
    with Sender(channel, message_length=64, message_type=object) as tx, \
            Receiver(channel, message_length=64, message_type=object) as rx:
        for end in (tx, rx):
            with pytest.raises(TypeError, match=r"moves bytes; .* carries Python objects \(message_type=object\)"):
                shim.handle_address(end)


def test_a_module_compiled_against_another_api_version_is_refused_naming_both(built, channel):
    import capi_fake_version
    with Sender(channel, message_length=8) as tx:
        with pytest.raises(ImportError) as err:
            capi_fake_version.handle(tx)
    assert f"version {built.fake} of cywhip's Cython API" in str(err.value)
    assert f"Cython API is version {built.version}" in str(err.value)
    assert built.version == built.shim.API_VERSION


def test_a_module_written_against_the_former_name_cywhip_api_compiles_and_calls_the_same_api(
        built, channel):
    import capi_former_name
    with Sender(channel, message_length=8) as tx, Receiver(channel, message_length=8) as rx:
        assert capi_former_name.handle(tx) == built.shim.handle_address(tx)
        assert capi_former_name.try_send(tx, b"former")
        assert rx.recv(timeout=1) == b"former"


def test_an_end_with_a_handle_stays_alive_until_closed_and_its_handle_then_says_closed(built, channel):
    shim = built.shim
    tx = Sender(channel, message_length=8)
    address = shim.handle_address(tx)
    ref = weakref.ref(tx)
    del tx
    gc.collect()
    assert ref() is not None
    assert shim.send(address, b"12345678") == "OK"
    ref().close()
    gc.collect()
    assert ref() is None or ref().closed


# -------------------------------------------------------------------------- calls, statuses

def test_sent_messages_keep_their_bytes_and_lengths_whichever_api_sends_or_receives(built, channel):
    shim = built.shim
    with Sender(channel, message_length=32) as tx, Receiver(channel, message_length=32) as rx:
        for msg in (b"", b"a", b"x" * 31, b"y" * 32):
            assert shim.send(tx, msg) == "OK"
            assert rx.recv(timeout=1) == msg
            tx.send(msg)
            assert shim.recv(rx, 32, 0) == ("OK", len(msg), msg)
        assert shim.try_send(tx, b"try") == "OK"
        assert shim.try_recv(rx, 32) == ("OK", 3, b"try")


def test_every_length_up_to_message_length_keeps_its_bytes_both_ways(built, channel):
    # Short messages are copied without memcpy, in overlapping moves of at most eight bytes
    # (includes/copy.h):
    # every length, across each class's edges, with bytes that differ by position.
    shim = built.shim
    with Sender(channel, message_length=100) as tx, Receiver(channel, message_length=100) as rx:
        for n in range(101):
            msg = bytes((i * 37 + n) % 256 for i in range(n))
            assert shim.send(tx, msg) == "OK"
            assert rx.recv(timeout=1) == msg
            tx.send(msg)
            assert shim.recv(rx, 100, 0) == ("OK", n, msg)


def test_timeouts_and_the_calls_that_never_wait(built, channel):
    shim = built.shim
    with Sender(channel, message_length=8, max_queued_messages=4, spin_time=0) as tx, \
            Receiver(channel, message_length=8, max_queued_messages=4, spin_time=0) as rx:
        assert shim.try_recv(rx, 8) == ("EMPTY", 0, None)
        assert shim.recv(rx, 8, 0) == ("TIMEOUT", 0, None)
        t0 = time.monotonic()
        assert shim.recv(rx, 8, 50_000_000) == ("TIMEOUT", 0, None)
        assert time.monotonic() - t0 >= 0.05
        for i in range(4):
            assert shim.send(tx, bytes([i]) * 8, 0) == "OK"
        assert shim.try_send(tx, b"full") == "FULL"
        assert shim.send(tx, b"full", 0) == "TIMEOUT"
        t0 = time.monotonic()
        assert shim.send(tx, b"full", 50_000_000) == "TIMEOUT"
        assert time.monotonic() - t0 >= 0.05
        rx.recv()
        assert shim.send_records(tx, b"r" * 8 * 3, 3, 8, 20_000_000) == ("TIMEOUT", 1)
        assert rx.depth == 4


def test_a_message_over_message_length_is_not_sent_and_one_over_capacity_stays_first(built, channel):
    shim = built.shim
    with Sender(channel, message_length=16) as tx, Receiver(channel, message_length=16) as rx:
        assert shim.send(tx, b"z" * 17) == "TOO_LONG"
        assert shim.try_send(tx, b"z" * 17) == "TOO_LONG"
        assert rx.depth == 0
        tx.send(b"sixteen bytes!!!")
        assert shim.recv(rx, 4, 0) == ("TOO_LONG", 16, None)
        assert shim.try_recv(rx, 15) == ("TOO_LONG", 16, None)
        assert shim.recv(rx, 16, 0) == ("OK", 16, b"sixteen bytes!!!")


def test_a_call_for_the_other_direction_is_refused(built, channel):
    shim = built.shim
    with Sender(channel, message_length=8) as tx, Receiver(channel, message_length=8) as rx:
        assert shim.send(rx, b"x") == "WRONG_END"
        assert shim.send_records(rx, b"x" * 8, 1, 8) == ("WRONG_END", 0)
        assert shim.recv(tx, 8) == ("WRONG_END", 0, None)
        assert shim.recv_records(tx, 1, 8) == ("WRONG_END", 0, b"")


def test_records_in_blocks_and_a_shorter_message_left_for_recv(built, channel):
    shim = built.shim
    with Sender(channel, message_length=8, max_queued_messages=64) as tx, \
            Receiver(channel, message_length=8, max_queued_messages=64) as rx:
        data = b"".join(struct.pack("<q", i) for i in range(40))
        # Every other record of data: a stride of two records.
        assert shim.send_records(tx, data, 20, 16) == ("OK", 20)
        tx.send(b"short")
        assert shim.send_records(tx, data, 3, 8) == ("OK", 3)
        status, got, out = shim.recv_records(rx, 64, 8, 0)
        assert (status, got) == ("OK", 20)
        assert struct.unpack("<20q", out) == tuple(range(0, 40, 2))
        assert shim.recv_records(rx, 64, 8, 0) == ("WRONG_LENGTH", 0, b"")
        assert shim.recv(rx, 8, 0) == ("OK", 5, b"short")
        status, got, out = shim.recv_records(rx, 2, 12, 0)     # a stride wider than a record
        assert (status, got) == ("OK", 2) and out[:8] == data[:8] and out[12:20] == data[8:16]
        assert shim.recv_records(rx, 0, 8, 0) == ("OK", 0, b"")


def test_a_slot_length_no_correct_sender_writes_is_corrupt_and_nothing_is_taken(built, channel, mapped):
    from cywhip._testing._model import layout
    shim = built.shim
    with Sender(channel, message_length=16, max_queued_messages=4) as tx, \
            Receiver(channel, message_length=16, max_queued_messages=4) as rx:
        tx.send(b"first")
        with mapped(channel) as mm:
            struct.pack_into("<I", mm, layout()["slots"], 1000)     # slot 0 claims 1000 bytes
            assert shim.recv(rx, 2000, 0) == ("CORRUPT", 0, None)
            assert shim.try_recv(rx, 2000) == ("CORRUPT", 0, None)
            assert shim.recv_records(rx, 4, 16, 0) == ("CORRUPT", 0, b"")
            assert rx.taken == 0
            struct.pack_into("<I", mm, layout()["slots"], 5)
            assert shim.recv(rx, 16, 0) == ("OK", 5, b"first")


def test_the_short_way_of_a_biased_thread_checks_what_it_reads_from_shared_memory(built, channel, mapped):
    # Once an end is biased to this thread, a call on a one-to-one channel with a message (or
    # room) in sight takes the short way (cywhip/capi.pyx).  What it reads from shared memory
    # it checks as the whole way does; a value that fails sends the call the whole way, which
    # reports it, and nothing is taken.
    from cywhip._testing._steps import guard_state
    from cywhip._testing._model import layout
    shim = built.shim
    lay = layout()
    with Sender(channel, message_length=16, max_queued_messages=4) as tx, \
            Receiver(channel, message_length=16, max_queued_messages=4) as rx:
        for msg in (b"one", b"two"):
            assert shim.send(tx, msg) == "OK"
        for msg in (b"one", b"two"):
            assert shim.recv(rx, 16, 0) == ("OK", len(msg), msg)
        assert guard_state(tx)[1] and guard_state(rx)[1]     # both biased
        assert shim.send(tx, b"three") == "OK"
        with mapped(channel) as mm:
            struct.pack_into("<Q", mm, lay["write_cursor"], 3 + 1000)   # further than capacity
            assert shim.recv(rx, 16, 0) == ("CORRUPT", 0, None)
            assert shim.try_recv(rx, 16) == ("CORRUPT", 0, None)
            struct.pack_into("<Q", mm, lay["write_cursor"], 3)
            slot = lay["slots"] + 2 * (lay["slot_header_size"] + 16)    # message 2's slot
            struct.pack_into("<I", mm, slot, 17)                        # over message_length
            assert shim.recv(rx, 2000, 0) == ("CORRUPT", 0, None)
            struct.pack_into("<I", mm, slot, 5)
            assert shim.recv(rx, 4, 0) == ("TOO_LONG", 5, None)         # over capacity: kept
            assert rx.taken == 2
            assert shim.recv(rx, 16, 0) == ("OK", 5, b"three")
            # The sender's short way never reads the read cursor: a full ring as last seen
            # goes the whole way, which reloads and checks it.
            for msg in (b"4", b"5", b"6", b"7"):
                assert shim.send(tx, msg) == "OK"
            assert rx.depth == 4                                        # full
            struct.pack_into("<Q", mm, lay["read_cursor"], 7 + 1000)
            assert shim.send(tx, b"8", 0) == "CORRUPT"
            assert shim.try_send(tx, b"8") == "CORRUPT"
            struct.pack_into("<Q", mm, lay["read_cursor"], 3)
            assert shim.send(tx, b"8", 0) == "TIMEOUT"
            assert shim.send(tx, b"x" * 17) == "TOO_LONG"


class Tick(ctypes.Structure):
    _fields_ = [("seq", ctypes.c_int64), ("price", ctypes.c_double)]


def test_a_typed_channel_takes_whole_records_from_either_api(built, channel):
    shim = built.shim
    with Sender(channel, message_type=Tick, max_queued_messages=16) as tx, \
            Receiver(channel, message_type=Tick, max_queued_messages=16) as rx:
        assert shim.send(tx, bytes(Tick(1, 1.5))[:15]) == "WRONG_LENGTH"
        assert shim.send(tx, bytes(Tick(1, 1.5)) + b"!") == "TOO_LONG"
        assert shim.send(tx, bytes(Tick(1, 1.5))) == "OK"
        got = rx.recv(timeout=1)
        assert (got.seq, got.price) == (1, 1.5)
        ticks = (Tick * 3)(Tick(2, 2.5), Tick(3, 3.5), Tick(4, 4.5))
        assert shim.send_records(tx, bytes(ticks), 3, ctypes.sizeof(Tick)) == ("OK", 3)
        tx.send(Tick(5, 5.5))
        status, got, out = shim.recv_records(rx, 8, ctypes.sizeof(Tick), 0)
        assert (status, got) == ("OK", 4)
        assert [(t.seq, t.price) for t in (Tick * 4).from_buffer_copy(out)] == [(i, i + 0.5) for i in range(2, 6)]


def test_many_senders_in_threads_each_keep_their_order_into_one_receiver(built, channel):
    shim = built.shim
    n = 200_000
    with Sender(channel, message_length=8, max_senders=2) as a, \
            Sender(channel, message_length=8, max_senders=2) as b, \
            Receiver(channel, message_length=8, max_senders=2) as rx:
        threads = [start(shim.send_numbered, a, 0, n), start(shim.send_numbered, b, 1 << 40, n)]
        status, raw = shim.recv_numbers(rx, 2 * n)
        for t, out in threads:
            t.join()
            assert out == [("OK", n)]
        # Records in blocks on a channel of many senders: one claim each.
        data = struct.pack("<5q", *range(5))
        assert shim.send_records(b, data, 5, 8) == ("OK", 5)
        assert shim.recv_records(rx, 8, 8, 0) == ("OK", 5, data)
    assert status == "OK"
    values = struct.unpack(f"{2 * n}q", raw)
    assert [v for v in values if v < 1 << 40] == list(range(n))
    assert [v - (1 << 40) for v in values if v >= 1 << 40] == list(range(n))


def test_receiver_groups_through_the_api_broadcast_and_share(built, channel):
    shim = built.shim
    n = 20_000
    kw = dict(message_length=8, max_queued_messages=64, max_receivers=3)
    with Sender(channel, **kw) as tx, Receiver(channel, group="all", **kw) as whole, \
            Receiver(channel, group="w", **kw) as w1, Receiver(channel, group="w", **kw) as w2:
        sender = start(shim.send_numbered, tx, 0, n)
        broadcast = start(shim.recv_numbers, whole, n)
        shares = [[], []]

        def member(rx, out):
            # One message per call, until the group's share is all taken.
            while len(shares[0]) + len(shares[1]) < n:
                st, got, data = shim.recv(rx, 8, 100_000_000)
                if st == "OK":
                    out.append(struct.unpack("<q", data)[0])
                else:
                    assert st == "TIMEOUT", st
        members = [threading.Thread(target=member, args=(rx, out)) for rx, out in ((w1, shares[0]), (w2, shares[1]))]
        for t in members:
            t.start()
        for t in members:
            t.join(60)
        for t, out in (sender, broadcast):
            t.join(60)
    assert sender[1] == [("OK", n)]
    status_, raw = broadcast[1][0]
    assert status_ == "OK" and list(struct.unpack(f"{n}q", raw)) == list(range(n))
    assert sorted(shares[0] + shares[1]) == list(range(n))           # each message once
    assert shares[0] == sorted(shares[0]) and shares[1] == sorted(shares[1])


@pytest.mark.timeout(60)
def test_a_producer_killed_mid_stream_leaves_a_whole_ordered_prefix(built, peers, channel):
    shim = built.shim
    with Receiver(channel, message_length=16, max_queued_messages=4096) as rx:
        sender = peers.start(channel, 100_000_000, "one", script=PRODUCER, cwd=built.example)
        wait_until(lambda: rx.depth > 0, timeout=30)
        time.sleep(0.2)
        sender.kill()
        sender.wait()
        seq = 0
        while True:
            st, n, data = shim.recv(rx, 16, 200_000_000)
            if st != "OK":
                break
            assert n == 16 and struct.unpack("<qd", data) == (seq, 100.0 + 0.25 * (seq % 1000))
            seq += 1
        assert st == "TIMEOUT" and seq > 0


def test_in_a_forked_child_the_handles_of_inherited_ends_say_closed(built, channel):
    shim = built.shim
    with Sender(channel, message_length=8) as tx, Receiver(channel, message_length=8) as rx:
        tx_h, rx_h = shim.handle_address(tx), shim.handle_address(rx)
        pid = os.fork()
        if pid == 0:
            ok = shim.try_send(tx_h, b"child") == "CLOSED" and shim.try_recv(rx_h, 8)[0] == "CLOSED"
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert shim.try_send(tx_h, b"parent") == "OK"
        assert rx.recv(timeout=1) == b"parent"


HANDLE_ONLY_IN_A_CHILD = """
import gc, os, sys, weakref
sys.path.insert(0, sys.argv[2])
import capi_shim
from cywhip import ChannelClosedError, Receiver, Sender
name = sys.argv[1]
tx, rx = Sender(name, message_length=8), Receiver(name, message_length=8)
tx_h, rx_h = capi_shim.handle_address(tx), capi_shim.handle_address(rx)
refs = [weakref.ref(tx), weakref.ref(rx)]
# From here on each end's only reference is its handle's.
del tx, rx
gc.collect()
pid = os.fork()
if pid == 0:
    gc.collect()
    got = [capi_shim.try_send(tx_h, b"child"), capi_shim.try_recv(rx_h, 8)[0],
           capi_shim.send(tx_h, b"child", -1), capi_shim.recv(rx_h, 8, -1)[0]]
    # The Python ends say the same: the child cannot use them.
    ends = [ref() for ref in refs]
    try:
        ends[0].send(b"child")
    except ChannelClosedError as exc:
        got.append(str(exc))
    got.append(all(end is not None and end.closed for end in ends))
    os.write(1, repr(got).encode() + b"\\n")
    os._exit(0)
_, status = os.waitpid(pid, 0)
assert capi_shim.try_send(tx_h, b"parent") == "OK" and refs[1]().recv(timeout=1) == b"parent"
for ref in refs:
    ref().close()
print(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.timeout(120)
def test_a_handle_that_alone_keeps_its_end_alive_says_closed_in_a_forked_child(built, channel):
    # The inherited ends are abandoned in the child; one kept alive only by its handle must
    # outlive that, or the handle points at freed memory (PYTHONMALLOC=debug fills it).
    out = subprocess.run([sys.executable, "-c", HANDLE_ONLY_IN_A_CHILD, channel, str(built.shim_dir)],
                         env={**os.environ, "PYTHONMALLOC": "debug"}, capture_output=True, text=True,
                         timeout=100)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    # The child's exit code last (-11: SIGSEGV), after what it printed.
    assert lines[-1] == "0" and len(lines) == 2, out.stdout
    got = eval(lines[0])
    assert got[:4] == ["CLOSED"] * 4, got
    assert "cannot be used in process" in got[4] and "forked from it" in got[4], got
    assert got[5] is True


HANDLE_ONLY_AT_EXIT = """
import atexit, gc, sys
sys.path.insert(0, sys.argv[2])

def after_cywhip_closed_its_ends():
    # Exit handlers run last registered first: this one runs after cywhip's, which closes
    # every open end, as a C thread's next call through a handle would.
    print(capi_shim.try_send(tx_h, b"late"), capi_shim.recv(rx_h, 8, -1)[0], flush=True)

atexit.register(after_cywhip_closed_its_ends)
import capi_shim
from cywhip import Receiver, Sender
name = sys.argv[1]
tx, rx = Sender(name, message_length=8), Receiver(name, message_length=8)
tx_h, rx_h = capi_shim.handle_address(tx), capi_shim.handle_address(rx)
del tx, rx
gc.collect()
assert capi_shim.try_send(tx_h, b"early") == "OK"
"""


@pytest.mark.timeout(120)
def test_a_handle_that_alone_keeps_its_end_alive_says_closed_after_the_exit_handlers(built, channel):
    out = subprocess.run([sys.executable, "-c", HANDLE_ONLY_AT_EXIT, channel, str(built.shim_dir)],
                         env={**os.environ, "PYTHONMALLOC": "debug"}, capture_output=True, text=True,
                         timeout=100)
    assert out.returncode == 0, (out.returncode, out.stderr)
    assert out.stdout.split() == ["CLOSED", "CLOSED"], out.stdout


# ------------------------------------------------------------------- threads, closing, signals

@pytest.mark.parametrize("side", ["recv", "send"])
def test_close_from_another_thread_ends_a_wait_with_closed(built, channel, side):
    shim = built.shim
    with Sender(channel, message_length=8, max_queued_messages=2) as tx, \
            Receiver(channel, message_length=8, max_queued_messages=2) as rx:
        end = rx if side == "recv" else tx
        address = shim.handle_address(end)
        if side == "send":
            tx.send(b"1")
            tx.send(b"2")
            t, out = start_call(shim.send, tx, b"3", -1)
            wait_busy(shim, tx, b"x")
        else:
            t, out = start_call(shim.recv, rx, 8, -1)
            wait_busy(shim, rx)
        end.close()
        # close() returned once the call had let go of the end (the thread ends soon after).
        assert end.closed
        t.join(5)
        assert status(out[0]) == "CLOSED"
        # Its handle, kept, says so; handle() refuses a closed end.
        assert status(shim.try_send(address, b"x") if side == "send" else shim.try_recv(address, 8)) == "CLOSED"
        with pytest.raises(ChannelClosedError):
            shim.handle_address(end)
        # Its replacement opens at once.
        kind = Receiver if side == "recv" else Sender
        kind(channel, message_length=8, max_queued_messages=2).close()


def test_a_second_concurrent_call_gets_busy_and_the_first_goes_on(built, channel):
    shim = built.shim
    with Sender(channel, message_length=8) as tx, Receiver(channel, message_length=8) as rx:
        t, out = start_call(shim.recv, rx, 8, 10_000_000_000)
        wait_busy(shim, rx)
        assert shim.recv(rx, 8, 0) == ("BUSY", 0, None)
        assert shim.recv_records(rx, 4, 8, 0) == ("BUSY", 0, b"")
        with pytest.raises(RuntimeError, match="already in use by another call"):
            rx.recv(timeout=0)
        tx.send(b"go on")
        t.join(5)
        assert out == [("OK", 5, b"go on")]
        assert shim.try_recv(rx, 8) == ("EMPTY", 0, None)


def test_calls_from_several_threads_in_turn_each_get_the_end_and_nothing_is_lost(built, channel):
    # The guard is biased to the thread of the last call of the Cython API: each change of
    # thread, and each Python call between, moves or ends the bias (includes/guard.h).
    shim = built.shim
    with Sender(channel, message_length=8, max_queued_messages=64) as tx, \
            Receiver(channel, message_length=8, max_queued_messages=64) as rx:
        expected, first = [], 0
        for turn in range(6):
            if turn % 3 == 2:
                tx.send(first.to_bytes(8, "little"))
                got = [int.from_bytes(rx.recv(timeout=5), "little")]
                count = 1
            else:
                count = 40
                t, out = start(shim.send_numbered, tx, first, count)
                t.join(10)
                assert out == [("OK", count)]
                r, got_out = start(shim.recv_numbers, rx, count)
                r.join(10)
                status_, raw = got_out[0]
                assert status_ == "OK"
                got = [int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw), 8)]
            expected += range(first, first + count)
            assert got == list(range(first, first + count))
            first += count
        assert rx.taken == len(expected)
        assert shim.try_recv(rx, 8) == ("EMPTY", 0, None)


def test_two_threads_sending_through_one_end_at_once_never_both_hold_it(built, channel):
    # Two nogil loops race for one Sender, each sending its own numbers and trying again on
    # BUSY, into a ring with room for all (so they run side by side, never waiting).  Both
    # holding the end at once would lose, repeat or reorder a thread's numbers.
    shim = built.shim
    per_thread = 30_000
    with Sender(channel, message_length=8, max_queued_messages=65_536) as tx, \
            Receiver(channel, message_length=8, max_queued_messages=65_536) as rx:
        a = start(shim.send_numbered_busy, tx, 0, per_thread, 0)
        b = start(shim.send_numbered_busy, tx, 1 << 40, per_thread, 0)
        for t, _ in (a, b):
            t.join(30)
        assert a[1][0][:2] == ("OK", per_thread) and b[1][0][:2] == ("OK", per_thread)
        status_, raw = shim.recv_numbers(rx, 2 * per_thread)
        assert status_ == "OK"
        got = [int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw), 8)]
        assert [v for v in got if v < 1 << 40] == list(range(per_thread))
        assert [v - (1 << 40) for v in got if v >= 1 << 40] == list(range(per_thread))
        assert shim.try_recv(rx, 8) == ("EMPTY", 0, None)


def test_a_python_call_while_a_biased_thread_is_inside_gets_busy(built, channel):
    from cywhip._testing._steps import guard_state
    shim = built.shim
    with Sender(channel, message_length=8) as tx, Receiver(channel, message_length=8) as rx:
        # Two calls from one thread: the first biases the end to it, the second, a wait,
        # holds the guard without a compare-and-swap.
        t, out = start(lambda: (shim.try_recv(rx, 8), shim.recv(rx, 8, 10_000_000_000)))
        wait_until(lambda: guard_state(rx) == ("fast", True))
        with pytest.raises(RuntimeError, match="already in use by another call"):
            rx.recv(timeout=0)
        assert shim.try_recv(rx, 8) == ("BUSY", 0, None)
        assert guard_state(rx) == ("fast", True)
        tx.send(b"go on")
        t.join(5)
        assert out == [(("EMPTY", 0, None), ("OK", 5, b"go on"))]
        # A Python call now ends the bias; the next API call biases the end to its thread.
        assert rx.try_recv() is None
        assert guard_state(rx) == ("free", False)
        assert shim.try_recv(rx, 8) == ("EMPTY", 0, None)
        assert guard_state(rx) == ("free", True)


RECORDS = """
import os, sys, threading
sys.path.insert(0, sys.argv[2])
import cywhip, capi_shim
from cywhip import capi
name = sys.argv[1]
with cywhip.Sender(name, message_length=8) as tx:
    before = capi._records_claimed()
    go, done = threading.Event(), threading.Event()
    def worker():
        assert capi_shim.try_send(tx, b"x") in ("OK", "FULL")
        go.set()
        done.wait(10)
    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
        go.wait(10)
        go.clear()
    held = capi._records_claimed()
    pid = os.fork()
    if pid == 0:
        # Only this thread lives on in the child: the workers' records are given back.
        os._exit(0 if capi._records_claimed() == before else 1)
    _, status = os.waitpid(pid, 0)
    done.set()
    for t in threads:
        t.join(10)
    # join() returns once the Python thread is done; its record goes back a moment later,
    # when the thread itself exits and its thread-specific data is destroyed.
    import time
    deadline = time.monotonic() + 10
    while capi._records_claimed() != before and time.monotonic() < deadline:
        time.sleep(0.01)
    after = capi._records_claimed()
print(before, held, os.waitstatus_to_exitcode(status), after)
"""


def test_threads_give_their_guard_records_back_when_they_exit_and_in_a_forked_child(built, channel):
    out = subprocess.run([sys.executable, "-c", RECORDS, channel, str(built.shim_dir)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    before, held, child, after = map(int, out.stdout.split())
    assert held == before + 3
    assert child == 0
    assert after == before


def test_cywhip_no_membarrier_keeps_the_fence_and_the_compare_and_swap():
    out = subprocess.run(
        [sys.executable, "-c", "from cywhip import capi, _ring; print(_ring.publish_mode(), capi._biased)"],
        env={**os.environ, "CYWHIP_NO_MEMBARRIER": "1"}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["fence", "False"]


@pytest.mark.parametrize("side", ["recv", "send"])
def test_a_signal_during_a_wait_returns_interrupted_and_python_runs_its_handler(built, channel, side):
    shim = built.shim
    caught = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: caught.append(signum))
    try:
        with Sender(channel, message_length=8, max_queued_messages=2, spin_time=0) as tx, \
                Receiver(channel, message_length=8, max_queued_messages=2, spin_time=0) as rx:
            if side == "send":
                tx.send(b"1")
                tx.send(b"2")
            # Signal this process every 0.2 s until the call returns: one of them comes while the
            # call sleeps, even if this thread was slow to get there.
            done = threading.Event()

            def kill_until_done():
                while not done.wait(0.2):
                    os.kill(os.getpid(), signal.SIGUSR1)

            killer = threading.Thread(target=kill_until_done)
            killer.start()
            t0 = time.monotonic()
            try:
                result = shim.recv(rx, 8, 5_000_000_000) if side == "recv" else shim.send(tx, b"3", 5_000_000_000)
            finally:
                elapsed = time.monotonic() - t0
                done.set()
                killer.join()
            assert status(result) == "INTERRUPTED" and elapsed < 4, (result, elapsed)
            assert caught and set(caught) == {signal.SIGUSR1}
            # The end is fine: call again.
            if side == "send":
                rx.recv()
                assert shim.send(tx, b"3", 0) == "OK"
            else:
                tx.send(b"after")
                assert shim.recv(rx, 8, 0) == ("OK", 5, b"after")
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_a_wait_without_a_signal_outlasts_its_sleep_slices(built, channel):
    with Receiver(channel, message_length=8, spin_time=0) as rx:
        t0 = time.monotonic()
        assert built.shim.recv(rx, 8, 350_000_000) == ("TIMEOUT", 0, None)
        assert time.monotonic() - t0 >= 0.35


def _voluntary_switches(tid):
    """How often thread tid of this process gave up its CPU to sleep (each futex sleep is one)."""
    with open(f"/proc/self/task/{tid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches in /proc")


@pytest.mark.parametrize("side", ["recv", "send"])
def test_an_idle_wait_of_a_group_member_or_its_sender_sleeps_without_waking(built, channel, side):
    # A member with nothing to take, and a sender held back by a durable group with a live
    # member, are woken by a publish or a take: nothing else can change what they wait for.
    kw = dict(message_length=8, max_queued_messages=2, max_receivers=2)
    shim = built.shim
    with Receiver(channel, group="g", **kw) as rx, Sender(channel, **kw) as tx:
        if side == "send":
            tx.send_many([b"0", b"1"])
        out = {}

        def wait():
            tid = threading.get_native_id()
            before = _voluntary_switches(tid)
            out["result"] = shim.recv(rx, 8, 500_000_000) if side == "recv" else shim.send(tx, b"2", 500_000_000)
            out["sleeps"] = _voluntary_switches(tid) - before

        t = threading.Thread(target=wait)
        t.start()
        t.join(10)
        assert status(out["result"]) == "TIMEOUT"
        # One sleep until the deadline (and perhaps a wait for the GIL on the way out); sleep
        # slices of 10 ms would be about 50.
        assert out["sleeps"] <= 5, out


@pytest.mark.parametrize("senders", [1, 2])
def test_the_cython_api_sends_and_receives_on_a_byte_channel_one_by_one_and_in_blocks(built, channel, senders):
    shim = built.shim
    with Sender(channel, max_queued_bytes=1024, max_senders=senders) as tx, \
            Receiver(channel, max_queued_bytes=1024, max_senders=senders) as rx:
        for n in (0, 1, 7, 8, 9, 100, tx.message_length):
            msg = bytes((i * 31 + n) % 256 for i in range(n))
            assert shim.send(tx, msg) == "OK"
            assert rx.recv(timeout=1) == msg
            tx.send(msg)
            assert shim.recv(rx, 1024, 0) == ("OK", n, msg)
        assert shim.send(tx, b"x" * (tx.message_length + 1)) == "TOO_LONG"
    # Blocks: records of message_length bytes each, as on a slot channel without a record type;
    # 200 of 24 bytes (records of 32, or 40 with many senders) wrap the 1,024-byte ring, a
    # receiver taking them in a thread.
    blocks = channel + "-blocks"
    try:
        with Sender(blocks, max_queued_bytes=1024, message_length=24, max_senders=senders) as tx, \
                Receiver(blocks, max_queued_bytes=1024, message_length=24, max_senders=senders) as rx:
            data = b"".join(i.to_bytes(24, "little") for i in range(200))
            got = []

            def take():
                while len(got) < 200:
                    st, k, out = shim.recv_records(rx, 50, 24, 5_000_000_000)
                    assert st == "OK", st
                    got.extend(int.from_bytes(out[j * 24:(j + 1) * 24], "little") for j in range(k))

            t = threading.Thread(target=take)
            t.start()
            assert shim.send_records(tx, data, 200, 24, 5_000_000_000) == ("OK", 200)
            t.join(20)
            assert got == list(range(200))
    finally:
        cywhip.unlink(blocks, missing_ok=True)


def test_the_cython_api_on_a_byte_channel_with_receiver_groups(built, channel):
    # A group of one gets every message; two members of another share theirs; messages of
    # every size wrap the 512-byte ring (padding records) while the threads take them.
    shim = built.shim
    kw = dict(max_queued_bytes=512, message_length=100, max_receivers=3)
    msgs = [i.to_bytes(4, "little") + bytes([i % 256]) * (i % 97) for i in range(3000)]
    with Sender(channel, **kw) as tx, Receiver(channel, group="all", **kw) as whole, \
            Receiver(channel, group="w", **kw) as w1, Receiver(channel, group="w", **kw) as w2:
        got = {"all": [], "w1": [], "w2": []}

        def take(rx, key, share):
            while (len(got["w1"]) + len(got["w2"]) if share else len(got[key])) < len(msgs):
                st, n, data = shim.recv(rx, 100, 100_000_000)
                if st == "OK":
                    got[key].append(data)
                else:
                    assert st == "TIMEOUT", st
        threads = [threading.Thread(target=take, args=args)
                   for args in ((whole, "all", False), (w1, "w1", True), (w2, "w2", True))]
        for t in threads:
            t.start()
        for m in msgs:
            assert shim.send(tx, m) == "OK"
        for t in threads:
            t.join(60)
            assert not t.is_alive()
        assert got["all"] == msgs
        assert sorted(got["w1"] + got["w2"]) == sorted(msgs)
        for share in (got["w1"], got["w2"]):          # each member's share in the channel's order
            numbers = [int.from_bytes(m[:4], "little") for m in share]
            assert numbers == sorted(numbers)


def test_the_apis_try_calls_arm_the_ends_descriptor_as_the_python_ones_do(built, channel):
    # docs/api.md, "Waiting on a descriptor": EMPTY and FULL arm fileno(); readable: look again.
    import selectors

    def readable(fd, timeout):
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            return bool(sel.select(timeout))

    with cywhip.Sender(channel, message_length=8, max_queued_messages=2) as tx, \
            cywhip.Receiver(channel, message_length=8, max_queued_messages=2) as rx:
        tx_fd, rx_fd = tx.fileno(), rx.fileno()
        assert built.shim.try_recv(rx, 8)[0] == "EMPTY"
        assert not readable(rx_fd, 0)
        assert built.shim.try_send(tx, b"a") == "OK" and built.shim.try_send(tx, b"b") == "OK"
        assert readable(rx_fd, 5)
        assert built.shim.try_send(tx, b"c") == "FULL"
        assert not readable(tx_fd, 0)
        assert built.shim.try_recv(rx, 8)[2] == b"a"
        assert readable(tx_fd, 5)
        assert built.shim.try_send(tx, b"c") == "OK"

"""Crashes, hostile shared memory, stale channels, permissions, fork and spawn."""
import json
import multiprocessing
import os
import pickle
import signal
import stat
import textwrap
import time

import pytest

import cywhip
from cywhip import ChannelBusyError, ChannelClosedError, Receiver, Sender
from cywhip._region import channel_path
from cywhip._testing import crash
from cywhip._testing.peer import spawn_receive


@pytest.mark.soak
@pytest.mark.timeout(240)
def test_a_hundred_and_twenty_random_sigkills_lose_tear_and_wedge_nothing(tmp_path):
    seed = int(time.time()) % 10_000
    report = crash.soak(kills=120, seed=seed, workdir=str(tmp_path), timeout=200)
    assert report["errors"] == [], (seed, report)
    assert report["ok"] and report["kills"] >= 120
    assert report["sender_kills"] > 0 and report["receiver_kills"] > 0
    assert report["torn"] == 0
    assert report["delivered"] == report["messages"] > 0


@pytest.mark.soak
@pytest.mark.timeout(240)
def test_ten_thousand_corruptions_of_shared_memory_never_crash_or_hang(peers):
    # A fresh, small process forks the cases faster than the test process could.
    seed = int(time.time()) % 10_000
    proc = peers.start(script="import sys; from cywhip._testing.fuzz import main; sys.exit(main(sys.argv[1:]))",
                       *("--cases", 10_000, "--seed", seed))
    rc, out, err = peers.finish(proc, timeout=220)
    report = json.loads(out)
    assert report["cases"] == 10_000
    assert report["failures"] == [], (seed, report["failures"][:10], err[-2000:])
    assert rc == 0


HOLD = textwrap.dedent("""
    import sys, threading, cywhip
    kind = getattr(cywhip, sys.argv[2])
    end = kind(sys.argv[1], message_length=8, max_queued_messages=4)
    print("ready", flush=True)
    threading.Event().wait()
""")


@pytest.mark.parametrize("kind", ["Sender", "Receiver"])
def test_a_killed_end_is_released_by_the_kernel_and_replaced_at_once(channel, peers, kind):
    proc = peers.start(channel, kind, script=HOLD)
    assert proc.stdout.readline().strip() == "ready"
    cls = getattr(cywhip, kind)
    with pytest.raises(ChannelBusyError, match=rf"process {proc.pid} holds it") as info:
        cls(channel, message_length=8, max_queued_messages=4)
    assert info.value.pid == proc.pid
    info = {c.name: c for c in cywhip.channels()}[channel]
    assert getattr(info, f"{kind.lower()}_alive") and getattr(info, f"{kind.lower()}_pid") == proc.pid
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    cls(channel, message_length=8, max_queued_messages=4).close()


STALL_IN_CALLBACK = textwrap.dedent("""
    import sys, threading, cywhip
    def on_message(msg):
        print(msg.decode(), flush=True)
        if msg == b"stall":
            threading.Event().wait()
    r = cywhip.Receiver(sys.argv[1], message_length=8, max_queued_messages=8, on_message=on_message)
    threading.Event().wait()
""")


def test_a_message_whose_callback_was_running_when_the_receiver_died_is_delivered_again(channel, peers):
    with Sender(channel, message_length=8, max_queued_messages=8) as s:
        s.send_many([b"one", b"stall", b"three"])
        proc = peers.start(channel, script=STALL_IN_CALLBACK)
        assert [proc.stdout.readline().strip() for _ in range(2)] == ["one", "stall"]
        proc.kill()
        proc.wait(10)
        with Receiver(channel, message_length=8, max_queued_messages=8) as r:
            assert r.recv_many(10, timeout=5) == [b"stall", b"three"]


def test_channels_lists_state_and_remove_stale_removes_only_dead_channels(channel):
    dead = channel + "-dead"
    try:
        with Sender(dead, message_length=8, max_queued_messages=4) as s:
            s.send(b"left")
        with Sender(channel, message_length=16, max_queued_messages=8) as s:
            s.send_many([b"a", b"b"])
            found = {c.name: c for c in cywhip.channels()}
            live, stale = found[channel], found[dead]
            assert (live.message_length, live.max_queued_messages, live.depth) == (16, 8, 2)
            assert live.sender_alive and not live.receiver_alive and live.sender_pid == os.getpid()
            assert live.problem is None and live.path == channel_path(channel)
            assert not stale.sender_alive and not stale.receiver_alive and stale.depth == 1
            with pytest.raises(ChannelBusyError, match="has a live end"):
                cywhip.remove_stale(channel)
            removed = cywhip.remove_stale()
            assert dead in removed and channel not in removed
            assert not os.path.exists(channel_path(dead))
            assert os.path.exists(channel_path(channel))
        assert cywhip.remove_stale([channel]) == [channel]
        assert channel not in {c.name for c in cywhip.channels()}
    finally:
        cywhip.unlink(dead, missing_ok=True)


def test_channels_reports_a_file_that_is_not_a_channel(channel):
    with open(channel_path(channel), "wb") as f:
        f.write(b"junk")
    info = {c.name: c for c in cywhip.channels()}[channel]
    assert info.problem == "too small for a header" and info.message_length is None


def test_a_group_mode_shares_the_channel_with_the_group(channel):
    with Sender(channel, message_length=8, max_queued_messages=2, mode=0o660):
        assert stat.S_IMODE(os.stat(channel_path(channel)).st_mode) == 0o660
    with pytest.raises(ValueError, match="0o644"):
        Sender(channel + "x", message_length=8, mode=0o644)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a file owned by someone else")
def test_a_channel_file_owned_by_another_user_is_refused(channel):
    with Sender(channel, message_length=8, max_queued_messages=2):
        pass
    os.chown(channel_path(channel), 65534, 65534)
    with pytest.raises(PermissionError, match="owned by uid 65534"):
        Receiver(channel, message_length=8, max_queued_messages=2)


def test_an_end_inherited_across_fork_refuses_to_work_in_the_child(channel):
    s = Sender(channel, message_length=8, max_queued_messages=4)
    r = Receiver(channel, message_length=8, max_queued_messages=4)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            try:
                s.send(b"child")
            except ChannelClosedError as exc:
                if f"belongs to process {os.getppid()}" in str(exc) and s.closed:
                    code = 0
            s.close()
            r.close()
        finally:
            os.write(write_fd, bytes([code]))
            os._exit(code)
    os.close(write_fd)
    _, status = os.waitpid(pid, 0)
    assert os.read(read_fd, 1) == b"\x00" and os.WEXITSTATUS(status) == 0
    os.close(read_fd)
    # The parent's ends are untouched and still hold their claims.
    with s, r:
        s.send(b"parent")
        assert r.recv(timeout=1) == b"parent"
        with pytest.raises(ChannelBusyError):
            Sender(channel, message_length=8, max_queued_messages=4)


@pytest.mark.timeout(120)
def test_multiprocessing_with_the_spawn_start_method_works(channel):
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    child = ctx.Process(target=spawn_receive, args=(channel, 100, results))
    child.start()
    try:
        with Sender(channel, message_length=32, max_queued_messages=1024) as s:
            s.send_many([b"%d" % i for i in range(100)])
            assert results.get(timeout=60) == [b"%d" % i for i in range(100)]
        child.join(30)
        assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.kill()
            child.join()


def test_an_end_cannot_be_pickled(channel):
    with Sender(channel, message_length=8, max_queued_messages=2) as s:
        with pytest.raises(TypeError, match="open one there by the channel name"):
            pickle.dumps(s)


def test_a_serializer_that_raises_sends_nothing_and_the_sender_stays_usable(channel):
    def ser(msg, buf):
        buf.write(b"partial")
        if msg == "bad":
            raise RuntimeError("cannot serialize")

    with Sender(channel, message_serializer=ser, message_length=8, max_queued_messages=4) as s, \
            Receiver(channel, message_length=8, max_queued_messages=4) as r:
        with pytest.raises(RuntimeError, match="cannot serialize"):
            s.send("bad")
        with pytest.raises(RuntimeError, match="cannot serialize"):
            s.send_many(["ok", "bad", "never"])
        s.send("ok2")
        assert r.recv_many(10) == [b"partial", b"partial"]
        assert s.published == 2 and r.taken == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a file owned by someone else")
def test_a_group_shared_channel_of_another_user_opens_only_for_group_sharing_ends(channel):
    with Sender(channel, message_length=8, max_queued_messages=2, mode=0o660) as s:
        s.send(b"shared")
    os.chown(channel_path(channel), 65534, os.getegid())
    with pytest.raises(PermissionError, match="needs mode=0o660 on both ends"):
        Receiver(channel, message_length=8, max_queued_messages=2)
    with Receiver(channel, message_length=8, max_queued_messages=2, mode=0o660) as r:
        assert r.recv(timeout=1) == b"shared"


def test_a_fifo_in_place_of_a_channel_is_refused(channel):
    os.mkfifo(channel_path(channel), 0o600)
    with pytest.raises(PermissionError, match="not a regular file"):
        Receiver(channel, message_length=8, max_queued_messages=2)


def test_remove_stale_also_removes_temporaries_of_dead_creators(peers):
    proc = peers.start(script="pass")
    peers.finish(proc)
    orphan = f"/dev/shm/.cywhip.{proc.pid}.abcdef.tmp"
    mine = f"/dev/shm/.cywhip.{os.getpid()}.abcdef.tmp"
    for path in (orphan, mine):
        open(path, "wb").close()
    try:
        cywhip.remove_stale()
        assert not os.path.exists(orphan)
        assert os.path.exists(mine)      # its creator is alive
    finally:
        for path in (orphan, mine):
            if os.path.exists(path):
                os.unlink(path)

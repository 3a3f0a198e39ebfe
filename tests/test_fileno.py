"""fileno(): a descriptor to wait on for every end (docs/api.md, docs/protocol.md "Waiting on a file
descriptor").  Readable when the end may have something to do; armed by a look that finds nothing;
no wake-up lost between processes; close from another thread, fork and a peer's death."""
import gc
import json
import os
import selectors
import signal
import sys
import textwrap
import threading
import time

import pytest

import cywhip


def readable(end, timeout):
    """Whether end's descriptor is readable within timeout seconds."""
    with selectors.DefaultSelector() as sel:
        sel.register(end.fileno(), selectors.EVENT_READ)
        return bool(sel.select(timeout))


def look_until(end, look, timeout):
    """The user's loop: look (try_recv, try_send); while it finds nothing, wait on the descriptor
    (readable means "look again": a wake-up may come for nothing, e.g. a peer that opened)."""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(end.fileno(), selectors.EVENT_READ)
        while True:
            got = look()
            if got is not None and got is not False:
                return got
            left = deadline - time.monotonic()
            assert left > 0 and sel.select(left), "the descriptor never became readable"


SEND_ONE = textwrap.dedent("""
    import sys
    from cywhip import Sender
    with Sender(sys.argv[1], message_length=16, max_queued_messages=4) as tx:
        tx.send(sys.argv[2].encode())
""")


@pytest.mark.timeout(60)
def test_the_descriptor_becomes_readable_after_a_send_from_another_process(channel, peers):
    with cywhip.Receiver(channel, message_length=16, max_queued_messages=4) as rx:
        assert readable(rx, 0)                 # it starts readable: look first
        assert rx.try_recv() is None           # the look found nothing: armed, read empty
        assert not readable(rx, 0)
        proc = peers.start(channel, "from afar", script=SEND_ONE)
        assert look_until(rx, rx.try_recv, 20) == b"from afar"
        assert peers.finish(proc)[0] == 0


@pytest.mark.timeout(60)
def test_the_descriptor_is_not_readable_while_nothing_is_waiting(channel):
    with cywhip.Receiver(channel, message_length=8) as rx, cywhip.Sender(channel, message_length=8) as tx:
        for i in range(3):
            tx.send(bytes([i]))
        assert readable(rx, 5)
        assert [rx.try_recv() for _ in range(4)] == [b"\x00", b"\x01", b"\x02", None]
        assert not readable(rx, 0.2)
        # Another look that finds nothing leaves it armed and unreadable, however often.
        for _ in range(3):
            assert rx.try_recv() is None and not readable(rx, 0)
        # A call that times out arms it too.
        with pytest.raises(cywhip.ReceiveTimeout):
            rx.recv(timeout=0.01)
        with pytest.raises(cywhip.ReceiveTimeout):
            rx.recv_many(5, timeout=0)
        assert not readable(rx, 0.1)
        tx.send(b"x")
        assert readable(rx, 5)
        assert rx.recv_many(5, timeout=0) == [b"x"]


PONG = textwrap.dedent("""
    import selectors, sys
    from cywhip import Receiver, Sender
    rounds = int(sys.argv[3])
    with Receiver(sys.argv[1], message_length=8, max_queued_messages=4) as rx, \\
            Sender(sys.argv[2], message_length=8, max_queued_messages=4) as tx:
        sel = selectors.DefaultSelector()
        sel.register(rx.fileno(), selectors.EVENT_READ)
        print("ready", flush=True)
        for i in range(rounds):
            while True:
                msg = rx.try_recv()
                if msg is not None:
                    break
                if not sel.select(10):
                    print(f"lost wake-up in round {i}", flush=True)
                    sys.exit(1)
            assert int.from_bytes(msg, "little") == i, (msg, i)
            tx.send(msg)
    print("done", flush=True)
""")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("spin_time", [0, 0.00005])
def test_no_wake_up_is_lost_between_two_processes_waiting_on_descriptors(channel, peers, spin_time):
    # Each side waits on its descriptor for each message of a ping-pong: every round races the
    # other side's publish against this side's arming.  A lost wake-up is a select() that
    # times out (10 s) with the message there.
    rounds = 3000
    ping, pong = channel + "-ping", channel + "-pong"
    try:
        with cywhip.Sender(ping, message_length=8, max_queued_messages=4, spin_time=spin_time) as tx, \
                cywhip.Receiver(pong, message_length=8, max_queued_messages=4, spin_time=spin_time) as rx:
            proc = peers.start(ping, pong, rounds, script=PONG)
            assert proc.stdout.readline().strip() == "ready"
            sel = selectors.DefaultSelector()
            sel.register(rx.fileno(), selectors.EVENT_READ)
            for i in range(rounds):
                tx.send(i.to_bytes(8, "little"))
                while True:
                    msg = rx.try_recv()
                    if msg is not None:
                        break
                    assert sel.select(10), f"lost wake-up in round {i}"
                assert int.from_bytes(msg, "little") == i
            code, out, err = peers.finish(proc)
            assert code == 0 and out.strip() == "done", out + err
    finally:
        cywhip.unlink(ping, missing_ok=True)
        cywhip.unlink(pong, missing_ok=True)


def _in_epoll_wait(thread, timeout=10):
    """Until thread is blocked in epoll_wait/epoll_pwait (its syscall, from /proc)."""
    deadline = time.monotonic() + timeout
    path = f"/proc/self/task/{thread.native_id}/syscall"
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                nr = f.read().split()[0]
        except (OSError, IndexError):
            nr = ""
        # x86-64: epoll_wait 232, epoll_pwait 281, epoll_pwait2 441; arm64: epoll_pwait 22.
        if nr in ("232", "281", "441") or (nr == "22" and os.uname().machine == "aarch64"):
            return
        time.sleep(0.001)
    raise AssertionError("the thread never went to sleep in its selector")


@pytest.mark.timeout(60)
def test_close_from_another_thread_wakes_a_selector_waiting_on_the_descriptor(channel):
    rx = cywhip.Receiver(channel, message_length=8)
    fd = rx.fileno()
    assert rx.try_recv() is None
    result = []

    def wait():
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            result.append(sel.select(20))
    t = threading.Thread(target=wait)
    t.start()
    _in_epoll_wait(t)
    rx.close()
    t.join(20)
    assert not t.is_alive() and result and result[0], "the selector slept through close()"
    # Readable for good; the end says why; the descriptor stays open until the end is freed,
    # so its number is not reused under a selector that still watches it.
    assert readable_fd(fd, 0)
    with pytest.raises(cywhip.ChannelClosedError):
        rx.try_recv()
    with pytest.raises(cywhip.ChannelClosedError):
        rx.fileno()
    os.fstat(fd)
    del rx
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)


def readable_fd(fd, timeout):
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        return bool(sel.select(timeout))


@pytest.mark.timeout(60)
def test_a_forked_child_inherits_no_working_descriptor(channel):
    with cywhip.Receiver(channel, message_length=8) as rx, cywhip.Sender(channel, message_length=8) as tx:
        fd = rx.fileno()
        assert rx.try_recv() is None
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:     # the child: its copies of the descriptors are closed, the end refuses
            code = 1
            try:
                try:
                    rx.fileno()
                except cywhip.ChannelClosedError:
                    try:
                        os.fstat(fd)
                    except OSError:
                        code = 0
            finally:
                os.write(w, bytes([code]))
                os._exit(code)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            got = f.read(1)
        _, status = os.waitpid(pid, 0)
        assert got == b"\x00" and os.waitstatus_to_exitcode(status) == 0
        # The parent's descriptor still works.
        assert not readable(rx, 0)
        tx.send(b"p")
        assert readable(rx, 5) and rx.try_recv() == b"p"


CLAIM_AND_HOLD = ("import sys; from cywhip._testing.fanin import run_step; "
                  "run_step(sys.argv[1], 64, 16, 2, 0, 0, sys.argv[2], True, int(sys.argv[3]))")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("receiver", ["one receiver", "group member"])
def test_the_descriptor_wakes_a_receiver_at_a_hole_until_its_claimers_death_lets_it_go_on(
        channel, peers, receiver):
    from cywhip._testing.fanin import payload
    member = receiver == "group member"
    kw = dict(message_length=64, max_queued_messages=16, max_senders=2, max_receivers=4 if member else 1)
    with cywhip.Receiver(channel, **kw, **({"group": "g"} if member else {})) as rx:
        rx.fileno()
        proc = peers.start(channel, "claimed", kw["max_receivers"], script=CLAIM_AND_HOLD)
        assert "claim" in json.loads(proc.stdout.readline())["done"]
        with cywhip.Sender(channel, **kw) as other:
            other.send(payload(1, 0, 64))            # behind the live sender's claim
            assert rx.try_recv() is None
            # Armed with a timer: the claimer's death wakes nobody, so the descriptor becomes
            # readable within the slice a plain receiver sleeps (1 ms) and the user looks again.
            why, left = rx._fd_slice()
            assert why != 0 and left is not None and left <= 1_000_000
            assert readable(rx, 5)
            assert rx.try_recv() is None             # the claimer lives: nothing yet
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            deadline = time.monotonic() + 10
            got = None
            while got is None:
                assert readable(rx, 5), "the descriptor slept through the claimer's death"
                got = rx.try_recv()
                assert time.monotonic() < deadline
            assert got == payload(1, 0, 64)
        assert rx._skipped == (1, 0)


DRAIN_ONE = textwrap.dedent("""
    import sys
    from cywhip import Receiver
    with Receiver(sys.argv[1], message_length=8, max_queued_messages=2) as rx:
        print(rx.recv(timeout=20).decode(), flush=True)
""")


@pytest.mark.timeout(60)
def test_a_senders_descriptor_becomes_readable_when_another_process_makes_room(channel, peers):
    with cywhip.Sender(channel, message_length=8, max_queued_messages=2) as tx:
        assert readable(tx, 0)                   # starts readable
        assert tx.try_send(b"a") and tx.try_send(b"b")
        assert not tx.try_send(b"c")             # full: armed
        assert not readable(tx, 0.1)
        proc = peers.start(channel, script=DRAIN_ONE)
        assert look_until(tx, lambda: tx.try_send(b"c"), 20)
        code, out, _ = peers.finish(proc)
        assert code == 0 and out.strip() == "a"


def test_fileno_of_a_closed_end_refuses_and_selectors_can_still_unregister_it(channel):
    rx = cywhip.Receiver(channel, message_length=8)
    sel = selectors.DefaultSelector()
    sel.register(rx, selectors.EVENT_READ)        # by the end itself: selectors call fileno()
    rx.close()
    with pytest.raises(cywhip.ChannelClosedError):
        rx.fileno()
    sel.unregister(rx)                            # ChannelClosedError is a ValueError
    sel.close()


def test_a_senders_descriptor_becomes_readable_when_the_group_holding_it_back_is_removed(channel):
    # A durable group with no live member holds the sender full: only the idle slice (nothing
    # to watch for), so within it only the removal's wake-up, a byte to the sender's socket,
    # can make it readable.
    kw = dict(message_length=8, max_queued_messages=2, max_receivers=3)
    with cywhip.Sender(channel, **kw) as tx:
        cywhip.Receiver(channel, group="a", **kw).close()
        tx.fileno()
        assert tx.try_send(b"1") and tx.try_send(b"2")
        assert not tx.try_send(b"3")
        why, left = tx._fd_slice()
        assert why == 6 and 0.3e9 < left <= 1e9      # SLICE_IDLE
        assert not readable(tx, 0.2)
        cywhip.remove_group(channel, "a")
        assert readable(tx, 5)
        assert tx.try_send(b"3")

"""Many senders on one channel (max_senders > 1): the API, streams between separately started
processes, a sender killed between any two steps of a send, and the SIGKILL soak."""
import json
import os
import signal
import threading
import time

import pytest

import cywhip
from cywhip import ChannelBusyError, ChannelMismatchError, Receiver, Sender
from cywhip._testing import fanin
from cywhip._testing.fanin import STEPS, Tally, payload

LENGTH = 64


def _sender(name, senders=3, capacity=16, **kw):
    return Sender(name, message_length=LENGTH, max_queued_messages=capacity, max_senders=senders, **kw)


def _receiver(name, senders=3, capacity=16, **kw):
    return Receiver(name, message_length=LENGTH, max_queued_messages=capacity, max_senders=senders, **kw)


def _collect(receiver, tally, count, timeout=20):
    """Receive until tally holds count messages (or the deadline passes)."""
    deadline = time.monotonic() + timeout
    while tally.count < count and time.monotonic() < deadline:
        for m in receiver.recv_many(1000, timeout=max(0.01, deadline - time.monotonic())):
            tally.add(m)


# ------------------------------------------------------------------------ API


@pytest.mark.parametrize("bad, error, text", [
    (0, ValueError, "max_senders must be between 1 and 4096, got 0"),
    (4097, ValueError, "got 4097"),
    (-1, ValueError, "got -1"),
    (True, TypeError, "max_senders must be an int, not bool (True)"),
    (2.0, TypeError, "not float (2.0)"),
    ("2", TypeError, "not str ('2')"),
])
def test_max_senders_is_checked_and_named(channel, bad, error, text):
    for end in (Sender, Receiver):
        with pytest.raises(error, match=text.replace("(", r"\(").replace(")", r"\)")):
            end(channel, message_length=LENGTH, max_senders=bad)


def test_a_different_max_senders_is_a_mismatch_naming_both_values(channel):
    with _sender(channel, senders=3):
        with pytest.raises(ChannelMismatchError, match="exists with max_senders=3, this end asked for max_senders=2"):
            _receiver(channel, senders=2)
        with pytest.raises(ChannelMismatchError, match="max_senders=3, this end asked for max_senders=1"):
            Receiver(channel, message_length=LENGTH, max_queued_messages=16)


def test_one_sender_more_than_max_senders_is_busy_and_names_the_holders(channel):
    ends = [_sender(channel, senders=2) for _ in range(2)]
    try:
        with pytest.raises(ChannelBusyError) as info:
            _sender(channel, senders=2)
        pid = os.getpid()
        assert info.value.pids == [pid, pid]
        assert (f"already has its 2 senders (max_senders=2): process {pid} (this process, 2 places) holds them; "
                f"close the sender this process has first") in str(info.value)
        # A place given back is free at once.
        ends.pop().close()
        ends.append(_sender(channel, senders=2))
    finally:
        for e in ends:
            e.close()


def test_ends_show_max_senders(channel):
    with _sender(channel, senders=4) as s, _receiver(channel, senders=4) as r:
        assert s.max_senders == r.max_senders == 4
        assert "max_senders=4" in repr(s)
    with Sender(channel + "-1", message_length=8) as one:
        assert one.max_senders == 1
        assert "max_senders" not in repr(one)
    cywhip.unlink(channel + "-1")


def test_threads_sending_at_once_keep_each_senders_order(channel):
    n = 20_000
    senders = [_sender(channel, capacity=8) for _ in range(3)]
    with _receiver(channel, capacity=8) as receiver:
        def run(sender, tag):
            if tag == 0:
                for i in range(n):
                    sender.send(payload(tag, i, LENGTH), timeout=30)
            elif tag == 1:
                sender.send_many((payload(tag, i, LENGTH) for i in range(n)), timeout=30)
            else:
                for i in range(n):
                    while not sender.try_send(payload(tag, i, LENGTH)):
                        time.sleep(0)
        threads = [threading.Thread(target=run, args=(s, t)) for t, s in enumerate(senders)]
        for t in threads:
            t.start()
        tally = Tally(LENGTH)
        _collect(receiver, tally, 3 * n)
        for t in threads:
            t.join(30)
        assert tally.errors == []
        assert tally.next == {0: n, 1: n, 2: n}
        assert receiver.try_recv() is None
        assert receiver.taken == senders[0].published == 3 * n
        assert receiver._skipped == (0, 0)
    for s in senders:
        s.close()


def test_senders_waiting_on_a_full_ring_are_all_woken(channel, in_thread):
    senders = [_sender(channel, capacity=2) for _ in range(3)]
    receiver = _receiver(channel, capacity=2)
    try:
        senders[0].send(payload(0, 0, LENGTH))
        senders[0].send(payload(0, 1, LENGTH))
        # Two senders sleep on the full ring (they share one waiting word).
        waiting = [in_thread(lambda s=s, t=t: s.send(payload(t, 0, LENGTH), timeout=20))
                   for t, s in ((1, senders[1]), (2, senders[2]))]
        time.sleep(0.2)
        assert all(outcome == [] for _, outcome in waiting)
        tally = Tally(LENGTH)
        _collect(receiver, tally, 4, timeout=20)
        for thread, outcome in waiting:
            thread.join(20)
            assert outcome == [None]
        assert tally.errors == [] and tally.next == {0: 2, 1: 1, 2: 1}
    finally:
        receiver.close()
        for s in senders:
            s.close()


def test_try_send_on_a_full_ring_returns_false_and_leaves_no_claim(channel):
    with _sender(channel, capacity=2) as a, _sender(channel, capacity=2) as b, _receiver(channel, capacity=2) as r:
        assert a.try_send(payload(0, 0, LENGTH)) and a.try_send(payload(0, 1, LENGTH))
        assert not b.try_send(payload(1, 0, LENGTH))
        info = [c for c in cywhip.channels() if c.name == channel][0]
        assert [p.claiming for p in info.senders] == [None, None, None]
        assert r.recv_many(10) == [payload(0, 0, LENGTH), payload(0, 1, LENGTH)]
        assert b.try_send(payload(1, 0, LENGTH))
        assert r.recv(timeout=5) == payload(1, 0, LENGTH)


@pytest.mark.parametrize("error", [ValueError("cannot build"), KeyboardInterrupt()])
def test_a_message_whose_serializer_raises_is_never_seen_and_blocks_nobody(channel, error):
    def serialize(msg, buffer):
        buffer.write(msg[:10])     # half written: the slot is claimed
        if msg == b"bad":
            raise error
        buffer.write(msg[10:])

    with Sender(channel, serialize, message_length=LENGTH, max_senders=2) as s, \
            Sender(channel, message_length=LENGTH, max_senders=2) as other, \
            Receiver(channel, message_length=LENGTH, max_senders=2) as r:
        s.send(b"first message")
        with pytest.raises(type(error)):
            s.send(b"bad")
        other.send(b"from the other")
        s.send(b"after it")
        assert r.recv_many(10, timeout=5) == [b"first message"]
        assert r.recv_many(10, timeout=5) == [b"from the other", b"after it"]
        assert r._skipped == (0, 1)
        assert r.try_recv() is None


def test_typed_records_from_two_senders(channel):
    np = pytest.importorskip("numpy")
    dtype = np.dtype([("tag", "<i8"), ("seq", "<i8")])
    n = 50_000
    with Receiver(channel, message_type=dtype, max_queued_messages=64, max_senders=2) as r:
        def run(tag):
            with Sender(channel, message_type=dtype, max_queued_messages=64, max_senders=2) as s:
                arr = np.zeros(n, dtype)
                arr["tag"], arr["seq"] = tag, np.arange(n)
                assert s.send_array(arr[::1], timeout=30) == n
        threads = [threading.Thread(target=run, args=(t,)) for t in (1, 2)]
        for t in threads:
            t.start()
        out = np.zeros(2 * n, dtype)
        got = 0
        deadline = time.monotonic() + 30
        while got < 2 * n and time.monotonic() < deadline:
            got += r.recv_into(out[got:], timeout=10)
        for t in threads:
            t.join(30)
        assert got == 2 * n
        for tag in (1, 2):
            assert (out["seq"][out["tag"] == tag] == np.arange(n)).all()


def test_channels_shows_every_sender_place(channel):
    with _sender(channel), _sender(channel) as b, _receiver(channel):
        b.close()
        info = [c for c in cywhip.channels() if c.name == channel][0]
        assert [(p.pid, p.alive) for p in info.senders] == [(os.getpid(), True), (0, False), (0, False)]
        assert len(info.receivers) == 1 and info.receivers[0].alive
        assert info.sender_alive


# ------------------------------------------------------------ other processes


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["send", "send_many"])
def test_three_sender_processes_into_one_receiver_each_in_order_exactly_once(channel, peers, mode):
    n = 30_000
    with _receiver(channel, capacity=64) as receiver:
        procs = [peers.start(*("--role", "stream", channel, LENGTH, 64, 3, tag, n, mode),
                             script="import sys; from cywhip._testing.fanin import main; sys.exit(main(sys.argv[1:]))")
                 for tag in range(3)]
        tally = Tally(LENGTH)
        _collect(receiver, tally, 3 * n, timeout=90)
        for proc in procs:
            rc, out, err = peers.finish(proc, timeout=30)
            assert rc == 0, err
            assert out.split() == ["ready", "done"]
        assert tally.errors == []
        assert tally.next == {0: n, 1: n, 2: n}
        assert receiver.try_recv() is None and receiver.depth == 0


def _start_step(peers, channel, before, step):
    proc = peers.start(*("--role", "step", channel, LENGTH, 16, 2, 0, before, step),
                       script="import sys; from cywhip._testing.fanin import main; sys.exit(main(sys.argv[1:]))")
    rc, out, err = peers.finish(proc, timeout=30)
    assert rc == -signal.SIGKILL, err
    return json.loads(out)["done"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("step", STEPS)
def test_a_sender_killed_after_any_step_loses_only_its_unpublished_message(channel, peers, step):
    published = step in ("published", "cleared")
    claimed = step != "intent"
    with _receiver(channel, senders=2) as receiver:
        done = _start_step(peers, channel, 3, step)
        assert done[-1] == {"intent": "intent", "claimed": "claim", "half": "write", "written": "length",
                            "published": "publish", "cleared": "wake"}[step]
        # Its place is free at once: two new senders open, the first of them in the dead
        # sender's place, and stays idle while the other sends.
        with _sender(channel, senders=2) as a, _sender(channel, senders=2) as b:
            b.send(payload(2, 0, LENGTH), timeout=5)
            tally = Tally(LENGTH)
            _collect(receiver, tally, 3 + published + 1, timeout=10)
            for i in range(5):
                a.send(payload(1, i, LENGTH), timeout=5)
            _collect(receiver, tally, 3 + published + 6, timeout=10)
            assert tally.errors == []
            assert tally.next == {0: 3 + published, 1: 5, 2: 1}
            assert receiver.try_recv() is None
            assert receiver._skipped == (1 if claimed and not published else 0, 0)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("step", ["claimed", "half", "written"])
def test_a_receiver_waiting_at_a_live_senders_claim_goes_on_when_it_dies(channel, peers, step, in_thread):
    with _receiver(channel, senders=2) as receiver:
        proc = peers.start(*("--role", "step", channel, LENGTH, 16, 2, 0, 0, step, "hold"),
                           script="import sys; from cywhip._testing.fanin import main; sys.exit(main(sys.argv[1:]))")
        assert json.loads(proc.stdout.readline())["done"]
        with _sender(channel, senders=2) as other:
            other.send(payload(1, 0, LENGTH))
            # The claim comes first in the channel's order: the receiver waits for it ...
            thread, outcome = in_thread(lambda: receiver.recv(timeout=30))
            time.sleep(0.3)
            assert outcome == []
            info = [c for c in cywhip.channels() if c.name == channel][0]
            assert info.senders[0].claiming == 0 and info.senders[0].alive
            # ... and steps over it once the claimer is gone.
            proc.kill()
            proc.wait()
            thread.join(30)
            assert outcome == [payload(1, 0, LENGTH)]
            assert receiver._skipped == (1, 0)


@pytest.mark.soak
@pytest.mark.timeout(300)
def test_a_hundred_and_twenty_sigkills_of_senders_lose_tear_and_wedge_nothing(tmp_path):
    seed = int(time.time()) % 10_000
    report = fanin.soak(kills=120, senders=3, seed=seed, workdir=str(tmp_path), timeout=240)
    assert report["errors"] == [], (seed, report)
    assert report["ok"] and report["kills"] >= 120
    assert report["messages"] > 0

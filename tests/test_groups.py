"""Receiver groups (max_receivers > 1): the API, broadcast and shared work between separately
started processes, members killed with messages in hand, durable and non-durable groups,
remove_group(), channels(), and the SIGKILL soak."""
import fcntl
import json
import mmap
import os
import signal
import struct
import textwrap
import time

import pytest

import cywhip
from cywhip import ChannelBusyError, ChannelMismatchError, Receiver, Sender, _region
from cywhip._testing._model import layout
from cywhip._testing import groups as g
from cywhip._testing.fanin import payload as _fanin_payload
from cywhip.errors import SendTimeout

LENGTH = 32


def _tx(name, receivers=4, capacity=16, **kw):
    return Sender(name, message_length=LENGTH, max_queued_messages=capacity, max_receivers=receivers, **kw)


def _rx(name, group="", receivers=4, capacity=16, **kw):
    return Receiver(name, message_length=LENGTH, max_queued_messages=capacity, max_receivers=receivers,
                    group=group, **kw)


def fanin_payload(tag, i):
    return _fanin_payload(tag, i, LENGTH)


def _numbers(msgs):
    return [g.number(m, LENGTH) for m in msgs]


def _drain(rx, count, timeout=5):
    """The numbers of the next count messages (a member may hand them out over several calls)."""
    out = []
    while len(out) < count:
        out += _numbers(rx.recv_many(count - len(out), timeout=timeout))
    return out


def _send(tx, start, stop):
    tx.send_many((g.payload(i, LENGTH) for i in range(start, stop)), timeout=10)


@pytest.fixture
def work(tmp_path):
    """A directory for member logs and the stop file; stops every member at the end."""
    procs = []
    stop = str(tmp_path / "stop")

    def member(name, group, mode, log, **kw):
        proc = g.spawn_member(name, LENGTH, kw.pop("capacity", 16), kw.pop("receivers", 4), group, mode,
                              str(tmp_path / log), stop, **kw)
        procs.append(proc)
        return proc

    member.path = lambda log: str(tmp_path / log)
    member.stop = lambda: open(stop, "w").close()
    yield member
    g.stop_members(procs, stop)


def _wait_for(predicate, timeout=20, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


# ------------------------------------------------------------------------ API


def test_group_arguments_are_checked_and_named(channel):
    with pytest.raises(ValueError, match=r"group='a' needs a channel with receiver groups: max_receivers=1"):
        Receiver(channel, message_length=LENGTH, group="a")
    with pytest.raises(ValueError, match="durable=False needs a channel with receiver groups"):
        Receiver(channel, message_length=LENGTH, durable=False)
    with pytest.raises(TypeError, match=r"group must be a str, not int \(3\)"):
        _rx(channel, group=3)
    with pytest.raises(TypeError, match=r"durable must be a bool, not int \(1\)"):
        _rx(channel, durable=1)
    with pytest.raises(ValueError, match="is 65 bytes in UTF-8; at most 64"):
        _rx(channel, group="x" * 65)
    with pytest.raises(ValueError, match="contains a NUL"):
        _rx(channel, group="a\0b")
    with pytest.raises(ValueError, match="max_receivers must be between 1 and 4096, got 0"):
        _rx(channel, receivers=0)
    with pytest.raises(TypeError, match=r"max_receivers must be an int, not bool \(True\)"):
        _tx(channel, receivers=True)
    assert not os.path.exists(f"/dev/shm/cywhip.{channel}")


def test_a_different_max_receivers_or_durability_is_a_mismatch_naming_both(channel):
    with _tx(channel, receivers=3), _rx(channel, "a", receivers=3):
        with pytest.raises(ChannelMismatchError, match="max_receivers=3, this end asked for max_receivers=2"):
            _rx(channel, "a", receivers=2)
        with pytest.raises(ChannelMismatchError, match="max_receivers=3, this end asked for max_receivers=1"):
            Receiver(channel, message_length=LENGTH, max_queued_messages=16)
        with pytest.raises(ChannelMismatchError,
                           match="group 'a' exists with durable=True, this receiver asked for durable=False"):
            _rx(channel, "a", receivers=3, durable=False)


def test_one_receiver_more_than_max_receivers_is_busy_and_names_the_holders(channel):
    with _tx(channel, receivers=2), _rx(channel, "a", receivers=2) as a, _rx(channel, "a", receivers=2):
        with pytest.raises(ChannelBusyError, match=r"already has its 2 receivers \(max_receivers=2\)") as e:
            _rx(channel, "a", receivers=2)
        assert e.value.pids == [os.getpid(), os.getpid()]
        assert a.group == "a" and a.durable is True and a.max_receivers == 2
        assert "max_receivers=2 group='a'" in repr(a)


def test_more_groups_than_max_receivers_is_busy_and_names_the_groups(channel):
    with _tx(channel, receivers=2):
        _rx(channel, "a", receivers=2).close()
        _rx(channel, "b", receivers=2).close()
        with pytest.raises(ChannelBusyError, match=r"has its 2 groups \(max_receivers=2\): 'a', 'b'; "
                                                   r"cannot add group 'c'"):
            _rx(channel, "c", receivers=2)
        cywhip.remove_group(channel, "a")
        _rx(channel, "c", receivers=2).close()


# ------------------------------------------------------------ in one process


def test_every_group_gets_every_message_and_members_share_theirs(channel):
    with _tx(channel) as tx, _rx(channel, "a") as a, _rx(channel, "b") as b1, _rx(channel, "b") as b2:
        _send(tx, 0, 10)
        assert _numbers(a.recv_many(100)) == list(range(10))
        got1 = _numbers([b1.recv(1), b1.recv(1)])
        got2 = _numbers(b2.recv_many(100))
        got1 += _numbers(b1.recv_many(100, timeout=0.01) if b1.depth else [])
        assert sorted(got1 + got2) == list(range(10)) and len(set(got1 + got2)) == 10
        assert got1 == sorted(got1) and got2 == sorted(got2)
        assert a.taken == b1.taken == 10 and tx.depth == 0


def test_senders_wait_for_the_slowest_group(channel):
    with _tx(channel, capacity=4) as tx, _rx(channel, "fast", capacity=4) as fast, \
            _rx(channel, "slow", capacity=4) as slow:
        _send(tx, 0, 4)
        assert _numbers(fast.recv_many(10)) == [0, 1, 2, 3]
        assert not tx.try_send(g.payload(4, LENGTH))
        with pytest.raises(SendTimeout):
            tx.send(g.payload(4, LENGTH), timeout=0.05)
        info = next(c for c in cywhip.channels() if c.name == channel)
        rows = {row.name: row for row in info.groups}
        assert rows["slow"].holding_back and not rows["fast"].holding_back
        assert rows["slow"].depth == 4 and rows["fast"].depth == 0 and info.depth == 4
        assert _numbers([slow.recv(1)]) == [0]
        assert tx.try_send(g.payload(4, LENGTH))
        assert _numbers(fast.recv_many(10)) == [4]
        assert _numbers(slow.recv_many(10) + slow.recv_many(10)) == [1, 2, 3, 4]


def test_a_new_group_starts_at_the_oldest_message_still_held(channel):
    with _tx(channel) as tx, _rx(channel, "a") as a:
        _send(tx, 0, 6)
        assert _numbers(a.recv_many(2)) == [0, 1]
        with _rx(channel, "b") as b:
            assert _numbers(b.recv_many(100)) == [2, 3, 4, 5]


def test_every_receive_call_works_in_a_group(channel):
    np = pytest.importorskip("numpy")
    dtype = np.dtype([("i", "<i8"), ("x", "<f8")])
    kw = dict(message_type=dtype, max_queued_messages=16, max_receivers=3)
    with Sender(channel, **kw) as tx, Receiver(channel, group="a", **kw) as a, \
            Receiver(channel, group="b", **kw) as b:
        tx.send_array(np.array([(i, i / 2) for i in range(12)], dtype=dtype))
        got = list(a.recv_array(3)["i"])
        out = np.zeros(3, dtype)
        assert a.recv_into(out) == 3
        got += list(out["i"])
        with a.borrow(2) as lent:
            got += list(lent["i"])
        got += [a.recv()["i"], a.try_recv()["i"]]
        got += [m["i"] for m in a.recv_many(100)]
        assert got == list(range(12))
        assert list(b.recv_array(100)["i"]) == list(range(12))
    batches = []
    with _tx(channel + "x", receivers=2) as tx:
        with _rx(channel + "x", "a", receivers=2, on_batch=batches.append) as rx:
            _send(tx, 0, 8)
            _wait_for(lambda: sum(map(len, batches)) == 8, what="the batches")
            assert _numbers(m for batch in batches for m in batch) == list(range(8))
            assert rx.running
    cywhip.unlink(channel + "x", missing_ok=True)


# ------------------------------------------------------- separate processes


@pytest.mark.parametrize("mode", ["recv", "recv_many", "on_message", "borrow"])
def test_two_groups_in_other_processes_each_get_the_whole_stream_in_order(channel, work, mode):
    tx = _tx(channel)
    try:
        work(channel, "a", mode, "a.log")
        work(channel, "b", "on_batch", "b.log")
        _send(tx, 0, 3000)
        _wait_for(lambda: len(g.read_log(work.path("a.log"))) >= 3000
                  and len(g.read_log(work.path("b.log"))) >= 3000, what="both groups")
        assert g.read_log(work.path("a.log")) == list(range(3000))
        assert g.read_log(work.path("b.log")) == list(range(3000))
    finally:
        work.stop()
        tx.close()


@pytest.mark.parametrize("members, modes", [
    (2, ("recv", "recv_many")),
    (3, ("on_message", "try_recv", "iterate")),
])
def test_a_group_of_members_in_other_processes_splits_a_stream_exactly(channel, work, members, modes):
    tx = _tx(channel, receivers=4)
    logs = [f"m{k}.log" for k in range(members)]
    try:
        for log, mode in zip(logs, modes):
            work(channel, "w", mode, log, pause=0.0002)
        total = 2000
        _send(tx, 0, total)
        _wait_for(lambda: sum(len(g.read_log(work.path(x))) for x in logs) >= total, what="the split")
        time.sleep(0.05)
        per = [g.read_log(work.path(x)) for x in logs]
        union = sorted(n for p in per for n in p)
        assert union == list(range(total))              # each message once, none lost
        assert all(p == sorted(p) for p in per)          # each member's share in order
        assert sum(1 for p in per if p) >= 2             # shared, not one member taking all
    finally:
        work.stop()
        tx.close()


def test_a_member_killed_mid_callback_gives_its_message_back_to_the_other_member(channel, work):
    tx = _tx(channel)
    try:
        slow = work(channel, "w", "on_message", "slow.log", pause=5.0)   # sits in its callback
        _send(tx, 0, 1)
        _wait_for(lambda: g.read_log(work.path("slow.log")) == [0], what="the slow member's message")
        work(channel, "w", "recv", "other.log")
        # The ring holds 16: message 0, held by the slow member, and 15 more.
        _send(tx, 1, 16)
        _wait_for(lambda: len(g.read_log(work.path("other.log"))) >= 15, what="the other member")
        assert g.read_log(work.path("other.log")) == list(range(1, 16))
        assert not tx.try_send(g.payload(16, LENGTH))
        slow.send_signal(signal.SIGKILL)
        slow.wait()
        # Message 0 was in flight at the dead member: the live member finishes its claim.
        _wait_for(lambda: 0 in g.read_log(work.path("other.log")), what="the message given back")
        _send(tx, 16, 200)
        _wait_for(lambda: len(g.read_log(work.path("other.log"))) >= 200, what="the rest")
        missing, dup = g.account([work.path("slow.log"), work.path("other.log")], 200)
        assert missing == [] and dup == [0]
        assert tx.depth == 0
    finally:
        work.stop()
        tx.close()


def test_a_killed_members_claim_waits_for_the_next_member_of_a_durable_group(channel, work):
    tx = _tx(channel)
    try:
        _rx(channel, "w").close()        # the group exists; its messages wait for it
        _send(tx, 0, 5)
        only = work(channel, "w", "on_batch", "first.log", pause=5.0)   # one batch, then sits in on_batch
        _wait_for(lambda: g.read_log(work.path("first.log")) == [0, 1, 2, 3, 4], what="the first batch")
        only.send_signal(signal.SIGKILL)
        only.wait()
        _send(tx, 5, 8)
        with _rx(channel, "w") as again:
            assert _numbers(again.recv_many(100, timeout=5)) == [0, 1, 2, 3, 4]
            assert _numbers(again.recv_many(100, timeout=5)) == [5, 6, 7]
    finally:
        work.stop()
        tx.close()


def test_a_durable_group_gone_and_back_continues_and_holds_the_sender_meanwhile(channel):
    with _tx(channel, capacity=4) as tx:
        with _rx(channel, "d", capacity=4) as d, _rx(channel, "e", capacity=4) as e:
            _send(tx, 0, 2)
            assert _numbers(d.recv_many(1)) == [0]
            assert _numbers(e.recv_many(10)) == [0, 1]
        _send(tx, 2, 5)
        assert not tx.try_send(g.payload(5, LENGTH))        # d (durable, no member) holds it
        info = next(c for c in cywhip.channels() if c.name == channel)
        rows = {row.name: row for row in info.groups}
        assert rows["d"].holding_back and rows["d"].members == () and rows["d"].position == 1
        with _rx(channel, "d", capacity=4) as d:
            # The first member's claim (0 and 1) was not all taken when it closed: finished first.
            assert _numbers(d.recv_many(10)) == [1]
            assert _numbers(d.recv_many(10)) == [2, 3, 4]


def test_a_non_durable_group_goes_with_its_last_member(channel, work):
    with _tx(channel, capacity=4) as tx, _rx(channel, "keep", capacity=4) as keep:
        with _rx(channel, "dash", capacity=4, durable=False):
            _send(tx, 0, 4)
            assert not tx.try_send(g.payload(4, LENGTH))
        # Closed: the group is removed at once, the sender goes on.
        assert tx.try_send(g.payload(4, LENGTH)) is False    # "keep" has not taken anything yet
        assert _numbers(keep.recv_many(2)) == [0, 1]
        assert tx.try_send(g.payload(4, LENGTH))
        names = [row.name for row in next(c for c in cywhip.channels() if c.name == channel).groups]
        assert names == ["keep"]
        # A killed last member: the sender on the full ring finds it and removes the group.
        proc = work(channel, "dash", "on_message", "dash.log", capacity=4, durable=False, pause=5.0)
        _send(tx, 5, 6)
        _wait_for(lambda: g.read_log(work.path("dash.log")) == [2], what="the member's first message")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert _drain(keep, 4) == [2, 3, 4, 5]
        _send(tx, 6, 10)           # would block for ever on a dead durable group
        assert [row.name for row in next(c for c in cywhip.channels() if c.name == channel).groups] == ["keep"]


def test_a_group_creator_that_died_midway_holds_nobody_up(channel):
    import mmap
    with _tx(channel, capacity=4) as tx, _rx(channel, "a", capacity=4) as a:
        fd = os.open(f"/dev/shm/cywhip.{channel}", os.O_RDWR)
        try:
            with mmap.mmap(fd, 4096) as header:
                gen = int.from_bytes(header[640:648], "little")
                assert gen % 2 == 0 and gen >= 2
                # As if a creator died between making the sequence number odd and even again.
                header[640:648] = (gen + 1).to_bytes(8, "little")
                _send(tx, 0, 4)
                assert _numbers(a.recv_many(10)) == [0, 1, 2, 3]
                _send(tx, 4, 8)           # the sender's next look for room, with the number odd
                assert _drain(a, 4) == [4, 5, 6, 7]
                with _rx(channel, "b", capacity=4):   # the next join makes it even again
                    assert int.from_bytes(header[640:648], "little") == gen + 4
        finally:
            os.close(fd)


def test_a_dead_members_empty_place_is_free_for_any_group(channel, work):
    with _tx(channel, receivers=2) as tx, _rx(channel, "b", receivers=2):
        proc = work(channel, "a", "recv", "a.log", receivers=2)
        _send(tx, 0, 3)
        _wait_for(lambda: g.read_log(work.path("a.log")) == [0, 1, 2], what="the member of 'a'")
        time.sleep(0.1)                    # its last recv has released its claim
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # Its place holds no claim: a member of another group may take it.
        with _rx(channel, "b", receivers=2) as b2:
            assert b2.group == "b"


def test_remove_group(channel):
    with _tx(channel, capacity=4) as tx, _rx(channel, "live", capacity=4) as live:
        _rx(channel, "gone", capacity=4).close()
        with pytest.raises(ChannelBusyError, match=r"group 'live' has a live member, process \d+: close its members first"):
            cywhip.remove_group(channel, "live")
        with pytest.raises(KeyError, match=r"has no group 'nope' \(its groups: 'live', 'gone'\)"):
            cywhip.remove_group(channel, "nope")
        _send(tx, 0, 4)
        assert _numbers(live.recv_many(10)) == [0, 1, 2, 3]
        assert not tx.try_send(g.payload(4, LENGTH))        # "gone" holds the sender back
        cywhip.remove_group(channel, "gone")
        assert tx.try_send(g.payload(4, LENGTH))
    with pytest.raises(ValueError, match="has no receiver groups"):
        with Sender(channel + "-1to1", message_length=LENGTH):
            cywhip.remove_group(channel + "-1to1", "a")
    cywhip.unlink(channel + "-1to1", missing_ok=True)


def test_a_group_removed_and_made_again_does_not_inherit_old_claims(channel):
    with _tx(channel) as tx, _rx(channel, "b"):
        a = _rx(channel, "a")
        _send(tx, 0, 4)
        with a.borrow(1):
            pass
        a.close()                      # leaves its claim of 1..3 in its place
        cywhip.remove_group(channel, "a")
        with _rx(channel, "a") as again:
            # A new group: from the oldest message still held ("b" has taken nothing), in order,
            # not the old group's leftover claim first.
            assert _drain(again, 4) == [0, 1, 2, 3]
            assert again.try_recv() is None


def test_the_command_line_lists_groups(channel, capsys):
    from cywhip.__main__ import main
    with _tx(channel, capacity=4) as tx, _rx(channel, "alpha", capacity=4), _rx(channel, "beta", capacity=4) as b:
        _send(tx, 0, 4)
        b.recv_many(10)
        main(["channels"])
        out = capsys.readouterr().out
        assert "group 'alpha': position 0, depth 4, durable, members" in out
        assert "holding the senders back" in out
        assert "group 'beta': position 4, depth 0" in out
    assert main(["remove-group", channel, "beta"]) == 0
    assert capsys.readouterr().out == f"removed group 'beta' of channel {channel!r}\n"
    assert main(["remove-group", channel, "beta"]) == 1
    assert "has no group 'beta' (its groups: 'alpha')" in capsys.readouterr().err


# ------------------------------------------------------------- many senders


def test_with_many_senders_every_group_sees_the_channels_one_order(channel):
    import threading
    kw = dict(message_length=LENGTH, max_queued_messages=16, max_receivers=4, max_senders=3)
    n = 5000
    got = {"a": [], "b": [], "w1": [], "w2": []}
    with Sender(channel, **kw) as s1, Sender(channel, **kw) as s2, \
            Receiver(channel, group="a", **kw) as a, Receiver(channel, group="b", **kw) as b, \
            Receiver(channel, group="w", **kw) as w1, Receiver(channel, group="w", **kw) as w2:
        def produce(tx, tag):
            for i in range(n):
                tx.send(fanin_payload(tag, i), timeout=10)

        def consume(rx, key, share):
            deadline = time.monotonic() + 60
            while sum(len(got[k]) for k in share) < 2 * n and time.monotonic() < deadline:
                try:
                    got[key].extend(bytes(m) for m in rx.recv_many(50, timeout=0.1))
                except Exception as exc:
                    if type(exc).__name__ != "ReceiveTimeout":
                        raise
        threads = [threading.Thread(target=produce, args=(s1, 1)), threading.Thread(target=produce, args=(s2, 2)),
                   threading.Thread(target=consume, args=(a, "a", ["a"])),
                   threading.Thread(target=consume, args=(b, "b", ["b"])),
                   threading.Thread(target=consume, args=(w1, "w1", ["w1", "w2"])),
                   threading.Thread(target=consume, args=(w2, "w2", ["w1", "w2"]))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
    assert len(got["a"]) == 2 * n and got["a"] == got["b"]          # one order, the same for both
    for tag in (1, 2):                                             # each sender's order kept
        assert [m for m in got["a"] if m[:4] == tag.to_bytes(4, "little")] == [fanin_payload(tag, i) for i in range(n)]
    assert sorted(got["w1"] + got["w2"]) == sorted(got["a"])        # shared: each message once
    order = {m: k for k, m in enumerate(got["a"])}
    assert [order[m] for m in got["w1"]] == sorted(order[m] for m in got["w1"])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("step", ["claimed", "half", "written", "published"])
def test_a_sender_killed_mid_send_is_stepped_over_by_every_group_alike(channel, step):
    import json
    import subprocess
    import sys
    kw = dict(message_length=LENGTH, max_queued_messages=16, max_receivers=3, max_senders=2)
    # The sender that goes on holds place 0 from the start, so that the dead sender's place
    # is left as it died (the listing tells of it).
    with Receiver(channel, group="a", **kw) as a, Receiver(channel, group="b", **kw) as b, \
            Sender(channel, **kw) as tx:
        code = ("from cywhip._testing.fanin import run_step; "
                f"run_step({channel!r}, {LENGTH}, 16, 2, 0, 2, {step!r}, receivers=3)")
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert json.loads(proc.stdout.readline())["done"]
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        dead = next(p for p in _listing(channel).senders if p.pid == proc.pid)
        assert not dead.alive and dead.claiming == 2
        for i in range(3):
            tx.send(fanin_payload(1, i), timeout=5)
        published = step == "published"
        want = [fanin_payload(0, i) for i in range(2 + published)] + [fanin_payload(1, i) for i in range(3)]
        for rx in (a, b):
            out = []
            while len(out) < len(want):
                out += [bytes(m) for m in rx.recv_many(100, timeout=5)]
            assert out == want
            assert rx.try_recv() is None
            assert rx._skipped == (0 if published else 1, 0)
        # Every group has stepped over (or taken) what the dead sender was filling: the
        # listing no longer says it died filling it.
        dead = next(p for p in _listing(channel).senders if p.pid == proc.pid)
        assert dead.claiming is None

def _listing(channel):
    return next(c for c in cywhip.channels() if c.name == channel)


def test_a_closing_member_leaves_alone_a_group_that_took_its_entry_meanwhile(channel, monkeypatch):
    # A member closing clears its place, then takes the groups lock.  In between, its group
    # is removed and a new group takes the same entry (with a new epoch): the closing member
    # must neither count itself out of that group nor remove it.
    with _tx(channel, receivers=3, capacity=4) as tx:
        old = _rx(channel, "old", receivers=3, capacity=4, durable=False)
        new = []

        def hook(point, path):
            if point == "leave":
                monkeypatch.setattr(_region, "_test_hook", None)
                cywhip.remove_group(channel, "old")
                new.append(_rx(channel, "new", receivers=3, capacity=4, durable=False))

        monkeypatch.setattr(_region, "_test_hook", hook)
        old.close()
        assert len(new) == 1
        with new[0] as member:
            groups = _listing(channel).groups
            assert [(grp.name, grp.members) for grp in groups] == [("new", (os.getpid(),))]
            got = []
            for start in range(0, 12, 4):
                _send(tx, start, start + 4)
                got += _drain(member, 4)
            assert got == list(range(12))
            _send(tx, 12, 16)
            assert not tx.try_send(g.payload(16, LENGTH))     # "new" holds the sender back


MEMBER = textwrap.dedent("""
    import sys, threading
    from cywhip import Receiver
    name, durable = sys.argv[1], sys.argv[2] == "durable"
    rx = Receiver(name, message_length=32, max_queued_messages=4, max_receivers=2, group="n",
                  durable=durable)
    print("ready", flush=True)
    threading.Event().wait()
""")


def _member_killed(channel, peers, durable):
    """A member of group "n" in another process, SIGKILLed, its place's lock gone."""
    proc = peers.start(channel, "durable" if durable else "not-durable", script=MEMBER)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _kill(proc, channel):
    proc.kill()
    proc.wait(10)
    _wait_for(lambda: not any(p.alive and p.pid == proc.pid for p in _listing(channel).receivers),
              what="the member's lock to go")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("call", ["try_send", "send(timeout=0)", "asyncio send"])
def test_every_send_call_on_a_full_ring_removes_a_dead_non_durable_group(channel, peers, call):
    # The member of non-durable group "n" is SIGKILLed with the ring full for it.  Not only
    # a blocking send removes the group: every call that finds the ring full does.  (Group
    # "k", durable, has taken everything: the senders then go as far as it lets them.)
    import asyncio
    import cywhip.asyncio as aio
    with _tx(channel, receivers=2, capacity=4) as tx, _rx(channel, "k", receivers=2, capacity=4) as keep:
        proc = _member_killed(channel, peers, durable=False)
        _send(tx, 0, 4)
        assert _drain(keep, 4) == [0, 1, 2, 3]
        _kill(proc, channel)
        if call == "try_send":
            assert tx.try_send(g.payload(4, LENGTH))
        elif call == "send(timeout=0)":
            tx.send(g.payload(4, LENGTH), timeout=0)
        else:
            tx.close()

            async def main():
                async with aio.Sender(channel, message_length=LENGTH, max_queued_messages=4,
                                      max_receivers=2) as atx:
                    await atx.send(g.payload(4, LENGTH), timeout=2)
            asyncio.run(main())
        assert [grp.name for grp in _listing(channel).groups] == ["k"]
        assert _drain(keep, 1) == [4]


def test_when_every_group_has_left_the_senders_go_on_and_a_late_group_gets_the_latest_messages(channel):
    with _tx(channel, receivers=2, capacity=4) as tx:
        # No group was ever made: the sender waits for the first (ends start in any order).
        _send(tx, 0, 4)
        assert not tx.try_send(g.payload(4, LENGTH))
        with _rx(channel, "n", receivers=2, capacity=4, durable=False) as rx:
            assert _drain(rx, 4) == [0, 1, 2, 3]
        assert _listing(channel).groups == ()          # its last member took "n" with it
        # Every group has left: the channel does not hold its sender.
        _send(tx, 4, 14)
        assert tx.try_send(g.payload(14, LENGTH))
        # It keeps the most recent messages (at most a ring) for a group that joins later.
        with _rx(channel, "late", receivers=2, capacity=4, durable=False) as late:
            got = _drain(late, 1)
            while got[-1] != 14:
                got += _drain(late, 1)
            assert got == list(range(got[0], 15)) and 11 <= got[0] <= 14
            # A group in use holds the sender again.
            _send(tx, 15, 19)
            assert not tx.try_send(g.payload(19, LENGTH))


@pytest.mark.timeout(60)
def test_a_dead_durable_group_still_holds_every_send_call(channel, peers):
    with _tx(channel, receivers=2, capacity=4) as tx:
        proc = _member_killed(channel, peers, durable=True)
        _send(tx, 0, 4)
        _kill(proc, channel)
        assert not tx.try_send(g.payload(4, LENGTH))
        with pytest.raises(SendTimeout):
            tx.send(g.payload(4, LENGTH), timeout=0.05)
        assert [grp.name for grp in _listing(channel).groups] == ["n"]


def test_many_senders_wait_while_a_group_creation_is_stalled_and_call_no_sound_channel_corrupt(channel):
    # Two senders of a channel with groups.  Sender a last computed its bound at 0; sender b
    # has since claimed a whole ring further.  Then a group creator stalls with groups_gen
    # odd, holding the groups lock: a cannot compute the bound, and must take the ring as
    # full, not compare the claim cursor with the bound it saw long ago.
    kw = dict(message_length=8, max_queued_messages=2, max_receivers=2, max_senders=2)
    with Sender(channel, **kw) as a, Sender(channel, **kw) as b, Receiver(channel, group="g", **kw) as rx:
        a.send_many([b"0", b"1"], timeout=5)
        assert rx.recv_many(2, timeout=5) == [b"0", b"1"]
        b.send_many([b"2", b"3"], timeout=5)
        assert rx.recv_many(2, timeout=5) == [b"2", b"3"]
        gen = layout()["groups_gen"]
        fd = os.open(f"/dev/shm/cywhip.{channel}", os.O_RDWR)
        try:
            with mmap.mmap(fd, 4096) as mm:
                _lock_byte(fd, 96)
                was = struct.unpack_from("<Q", mm, gen)[0]
                struct.pack_into("<Q", mm, gen, was | 1)
                try:
                    assert a.try_send(b"4") is False
                    with pytest.raises(SendTimeout):
                        a.send(b"4", timeout=0.05)
                finally:
                    struct.pack_into("<Q", mm, gen, (was | 1) + 1)
                    _lock_byte(fd, 96, lock=False)
        finally:
            os.close(fd)
        a.send(b"4", timeout=5)
        assert rx.recv(timeout=5) == b"4"


# ------------------------------------------------------- hostile shared memory


def _file(channel):
    """A writable mapping of the channel's file, as a hostile process would hold it."""
    fd = os.open(f"/dev/shm/cywhip.{channel}", os.O_RDWR)
    try:
        return mmap.mmap(fd, 0)
    finally:
        os.close(fd)


def _group_word(receivers, g, field):
    """Offset of a field of group entry g of a channel with one sender and these member places."""
    lay = layout()
    return lay["places"] + (1 + receivers) * lay["place_bytes"] + g * lay["sizeof_group"] + lay[field]


def _lock_byte(fd, offset, lock=True):
    """An open-file-description lock on one byte, as a live end holds its place's."""
    packed = struct.pack("hhxxxxqqixxxx", fcntl.F_WRLCK if lock else fcntl.F_UNLCK, os.SEEK_SET, offset, 1, 0)
    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, packed)


CLAIM_LOCK_OF_A_LIVE_MEMBER = textwrap.dedent("""
    import json, mmap, os, sys, time
    from cywhip import Receiver, ReceiveTimeout, Sender
    name, lock = sys.argv[1], int(sys.argv[2])
    kw = dict(message_length=8, max_queued_messages=8, max_receivers=3)
    with Sender(name, **kw) as tx, Receiver(name, group="g", **kw) as a, Receiver(name, group="g", **kw) as b:
        tx.send_many([b"0", b"1", b"2"])
        fd = os.open("/dev/shm/cywhip." + name, os.O_RDWR)
        mm = mmap.mmap(fd, 8192)
        # The group's claim lock names a's place (0): a live member, as if stopped in its claim.
        mm[lock:lock + 8] = (1).to_bytes(8, "little")
        started = time.monotonic()
        assert b.try_recv() is None
        try:
            b.recv(timeout=0.2)
        except ReceiveTimeout:
            pass
        took = time.monotonic() - started
        mm[lock:lock + 8] = bytes(8)
        got = []
        while len(got) < 3:       # a member that shares its group claims at most a quarter ring
            got += b.recv_many(10, timeout=1)
        print(json.dumps({"took": took, "skipped": b._skipped, "got": sorted(m.decode() for m in got)}))
""")


@pytest.mark.timeout(60)
def test_a_member_waiting_on_a_live_members_claim_lock_returns_by_its_deadline_and_skips_nothing(
        channel, peers):
    # A member whose group's claim lock is held by another live member waits for it in short
    # slices, by its deadline; try_recv() returns at once.  It steps over no message.
    proc = peers.start(channel, _group_word(3, 0, "group_lock"), script=CLAIM_LOCK_OF_A_LIVE_MEMBER)
    rc, out, err = peers.finish(proc, timeout=20)
    assert rc == 0, err[-2000:]
    report = json.loads(out)
    assert report["took"] < 1.5
    assert report["skipped"] == [0, 0] and report["got"] == ["0", "1", "2"]


STALLED_GROUP_CREATOR = textwrap.dedent("""
    import fcntl, mmap, os, struct, sys, threading, time
    from cywhip import Receiver, SendTimeout, Sender
    name = sys.argv[1]
    kw = dict(message_length=8, max_queued_messages=2, max_receivers=2)
    with Sender(name, **kw) as tx, Receiver(name, group="g", **kw) as rx:
        tx.send_many([b"0", b"1"])
        fd = os.open("/dev/shm/cywhip." + name, os.O_RDWR)
        mm = mmap.mmap(fd, 4096)
        # A live process holds the groups lock with groups_gen odd: a creator stopped midway.
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhxxxxqqixxxx", fcntl.F_WRLCK, os.SEEK_SET, 96, 1, 0))
        gen = int.from_bytes(mm[640:648], "little")
        mm[640:648] = (gen | 1).to_bytes(8, "little")
        assert rx.recv_many(2) == [b"0", b"1"]
        started = time.monotonic()
        assert tx.try_send(b"2") is False
        try:
            tx.send(b"2", timeout=0.2)
        except SendTimeout:
            pass
        took = time.monotonic() - started
        # close() from another thread ends a send that waits without a deadline.
        threading.Timer(0.2, tx.close).start()
        try:
            tx.send(b"2")
        except Exception as exc:
            print(type(exc).__name__, end=" ")
        closed = time.monotonic() - started - took
        mm[640:648] = (gen + 2).to_bytes(8, "little")
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhxxxxqqixxxx", fcntl.F_UNLCK, os.SEEK_SET, 96, 1, 0))
        with Sender(name, **kw) as again:
            assert again.try_send(b"2")
        print(round(took, 3), round(closed, 3), flush=True)
""")


@pytest.mark.timeout(60)
def test_a_sender_returns_by_its_deadline_while_a_live_group_creator_holds_the_groups_lock(channel, peers):
    proc = peers.start(channel, script=STALLED_GROUP_CREATOR)
    rc, out, err = peers.finish(proc, timeout=20)
    assert rc == 0, err[-2000:]
    error, took, closed = out.split()
    assert error == "ChannelClosedError"
    assert float(took) < 1.5 and float(closed) < 1.5


STOPPED_CREATOR_AND_AN_ASYNC_SENDER = textwrap.dedent("""
    import asyncio, fcntl, mmap, os, struct, sys, time
    import cywhip.asyncio as aio
    from cywhip import Receiver
    name = sys.argv[1]
    kw = dict(message_length=8, max_queued_messages=2, max_receivers=3)

    def lock(fd, kind):
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhxxxxqqixxxx", kind, os.SEEK_SET, 96, 1, 0))

    async def main():
        async with aio.Sender(name, **kw) as tx:
            with Receiver(name, group="a", **kw) as a:
                await tx.send_many([b"0", b"1"])
                fd = os.open("/dev/shm/cywhip." + name, os.O_RDWR)
                mm = mmap.mmap(fd, 4096)
                # A group creator stopped between its two steps: groups lock held, groups_gen odd.
                lock(fd, fcntl.F_WRLCK)
                mm[640:648] = (int.from_bytes(mm[640:648], "little") | 1).to_bytes(8, "little")
                send = asyncio.ensure_future(tx.send(b"2"))
                await asyncio.sleep(0.1)
                assert a.recv_many(10) == [b"0", b"1"] and not send.done()
                await asyncio.sleep(0.1)
                assert not send.done()          # the creator still holds its lock
                lock(fd, fcntl.F_UNLCK)         # and dies; the next join finishes its work
                started = time.monotonic()
                Receiver(name, group="b", **kw).close()
                await asyncio.wait_for(send, 5)
                print(round(time.monotonic() - started, 3), flush=True)

    asyncio.run(main())
""")


@pytest.mark.timeout(60)
def test_an_async_sender_asleep_while_a_group_creator_is_stopped_goes_on_after_the_next_join(channel, peers):
    proc = peers.start(channel, script=STOPPED_CREATOR_AND_AN_ASYNC_SENDER)
    rc, out, err = peers.finish(proc, timeout=30)
    assert rc == 0, err[-2000:]
    assert float(out) < 1.0


def test_impossible_group_positions_make_depth_corrupt(channel):
    with _tx(channel, receivers=2, capacity=4) as tx, _rx(channel, "a", receivers=2, capacity=4) as a:
        _send(tx, 0, 4)
        assert tx.depth == a.depth == 4
        with _file(channel) as mm:
            # The write cursor more than a ring ahead of the group's position.
            struct.pack_into("<Q", mm, layout()["write_cursor"], 1 << 40)
            with pytest.raises(cywhip.ChannelCorruptError, match=f"write cursor {1 << 40}"):
                tx.depth
            with pytest.raises(cywhip.ChannelCorruptError, match=f"write cursor {1 << 40}"):
                a.depth
            struct.pack_into("<Q", mm, layout()["write_cursor"], 4)
        assert tx.depth == a.depth == 4


def test_a_join_finding_the_groups_locked_too_long_is_busy_at_once(channel, monkeypatch):
    monkeypatch.setattr(_region, "_GROUPS_LOCK_WAIT", 0.05)
    with _tx(channel, receivers=2):
        fd = os.open(f"/dev/shm/cywhip.{channel}", os.O_RDWR)
        try:
            _lock_byte(fd, layout()["groups_lock_byte"])
            started = time.monotonic()
            with pytest.raises(ChannelBusyError, match="another process kept its groups locked for 0.05 s"):
                _rx(channel, "a", receivers=2)
            assert time.monotonic() - started < 1.0
            _lock_byte(fd, layout()["groups_lock_byte"], lock=False)
            _rx(channel, "a", receivers=2).close()
        finally:
            os.close(fd)


def test_a_group_name_that_utf8_cannot_encode_is_refused_before_anything_is_made(channel):
    with pytest.raises(ValueError, match="cannot be encoded in UTF-8"):
        _rx(channel, "\ud800")
    assert not os.path.exists(f"/dev/shm/cywhip.{channel}")


def test_a_member_leaves_by_the_tag_it_joined_with(channel):
    # Its group's epoch rewritten while it is open: the entry now stands for another group
    # (as after a removal and a reuse of the entry), which the closing member leaves alone.
    # That group has no member: not durable, the sender removes it once it holds it back.
    with _tx(channel, receivers=3, capacity=2) as tx, _rx(channel, "k", receivers=3, capacity=2) as keep:
        rx = _rx(channel, "n", receivers=3, capacity=2, durable=False)
        _send(tx, 0, 2)
        assert _numbers(keep.recv_many(10)) == [0, 1]
        assert not tx.try_send(g.payload(2, LENGTH))          # "n" holds it back
        with _file(channel) as mm:
            epoch = _group_word(3, 1, "group_epoch")
            struct.pack_into("<Q", mm, epoch, struct.unpack_from("<Q", mm, epoch)[0] + 1)
        rx.close()
        info = next(c for c in cywhip.channels() if c.name == channel)
        assert [row.name for row in info.groups] == ["k", "n"] and info.receivers[1].pid == 0
        assert info.groups[1].members == ()
        tx.send(g.payload(2, LENGTH), timeout=5)
        info = next(c for c in cywhip.channels() if c.name == channel)
        assert [row.name for row in info.groups] == ["k"]


def test_a_removal_refused_for_a_live_member_keeps_every_claim_of_the_group(channel):
    # More than 64 places hold claims of dead members of group "a", and its last place a live
    # member: remove_group() refuses, and drops none of the claims (the dead members' messages
    # still go to the group).
    members, receivers = 68, 70
    kw = dict(receivers=receivers, capacity=256)
    with _tx(channel, **kw) as tx, _rx(channel, "keep", **kw):
        group = [_rx(channel, "a", **kw) for _ in range(members)]
        _send(tx, 0, 2 * members)
        live = group.pop()
        for rx in group:
            rx.close()
        with _file(channel) as mm:
            lay = layout()
            epoch = struct.unpack_from("<Q", mm, _group_word(receivers, 1, "group_epoch"))[0]
            places = [lay["places"] + (1 + q) * lay["place_bytes"] for q in range(1, members)]
            for q, place in enumerate(places, 1):
                # What a member that died holding message q leaves in its place.
                struct.pack_into("<QQQ", mm, place + lay["place_group"], epoch << 32 | 2, q + 1, q + 1)
            with pytest.raises(ChannelBusyError, match=rf"group 'a' has a live member, process {os.getpid()}"):
                cywhip.remove_group(channel, "a")
            assert all(struct.unpack_from("<Q", mm, place + lay["place_hold_start"])[0] for place in places)
        live.close()
        cywhip.remove_group(channel, "a")
        assert [row.name for row in next(c for c in cywhip.channels() if c.name == channel).groups] == ["keep"]


def test_a_claim_lock_naming_another_groups_dead_member_leaves_that_members_claim_alone(channel):
    with _tx(channel, receivers=3) as tx, _rx(channel, "g", receivers=3) as g:
        h = _rx(channel, "h", receivers=3)                    # place 1
        _send(tx, 0, 3)
        assert _numbers(g.recv_many(10)) == [0, 1, 2]
        assert _numbers([h.recv()]) == [0]                    # claims 0..2 (its group's only member)
        h.close()                                             # its claim of 1 and 2 stays in place 1
        _send(tx, 3, 5)
        assert _numbers(g.recv_many(10)) == [3, 4]
        _send(tx, 5, 6)
        with _file(channel) as mm:
            # Group g's claim lock rewritten to name place 1, which holds group h's claim.
            struct.pack_into("<Q", mm, _group_word(3, 0, "group_lock"), 2)
        assert _numbers(g.recv_many(10, timeout=5)) == [5]
        with _rx(channel, "h", receivers=3) as again:
            assert _drain(again, 5) == [1, 2, 3, 4, 5]


IDLE_MEMBER = textwrap.dedent("""
    import signal, sys
    from cywhip import Receiver
    with Receiver(sys.argv[1], message_length=32, max_queued_messages=16, max_receivers=4, group="w"):
        print("joined", flush=True)
        signal.pause()
""")


def test_a_member_killed_while_idle_is_counted_out_and_the_survivor_claims_whole_runs(channel, peers):
    with _tx(channel) as tx, _rx(channel, "w") as survivor:
        proc = peers.start(channel, script=IDLE_MEMBER)
        assert proc.stdout.readline() == "joined\n", proc.stderr.read()
        with _file(channel) as mm:
            members = _group_word(4, 0, "group_members")
            assert struct.unpack_from("<Q", mm, members)[0] == 2
            # Killed holding no claim: nobody has its messages to finish.
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            # The survivor, finding nothing to take, looks for dead members (D).
            assert survivor.try_recv() is None
            assert struct.unpack_from("<Q", mm, members)[0] == 1
        _send(tx, 0, 8)
        # Alone in its group, it claims the whole run: one call takes all 8 (while another
        # member is counted, a call claims at most a quarter of the ring, 4).
        assert _numbers(survivor.recv_many(8)) == list(range(8))


def test_a_wrong_members_hint_is_recounted_by_a_member_looking_for_dead_members(channel):
    with _tx(channel) as tx, _rx(channel, "w") as a, _rx(channel, "w") as b:
        with _file(channel) as mm:
            members = _group_word(4, 0, "group_members")
            assert struct.unpack_from("<Q", mm, members)[0] == 2
            # A hint no correct member writes, too high and then too low: each member's next
            # look for dead members (when it finds nothing to take) counts the live ones.
            struct.pack_into("<Q", mm, members, 7)
            assert a.try_recv() is None
            assert struct.unpack_from("<Q", mm, members)[0] == 2
            struct.pack_into("<Q", mm, members, 0)
            assert b.try_recv() is None
            assert struct.unpack_from("<Q", mm, members)[0] == 2
        _send(tx, 0, 8)
        # Two members counted: each call claims at most what it takes.
        assert len(a.recv_many(3)) == 3 and len(b.recv_many(8)) == 4


# ---------------------------------------------------------------- asyncio


@pytest.mark.parametrize("loop_factory", ["asyncio", "uvloop"])
def test_asyncio_receivers_in_groups_broadcast_and_share(channel, loop_factory):
    import asyncio
    import threading

    import cywhip.asyncio as aio
    if loop_factory == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        new_loop = uvloop.new_event_loop
    else:
        new_loop = asyncio.new_event_loop
    total = 3000

    async def main():
        kw = dict(message_length=LENGTH, max_queued_messages=16, max_receivers=4)
        async with aio.Receiver(channel, group="all", **kw) as whole, \
                aio.Receiver(channel, group="w", **kw) as w1, aio.Receiver(channel, group="w", **kw) as w2:
            def produce():
                with _tx(channel) as tx:
                    for i in range(total):
                        tx.send(g.payload(i, LENGTH), timeout=10)
            thread = threading.Thread(target=produce)
            thread.start()
            shares = [[], []]

            async def member(rx, out):
                # Each waits on the members' shared word: none may sleep through the others' wakes.
                while sum(map(len, shares)) < total:
                    try:
                        out.append(g.number(await rx.recv(timeout=0.2), LENGTH))
                    except Exception as exc:
                        if type(exc).__name__ != "ReceiveTimeout":
                            raise
            everything = []

            async def broadcast():
                while len(everything) < total:
                    everything.extend(_numbers(await whole.recv_many(100, timeout=10)))
            await asyncio.wait_for(asyncio.gather(member(w1, shares[0]), member(w2, shares[1]), broadcast()), 60)
            await asyncio.get_running_loop().run_in_executor(None, thread.join)
            return everything, shares

    loop = new_loop()
    try:
        everything, shares = loop.run_until_complete(main())
    finally:
        loop.close()
    assert everything == list(range(total))
    assert sorted(shares[0] + shares[1]) == list(range(total))
    assert shares[0] == sorted(shares[0]) and shares[1] == sorted(shares[1])


# ------------------------------------------------------------------ soak


@pytest.mark.soak
@pytest.mark.timeout(600)
def test_sigkill_soak_of_members_mid_callback_and_mid_batch():
    summary = g.soak(kills=120, seed=7, count=60_000)
    assert summary["kills"] == 120

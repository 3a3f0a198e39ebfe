"""Races between ends, channels() and remove_stale(), each made to happen."""
import contextlib
import os
import textwrap
import threading
import time

import pytest

import cywhip
from cywhip import Receiver, Sender, _admin, _region

# One process streams through two channels of four slots, as fast as it can: one
# stays nearly empty (each message is taken right after it is sent), the other
# nearly full (each free slot is filled right after it is freed).  Both cursors of
# each channel move millions of times a second while the test lists them.
STREAM = textwrap.dedent("""
    import os, sys, cywhip
    empty, full = sys.argv[1], sys.argv[2]
    parent = os.getppid()
    kw = dict(message_length=8, max_queued_messages=4)
    with cywhip.Sender(empty, **kw) as s1, cywhip.Receiver(empty, **kw) as r1, \\
            cywhip.Sender(full, **kw) as s2, cywhip.Receiver(full, **kw) as r2:
        s2.send_many([b"x"] * 3)
        print("ready", flush=True)
        while os.getppid() == parent:      # stop if the test is gone
            for _ in range(10000):
                s1.send(b"12345678")
                r1.recv()
                s2.send(b"12345678")
                r2.recv()
""")


@pytest.mark.timeout(90)
def test_channels_never_lists_a_busy_sound_channel_as_impossible(channel, peers):
    empty, full = channel + "-empty", channel + "-full"
    try:
        proc = peers.start(empty, full, script=STREAM)
        assert proc.stdout.readline().strip() == "ready"
        listings = 0
        wrong = []
        # 2,000 listings of the two channels (however many other channels /dev/shm holds, which
        # each listing reads too), within a generous deadline.
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and len(wrong) < 10 and listings < 2000:
            for info in cywhip.channels():
                if info.name in (empty, full):
                    listings += 1
                    if info.problem is not None or not 0 <= info.depth <= 4:
                        wrong.append((info.name, info.problem, info.depth))
        assert proc.poll() is None
        assert listings >= 2000
        assert wrong == [], f"{len(wrong)} wrong listings of {listings}: {wrong}"
    finally:
        cywhip.unlink(empty, missing_ok=True)
        cywhip.unlink(full, missing_ok=True)


def test_an_end_whose_channel_is_removed_before_it_claims_it_opens_the_channel_that_has_the_name(
        channel, monkeypatch):
    # A stale channel.  A receiver opens and maps it; before it locks its byte,
    # remove_stale() finds no live end and removes the file.  The receiver must not
    # go on with the removed file while the next sender creates a new one.
    with Sender(channel, message_length=8, max_queued_messages=4) as s:
        s.send(b"lost")
    removed = []

    def hook(point, path):
        if point == "claim" and not removed:
            removed.append(cywhip.remove_stale(channel))

    monkeypatch.setattr(_region, "_test_hook", hook)
    with Receiver(channel, message_length=8, max_queued_messages=4) as r:
        monkeypatch.setattr(_region, "_test_hook", None)
        assert removed == [[channel]]
        with Sender(channel, message_length=8, max_queued_messages=4) as s:
            s.send(b"found")
            assert r.recv(timeout=2) == b"found"
        info = {c.name: c for c in cywhip.channels()}[channel]
        assert info.receiver_alive and info.receiver_pid == os.getpid()


HOLD = textwrap.dedent("""
    import sys, threading, cywhip
    end = cywhip.Sender(sys.argv[1], message_length=8, max_queued_messages=4)
    print("ready", flush=True)
    threading.Event().wait()
""")


@contextlib.contextmanager
def _removal_held(channel, monkeypatch, removal_wait):
    """remove_stale(channel) in a thread, held inside its removal (both end bytes and the
    lifecycle byte locked, about to unlink) until the block sets the yielded event or ends;
    an end waits removal_wait for a removal.  Checks that remove_stale() removed the channel."""
    holding, go, outcome = threading.Event(), threading.Event(), []

    def hook(point, path):
        if point == "remove":
            holding.set()
            go.wait(10)

    monkeypatch.setattr(_admin, "_test_hook", hook)
    monkeypatch.setattr(_region, "_REMOVAL_WAIT", removal_wait)
    remover = threading.Thread(target=lambda: outcome.append(cywhip.remove_stale(channel)))
    remover.start()
    try:
        assert holding.wait(10)
        yield go
    finally:
        go.set()
        remover.join(10)
    assert outcome == [[channel]]


@pytest.mark.parametrize("last_end", ["closed", "killed"])
def test_an_end_starting_while_remove_stale_removes_the_channel_waits_for_it_and_opens_a_new_one(
        channel, monkeypatch, peers, last_end):
    # remove_stale() holds both end bytes of a stale channel while it unlinks it.
    # An end starting then is not refused: the channel is going, not busy.
    if last_end == "closed":
        Sender(channel, message_length=8, max_queued_messages=4).close()
    else:
        proc = peers.start(channel, script=HOLD)
        assert proc.stdout.readline().strip() == "ready"
        proc.kill()
        proc.wait(10)
    # A loaded machine may keep the timer below from firing for a while: this test is about
    # the waiting, not its bound, so the end may wait a minute.
    with _removal_held(channel, monkeypatch, 60.0) as go:
        threading.Timer(0.1, go.set).start()
        t0 = time.monotonic()
        with Sender(channel, message_length=8, max_queued_messages=4) as s:
            assert time.monotonic() - t0 >= 0.05       # it waited for the removal
            s.send(b"new")
            with Receiver(channel, message_length=8, max_queued_messages=4) as r:
                assert r.recv(timeout=2) == b"new"


def test_an_end_starting_while_a_removal_is_stuck_says_busy_after_the_removal_wait(
        channel, monkeypatch):
    # A remover that never finishes (stopped, say) holds the lifecycle byte and the end
    # bytes: an end waits _REMOVAL_WAIT for it, then reports the channel busy.
    Sender(channel, message_length=8, max_queued_messages=4).close()
    with _removal_held(channel, monkeypatch, 0.3):
        t0 = time.monotonic()
        with pytest.raises(cywhip.ChannelBusyError, match=f"channel {channel!r} already has a sender"):
            Sender(channel, message_length=8, max_queued_messages=4)
        assert time.monotonic() - t0 >= 0.3        # it waited the whole removal wait first


REMOVE_LOOP = textwrap.dedent("""
    import sys, time, cywhip
    name, seconds = sys.argv[1], float(sys.argv[2])
    removed = 0
    print("ready", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            removed += len(cywhip.remove_stale(name))
        except (cywhip.ChannelBusyError, FileNotFoundError):
            pass
    print(removed, flush=True)
""")


@pytest.mark.timeout(60)
def test_ends_opening_again_and_again_beside_a_remove_stale_loop_always_meet(channel, peers):
    # Another process removes the channel whenever it has no live end.  Each time
    # this one opens a receiver then a sender, both must open (never busy) and be
    # on the same file: what one sends, the other receives.
    proc = peers.start(channel, 4, script=REMOVE_LOOP)
    assert proc.stdout.readline().strip() == "ready"
    rounds = 0
    while proc.poll() is None:
        with Receiver(channel, message_length=8, max_queued_messages=4) as r, \
                Sender(channel, message_length=8, max_queued_messages=4) as s:
            s.send(b"%d" % rounds)
            assert r.recv(timeout=2) == b"%d" % rounds
        rounds += 1
    rc, out, err = peers.finish(proc)
    assert rc == 0, err
    assert rounds > 50 and int(out) > 0, (rounds, out)


GROUPS = dict(message_length=8, max_queued_messages=4, max_receivers=2)


def test_a_member_whose_channel_is_removed_before_it_locks_a_place_joins_the_channel_that_has_the_name(
        channel, monkeypatch):
    # A stale channel with receiver groups.  A member has found its group (under the groups
    # lock, which remove_stale() does not take); before it locks a place, remove_stale()
    # finds no live end and removes the file.  The member must not go on with the removed
    # file while the next sender creates a new one.
    with Sender(channel, **GROUPS) as s, Receiver(channel, group="a", **GROUPS):
        s.send(b"lost")
    removed = []

    def hook(point, path):
        if point == "member" and not removed:
            removed.append(cywhip.remove_stale(channel))

    monkeypatch.setattr(_region, "_test_hook", hook)
    with Receiver(channel, group="a", **GROUPS) as r:
        monkeypatch.setattr(_region, "_test_hook", None)
        assert removed == [[channel]]
        with Sender(channel, **GROUPS) as s:
            s.send(b"found")
            assert r.recv(timeout=2) == b"found"
        info = {c.name: c for c in cywhip.channels()}[channel]
        assert [grp.members for grp in info.groups] == [(os.getpid(),)]


def test_a_member_starting_while_remove_stale_removes_the_channel_waits_for_it_and_joins_a_new_one(
        channel, monkeypatch):
    # As for the ends of one-to-one channels: the channel is going, not busy, although
    # every member place is locked (by the remover) and records no live pid.
    Receiver(channel, group="a", **GROUPS).close()
    with _removal_held(channel, monkeypatch, 60.0) as go:
        threading.Timer(0.1, go.set).start()
        t0 = time.monotonic()
        with Receiver(channel, group="a", **GROUPS) as r:
            assert time.monotonic() - t0 >= 0.05       # it waited for the removal
            with Sender(channel, **GROUPS) as s:
                s.send(b"new")
                assert r.recv(timeout=2) == b"new"


def test_a_member_starting_while_a_removal_is_stuck_says_busy_after_the_removal_wait(
        channel, monkeypatch):
    Receiver(channel, group="a", **GROUPS).close()
    with _removal_held(channel, monkeypatch, 0.3):
        t0 = time.monotonic()
        with pytest.raises(cywhip.ChannelBusyError, match=f"channel {channel!r} already has its 2 receivers"):
            Receiver(channel, group="a", **GROUPS)
        assert time.monotonic() - t0 >= 0.3        # it waited the whole removal wait first


@pytest.mark.timeout(30)
def test_a_member_finding_every_place_held_and_a_pid_of_zero_is_busy_at_once(channel, monkeypatch):
    # A pid read from a place is a value anyone may write: a 0 there does not mean that a
    # removal is under way (only the lifecycle byte says that), so the join does not wait.
    monkeypatch.setattr(_region, "_REMOVAL_WAIT", 3600.0)
    with Receiver(channel, group="a", **GROUPS) as a, Receiver(channel, group="a", **GROUPS):
        with open(f"/dev/shm/cywhip.{channel}", "r+b") as f:
            f.seek(4096 + 128)             # the places start at 4096: one sender's, then receiver 0's
            f.write(bytes(8))              # receiver place 0's pid
        with pytest.raises(cywhip.ChannelBusyError, match="already has its 2 receivers"):
            Receiver(channel, group="a", **GROUPS)
        assert a.group == "a"

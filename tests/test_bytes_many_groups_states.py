"""Receiver groups on a byte ring of many senders: states a long-lived or a damaged channel can
reach, written into the channel's file, and the wake-up a member owes the senders when it steps
over a dead claim (docs/protocol.md, "Receiver groups on a byte ring of
many senders", G1-G5)."""

import fcntl
import os
import struct
import subprocess
import sys
import time

import pytest

import cywhip

from cywhip import Receiver, Sender
from cywhip._region import channel_path
from cywhip._testing._model import layout

RING = 256
ENDS = dict(max_queued_bytes=RING, max_senders=2, max_receivers=2)
# The claim word keeps the claim cursor modulo 2^43 bytes (cw_claim_position()).
WRAP = 1 << 43


def _peek(channel, offset):
    with open(channel_path(channel), "rb") as f:
        f.seek(offset)
        return int.from_bytes(f.read(8), "little")


def _poke(channel, offset, value):
    with open(channel_path(channel), "r+b") as f:
        f.seek(offset)
        f.write(value.to_bytes(8, "little"))


def _group_entry(channel, name):
    """The file offset of group name's entry."""
    lay = layout()
    senders = _peek(channel, lay["max_senders"]) & 0xFFFFFFFF
    receivers = _peek(channel, lay["max_receivers"]) & 0xFFFFFFFF
    base = lay["places"] + (senders + receivers) * lay["place_bytes"]
    with open(channel_path(channel), "rb") as f:
        for g in range(receivers):
            f.seek(base + g * lay["sizeof_group"] + lay["group_name"])
            if f.read(len(name)) == name.encode():
                return base + g * lay["sizeof_group"]
    raise AssertionError(f"no group {name!r}")


@pytest.mark.timeout(60)
def test_a_sender_on_a_channel_whose_groups_passed_2_to_the_43_bytes_claims_where_they_are(channel):
    # While a group is in use nothing moves read_cursor (the floor): it stays where the groups
    # started, and the claim cursor goes on.  After 2^43 bytes (8 TiB, hours at a few GB/s)
    # the claim word decoded from the floor (ring_attach(), and M1 from r.read_cache, which
    # ring_attach() set from the floor) is 2^43 bytes short: the claim word holds the same
    # bits as when the cursors were 2^43 bytes lower, which the state below is.
    lay = layout()
    with Receiver(channel, group="g", **ENDS) as rx, Sender(channel, **ENDS) as tx:
        tx.send(b"a" * 8, timeout=5)
        assert rx.recv(timeout=5) == b"a" * 8
        assert _peek(channel, lay["read_cursor"]) == 0          # the floor, as groups leave it
        entry = _group_entry(channel, "g")
        assert _peek(channel, entry + lay["group_next"]) == 24
        # The same channel 2^43 bytes later: every group position moved on, the claim word
        # (position / 8 modulo 2^40) is the same word, the floor is where it was.
        _poke(channel, entry + lay["group_next"], WRAP + 24)
        # A sender that sent before: M1 counts the room from r.read_cache, the bound it last
        # saw (2^43 bytes behind now), and decodes the word from it: it claims 2^43 bytes
        # short, and its message is a hole no claim covers to the group.
        tx.send(b"b" * 8, timeout=5)
        assert rx.recv(timeout=5) == b"b" * 8


@pytest.mark.timeout(60)
def test_published_and_depth_on_a_channel_whose_groups_passed_2_to_the_43_bytes(channel):
    # The same state; a sender opened now learns the bound before it claims (ring_attach() sets
    # r.read_cache a ring below the claim cursor it decoded, which forces a look) and claims
    # where it should, but ring_bytes_many_published() and ring_depth() decode the word from
    # the floor (read_cursor), 2^43 bytes behind; so does channels() (_inspect_groups()), which
    # then finds the cursors impossible.
    lay = layout()
    with Receiver(channel, group="g", **ENDS) as rx:
        with Sender(channel, **ENDS) as tx:
            tx.send(b"a" * 8, timeout=5)
        assert rx.recv(timeout=5) == b"a" * 8
        entry = _group_entry(channel, "g")
        assert _peek(channel, lay["read_cursor"]) == 0
        _poke(channel, entry + lay["group_next"], WRAP + 24)
        with Sender(channel, **ENDS) as late:
            late.send(b"c" * 8, timeout=5)
            assert rx.recv(timeout=5) == b"c" * 8
            late.send(b"d" * 8, timeout=5)
            info = [c for c in cywhip.channels() if c.name == channel][0]
            assert (late.published, late.depth, rx.depth, info.depth) == (WRAP + 72, 24, 24, 24)
        assert rx.recv(timeout=5) == b"d" * 8


HANG = """
import sys
from cywhip import ChannelCorruptError, Receiver
from cywhip._region import channel_path
from cywhip._testing._model import layout
name, ring = sys.argv[1], int(sys.argv[2])
ends = dict(max_queued_bytes=ring, max_senders=2, max_receivers=2)
with Receiver(name, group="g", **ends) as rx:
    print("open", flush=True)
    sys.stdin.readline()
    try:
        got = rx.try_recv()
    except ChannelCorruptError as exc:
        print("corrupt", exc, flush=True)
    else:
        print("got", got, flush=True)
"""


@pytest.mark.timeout(60)
def test_a_claim_word_ending_at_the_implicit_padding_is_named_not_spun_on_for_ever(channel):
    # A damaged claim word: its position 8 bytes past a group position 8 bytes before the
    # ring's end (a claim never ends there: the record after the implicit padding is in its
    # claim), and the seq word at ring index 0 reading as that position's header (the word is
    # past the claim cursor, which G3 says never to trust).  The walk (G4) stops at the
    # implicit padding (the record after it starts at the claim cursor); the hole's resolve
    # (R4, _hole_claim) loads the seq word past the claim cursor, finds it "published
    # meanwhile" and asks for another look, for ever, inside try_recv(), in C.
    lay = layout()
    with Sender(channel, **ENDS) as tx, Receiver(channel, group="g", **ENDS) as rx:
        tx.send(b"a" * 112, timeout=5)      # a record of 128 bytes at 0
        tx.send(b"b" * 104, timeout=5)      # one of 120 at 128: the claim cursor at 248
        assert rx.recv(timeout=5) == b"a" * 112
        assert rx.recv(timeout=5) == b"b" * 104
    slots = _peek(channel, lay["header_size_field"]) & 0xFFFFFFFF
    assert _peek(channel, slots + 8) == 1   # the first record's seq
    entry = _group_entry(channel, "g")
    assert _peek(channel, entry + lay["group_next"]) == 248
    _poke(channel, lay["write_cursor"], (256 >> 3) << 24)
    _poke(channel, slots + 8, 257)
    proc = subprocess.Popen([sys.executable, "-c", HANG, channel, str(RING)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "open"
        proc.stdin.write("\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        pytest.fail("try_recv() spun for 10 s in C on a damaged claim word")
    assert out.startswith("corrupt"), (out, err)


SCRIPT = "import sys; from cywhip._testing.bytes_steps import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("receivers", [1, 2])
def test_stepping_over_a_dead_claim_wakes_the_sender_waiting_for_that_room(channel, peers, in_thread, receivers):
    # The one receiver releases at once what it stepped over (R4: ring_release(), which wakes
    # the senders sleeping for room); a member hands the dead claim to nobody (G4, C6 alone)
    # and must wake them too, or the sender finds the room only when its sleep's slice ends.
    # The senders of many share their waiting word and never clear it: whoever wakes them does
    # (ring_wake_now()), so the word left set says nobody woke the sender.
    ends = dict(ENDS, max_receivers=receivers)
    group = dict(group="g") if receivers > 1 else {}
    lay = layout()
    with Sender(channel, spin_time=0, **ends) as tx, Receiver(channel, **group, **ends) as rx:
        tx.send(b"x" * 104, timeout=5)                      # a record of 120 bytes at 0
        assert rx.recv(timeout=5) == b"x" * 104
        shape = "2:2" if receivers > 1 else "2"
        proc = peers.start("claim", channel, RING, shape, 112, script=SCRIPT)   # 128 at 120, dies
        rc, out, err = peers.finish(proc, timeout=30)
        assert rc != 0, err
        assert tx.published == 248
        thread, outcome = in_thread(lambda: tx.send(b"y" * 112, timeout=5))  # 8 + 128 at 248
        deadline = time.monotonic() + 5
        while _peek(channel, lay["sender_waiting"]) & 0xFFFFFFFF == 0:      # asleep for room
            assert time.monotonic() < deadline, "the sender never slept for room"
            time.sleep(0.001)
        assert rx.try_recv() is None            # steps over the dead claim at once
        assert rx._skipped == (1, 0)
        thread.join(5)
        assert outcome == [None]
        assert _peek(channel, lay["sender_waiting"]) & 0xFFFFFFFF == 0, "nobody woke the sender"
        assert rx.recv(timeout=5) == b"y" * 112


_CLAIM_AND_DIE = r'''
import os, signal, sys
from cywhip import Sender
from cywhip._testing._steps import BytesSenderSteps
s = Sender(sys.argv[1], max_queued_bytes=int(sys.argv[2]), max_senders=2, max_receivers=2)
steps = BytesSenderSteps(s)
steps.take(int(sys.argv[3]))
steps.intent()
steps.commit()
os.kill(os.getpid(), signal.SIGKILL)
'''


@pytest.mark.timeout(60)
def test_a_new_sender_with_only_groups_of_no_member_to_wait_for_is_refused_but_not_while_their_bound_is_unknown(
        channel, peers, in_thread):
    # G5: place 1 holds two dead claims (its first at 0, 56 bytes) and place 0 is held, so a
    # new sender can only wait on place 1 for the groups to pass the first claim; group "g"
    # (durable, at 0) has no member open, so it would wait in vain and is refused.  While a live
    # process holds the groups lock with groups_gen odd (a group being made), no bound is known:
    # a moment's state, not the groups' position; the new sender looks again instead of refusing
    # with the bound it last saw as if it were theirs.
    ends = dict(ENDS, max_queued_bytes=1024)
    lay = layout()
    with Sender(channel, **ends):                                          # place 0
        Receiver(channel, group="g", durable=True, **ends).close()         # g stays, at 0
        for n in (40, 100):
            proc = peers.start(channel, 1024, n, script=_CLAIM_AND_DIE)
            rc, out, err = peers.finish(proc, timeout=20)
            assert rc == -9, err
        gen = _peek(channel, lay["groups_gen"])
        with open(channel_path(channel), "r+b") as f:
            fcntl.fcntl(f.fileno(), fcntl.F_OFD_SETLK,
                        struct.pack("hhxxxxqqixxxx", fcntl.F_WRLCK, os.SEEK_SET, 96, 1, 0))
            _poke(channel, lay["groups_gen"], gen | 1)
            thread, outcome = in_thread(lambda: Sender(channel, **ends))
            time.sleep(0.5)
            assert outcome == [], f"refused while no bound was known: {outcome}"
            _poke(channel, lay["groups_gen"], (gen | 1) + 1)
            fcntl.fcntl(f.fileno(), fcntl.F_OFD_SETLK,
                        struct.pack("hhxxxxqqixxxx", fcntl.F_UNLCK, os.SEEK_SET, 96, 1, 0))
        thread.join(10)
        assert len(outcome) == 1 and isinstance(outcome[0], cywhip.ChannelBusyError), outcome
        text = str(outcome[0])
        assert f"channel {channel!r}: sender place 1 holds the claims of two senders" in text
        assert "before every receiver group has taken the messages up to byte 56 " in text
        assert "(the slowest group has taken up to byte 0)" in text
        assert "cywhip.remove_group()" in text


@pytest.mark.timeout(60)
def test_a_held_claim_zeroed_on_a_channel_past_2_to_the_43_bytes_lets_no_sender_write_over_a_slow_group(channel):
    # Group a has taken nothing (at 2^43), group b all (at 2^43 + 72); then a member's held
    # claim reads 0, 2^43 bytes behind every position (damaged).  The claim word, decoded from
    # that least, reads the claim cursor 2^43 bytes short, so the largest position (b's, sound)
    # would pass for one past the claim cursor and become the bound: the senders wrote 10
    # records of 24 bytes, 240 bytes past a's first unread byte in a ring of 256.  Positions
    # half the claim word's range apart make no bound: nothing is written over a's messages.
    lay = layout()
    msgs = [bytes([65 + k]) * 8 for k in range(3)]
    with Sender(channel, **ENDS) as tx, Receiver(channel, group="a", **ENDS), \
            Receiver(channel, group="b", **ENDS) as b:
        for m in msgs:
            tx.send(m, timeout=5)
        assert b.recv_many(3, timeout=5) == msgs
        for name, at in (("a", 0), ("b", 72)):
            entry = _group_entry(channel, name)
            assert _peek(channel, entry + lay["group_next"]) == at
            _poke(channel, entry + lay["group_next"], WRAP + at)
        hold = lay["places"] + 2 * lay["place_bytes"] + lay["place_hold_start"]
        assert _peek(channel, hold) == 0
        _poke(channel, hold, 1)                 # a claim held from position 0
        sent = 0
        with pytest.raises((cywhip.SendTimeout, cywhip.ChannelCorruptError)):
            for k in range(20):
                tx.send(bytes([97 + k]) * 8, timeout=0)
                sent += 1
        # a's unread 72 bytes start the ring's last lap: at most 256 - 72 bytes may follow them.
        assert sent * 24 <= RING - 72, f"{sent} records of 24 bytes written past a's first unread byte"

"""Receiver groups on a byte channel (max_queued_bytes with max_receivers > 1, one sender):
every group gets every message, the members of a group share its messages, every receive
call, a member killed with a claim in hand, the sender held by the slowest group, a dead
non-durable group removed, channels(), an impossible record in a claim, and the SIGKILL soak."""
import random
import signal
import struct
import time

import pytest

import cywhip
import cywhip.asyncio as cwa
from cywhip import ChannelCorruptError, Receiver, Sender
from cywhip._region import slots_offset_for
from cywhip._testing import fanin
from cywhip._testing import groups as g
from cywhip.errors import SendTimeout

RING = 256          # bytes: a message of up to 120 bytes, padding at the ring's end now and then
LENGTH = 120
HEADER = struct.Struct("<II")


def _kw(receivers=4, ring=RING, length=LENGTH, **kw):
    return dict(max_queued_bytes=ring, message_length=length, max_receivers=receivers, **kw)


def _msgs(count, seed=1, top=LENGTH):
    rnd = random.Random(seed)
    return [bytes([i % 251]) * rnd.randint(0, top) for i in range(count)]


def _pump(tx, msgs, members):
    """Send msgs, letting each (receiver, list) in members take with try_recv whenever the ring
    is full; then drain every member.  Each list gets what its receiver took, in order."""
    rnd = random.Random(7)
    for m in msgs:
        while not tx.try_send(m):
            rx, out = members[rnd.randrange(len(members))]
            got = rx.try_recv()
            if got is not None:
                out.append(got)
    for rx, out in members:
        while True:
            got = rx.try_recv()
            if got is None:
                break
            out.append(got)


def test_every_group_gets_every_message_of_mixed_sizes_in_order(channel):
    msgs = _msgs(3000)
    with Sender(channel, **_kw()) as tx, Receiver(channel, group="a", **_kw()) as a, \
            Receiver(channel, group="b", **_kw()) as b:
        got_a, got_b = [], []
        _pump(tx, msgs, [(a, got_a), (b, got_b)])
        assert got_a == msgs and got_b == msgs
        assert tx.depth == 0 and a.depth == 0


def test_the_members_of_a_group_share_its_messages_each_once_in_order(channel):
    # Message i carries i in its first 4 bytes, so each member's share shows its order.
    rnd = random.Random(3)
    msgs = [struct.pack("<I", i) + bytes(rnd.randint(0, LENGTH - 4)) for i in range(3000)]
    with Sender(channel, **_kw()) as tx, Receiver(channel, group="w", **_kw()) as w1, \
            Receiver(channel, group="w", **_kw()) as w2, Receiver(channel, group="all", **_kw()) as al:
        s1, s2, everything = [], [], []
        _pump(tx, msgs, [(w1, s1), (w2, s2), (al, everything)])
        assert everything == msgs
        assert sorted(s1 + s2) == sorted(msgs) and len(s1) + len(s2) == len(msgs)
        for share in (s1, s2):
            numbers = [struct.unpack_from("<I", m)[0] for m in share]
            assert numbers == sorted(numbers)
            assert len(share) > 100               # shared, not one member taking all


def test_a_member_claims_what_its_call_takes_while_others_share_its_group(channel):
    with Sender(channel, **_kw(ring=4096, length=200)) as tx, \
            Receiver(channel, group="w", **_kw(ring=4096, length=200)) as w1, \
            Receiver(channel, group="w", **_kw(ring=4096, length=200)) as w2:
        for i in range(10):
            tx.send(bytes([i]) * (10 + i))
        # One message per recv: the other member gets the next, not a claim held by the first.
        assert w1.recv(timeout=5) == bytes([0]) * 10
        assert w2.recv(timeout=5) == bytes([1]) * 11
        assert w1.recv_many(3, timeout=5) == [bytes([i]) * (10 + i) for i in (2, 3, 4)]
        assert w2.recv_many(100, timeout=5) == [bytes([i]) * (10 + i) for i in range(5, 10)]
        # While others share the group, a claim takes at most a quarter of the ring (and one
        # message at least): 1024 bytes here, 8 records of 128 bytes.
        for i in range(16):
            tx.send(bytes([i]) * 120)
        assert len(w1.recv_many(100, timeout=5)) == 8
        assert len(w2.recv_many(100, timeout=5)) == 8


_take = fanin.take_with


@pytest.mark.parametrize("mode", ["recv", "try_recv", "recv_many", "iterate", "borrow"])
def test_every_receive_call_of_a_member(channel, mode):
    msgs = _msgs(40, seed=5)
    with Sender(channel, **_kw(ring=8192)) as tx, Receiver(channel, group="m", **_kw(ring=8192)) as rx, \
            Receiver(channel, group="other", **_kw(ring=8192)) as other:
        tx.send_many(msgs, timeout=5)
        assert _take(mode, rx, 40) == msgs
        assert other.recv_many(100, timeout=5) == msgs
        # Taken by both groups: the sender has the whole ring again.
        assert tx.depth == 0


@pytest.mark.parametrize("mode", ["on_message", "on_batch"])
def test_the_callbacks_of_a_member(channel, mode):
    msgs = _msgs(300, seed=6)
    got = []
    cb = {"on_message": got.append} if mode == "on_message" else {"on_batch": got.extend}
    with Sender(channel, **_kw()) as tx:
        with Receiver(channel, group="cb", **_kw(), **cb):
            tx.send_many(msgs, timeout=10)
            deadline = time.monotonic() + 10
            while len(got) < len(msgs) and time.monotonic() < deadline:
                time.sleep(0.005)
        assert got == msgs


def test_an_asyncio_member_and_an_asyncio_sender(channel, run):
    msgs = _msgs(500, seed=8)

    async def main():
        async with cwa.Sender(channel, **_kw()) as tx, cwa.Receiver(channel, group="x", **_kw()) as a, \
                cwa.Receiver(channel, group="y", **_kw()) as b:
            async def take(rx):
                return [await rx.recv(timeout=5) for _ in msgs]
            import asyncio
            ta, tb = asyncio.ensure_future(take(a)), asyncio.ensure_future(take(b))
            for m in msgs:
                await tx.send(m, timeout=5)
            return await ta, await tb

    got_a, got_b = run(main())
    assert got_a == msgs and got_b == msgs


def test_a_group_that_joins_late_starts_at_the_oldest_message_a_group_holds(channel):
    msgs = [bytes([i]) * (i * 7) for i in range(1, 6)]
    with Sender(channel, **_kw()) as tx, Receiver(channel, group="a", **_kw()) as a:
        tx.send_many(msgs, timeout=5)
        assert [a.recv(timeout=5) for _ in range(2)] == msgs[:2]
        with Receiver(channel, group="b", **_kw()) as b:
            assert b.recv_many(10, timeout=5) == msgs[2:]
        assert a.recv_many(10, timeout=5) == msgs[2:]


def test_a_member_that_closes_with_part_of_its_claim_untaken_leaves_it_to_the_next(channel):
    # Alone in its group, a member claims the whole run; recv takes three messages of it. The
    # next member of the group goes on with the rest of that claim, which starts with a
    # padding record at the ring's end, then with what came after.
    msgs = [bytes([i]) * (16 + 8 * i) for i in range(4)]       # records of 24, 32, 40, 48 bytes
    with Sender(channel, **_kw()) as tx:
        with Receiver(channel, group="d", **_kw()) as first:
            tx.send(b"p" * 120)                                # 128 bytes: the last record wraps
            assert first.recv(timeout=5) == b"p" * 120
            tx.send_many(msgs, timeout=5)
            assert [first.recv(timeout=5) for _ in range(3)] == msgs[:3]
        # What is left of the claim starts at byte 224: the padding record before msgs[3].
        info = [c for c in cywhip.channels() if c.name == channel][0]
        assert [(grp.name, grp.position, grp.depth) for grp in info.groups] == [("d", 224, 80)]
        assert tx.depth == 80                                  # kept for the durable group
        with Receiver(channel, group="d", **_kw()) as second:
            assert second.recv_many(10, timeout=5) == msgs[3:]
            tx.send(b"after")
            assert second.recv(timeout=5) == b"after"


def test_the_slowest_group_holds_the_sender_and_a_timeout_names_it_in_bytes(channel):
    with Sender(channel, **_kw()) as tx, Receiver(channel, group="fast", **_kw()) as fast, \
            Receiver(channel, group="slow", **_kw()) as slow:
        sent = 0
        while tx.try_send(b"s" * 40):
            sent += 1
            assert fast.recv(timeout=5) == b"s" * 40
        assert sent == RING // 48                # records of 48 bytes: the slow group took none
        with pytest.raises(SendTimeout, match=r"no room for a 40-byte message in its 256-byte ring .*"
                                              r"group 'slow' holds it full \(240 bytes wait for it; its members, pid"):
            tx.send(b"s" * 40, timeout=0.05)
        info = [c for c in cywhip.channels() if c.name == channel][0]
        assert info.max_queued_bytes == RING and info.max_queued_messages is None
        assert info.depth == 240
        rows = {grp.name: grp for grp in info.groups}
        assert rows["slow"].depth == 240 and rows["slow"].holding_back
        assert rows["fast"].depth == 0 and not rows["fast"].holding_back
        assert rows["fast"].position - rows["slow"].position == 240
        assert slow.recv(timeout=5) == b"s" * 40
        assert tx.try_send(b"s" * 40)


def test_the_command_line_lists_a_byte_channels_groups_in_bytes(channel, capsys):
    with Sender(channel, **_kw()) as tx, Receiver(channel, group="alpha", **_kw()), \
            Receiver(channel, group="beta", **_kw()) as b:
        tx.send_many([b"a" * 10, b"b" * 30], timeout=5)       # records of 24 and 40 bytes
        assert b.recv_many(10, timeout=5) == [b"a" * 10, b"b" * 30]
        out = g.command_line_listing(capsys, channel)
        assert f"{channel}: 64/256 bytes queued" in out
        # 192 bytes free: a message of message_length (a record of 128 bytes) still fits.
        assert "group 'alpha': position 0, depth 64 bytes, durable, members" in out
        assert "group 'beta': position 64, depth 0 bytes" in out
        assert "holding the senders back" not in out
        tx.send(b"c" * 60)                                   # 72 more: 120 bytes free
        out = g.command_line_listing(capsys, channel)
        assert "group 'alpha': position 0, depth 136 bytes, durable, members" in out
        assert "holding the senders back" in out


def test_a_member_killed_with_a_claim_in_hand_gives_it_back_to_the_other_member(channel, tmp_path):
    stop = str(tmp_path / "stop")
    slow_log, other_log = str(tmp_path / "slow.log"), str(tmp_path / "other.log")
    # Room for messages 0 to 5 (records of at most 128 bytes) while message 0 is held.
    kw = dict(ring_bytes=1024)
    tx = Sender(channel, **g.channel_kw(LENGTH, 0, 4, 1024))
    procs = []
    try:
        # The slow member sits in its callback with message 0 claimed.
        procs.append(g.spawn_member(channel, LENGTH, 0, 4, "w", "on_message", slow_log, stop, pause=30.0, **kw))
        tx.send(g.payload(0, LENGTH, True), timeout=5)
        _wait_for(lambda: g.read_log(slow_log) == [0])
        procs.append(g.spawn_member(channel, LENGTH, 0, 4, "w", "recv", other_log, stop, **kw))
        for i in range(1, 6):
            tx.send(g.payload(i, LENGTH, True), timeout=5)
        _wait_for(lambda: len(g.read_log(other_log)) >= 5)
        assert g.read_log(other_log) == [1, 2, 3, 4, 5]
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        # Message 0 was in flight at the dead member: the live member finishes its claim.
        _wait_for(lambda: 0 in g.read_log(other_log))
        for i in range(6, 200):
            tx.send(g.payload(i, LENGTH, True), timeout=5)
        _wait_for(lambda: len(g.read_log(other_log)) >= 200)
        missing, dup = g.account([slow_log, other_log], 200)
        assert missing == [] and dup == [0]
        assert tx.depth == 0
    finally:
        g.stop_members(procs, stop)
        tx.close()


def test_a_non_durable_group_whose_member_died_is_removed_by_the_sender(channel, tmp_path):
    stop = str(tmp_path / "stop")
    tx = Sender(channel, **g.channel_kw(LENGTH, 0, 4, RING))
    proc = None
    try:
        proc = g.spawn_member(channel, LENGTH, 0, 4, "gone", "on_message", str(tmp_path / "m.log"), stop,
                              durable=False, pause=30.0, ring_bytes=RING)
        with Receiver(channel, group="stays", **_kw()) as stays:
            tx.send(g.payload(0, LENGTH, True), timeout=5)
            _wait_for(lambda: g.read_log(str(tmp_path / "m.log")) == [0])
            assert g.number(stays.recv(timeout=5), LENGTH, True) == 0
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            # The ring fills for the dead group; the sender removes it and goes on.
            for i in range(1, 40):
                tx.send(g.payload(i, LENGTH, True), timeout=5)
                assert g.number(stays.recv(timeout=5), LENGTH, True) == i
            assert [grp.name for grp in [c for c in cywhip.channels() if c.name == channel][0].groups] == ["stays"]
    finally:
        open(stop, "w").close()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        tx.close()


def test_an_impossible_record_in_a_groups_run_is_named(channel, mapped):
    with Sender(channel, **_kw()) as tx, Receiver(channel, group="a", **_kw()) as a:
        tx.send(b"x" * 10)
        tx.send(b"y" * 20)
        with mapped(channel) as mm:
            at = slots_offset_for(1, 4)
            length, kind = HEADER.unpack_from(mm, at)
            assert (length, kind) == (10, 0)
            HEADER.pack_into(mm, at, 10, 7)
        with pytest.raises(ChannelCorruptError, match=r"the record at byte 0 has kind word 0x7 and length 10"):
            a.recv(timeout=5)
        with mapped(channel) as mm:
            HEADER.pack_into(mm, at, 10, 0)
        # Set right again, the record is delivered: the failed claim took nothing.
        assert a.recv_many(5, timeout=5) == [b"x" * 10, b"y" * 20]


def _wait_for(predicate, timeout=20):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.01)


@pytest.mark.soak
@pytest.mark.timeout(600)
def test_sigkill_soak_of_members_of_a_byte_channel():
    summary = g.soak(kills=60, seed=11, count=20_000, length=LENGTH, ring_bytes=512)
    assert summary["kills"] == 60


# ------------------------------------------------------------ further cases

@pytest.mark.parametrize("mode", ["recv", "try_recv", "recv_many", "iterate", "borrow"])
def test_every_receive_call_of_a_member_across_the_rings_end(channel, mode):
    # test_every_receive_call_of_a_member sends 3,064 bytes of records into an 8,192-byte ring:
    # it never wraps, so no padding record is ever read there.  Here the ring is 256 bytes and
    # every call is made many times over the ring's end, with messages of 0 and of
    # message_length bytes among them.
    sizes = [0, LENGTH, LENGTH // 2, 1, 7, 8, 9, LENGTH - 1]
    msgs = [bytes([i % 251]) * sizes[i % len(sizes)] for i in range(400)]
    with Sender(channel, **_kw()) as tx, Receiver(channel, group="m", **_kw()) as rx, \
            Receiver(channel, group="other", **_kw()) as other:
        got, rest = [], []
        for m in msgs:
            while not tx.try_send(m):
                if rx.depth:
                    got += _take(mode, rx, 1)
                if other.depth:
                    rest += other.recv_many(100, timeout=5)
        while rx.depth:
            got += _take(mode, rx, 1)
        while other.depth:
            rest += other.recv_many(1000, timeout=5)
        assert got == msgs and rest == msgs
        assert tx.published > 4 * RING          # the ring wrapped many times


def test_a_member_opening_in_a_dead_members_place_goes_on_with_a_claim_that_begins_with_padding(
        channel, tmp_path):
    # The dead member's claim starts with the padding record at the ring's end (messages of
    # 100 bytes take 112: the third one pads 32 bytes at 224 and starts at 0).
    member = (
        "import sys, time\n"
        "from cywhip import Receiver\n"
        f"rx = Receiver({channel!r}, group='w', max_queued_bytes=256, message_length=120, max_receivers=4)\n"
        "print('open', flush=True)\n"
        "sys.stdin.readline()\n"
        "rx.recv(timeout=5); rx.recv(timeout=5)\n"
        "print('took', flush=True)\n"
        "sys.stdin.readline()\n"
        "lease = rx.borrow(1, timeout=5)\n"
        "lent = lease.__enter__()\n"
        "print('holding', bytes(lent[0][:1]).decode(), flush=True)\n"
        "time.sleep(60)\n")
    import subprocess
    import sys
    kw = dict(max_queued_bytes=256, message_length=120, max_receivers=4)
    msgs = [bytes([65 + i]) * 100 for i in range(8)]
    proc = subprocess.Popen([sys.executable, "-c", member], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        with Sender(channel, **kw) as tx:
            assert proc.stdout.readline().strip() == "open"
            tx.send(msgs[0], timeout=5)
            tx.send(msgs[1], timeout=5)
            proc.stdin.write("go\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "took"
            tx.send(msgs[2], timeout=5)
            proc.stdin.write("go\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "holding C"
            info = [c for c in cywhip.channels() if c.name == channel][0]
            assert [(grp.position, grp.depth) for grp in info.groups] == [(224, 144)]
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            with Receiver(channel, group="w", **kw) as rx:
                got = []
                for m in msgs[3:]:
                    tx.send(m, timeout=5)
                    got += rx.recv_many(10, timeout=5)
                while rx.depth:
                    got += rx.recv_many(10, timeout=5)
                assert got == msgs[2:]
                assert tx.depth == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_groups_sender_reserves_truncates_and_abandons_across_the_rings_end(channel):
    with Sender(channel, **_kw()) as tx, Receiver(channel, group="a", **_kw()) as a, \
            Receiver(channel, group="b", **_kw()) as b:
        for i in range(100):
            res = tx.reserve(LENGTH, timeout=5)
            with res as buf:
                buf[:3] = b"abc"
                res.truncate(3 if i % 2 else 0)
            with pytest.raises(KeyError):
                with tx.reserve(LENGTH // 2, timeout=5):
                    raise KeyError(i)
            want = b"abc" if i % 2 else b""
            assert a.recv(timeout=5) == want and b.recv(timeout=5) == want
            assert a.depth == 0 and b.depth == 0
        assert tx.published > 4 * RING


def test_a_group_with_a_few_bytes_waiting_is_not_said_to_hold_the_senders_back(channel):
    import subprocess
    import sys
    kw = dict(max_queued_bytes=4096, max_receivers=2)
    with Sender(channel, **kw) as tx, Receiver(channel, group="a", **kw) as a, \
            Receiver(channel, group="b", **kw):
        tx.send(b"x" * 8)
        assert a.recv(timeout=5) == b"x" * 8
        # 16 of 4,096 bytes wait for group b: the sender has room for any message.
        info = [c for c in cywhip.channels() if c.name == channel][0]
        rows = {grp.name: grp for grp in info.groups}
        assert rows["b"].depth == 16
        out = subprocess.run([sys.executable, "-m", "cywhip", "channels"], capture_output=True, text=True,
                             timeout=60).stdout
        assert tx.try_send(b"y" * tx.message_length)        # the largest message goes through
        block = out[out.index(channel):]
        line = [ln for ln in block.splitlines() if "group 'b'" in ln][0]
        assert "holding the senders back" not in line, line
        assert not rows["b"].holding_back


def test_an_end_with_another_max_senders_is_refused_naming_max_senders(channel):
    from cywhip.errors import ChannelMismatchError
    with Sender(channel, max_queued_bytes=256, max_receivers=4):
        with pytest.raises(ChannelMismatchError, match=r"max_senders=1.*max_senders=2"):
            Receiver(channel, max_queued_bytes=256, max_senders=2)


def test_the_protocols_section_on_byte_groups_exists():
    import os
    import re
    path = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "protocol.md")
    with open(path) as f:
        text = f.read()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.*)$", text, re.M)}
    assert "receiver-groups-on-a-byte-ring" in re.findall(r"\]\(#([a-z0-9-]+)\)", text.replace("\n", " "))
    assert "receiver-groups-on-a-byte-ring" in anchors


def _group_next_offset(max_receivers, g=0):
    # docs/protocol.md, "Receiver groups": group entries of 128 bytes after the header and the
    # places (one sender); group_next at offset 0.
    return 4096 + (1 + max_receivers) * 128 + g * 128


def _unaligned_group(channel, mapped):
    """A byte channel with groups whose group 'g' has taken 20 messages, 2 waiting; then its
    claim cursor made unaligned (4 bytes past a record's start)."""
    tx = Sender(channel, **_kw(receivers=3))
    rx = Receiver(channel, group="g", **_kw(receivers=3))
    for i in range(20):
        tx.send(bytes([i]) * 40, timeout=5)
        rx.recv(timeout=5)
    tx.send(b"a" * 40, timeout=5)
    tx.send(b"b" * 40, timeout=5)
    with mapped(channel) as mm:
        (nxt,) = struct.unpack_from("<Q", mm, _group_next_offset(3))
        struct.pack_into("<Q", mm, _group_next_offset(3), nxt + 4)
    return tx, rx, nxt + 4


def test_a_senders_corrupt_text_on_a_byte_groups_channel_names_the_ring_and_the_group(channel, mapped):
    tx, rx, bad = _unaligned_group(channel, mapped)
    try:
        with pytest.raises(ChannelCorruptError) as err:
            for _ in range(4):
                tx.send(b"c" * 100, timeout=0.2)
        text = str(err.value)
        assert str(bad) in text
        assert "max_queued_messages" not in text and "256-byte ring" in text, text
        assert "group 'g'" in text, text
        # The member names its own group's position, the write cursor, and what to do.
        with pytest.raises(ChannelCorruptError, match=rf"the position of this member's group 'g' is {bad}, "
                                                      rf"which must be at most the write cursor \d+, within "
                                                      rf"the 256-byte ring behind it and a record's start .*"
                                                      rf"remove the channel"):
            rx.recv(timeout=1)
    finally:
        rx.close()
        tx.close()


def test_an_unaligned_group_position_is_reported_impossible(channel, mapped):
    tx, rx, bad = _unaligned_group(channel, mapped)
    try:
        info = [c for c in cywhip.channels() if c.name == channel][0]
        assert info.depth is None, info
        with pytest.raises(ChannelCorruptError):
            tx.depth
    finally:
        rx.close()
        tx.close()


def test_a_sender_opening_on_an_unaligned_write_cursor_is_refused_naming_it(channel, mapped):
    # A byte channel's write cursor is a record's start.  A sender of a channel with groups
    # once opened on one 4 bytes past it and wrote its records from there (the racing fuzzer's
    # flip of the cursor), and then said it had no room.
    from cywhip._testing._model import layout
    tx = Sender(channel, **_kw(receivers=3))
    rx = Receiver(channel, group="g", **_kw(receivers=3))
    try:
        tx.send(b"x" * 24, timeout=5)
        tx.close()
        off = layout()["write_cursor"]
        with mapped(channel) as mm:
            (w,) = struct.unpack_from("<Q", mm, off)
            struct.pack_into("<Q", mm, off, w + 4)
        with pytest.raises(ChannelCorruptError,
                           match=rf"write cursor {w + 4} \(not a multiple of 8: no record starts there\).*"
                                 rf"remove the channel"):
            Sender(channel, **_kw(receivers=3))
        with mapped(channel) as mm:
            struct.pack_into("<Q", mm, off, w)
        # Put back, the channel works on.
        with Sender(channel, **_kw(receivers=3)) as tx2:
            tx2.send(b"y" * 10, timeout=5)
        assert rx.recv(timeout=5) == b"x" * 24
        assert rx.recv(timeout=5) == b"y" * 10
    finally:
        rx.close()
        tx.close()

"""Byte channels of many senders (max_queued_bytes with max_senders > 1): streams of messages
of mixed sizes from sender processes, a sender killed between any two steps of a send (M1-M6)
or of a takeover of the claim bit (T0-T2), and a second process rewriting the channel while
the ends run."""
import asyncio
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time

import pytest

import cywhip
import cywhip.asyncio
from cywhip import ChannelBusyError, ChannelCorruptError, Receiver, ReceiveTimeout, SendTimeout, Sender
from cywhip._region import channel_path
from cywhip._testing._model import layout
from cywhip._testing._steps import BytesSenderSteps
from cywhip._testing.bytes_steps import STEPS, lengths
from cywhip._testing import fanin
from cywhip._testing.fanin import payload

RING = 256
SCRIPT = "import sys; from cywhip._testing.bytes_steps import main; sys.exit(main(sys.argv[1:]))"


class Tally(fanin.Tally):
    """fanin's check of a merged stream, for messages of any length; the lengths seen."""

    def __init__(self):
        super().__init__(None)
        self.sizes = set()

    def add(self, msg):
        self.sizes.add(len(msg))
        super().add(msg)


def _ends(channel, ring=RING, senders=2):
    return dict(max_queued_bytes=ring, max_senders=senders)


def _drain(receiver, tally, until, timeout=20):
    deadline = time.monotonic() + timeout
    while not until() and time.monotonic() < deadline:
        try:
            for m in receiver.recv_many(100, timeout=0.05):
                tally.add(m)
        except ReceiveTimeout:
            pass


# ------------------------------------------------------------------- streams


def test_a_byte_channel_takes_many_senders(channel):
    with Sender(channel, **_ends(channel, 4096, 3)) as a, Receiver(channel, **_ends(channel, 4096, 3)) as r:
        # A record's header is 16 bytes with many senders: a message may take half the ring less it.
        assert a.message_length == r.message_length == 4096 // 2 - 16
        assert a.max_senders == 3 and "max_senders=3" in repr(a)
        a.send(b"")
        a.send(b"x" * a.message_length)
        assert r.recv(timeout=5) == b""
        assert r.recv(timeout=5) == b"x" * a.message_length
        assert r.try_recv() is None and r.depth == 0


def test_threads_of_every_send_call_with_serializers_and_reserves_keep_each_senders_order(channel):
    n = 4000

    def serialize(msg, buffer):
        # Length unknown beforehand: the claim is for message_length, the rest given back.
        buffer.write(msg[:6])
        if msg[:1] == b"!":
            raise ValueError("cannot build")
        buffer.write(msg[6:])

    senders = [Sender(channel, **_ends(channel, 1024, 4)),
               Sender(channel, serialize, **_ends(channel, 1024, 4)),
               Sender(channel, **_ends(channel, 1024, 4)),
               Sender(channel, **_ends(channel, 1024, 4))]
    top = senders[0].message_length
    errors = []

    def run(tag):
        s = senders[tag]
        sizes = lengths(tag, n, top)
        try:
            if tag == 0:
                s.send_many((payload(tag, i, k) for i, k in enumerate(sizes)), timeout=30)
            elif tag == 1:
                for i, k in enumerate(sizes):
                    if i % 7 == 3:
                        with pytest.raises(ValueError):
                            s.send(b"!" + payload(tag, i, k)[1:], timeout=30)
                    s.send(payload(tag, i, k), timeout=30)
            elif tag == 2:
                for i, k in enumerate(sizes):
                    m = payload(tag, i, k)
                    if i % 5 == 0:
                        # A reserve block that raises: a void, never delivered.
                        with pytest.raises(KeyError):
                            with s.reserve(k, timeout=30) as buf:
                                buf[:6] = m[:6]
                                raise KeyError("given up")
                    res = s.reserve(top if i % 2 else k, timeout=30)
                    with res as buf:
                        buf[:k] = m
                        res.truncate(k)
            else:
                for i, k in enumerate(sizes):
                    while not s.try_send(payload(tag, i, k)):
                        time.sleep(0)
        except BaseException as exc:      # reported by the test's thread below
            errors.append(repr(exc))

    with Receiver(channel, **_ends(channel, 1024, 4)) as r:
        threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        tally = Tally()
        _drain(r, tally, lambda: tally.count >= 4 * n or errors, timeout=90)
        for t in threads:
            t.join(30)
        assert errors == []
        assert tally.errors == []
        assert tally.next == {0: n, 1: n, 2: n, 3: n}
        assert r.try_recv() is None and r.depth == 0
        # Voids counted: the serializer's failures and the reserve blocks given up, not the
        # room the shorter messages left of their claims.
        assert r._skipped == (0, len(range(3, n, 7)) + len(range(0, n, 5)))
        # The ring wrapped many times.
        assert senders[0].published > 100 * 1024
    for s in senders:
        s.close()


def test_every_receive_call_takes_a_byte_channel_of_many_senders(channel, run):
    kw = _ends(channel, 512, 2)
    with Sender(channel, **kw) as a, Sender(channel, **kw) as b:
        with Receiver(channel, **kw) as r:
            a.send(b"one")
            b.send(b"two" * 10)
            assert r.recv(timeout=5) == b"one"
            assert r.try_recv() == b"two" * 10
            a.send_many([b"", b"x" * 200])
            assert r.recv_many(5, timeout=5) == [b"", b"x" * 200]
            b.send(b"it")
            assert next(iter(r)) == b"it"
            # borrow(): lent in place up to the ring's end, taken (and zeroed) on exit.
            msgs = [bytes([65 + i]) * (i * 9) for i in range(12)]
            lent = []
            for m in msgs:
                (a if len(m) % 2 else b).send(m, timeout=5)
                with r.borrow(timeout=5) as batch:
                    lent += [bytes(x) for x in batch]
            assert lent == msgs
            assert r.try_recv() is None and r.depth == 0
        got, batches = [], []
        done = threading.Event()

        def on_message(msg):
            got.append(msg)
            if len(got) == 300:
                done.set()

        with Receiver(channel, **kw, on_message=on_message):
            for i in range(300):
                (a, b)[i % 2].send(payload(i % 2, i // 2, 12 + i % 150), timeout=10)
            assert done.wait(20)
        tally = Tally()
        for m in got:
            tally.add(m)
        done.clear()

        def on_batch(batch):
            batches.append(list(batch))
            if sum(map(len, batches)) == 300:
                done.set()

        with Receiver(channel, **kw, on_batch=on_batch):
            for i in range(300, 600):
                (a, b)[i % 2].send(payload(i % 2, i // 2, 12 + i % 150), timeout=10)
            assert done.wait(20)
        for m in (m for batch in batches for m in batch):
            tally.add(m)
        assert tally.errors == [] and tally.next == {0: 300, 1: 300}

    async def main():
        async with cywhip.asyncio.Sender(channel, **kw) as tx, cywhip.asyncio.Sender(channel, **kw) as ty, \
                cywhip.asyncio.Receiver(channel, **kw) as rx:
            async def produce(s, tag):
                for i in range(2000):
                    await s.send(payload(tag, i, 12 + (i * 13) % 200))

            tasks = [asyncio.ensure_future(produce(s, t)) for t, s in ((0, tx), (1, ty))]
            out = []
            while len(out) < 4000:
                out += await rx.recv_many(100)
            await asyncio.gather(*tasks)
            return out

    tally = Tally()
    for m in run(main()):
        tally.add(m)
    assert tally.errors == [] and tally.next == {0: 2000, 1: 2000}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("modes", [("send", "send_many", "try_send"), ("reserve", "send", "send_many")])
def test_sender_processes_of_mixed_sizes_into_one_receiver_each_in_order_exactly_once(channel, peers, modes):
    n = 6000
    with Receiver(channel, **_ends(channel, 2048, 3)) as receiver:
        procs = [peers.start("stream", channel, 2048, 3, tag, n, mode, script=SCRIPT)
                 for tag, mode in enumerate(modes)]
        tally = Tally()
        _drain(receiver, tally, lambda: tally.count >= 3 * n, timeout=150)
        for proc in procs:
            rc, out, err = peers.finish(proc, timeout=30)
            assert rc == 0, err
            assert out.split() == ["ready", "done"]
        assert tally.errors == []
        assert tally.next == {0: n, 1: n, 2: n}
        assert len(tally.sizes) > 50
        assert receiver.try_recv() is None and receiver.depth == 0
        assert receiver._skipped == (0, 0)


# ------------------------------------------------------------- crashes, steps


def _run_until_killed(peers, receiver, tally, *args):
    """Start a step process and take its messages until it has killed itself; its report."""
    proc = peers.start(*args, script=SCRIPT)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            for m in receiver.recv_many(100, timeout=0.02):
                tally.add(m)
        except ReceiveTimeout:
            pass
    rc, out, err = peers.finish(proc, timeout=30)
    assert rc == -signal.SIGKILL, err
    # What it published just before it died may still be in the ring: take it, so that the
    # senders the test opens next find the room they need without a receive running.
    while True:
        try:
            for m in receiver.recv_many(100, timeout=0.2):
                tally.add(m)
        except ReceiveTimeout:
            return json.loads(out)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("step", STEPS)
def test_a_sender_killed_after_any_step_loses_only_its_unpublished_message(channel, peers, step):
    published = STEPS.index(step) >= STEPS.index("published")
    committed = STEPS.index(step) >= STEPS.index("committed")
    with Receiver(channel, **_ends(channel)) as receiver:
        tally = Tally()
        report = _run_until_killed(peers, receiver, tally, "step", channel, RING, 2, 0, 3, step)
        sent = report["sent"]
        assert report["pad"] >= 16          # the claim has a padding record (M4)
        # Its place is free at once: a new sender takes it (S0) and stays idle while a sender
        # of the other place sends (taking a bit the dead one held over, T0-T2), then sends.
        with Sender(channel, **_ends(channel)) as a, Sender(channel, **_ends(channel)) as b:
            b.send(payload(2, 0, 40), timeout=5)
            _drain(receiver, tally, lambda: tally.next.get(2) == 1, timeout=10)
            for i in range(5):
                a.send(payload(1, i, 12 + 20 * i), timeout=5)
                _drain(receiver, tally, lambda: tally.next.get(1) == i + 1, timeout=10)
            for i in range(1, 40):              # around the ring a few times more
                tag, number = (1, 5 + i // 2) if i % 2 else (2, i // 2)
                (a if i % 2 else b).send(payload(tag, number, 12 + (7 * i) % 100), timeout=5)
                _drain(receiver, tally, lambda: tally.next.get(tag) == number + 1, timeout=10)
        assert tally.errors == []
        assert tally.next == {0: sent + published, 1: 25, 2: 20}
        assert receiver.try_recv() is None
        # A committed claim not published is stepped over as a dead claim; nothing else is.
        assert receiver._skipped == (1 if committed and not published else 0, 0)


def _place_field(channel, place, field):
    """A sender place's field as the file holds it now."""
    with open(channel_path(channel), "rb") as f:
        f.seek(4096 + 128 * place + layout()[field])
        return int.from_bytes(f.read(8), "little")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("first", ["bit", "intent"])
@pytest.mark.parametrize("then", ["took", "taken"])
def test_a_sender_taking_a_dead_senders_claim_bit_over_killed_mid_takeover_blocks_nobody(
        channel, peers, first, then):
    with Receiver(channel, **_ends(channel, RING, 3)) as receiver:
        tally = Tally()
        # The first sender dies holding the claim bit in place 1 (with its intent: "intent") ...
        dummy = Sender(channel, **_ends(channel, RING, 3))
        report = _run_until_killed(peers, receiver, tally, "step", channel, RING, 3, 0, 0, first)
        sent = report["sent"]
        dummy.close()
        assert _place_field(channel, 1, "place_intent") == (report["at"] + 1 if first == "intent" else 0)
        # ... a sender in place 0 takes the bit over and dies after T1 ("took": the intent of
        # place 1 still there) or after T2 and finding room ("taken": holding the bit).
        report = _run_until_killed(peers, receiver, tally, "take", channel, RING, 3, then)
        assert report["done"] == [then]
        # New senders: in place 0 first (it takes the bit over from its own place's dead
        # sender and commits a claim there, clearing every intent for that position, T2) ...
        with Sender(channel, **_ends(channel, RING, 3)) as a:
            a.send(payload(1, 0, 20), timeout=5)
            _drain(receiver, tally, lambda: tally.next.get(1) == 1, timeout=10)
            # ... then in place 1, whose S0 finds no intent to keep as a dead claim.
            with Sender(channel, **_ends(channel, RING, 3)) as b, Sender(channel, **_ends(channel, RING, 3)) as c:
                assert _place_field(channel, 1, "place_intent") == 0
                assert _place_field(channel, 1, "place_dead_claim") == 0
                for i in range(3, 33):
                    tag, number = 1 + i % 3, i // 3 - (i % 3 != 0)
                    (a, b, c)[i % 3].send(payload(tag, number, 12 + 3 * i), timeout=5)
                    _drain(receiver, tally, lambda: tally.next.get(tag) == number + 1, timeout=10)
        assert tally.errors == []
        assert tally.next == {0: sent, 1: 11, 2: 10, 3: 10}
        assert receiver.try_recv() is None
        assert receiver._skipped == (0, 0)


def test_a_payload_of_an_earlier_lap_is_never_taken_for_a_records_seq(channel):
    # Records of 40 bytes in the first lap (at 0, 40, ..., 200, padding at 240); in the second
    # a record of 128 bytes at 256 ends at 384, whose seq word (ring index 136) lay in the
    # payload of the first lap's record at 120, which held 385 there: what a record at 384
    # would have as its seq.  The receiver zeroes what it consumed before handing it back (R5),
    # so nothing at 384 reads as published.
    with Sender(channel, **_ends(channel)) as tx, Receiver(channel, **_ends(channel)) as rx:
        forged = (385).to_bytes(8, "little") + bytes(16)
        for _ in range(6):
            tx.send(forged, timeout=5)
            assert rx.recv(timeout=5) == forged
        tx.send(b"y" * tx.message_length, timeout=5)
        assert rx.recv(timeout=5) == b"y" * tx.message_length
        assert tx.published == rx.taken == 384
        assert rx.try_recv() is None
        tx.send(b"z", timeout=5)
        assert rx.recv(timeout=5) == b"z"


def _goes_on(receiver, sender, skipped):
    """The sender (new on a place of dead claims) sends; the receiver, past them, gets it."""
    with sender:
        sender.send(b"after them", timeout=5)
        assert receiver.recv(timeout=5) == b"after them"
        assert receiver._skipped == (skipped, 0)


def _dead_claim(peers, channel, ring, n):
    proc = peers.start("claim", channel, ring, 2, n, script=SCRIPT)
    rc, out, err = peers.finish(proc, timeout=30)
    assert rc == -signal.SIGKILL, err
    return json.loads(out)


def _two_dead_claims_on_place_0(peers, channel, ring):
    """Two senders die in place 0, each with a claim committed and nothing published; the
    second's S0 kept the first's claim as the place's dead claim."""
    first = _dead_claim(peers, channel, ring, 40)
    second = _dead_claim(peers, channel, ring, 100)
    assert (first["at"], second["at"]) == (0, 56)
    assert _place_field(channel, 0, "place_dead_claim") == 1
    assert _place_field(channel, 0, "place_intent") == 57


def _waits_for_the_first_dead_claim(channel, receiver, in_thread, ring):
    """A new sender that must use place 0 (S0d) waits for the receiver to pass the first
    dead claim before it keeps the second; returns it."""
    thread, outcome = in_thread(lambda: Sender(channel, **_ends(channel, ring)))
    time.sleep(0.3)
    assert outcome == [] and _place_field(channel, 0, "place_dead_claim") == 1
    with pytest.raises(ReceiveTimeout):
        receiver.recv(timeout=0.5)      # steps over the first; waits at the second
    thread.join(10)
    assert _place_field(channel, 0, "place_dead_claim") == 57
    return outcome[0]


@pytest.mark.timeout(60)
def test_a_new_sender_takes_another_free_place_rather_than_wait_for_a_place_of_two_dead_claims(
        channel, peers):
    ring = 1024
    with Receiver(channel, **_ends(channel, ring)) as receiver:
        _two_dead_claims_on_place_0(peers, channel, ring)
        with Sender(channel, **_ends(channel, ring)) as third:
            # Place 1 at once; place 0 untouched, its claims left for the receiver.
            assert _place_field(channel, 1, "place_pid") == os.getpid()
            assert _place_field(channel, 0, "place_dead_claim") == 1
            assert _place_field(channel, 0, "place_intent") == 57
            third.send(b"from place 1", timeout=5)
            assert receiver.recv(timeout=5) == b"from place 1"
            assert receiver._skipped == (2, 0)


@pytest.mark.timeout(60)
def test_a_sender_with_no_other_place_waits_until_the_receiver_passed_the_first_dead_claim(
        channel, peers, in_thread):
    ring = 1024
    with Receiver(channel, **_ends(channel, ring)) as receiver:
        _two_dead_claims_on_place_0(peers, channel, ring)
        with Sender(channel, **_ends(channel, ring)):       # place 1
            fourth = _waits_for_the_first_dead_claim(channel, receiver, in_thread, ring)
            _goes_on(receiver, fourth, 2)


@pytest.mark.timeout(60)
def test_a_sender_that_could_only_wait_for_a_receiver_that_is_not_open_is_refused(
        channel, peers, in_thread):
    ring = 1024
    with Receiver(channel, **_ends(channel, ring)):
        _two_dead_claims_on_place_0(peers, channel, ring)
    with Sender(channel, **_ends(channel, ring)):           # place 1
        with pytest.raises(ChannelBusyError) as refused:
            Sender(channel, **_ends(channel, ring))
        text = str(refused.value)
        assert f"channel {channel!r}: sender place 0 holds the claims of two senders" in text
        assert "up to byte 56 (it has taken up to byte 0)" in text
        assert "no receiver is open. Open the receiver first" in text
        # Nothing changed, and the place is free again: with the receiver open, it goes on.
        assert _place_field(channel, 0, "place_dead_claim") == 1
        assert _place_field(channel, 0, "place_intent") == 57
        with Receiver(channel, **_ends(channel, ring)) as receiver:
            fourth = _waits_for_the_first_dead_claim(channel, receiver, in_thread, ring)
            _goes_on(receiver, fourth, 2)


@pytest.mark.timeout(60)
def test_a_sender_killed_between_s0e_and_s0f_leaves_a_place_the_next_one_takes_without_waiting(
        channel, peers, in_thread):
    # The second sender of place 0 kept its dead predecessor's committed claim as the dead claim
    # (S0e) and died before withdrawing the intent (S0f): the third finds that very claim in
    # both and must not wait for the receiver to pass it (which finds it in the intent with the
    # place's lock held by the third: each would wait for the other).
    ring = 1024
    with Receiver(channel, **_ends(channel, ring)) as receiver:
        first = _dead_claim(peers, channel, ring, 40)
        proc = peers.start("adopt", channel, ring, 2, script=SCRIPT)
        rc, out, err = peers.finish(proc, timeout=30)
        assert rc == -signal.SIGKILL and json.loads(out) == {"done": ["S0e"]}, err
        assert _place_field(channel, 0, "place_intent") == first["at"] + 1
        assert _place_field(channel, 0, "place_dead_claim") == first["at"] + 1
        assert _place_field(channel, 0, "place_dead_length") == first["size"]
        thread, outcome = in_thread(lambda: Sender(channel, **_ends(channel, ring)))
        thread.join(10)
        assert _place_field(channel, 0, "place_intent") == 0
        _goes_on(receiver, outcome[0], 1)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("step", ["committed", "padded", "half", "written"])
def test_a_receiver_waiting_at_a_live_senders_claim_goes_on_when_it_dies(channel, peers, step, in_thread):
    with Receiver(channel, **_ends(channel)) as receiver:
        tally = Tally()
        proc = peers.start("step", channel, RING, 2, 0, 3, step, "hold", script=SCRIPT)
        line = []
        reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
        reader.start()
        _drain(receiver, tally, lambda: line, timeout=30)
        report = json.loads(line[0])
        with Sender(channel, **_ends(channel)) as other:
            # The claim comes first in the channel's order: the receiver waits for it ...
            thread, outcome = in_thread(lambda: receiver.recv(timeout=30))
            time.sleep(0.3)
            assert outcome == []
            # ... and steps over it once the claimer is gone.
            proc.kill()
            proc.wait()
            other.send(payload(1, 0, 30), timeout=10)
            thread.join(30)
            assert outcome == [payload(1, 0, 30)]
            assert receiver._skipped == (1, 0)
        assert tally.errors == [] and tally.next == {0: report["sent"]}


def test_channels_shows_the_bytes_queued_and_a_dead_senders_claim(channel, peers):
    ring = 1024
    with Receiver(channel, **_ends(channel, ring)) as receiver, Sender(channel, **_ends(channel, ring)) as tx:
        tx.send(b"x" * 20)              # a record of 16 + 24 bytes
        first = _dead_claim(peers, channel, ring, 100)
        info = next(c for c in cywhip.channels() if c.name == channel)
        assert info.problem is None
        assert (info.max_queued_bytes, info.depth) == (ring, 40 + first["size"])
        assert [(p.alive, p.claiming) for p in info.senders] == [(True, None), (False, 40)]
        assert receiver.recv(timeout=5) == b"x" * 20
        tx.send(b"after")
        assert receiver.recv(timeout=5) == b"after"
        info = next(c for c in cywhip.channels() if c.name == channel)
        # Stepped over: the dead claim is finished business.
        assert info.depth == 0 and [p.claiming for p in info.senders] == [None, None]


def _poke(channel, offset, value):
    with open(channel_path(channel), "r+b") as f:
        f.seek(offset)
        f.write(value.to_bytes(8, "little"))


def test_an_impossible_record_or_claim_word_is_named_and_the_receiver_goes_on_once_put_right(channel):
    lay = layout()
    with Sender(channel, **_ends(channel)) as tx, Receiver(channel, **_ends(channel)) as rx:
        tx.send(b"x" * 20)
        ring = lay["slots"]
        with open(channel_path(channel), "rb") as f:
            f.seek(ring)
            header = int.from_bytes(f.read(8), "little")
        # A message longer than message_length: named with the values read.
        _poke(channel, ring, 5000)
        with pytest.raises(ChannelCorruptError, match=r"the record at byte 0 has kind word 0x0 and length 5000; "
                                                      r"a record is a message of at most message_length=112"):
            rx.recv(timeout=1)
        _poke(channel, ring, header)
        assert rx.recv(timeout=1) == b"x" * 20
        # A claim word more than a ring past the read cursor.
        with open(channel_path(channel), "rb") as f:
            f.seek(lay["write_cursor"])
            word = int.from_bytes(f.read(8), "little")
        _poke(channel, lay["write_cursor"], word + ((4096 // 8) << 24))
        with pytest.raises(ChannelCorruptError, match=r"gives claim cursor 4136, more than the 256-byte ring past"):
            rx.recv(timeout=1)
        _poke(channel, lay["write_cursor"], word)
        assert rx.try_recv() is None
        tx.send(b"y")
        assert rx.recv(timeout=1) == b"y"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("step", ["bit", "intent"])
def test_a_sender_waits_while_a_live_sender_holds_the_claim_bit_and_takes_it_over_when_it_dies(
        channel, peers, step, in_thread):
    with Receiver(channel, **_ends(channel)) as receiver:
        tally = Tally()
        proc = peers.start("step", channel, RING, 2, 0, 0, step, "hold", script=SCRIPT)
        line = []
        threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True).start()
        _drain(receiver, tally, lambda: line, timeout=30)
        report = json.loads(line[0])
        with Sender(channel, **_ends(channel)) as other:
            # Held by a live sender (preempted, say): no claim can be made, even with room.
            assert not other.try_send(payload(1, 0, 30))
            thread, outcome = in_thread(lambda: other.send(payload(1, 0, 30), timeout=30))
            time.sleep(0.3)
            assert outcome == []
            proc.kill()
            proc.wait()
            thread.join(30)
            assert outcome == [None]
            assert receiver.recv(timeout=5) == payload(1, 0, 30)
        assert tally.errors == [] and tally.next == {0: report["sent"]}
        assert receiver._skipped == (0, 0)


def test_an_impossible_intent_left_in_a_place_is_named_when_a_sender_opens_there(channel):
    lay = layout()
    with Receiver(channel, **_ends(channel)) as rx:
        for field, value in (("place_intent_length", 24), ("place_intent", 13)):
            _poke(channel, 4096 + lay[field], value)
        with pytest.raises(ChannelCorruptError, match=r"this sender's place holds an intent for byte 12 of 24 "
                                                      r"bytes, which the claim cursor \(0\) and the 256-byte"):
            Sender(channel, **_ends(channel))
        # The place was given back: once put right, a sender opens there and sends.
        _poke(channel, 4096 + lay["place_intent"], 0)
        with Sender(channel, **_ends(channel)) as tx:
            tx.send(b"ok")
            assert rx.recv(timeout=5) == b"ok"


# -------------------------------------------------------- a racing rewriter


@pytest.mark.fuzz
@pytest.mark.timeout(120)
@pytest.mark.parametrize("keep_back", [1.0, 0.9])
def test_a_process_rewriting_the_channel_while_the_ends_run_never_crashes_or_hangs_the_receiver(
        channel, peers, keep_back):
    lay = layout()
    ring = 1024
    with Receiver(channel, **_ends(channel, ring, 3)) as receiver:
        base = lay["slots"]
        offsets = [lay["write_cursor"], lay["read_cursor"]]
        for p in range(3):
            place = 4096 + 128 * p
            offsets += [place + lay[f] for f in ("place_intent", "place_intent_length", "place_dead_claim",
                                                   "place_dead_length", "place_generation")]
        offsets += [base + 8 * k for k in range(ring // 8)]
        seed = random.randrange(1 << 30)
        rewriter = peers.start("rewrite", channel_path(channel), 6, seed, json.dumps(offsets), keep_back,
                               script=SCRIPT)
        stop = threading.Event()
        outcomes = {"sent": 0, "corrupt": 0, "timeouts": 0}

        def send(tag):
            i = 0
            while not stop.is_set():
                try:
                    with Sender(channel, **_ends(channel, ring, 3)) as s:
                        while not stop.is_set():
                            s.send(payload(tag, i, 12 + (i * 37) % 400), timeout=0.2)
                            i += 1
                            outcomes["sent"] += 1
                except (ChannelCorruptError, SendTimeout):
                    pass
                except Exception as exc:      # any other error is a failure
                    outcomes.setdefault("errors", []).append(repr(exc))
                    return

        threads = [threading.Thread(target=send, args=(t,)) for t in range(2)]
        for t in threads:
            t.start()
        got = 0
        deadline = time.monotonic() + 12
        while rewriter.poll() is None and time.monotonic() < deadline:
            try:
                got += len(receiver.recv_many(50, timeout=0.2))
            except ReceiveTimeout:
                outcomes["timeouts"] += 1
            except ChannelCorruptError as exc:
                # Named, not a crash: the values read are in the message.
                assert "corrupt" in str(exc)
                outcomes["corrupt"] += 1
        stop.set()
        for t in threads:
            t.join(30)
            assert not t.is_alive()
        rc, _, err = peers.finish(rewriter, timeout=30)
        assert rc == 0, (seed, err)
        assert "errors" not in outcomes, (seed, outcomes)
        # The receiver kept answering: messages, timeouts or named corruption, and nothing else.
        assert got + outcomes["timeouts"] + outcomes["corrupt"] > 10, (seed, outcomes)


@pytest.mark.soak
@pytest.mark.timeout(300)
def test_a_hundred_and_twenty_sigkills_of_byte_channel_senders_lose_tear_and_wedge_nothing(tmp_path):
    seed = random.randrange(10_000)
    report = fanin.soak(kills=120, senders=3, seed=seed, length=200, workdir=str(tmp_path), timeout=240,
                        ring=1024)
    assert report["errors"] == [], (seed, report)
    assert report["ok"] and report["kills"] >= 120
    assert report["messages"] > 0


# ----------------------------------------------- a receiver dying in its release (R5)

# An LD_PRELOAD shim: the memset() of exactly CYWHIP_TEST_STOP_MEMSET bytes (the receiver's
# zeroing of what it consumed, R5) zeroes the first half, then stops the process (SIGSTOP),
# where the test kills it: a receiver dead in the middle of its release.
STOP_MEMSET_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
static void *(*real_memset)(void *, int, size_t);
void *memset(void *p, int c, size_t n) {
    static long want = -2;
    static int looking;
    volatile char *q = p;
    size_t i;
    if (!real_memset) {
        for (i = 0; i < n; i++) q[i] = (char)c;
        if (!looking) {
            looking = 1;
            real_memset = (void *(*)(void *, int, size_t))dlsym(RTLD_NEXT, "memset");
            looking = 0;
        }
        return p;
    }
    if (want == -2) {
        const char *e = getenv("CYWHIP_TEST_STOP_MEMSET");
        want = e ? atol(e) : -1;
    }
    if (want > 0 && (long)n == want) {
        want = -1;
        for (i = 0; i < n / 2; i++) q[i] = (char)c;
        raise(SIGSTOP);
    }
    return real_memset(p, c, n);
}
"""

STOPPED_RECEIVER = """
import sys
from cywhip import Receiver
with Receiver(sys.argv[1], max_queued_bytes=int(sys.argv[2]), max_senders=2) as r:
    print("ready", flush=True)
    got = []
    while len(got) < int(sys.argv[3]):
        got += r.recv_many(10, timeout=30)
"""


@pytest.mark.timeout(60)
def test_a_receiver_killed_while_zeroing_what_it_took_leaves_the_next_receiver_a_readable_channel(
        channel, peers, tmp_path):
    cc = next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
    if cc is None:
        pytest.skip("no C compiler (cc, gcc, clang) on PATH")
    (tmp_path / "shim.c").write_text(STOP_MEMSET_SHIM)
    shim = tmp_path / "shim.so"
    subprocess.run([cc, "-O1", "-shared", "-fPIC", "-o", str(shim), str(tmp_path / "shim.c"), "-ldl"],
                   check=True, timeout=60)
    ring, n, k = 8192, 1000, 3          # three records of 16 + 1000 bytes: 3048 bytes zeroed
    preload = " ".join(filter(None, [os.environ.get("LD_PRELOAD", ""), str(shim)]))
    with Sender(channel, **_ends(channel, ring)) as tx:
        proc = peers.start(channel, ring, k, script=STOPPED_RECEIVER,
                           env={"LD_PRELOAD": preload, "CYWHIP_TEST_STOP_MEMSET": str(k * (16 + n))})
        assert proc.stdout.readline().strip() == "ready"
        for i in range(k):
            tx.send(payload(0, i, n), timeout=5)
        # Stopped inside its release: the records it took half zeroed, read_cursor not moved.
        _, status = os.waitpid(proc.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status) and os.WSTOPSIG(status) == signal.SIGSTOP
        proc.kill()
        proc.wait()
        tx.send(payload(0, k, 40), timeout=5)
        # The next receiver finishes that release (those records were taken) and goes on; it
        # does not call the channel corrupt at the bytes the dead one zeroed.
        with Receiver(channel, **_ends(channel, ring)) as rx:
            assert rx.recv(timeout=5) == payload(0, k, 40)
            assert rx.try_recv() is None
            tx.send(payload(0, k + 1, 40), timeout=5)
            assert rx.recv(timeout=5) == payload(0, k + 1, 40)


# ------------------------------------------------------- a sender place's own fields


@pytest.mark.timeout(60)
def test_an_impossible_dead_claim_in_a_place_is_named_when_a_sender_opens_there_not_waited_for(
        channel, in_thread):
    lay = layout()
    with Receiver(channel, **_ends(channel)) as rx:
        with Sender(channel, **_ends(channel)) as tx:
            tx.send(b"x" * 24, timeout=5)
            assert rx.recv(timeout=5) == b"x" * 24      # claim and read cursor at 40
        # Place 0: a committed claim (byte 0, 40 bytes) in the intent, and a dead claim far
        # past the claim cursor, which S0d would wait for the receiver to pass for ever.
        for field, value in (("place_intent_length", 40), ("place_intent", 1),
                             ("place_dead_length", 16), ("place_dead_claim", (1 << 62) + 1)):
            _poke(channel, 4096 + lay[field], value)
        thread, outcome = in_thread(lambda: Sender(channel, **_ends(channel)))
        thread.join(5)
        assert not thread.is_alive(), "Sender() waits for a dead claim no receiver can pass"
        assert isinstance(outcome[0], ChannelCorruptError), outcome
        assert re.search(r"holds a dead claim at byte 4611686018427387904 of 16 bytes, which is not whole "
                         r"before the place's later claim at byte 0", str(outcome[0])), outcome
        # Put right, the place opens again.
        _poke(channel, 4096 + lay["place_dead_claim"], 0)
        with Sender(channel, **_ends(channel)) as tx:
            tx.send(b"ok", timeout=5)
            assert rx.recv(timeout=5) == b"ok"


CLAIM_BIT_THEN_DIE = """
import os, signal, sys
from cywhip import Sender
from cywhip._testing._steps import BytesSenderSteps
s = Sender(sys.argv[1], max_queued_bytes=256, max_senders=2)
BytesSenderSteps(s).take(8)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.timeout(60)
def test_a_sender_whose_generation_wraps_to_a_dead_owners_of_its_place_takes_the_bit_over(channel, peers):
    # The owner in the claim word carries the place's generation modulo 2^11: a sender dies
    # holding the bit, 2047 senders open and close on its place without sending; the next
    # must not be that owner again (its first claim would call the word impossible, and the
    # other places would wait for it as for a live owner).
    with Receiver(channel, **_ends(channel)) as rx:
        proc = peers.start(channel, script=CLAIM_BIT_THEN_DIE)
        rc, _, err = peers.finish(proc, timeout=30)
        assert rc == -signal.SIGKILL, err
        for _ in range(2047):
            Sender(channel, **_ends(channel)).close()
        with Sender(channel, **_ends(channel)) as a, Sender(channel, **_ends(channel)) as b:
            a.send(b"from place 0", timeout=5)
            b.send(b"from place 1", timeout=5)
            assert rx.recv_many(10, timeout=5) == [b"from place 0", b"from place 1"]


@pytest.mark.timeout(60)
def test_a_send_timed_out_on_a_claim_bit_a_live_sender_holds_names_that_sender_not_a_full_ring(channel, peers):
    with Receiver(channel, **_ends(channel)) as receiver:
        tally = Tally()
        proc = peers.start("step", channel, RING, 2, 0, 0, "bit", "hold", script=SCRIPT)
        line = []
        threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True).start()
        _drain(receiver, tally, lambda: line, timeout=30)
        assert receiver.depth == 0
        with Sender(channel, **_ends(channel)) as other:
            # The ring is empty: what holds the send back is the live sender holding the bit.
            with pytest.raises(SendTimeout, match=rf"could not claim room for a 30-byte message: the sender "
                                                  rf"in place 0 \(generation 1 modulo 2048, pid {proc.pid}\) "
                                                  rf"holds the claim bit"):
                other.send(payload(1, 0, 30), timeout=0.3)
        proc.kill()
        proc.wait()


def test_a_release_recorded_in_the_receiver_place_past_the_claim_cursor_is_named_when_a_receiver_opens(channel):
    lay = layout()
    receiver_intent = 4096 + 128 * 2 + lay["place_intent"]
    Receiver(channel, **_ends(channel)).close()
    _poke(channel, receiver_intent, 64 + 1)            # a release up to byte 64; nothing claimed
    with pytest.raises(ChannelCorruptError, match=r"the receiver place records a release up to byte 64, past "
                                                  r"the claim cursor 0 or unaligned \(read cursor 0\)"):
        Receiver(channel, **_ends(channel))
    # More than a ring ahead: an old release, not this lap's, left alone.
    _poke(channel, receiver_intent, (1 << 40) + 1)
    with Receiver(channel, **_ends(channel)) as rx, Sender(channel, **_ends(channel)) as tx:
        tx.send(b"ok", timeout=5)
        assert rx.recv(timeout=5) == b"ok"


@pytest.mark.timeout(60)
def test_a_dead_claims_impossible_length_is_named_and_never_moves_the_read_cursor_back(channel, peers):
    lay = layout()
    with Receiver(channel, **_ends(channel)) as rx:
        with Sender(channel, **_ends(channel)) as tx:
            for i in range(3):
                tx.send(payload(0, i, 24), timeout=5)
                assert rx.recv(timeout=5) == payload(0, i, 24)
        assert rx.taken == 120
        claim = _dead_claim(peers, channel, RING, 8)      # place 0: 24 bytes at 120, nothing published
        assert (claim["at"], claim["size"]) == (120, 24)
        # A length that takes the claim's end past 2^64, back below the read cursor.
        _poke(channel, 4096 + lay["place_intent_length"], (1 << 64) - 8)
        with pytest.raises(ChannelCorruptError, match=r"sender place 0 holds a claim at byte 120 of "
                                                      r"18446744073709551608 bytes, which covers the read cursor"):
            rx.recv(timeout=1)
        assert rx.taken == 120
        # Put right: the dead claim is stepped over, forwards.
        _poke(channel, 4096 + lay["place_intent_length"], 24)
        with Sender(channel, **_ends(channel)) as tx:
            tx.send(b"after", timeout=5)
            assert rx.recv(timeout=5) == b"after"
        assert rx.taken == 120 + 24 + 16 + 8 and rx._skipped == (1, 0)


def test_an_unaligned_read_cursor_is_named_as_the_read_cursor_not_as_the_claim_word(channel):
    lay = layout()
    with Sender(channel, **_ends(channel)) as tx, Receiver(channel, **_ends(channel)) as rx:
        tx.send(b"a" * 24)
        assert rx.recv(timeout=1) == b"a" * 24
        _poke(channel, lay["read_cursor"], 43)
        with pytest.raises(ChannelCorruptError, match=r"corrupt: the read cursor 43 is not a multiple of 8, or not "
                                                      r"within the 256-byte ring behind the claim cursor 40$"):
            tx.send(b"b", timeout=1)
        _poke(channel, lay["read_cursor"], 40)
        tx.send(b"b", timeout=1)
        assert rx.recv(timeout=1) == b"b"


@pytest.mark.timeout(60)
def test_a_taker_that_found_no_room_holds_no_other_sender_back_once_its_call_returned(channel, peers):
    # A sender dies holding the claim bit; another takes it over (T0-T2) for a message the
    # ring has no room for, and its try_send() returns False; it then stays idle (open).  Once
    # the receiver drains the ring, a third sender must send: the taker freed the bit (T3).
    with Receiver(channel, **_ends(channel, RING, 3)) as rx, Sender(channel, **_ends(channel, RING, 3)) as a:
        for i in range(4):
            a.send(payload(0, i, 24), timeout=5)          # 4 records of 40 bytes: 96 bytes free
        proc = peers.start(channel, script=CLAIM_BIT_THEN_DIE.replace("max_senders=2", "max_senders=3"))
        rc, _, err = peers.finish(proc, timeout=30)
        assert rc == -signal.SIGKILL, err
        assert not a.try_send(b"B" * a.message_length)    # a record of 128 bytes: no room
        assert rx.recv_many(10, timeout=5) == [payload(0, i, 24) for i in range(4)]
        assert rx.depth == 0
        with Sender(channel, **_ends(channel, RING, 3)) as c:
            c.send(b"hello", timeout=2)
            assert rx.recv(timeout=5) == b"hello"
        a.send(b"B" * a.message_length, timeout=2)
        assert rx.recv(timeout=5) == b"B" * a.message_length
        assert rx._skipped == (0, 0)


OPEN_ON_LINE = """
import os, sys
import cywhip._ring
from cywhip import Sender
print(os.getpid(), flush=True)
sys.stdin.readline()
try:
    with Sender(sys.argv[1], max_queued_bytes=256, max_senders=3) as s:
        s.send(b"from the new sender", timeout=5)
    print("sent", flush=True)
except Exception as exc:
    print(type(exc).__name__, exc, flush=True)
"""


@pytest.mark.timeout(120)
def test_a_sender_opening_while_the_others_claim_more_than_a_ring_is_not_called_corrupt(channel, peers, tmp_path):
    # The new sender is stopped (a gdb breakpoint) between its loads of read_cursor and of the
    # claim word in ring_attach; meanwhile the other sender claims, and the receiver takes,
    # more than a ring.  The claim word it then loads is more than a ring past the read cursor
    # it loaded first: not an impossible channel.
    gdb = shutil.which("gdb")
    if gdb is None:
        pytest.skip("no gdb on PATH")
    # gdb itself must not run with the sanitizer preloaded (the debug build's runs): under
    # libasan it never starts.
    gdb_env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS")}
    with Receiver(channel, **_ends(channel, RING, 3)) as rx, Sender(channel, **_ends(channel, RING, 3)) as a:
        proc = subprocess.Popen([sys.executable, "-c", OPEN_ON_LINE, channel], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        peers.procs.append(proc)
        pid = int(proc.stdout.readline())
        dis = subprocess.run([gdb, "-q", "-batch", "-p", str(pid), "-ex",
                              "disassemble __pyx_f_6cywhip_5_ring_ring_attach"],
                             capture_output=True, text=True, timeout=60, env=gdb_env)
        # Each load of write_cursor (offset 128) right after a load of read_cursor (256) from
        # the same header register.
        lines = [l for l in dis.stdout.splitlines() if re.match(r"\s+0x[0-9a-f]+ <\+\d+>:", l)]
        stops = []
        for before, line in zip(lines, lines[1:]):
            m = re.search(r"mov\s+0x100\((%\w+)\),", before)
            if m and re.search(r"mov\s+0x80\(" + re.escape(m.group(1)) + r"\),", line):
                stops.append(line.split()[0])
        if not stops:
            pytest.skip(f"gdb could not attach or ring_attach has no such loads: {dis.stderr[-300:]}")
        commands = tmp_path / "gdb"
        commands.write_text("set pagination off\n" + "".join(f"break *{s}\n" for s in stops)
                            + f"shell touch {tmp_path}/armed\ncontinue\nshell touch {tmp_path}/stopped\n"
                            + f"shell while [ ! -f {tmp_path}/go ]; do sleep 0.01; done\n"
                            + "delete\ndetach\nquit\n")
        debugger = subprocess.Popen([gdb, "-q", "-batch", "-p", str(pid), "-x", str(commands)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=gdb_env)
        peers.procs.append(debugger)
        deadline = time.monotonic() + 60
        while not (tmp_path / "armed").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.stdin.write("open\n")
        proc.stdin.flush()
        while not (tmp_path / "stopped").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (tmp_path / "stopped").exists()
        for i in range(10):                     # 400 bytes claimed and taken meanwhile
            a.send(payload(0, i, 24), timeout=5)
            assert rx.recv(timeout=5) == payload(0, i, 24)
        (tmp_path / "go").touch()
        assert proc.stdout.readline().strip() == "sent"
        assert rx.recv(timeout=5) == b"from the new sender"
        debugger.wait(30)


# ------------------------------------------------------------ with receiver groups


def _group_ends(ring=RING, senders=2, receivers=2):
    return dict(max_queued_bytes=ring, max_senders=senders, max_receivers=receivers)


def _drain_groups(members, tallies, until, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        for member, tally in zip(members, tallies):
            try:
                for m in member.recv_many(100, timeout=0.01):
                    tally.add(m)
            except ReceiveTimeout:
                pass
        if until() or time.monotonic() > deadline:
            return


@pytest.mark.timeout(120)
@pytest.mark.parametrize("step", STEPS)
def test_with_receiver_groups_a_sender_killed_after_any_step_loses_only_its_unpublished_message(
        channel, peers, step):
    # Two groups each take the stream; the dead sender's claim is a hole each group steps over
    # for itself (G4), the padding before it included, and no group gets a torn message.
    published = STEPS.index(step) >= STEPS.index("published")
    committed = STEPS.index(step) >= STEPS.index("committed")
    ends = _group_ends()
    with Receiver(channel, group="a", **ends) as ra, Receiver(channel, group="b", **ends) as rb:
        members, tallies = (ra, rb), (Tally(), Tally())
        proc = peers.start("step", channel, RING, "2:2", 0, 3, step, script=SCRIPT)
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            _drain_groups(members, tallies, lambda: True)
        rc, out, err = peers.finish(proc, timeout=30)
        assert rc == -signal.SIGKILL, err
        report = json.loads(out)
        sent = report["sent"]
        assert report["pad"] >= 16          # the claim has a padding record (M4)
        # What it published just before it died, and its claim stepped over by each group.
        _drain_groups(members, tallies, lambda: False, timeout=0.5)
        with Sender(channel, **ends) as a, Sender(channel, **ends) as b:
            b.send(payload(2, 0, 40), timeout=5)
            for i in range(5):
                a.send(payload(1, i, 12 + 20 * i), timeout=5)
                _drain_groups(members, tallies, lambda: all(t.next.get(1) == i + 1 for t in tallies))
            for i in range(1, 40):              # around the ring a few times more
                tag, number = (1, 5 + i // 2) if i % 2 else (2, i // 2)
                (a if i % 2 else b).send(payload(tag, number, 12 + (7 * i) % 100), timeout=5)
                _drain_groups(members, tallies, lambda: all(t.next.get(tag) == number + 1 for t in tallies))
        for member, tally in zip(members, tallies):
            assert tally.errors == []
            assert tally.next == {0: sent + published, 1: 25, 2: 20}
            assert member.try_recv() is None
            # A committed claim not published is stepped over as a dead claim; nothing else is.
            assert member._skipped == (1 if committed and not published else 0, 0)


@pytest.mark.timeout(60)
def test_with_receiver_groups_a_new_sender_waits_until_every_group_passed_the_first_dead_claim(
        channel, peers, in_thread):
    # G5: a place's earlier dead claim is overwritten only once the slowest group has stepped
    # over it; a group that passed it does not let the new sender go on alone.
    ring = 1024
    ends = _group_ends(ring)
    with Receiver(channel, group="fast", **ends) as fast, Receiver(channel, group="slow", **ends) as slow:
        for n in (40, 100):
            proc = peers.start("claim", channel, ring, "2:2", n, script=SCRIPT)
            rc, out, err = peers.finish(proc, timeout=30)
            assert rc == -signal.SIGKILL, err
        assert _place_field(channel, 0, "place_dead_claim") == 1
        assert _place_field(channel, 0, "place_intent") == 57
        with Sender(channel, **ends):                           # place 1
            thread, outcome = in_thread(lambda: Sender(channel, **ends))
            with pytest.raises(ReceiveTimeout):
                fast.recv(timeout=0.5)      # steps over the first; waits at the second
            time.sleep(0.2)
            assert outcome == [] and _place_field(channel, 0, "place_dead_claim") == 1
            with pytest.raises(ReceiveTimeout):
                slow.recv(timeout=0.5)
            thread.join(10)
            assert _place_field(channel, 0, "place_dead_claim") == 57
            with outcome[0] as fourth:
                fourth.send(b"after them", timeout=5)
                for member in (fast, slow):
                    assert member.recv(timeout=5) == b"after them"
                    assert member._skipped == (2, 0)


@pytest.mark.timeout(60)
def test_with_receiver_groups_a_payload_of_an_earlier_lap_under_a_committed_claim_is_never_taken(channel):
    # No member zeroes what it took (nobody consumes for every group), so a claim's sender
    # zeroes the seq word of each header it will write before it commits the claim (G2).
    # First lap: records of 48 bytes at 0, 48, ..., 192, padding at 240; the payload of the
    # record at 96 (ring index 112) holds what a header at 368 would: a 5-byte message with
    # seq 369.  Second lap: a record of 112 bytes at 256 ends at 368; a second sender commits
    # a claim at 368 (the claim cursor moves past it) and has not written its header yet.
    ends = _group_ends(senders=2, receivers=2)
    with Sender(channel, **ends) as tx, Sender(channel, **ends) as stopped, \
            Receiver(channel, group="g", **ends) as rx:
        forged = struct.pack("<IIQ", 5, 0, 369) + b"S" * 16
        for i in range(5):
            msg = forged if i == 2 else bytes([i]) * 32
            tx.send(msg, timeout=5)
            assert rx.recv(timeout=5) == msg
        tx.send(b"y" * 96, timeout=5)
        assert rx.recv(timeout=5) == b"y" * 96
        assert tx.published == rx.taken == 368
        steps = BytesSenderSteps(stopped)
        at, pad, size = steps.take(24)
        assert (at, pad) == (368, 0)
        steps.intent()
        steps.commit()
        steps.pad()
        assert stopped.published == 368 + size
        # The claimer is alive: its claim is a hole the member waits at, not a message.
        assert rx.try_recv() is None
        with pytest.raises(ReceiveTimeout):
            rx.recv(timeout=0.2)
        steps.write(b"z" * 24, 24)
        steps.header()
        steps.publish()
        steps.clear()
        assert rx.recv(timeout=5) == b"z" * 24
        assert rx.try_recv() is None


@pytest.mark.timeout(60)
def test_with_receiver_groups_a_hole_no_claim_covers_is_named_not_waited_at_for_ever(channel):
    # A claim committed and its intent withdrawn with nothing published (no sender does that):
    # the member's resolve finds no claim covering the hole, says so, and goes on once the
    # record is there.
    ends = _group_ends(senders=2, receivers=2)
    with Sender(channel, **ends) as tx, Receiver(channel, group="g", **ends) as rx:
        tx.send(b"a" * 24, timeout=5)
        assert rx.recv(timeout=5) == b"a" * 24
        steps = BytesSenderSteps(tx)
        at, pad, size = steps.take(24)
        steps.intent()
        steps.commit()
        steps.pad()
        steps.write(b"b" * 24, 24)
        steps.header()
        cw = _place_field(channel, 0, "place_intent")
        assert cw == at + 1
        _poke(channel, 4096 + layout()["place_intent"], 0)
        for call in (lambda: rx.recv(timeout=2), rx.try_recv):
            with pytest.raises(ChannelCorruptError, match=f"nothing is published at byte {at} .* no sender "
                                                          f"place's intent or dead claim covers it"):
                call()
        steps.publish()
        steps.clear()
        assert rx.recv(timeout=5) == b"b" * 24

"""Byte channels (max_queued_bytes): messages of any size in a ring of records, and reserve()."""
import asyncio
import mmap
import os
import random
import signal
import struct
import threading
import time
import zlib

import pytest

import cywhip
import cywhip.asyncio
from cywhip import (ChannelCorruptError, ChannelMismatchError, MessageTooLongError, Receiver,
                    SendTimeout, Sender)
from cywhip._region import channel_path, slots_offset_for


def numbered(i, rng=None):
    """Message i: its number, its length and a pattern of its bytes, so that a torn or
    misplaced message shows; lengths vary from 0 to 700 bytes."""
    n = (i * 7919) % 701
    body = (i.to_bytes(8, "little") * (n // 8 + 1))[:n]
    return struct.pack("<II", i, n) + body


def check(msg, i):
    seq, n = struct.unpack_from("<II", msg)
    assert (seq, n) == (i, len(msg) - 8), (seq, n, i, len(msg))
    assert msg == numbered(i)


def test_a_byte_channel_carries_messages_of_every_size_in_order(channel, in_thread):
    tx = Sender(channel, max_queued_bytes=4096)
    rx = Receiver(channel, max_queued_bytes=4096)
    count = 20000
    t, outcome = in_thread(lambda: tx.send_many((numbered(i) for i in range(count)), timeout=30))
    got = []
    while len(got) < count:
        got += rx.recv_many(1000, timeout=10)
    t.join(10)
    assert outcome == [count]
    for i, msg in enumerate(got):
        check(msg, i)
    # The ring wrapped many times: padding records were written and stepped over.
    assert tx.published > 10 * 4096
    tx.close()
    rx.close()


def test_every_call_of_both_ends_works_on_a_byte_channel(channel):
    with Sender(channel, max_queued_bytes=1 << 16) as tx, Receiver(channel, max_queued_bytes=1 << 16) as rx:
        assert tx.max_queued_bytes == rx.max_queued_bytes == 1 << 16
        assert tx.message_length == rx.message_length == (1 << 15) - 8
        assert tx.send(b"one") is None
        assert tx.try_send(bytearray(b"two"))
        tx.send(memoryview(b"three"))
        assert tx.send_many([b"", b"x" * 1000]) == 2
        assert rx.recv(timeout=5) == b"one"
        assert rx.try_recv() == b"two"
        assert rx.recv_many(2, timeout=5) == [b"three", b""]
        assert next(iter(rx)) == b"x" * 1000
        assert rx.try_recv() is None
        assert rx.depth == 0
        tx.send(b"y" * 100)
        # depth counts bytes on a byte channel: the record's header and its padding to 8.
        assert rx.depth == 8 + 104
        assert rx.recv(timeout=5) == b"y" * 100
        with pytest.raises(TypeError, match="slot channel"):
            Sender(channel + "-typed", max_queued_bytes=4096, message_type="<i8")


def test_the_longest_message_fits_an_empty_ring_wherever_its_write_index_is(channel):
    with Sender(channel, max_queued_bytes=256) as tx, Receiver(channel, max_queued_bytes=256) as rx:
        top = tx.message_length
        assert top == 256 // 2 - 8
        for shift in range(0, 256, 8):
            # Move the write index on by shift bytes (records of 16 and 8 bytes), then send the
            # longest message.
            small = [b"s" * 8] * (shift // 16) + [b""] * (shift % 16 // 8)
            tx.send_many(small)
            assert rx.recv_many(100, timeout=5) == small if small else True
            tx.send(b"L" * top, timeout=5)
            assert rx.recv(timeout=5) == b"L" * top
        with pytest.raises(MessageTooLongError, match=f"{top + 1} bytes.*message_length={top}"):
            tx.send(b"x" * (top + 1))


def test_on_message_and_on_batch_deliver_a_byte_channel(channel):
    got, batches = [], []
    done = threading.Event()

    def on_message(msg):
        got.append(msg)
        if len(got) == 500:
            done.set()

    with Sender(channel, max_queued_bytes=4096) as tx:
        with Receiver(channel, max_queued_bytes=4096, on_message=on_message):
            tx.send_many(numbered(i) for i in range(500))
            assert done.wait(20)
        for i, msg in enumerate(got):
            check(msg, i)
        done.clear()

        def on_batch(batch):
            batches.append(list(batch))
            if sum(map(len, batches)) == 500:
                done.set()

        with Receiver(channel, max_queued_bytes=4096, on_batch=on_batch):
            tx.send_many(numbered(i) for i in range(500))
            assert done.wait(20)
        for i, msg in enumerate(m for b in batches for m in b):
            check(msg, i)


def test_asyncio_ends_carry_a_byte_channel(channel, run):
    async def main():
        async with cywhip.asyncio.Sender(channel, max_queued_bytes=2048) as tx, \
                cywhip.asyncio.Receiver(channel, max_queued_bytes=2048) as rx:
            assert tx.max_queued_bytes == 2048

            async def produce():
                for i in range(3000):
                    await tx.send(numbered(i))

            task = asyncio.ensure_future(produce())
            got = []
            while len(got) < 3000:
                got += await rx.recv_many(100)
            await task
            return got

    for i, msg in enumerate(run(main())):
        check(msg, i)


@pytest.mark.parametrize("kind", ["bytes", "slots", "many senders"])
def test_reserve_writes_a_message_in_place(channel, kind):
    geometry = {"bytes": dict(max_queued_bytes=4096),
                "slots": dict(message_length=64, max_queued_messages=8),
                "many senders": dict(message_length=64, max_queued_messages=8, max_senders=2)}[kind]
    with Sender(channel, **geometry) as tx, Receiver(channel, **geometry) as rx:
        with tx.reserve(10) as buf:
            assert isinstance(buf, memoryview) and len(buf) == 10 and not buf.readonly
            buf[:] = b"0123456789"
        assert rx.recv(timeout=5) == b"0123456789"
        claim = tx.reserve(64)
        with claim as buf:
            buf[:3] = b"abc"
            claim.truncate(3)
        assert rx.recv(timeout=5) == b"abc"
        # An exception inside the block sends nothing.
        with pytest.raises(KeyError):
            with tx.reserve(5) as buf:
                buf[:] = b"never"
                raise KeyError("stop")
        tx.send(b"next")
        assert rx.recv(timeout=5) == b"next"
        assert rx.try_recv() is None
        with pytest.raises(MessageTooLongError):
            tx.reserve(65 if kind != "bytes" else tx.message_length + 1).__enter__()
        with pytest.raises(ValueError, match="between 0 and the 4 bytes"):
            tx.reserve(4).truncate(5)
        # The buffer is gone once the block ends.
        with tx.reserve(4) as buf:
            buf[:] = b"last"
        with pytest.raises(ValueError):
            buf[0]
        assert rx.recv(timeout=5) == b"last"


def test_a_view_kept_past_a_reserve_block_sends_nothing_and_holds_the_sender(channel):
    with Sender(channel, max_queued_bytes=4096) as tx, Receiver(channel, max_queued_bytes=4096) as rx:
        with pytest.raises(BufferError, match="still alive"):
            with tx.reserve(8) as buf:
                buf[:] = b"12345678"
                kept = buf[2:4]
        with pytest.raises(RuntimeError, match="in use"):
            tx.send(b"x")
        assert rx.try_recv() is None
        kept[:] = b"zz"       # writes into room no message uses
        del kept
        tx.send(b"after")
        assert rx.recv(timeout=5) == b"after"
        assert rx.try_recv() is None


def test_reserve_waits_for_room_and_times_out(channel):
    with Sender(channel, max_queued_bytes=64) as tx, Receiver(channel, max_queued_bytes=64) as rx:
        tx.send(b"a" * 24)
        tx.send(b"b" * 8)
        with pytest.raises(SendTimeout):
            with tx.reserve(24, timeout=0.05):
                pass
        assert rx.recv(timeout=5) == b"a" * 24
        with tx.reserve(24, timeout=5) as buf:
            buf[:] = b"c" * 24
        assert [rx.recv(timeout=5) for _ in range(2)] == [b"b" * 8, b"c" * 24]


def test_the_two_kinds_of_channel_and_their_sizes_are_checked(channel):
    with pytest.raises(ValueError, match="max_queued_messages=4 and max_queued_bytes=4096"):
        Sender(channel, max_queued_messages=4, max_queued_bytes=4096)
    # Many senders: each record's header is 16 bytes, so a message may take 16 bytes less.
    with pytest.raises(ValueError, match="message_length=2033 does not fit .* its 16-byte header, 2032 bytes"):
        Sender(channel, max_queued_bytes=4096, max_senders=2, message_length=2033)
    with pytest.raises(ValueError, match="message_length=3000 does not fit"):
        Sender(channel, max_queued_bytes=4096, message_length=3000)
    with Sender(channel, max_queued_bytes=4000, message_length=100) as tx:
        assert tx.max_queued_bytes == 4000
        # An end that leaves message_length out takes the channel's.
        with Receiver(channel, max_queued_bytes=4000) as rx:
            assert rx.message_length == 100
        with pytest.raises(ChannelMismatchError, match="max_queued_bytes=4000, this end asked for max_queued_bytes=8000"):
            Receiver(channel, max_queued_bytes=8000)
        with pytest.raises(ChannelMismatchError, match="exists as a byte channel.*asked for a slot channel"):
            Receiver(channel, message_length=100)
        with pytest.raises(ChannelMismatchError, match="message_length=100, this end asked for message_length=50"):
            Receiver(channel, max_queued_bytes=4000, message_length=50)
    cywhip.unlink(channel)
    with Sender(channel, message_length=100):
        with pytest.raises(ChannelMismatchError, match="exists as a slot channel.*asked for a byte channel"):
            Receiver(channel, max_queued_bytes=4000)


def _record_at(channel, offset):
    """A writable mapping of the channel file and the ring's first byte's offset in it."""
    fd = os.open(channel_path(channel), os.O_RDWR)
    try:
        return mmap.mmap(fd, 0), slots_offset_for()
    finally:
        os.close(fd)


@pytest.mark.parametrize("header", [
    (5000, 0),            # longer than message_length
    (200, 0),             # longer than the bytes published
    (8, 7),               # an unknown kind
    (16, 1),              # padding that does not reach the ring's end
])
def test_an_impossible_record_header_is_corrupt_not_a_crash(channel, header):
    with Sender(channel, max_queued_bytes=4096) as tx, Receiver(channel, max_queued_bytes=4096) as rx:
        tx.send(b"x" * 100)
        region, ring = _record_at(channel, 0)
        try:
            struct.pack_into("<II", region, ring, *header)
            with pytest.raises(ChannelCorruptError, match=f"kind {header[1]} and length {header[0]}"):
                rx.recv(timeout=5)
            struct.pack_into("<II", region, ring, 100, 0)
            assert rx.recv(timeout=5) == b"x" * 100
        finally:
            region.close()


KILLED_SENDER = r"""
import struct, sys, zlib
import cywhip
name, incarnation = sys.argv[1], int(sys.argv[2])
tx = cywhip.Sender(name, max_queued_bytes=8192)
print("ready", flush=True)
i = 0
while True:
    n = (i * 7919 + incarnation) % 1500
    body = bytes((i + k) & 0xFF for k in range(n)) if n < 64 else (i.to_bytes(4, "little") * (n // 4 + 1))[:n]
    head = struct.pack("<III", incarnation, i, zlib.crc32(body))
    if i % 3 == 0:
        with tx.reserve(len(head) + n) as buf:
            buf[:12] = head
            buf[12:] = body
    else:
        tx.send(head + body)
    i += 1
"""


def test_a_sender_killed_at_any_moment_leaves_only_whole_messages(channel, peers):
    rx = Receiver(channel, max_queued_bytes=8192)
    rng = random.Random(27)
    expect = {}
    for incarnation in range(6):
        proc = peers.start(channel, incarnation, script=KILLED_SENDER, stdout=None)
        deadline = time.monotonic() + 30
        taken = 0
        stop_after = rng.randrange(200, 3000)
        while taken < stop_after:
            msg = rx.recv(timeout=max(0.1, deadline - time.monotonic()))
            inc, i, crc = struct.unpack_from("<III", msg)
            assert zlib.crc32(msg[12:]) == crc, (inc, i)
            assert i == expect.get(inc, 0), (inc, i, expect.get(inc, 0))
            expect[inc] = i + 1
            taken += 1
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        # What the dead sender published arrives whole; nothing else does.
        while (msg := rx.try_recv()) is not None:
            inc, i, crc = struct.unpack_from("<III", msg)
            assert (inc, zlib.crc32(msg[12:])) == (incarnation, crc)
            assert i == expect[inc]
            expect[inc] = i + 1
    rx.close()
    assert sorted(expect) == list(range(6))


def test_a_restarted_receiver_goes_on_where_the_last_one_released(channel):
    with Sender(channel, max_queued_bytes=4096) as tx:
        rx = Receiver(channel, max_queued_bytes=4096)
        tx.send_many(numbered(i) for i in range(5))
        assert [rx.recv(timeout=5) for _ in range(2)] == [numbered(0), numbered(1)]
        rx.close()
        with Receiver(channel, max_queued_bytes=4096) as rx:
            assert rx.recv_many(10, timeout=5) == [numbered(i) for i in range(2, 5)]


def test_python_objects_of_any_size_cross_a_byte_channel(channel):
    np = pytest.importorskip("numpy")
    with Sender(channel, max_queued_bytes=1 << 16, message_type=object) as tx, \
            Receiver(channel, max_queued_bytes=1 << 16, message_type=object) as rx:
        sizes = [0, 1, 10, 1000, 3000, 5, 4000]
        for k in sizes:
            tx.send({"k": k, "a": np.arange(k, dtype=np.float64), "b": bytearray(b"x" * (k % 7))})
        for k in sizes:
            msg = rx.recv(timeout=5)
            assert msg["k"] == k and msg["b"] == bytearray(b"x" * (k % 7))
            assert np.array_equal(msg["a"], np.arange(k, dtype=np.float64))
        # A message the ring has no room for now is not sent, and what was measured for it is
        # dropped: the next call sends its own object.
        big = np.ones(3000)
        assert tx.try_send(big) and tx.try_send(big)
        assert not tx.try_send(big)
        with pytest.raises(SendTimeout, match=r"had no room for a \d+-byte message in its 65536-byte ring"):
            tx.send(big, timeout=0.01)
        assert np.array_equal(rx.recv(timeout=5), big)
        assert tx.try_send([1, 2, 3])
        assert np.array_equal(rx.recv(timeout=5), big)
        assert rx.recv(timeout=5) == [1, 2, 3]


def test_channels_and_the_command_line_show_a_byte_channels_bytes(channel):
    import subprocess
    import sys
    with Sender(channel, max_queued_bytes=4096) as tx, Receiver(channel, max_queued_bytes=4096):
        tx.send(b"x" * 20)
        info = next(c for c in cywhip.channels() if c.name == channel)
        assert (info.max_queued_bytes, info.max_queued_messages, info.depth) == (4096, None, 8 + 24)
        assert info.problem is None
        out = subprocess.run([sys.executable, "-m", "cywhip", "channels"], capture_output=True,
                             text=True, timeout=60).stdout
        assert f"{channel}: 32/4096 bytes queued, message_length 2040" in out, out


def test_borrow_lends_a_byte_channels_messages_in_place_up_to_the_rings_end(channel):
    with Sender(channel, max_queued_bytes=256) as tx, Receiver(channel, max_queued_bytes=256) as rx:
        msgs = [bytes([65 + i]) * (i * 5) for i in range(8)]      # records of 8 to 48 bytes
        tx.send_many(msgs[:6])
        with rx.borrow() as batch:
            assert [bytes(m) for m in batch] == msgs[:6]
            assert all(m.readonly for m in batch)
            kept = batch[1]
        with pytest.raises(ValueError):
            bytes(kept)               # released when the block ended
        # The next two cross the ring's end: a borrow lends up to it, the next one the rest.
        tx.send_many(msgs[6:] + [b"tail"])
        lent = []
        while len(lent) < 3:
            with rx.borrow(timeout=5) as batch:
                lent += [bytes(m) for m in batch]
        assert lent == msgs[6:] + [b"tail"]
        assert rx.try_recv() is None
        tx.send_many([b"a", b"b", b"c"])
        with rx.borrow(2, timeout=5) as batch:
            assert [bytes(m) for m in batch] == [b"a", b"b"]
        assert rx.recv(timeout=5) == b"c"


def test_borrow_lends_a_byte_channels_messages_where_they_lie_and_keeps_its_cursors_sound(channel):
    # borrow() on a byte channel took the slot path: it read a "length" at every byte of the
    # ring, lent views of garbage, and moved the read cursor on by the number of messages lent
    # (unaligned), after which a new receiver refused the channel as corrupt.
    with Sender(channel, max_queued_bytes=4096) as tx, Receiver(channel, max_queued_bytes=4096) as rx:
        sent = [numbered(i) for i in range(40)]
        got = []
        i = 0
        while i < len(sent):
            # Fill what fits, then borrow a few at a time: the ring wraps, the padding at its
            # end is stepped over, and no lease reaches across the end.
            while i < len(sent) and tx.try_send(sent[i]):
                i += 1
            for count in (3, None):
                with rx.borrow(count, timeout=5) as batch:
                    assert 1 <= len(batch) <= (count or len(batch))
                    got += [bytes(view) for view in batch]
        while len(got) < len(sent):
            with rx.borrow(timeout=5) as batch:
                got += [bytes(view) for view in batch]
        assert got == sent
        assert tx.published > 4096 and rx.depth == 0
    # The cursors the borrows released are where the next receiver starts.
    with Receiver(channel, max_queued_bytes=4096) as rx:
        assert rx.try_recv() is None


def test_a_borrow_ends_at_a_record_that_fills_the_ring_to_its_end(channel):
    # Records of 64 bytes fill a ring of 256 exactly: no padding before the one at index 0,
    # which a lease must not take as following the last one.
    with Sender(channel, max_queued_bytes=256) as tx, Receiver(channel, max_queued_bytes=256) as rx:
        msgs = [bytes([i]) * 56 for i in range(5)]
        assert tx.send_many(msgs[:3], timeout=5) == 3
        with rx.borrow(timeout=5) as batch:
            assert [bytes(v) for v in batch] == msgs[:3]
        assert tx.send_many(msgs[3:], timeout=5) == 2
        with rx.borrow(timeout=5) as batch:
            assert [bytes(v) for v in batch] == [msgs[3]]
        with rx.borrow(timeout=5) as batch:
            assert [bytes(v) for v in batch] == [msgs[4]]


def test_an_unaligned_write_cursor_is_named_and_the_receiver_recovers_once_it_is_put_right(channel):
    # Step B5 checks write_cursor % 8 == 0.  Without that check the receiver cached the
    # unaligned cursor, blamed the record at it ("4 bytes published from there") and, since a
    # cached cursor ahead of the reader is never loaded again, kept raising after the cursor was
    # put right and more messages were sent.
    from cywhip._testing._model import layout
    with Sender(channel, max_queued_bytes=256) as tx, Receiver(channel, max_queued_bytes=256) as rx:
        tx.send(b"a" * 20)
        assert rx.recv(timeout=5) == b"a" * 20
        region, _ = _record_at(channel, 0)
        at = layout()["write_cursor"]
        try:
            w = struct.unpack_from("<Q", region, at)[0]
            struct.pack_into("<Q", region, at, w + 4)
            with pytest.raises(ChannelCorruptError, match=f"write cursor {w + 4}"):
                rx.recv(timeout=0)
            struct.pack_into("<Q", region, at, w)
            tx.send(b"b" * 20)
            assert rx.recv(timeout=5) == b"b" * 20
        finally:
            region.close()


def test_an_asyncio_sender_reserves_room_without_blocking_the_loop(channel, run):
    async def main():
        async with cywhip.asyncio.Sender(channel, max_queued_bytes=256) as tx, \
                cywhip.asyncio.Receiver(channel, max_queued_bytes=256) as rx:
            await tx.send(b"a" * 100)
            await tx.send(b"a" * 100)                 # 224 of 256 bytes: no room for 120 more
            got = []

            async def take_later():
                await asyncio.sleep(0.05)
                got.extend(await rx.recv_many(2, timeout=5))
                while len(got) < 2:
                    got.append(await rx.recv())

            taker = asyncio.ensure_future(take_later())
            claim = tx.reserve(112, timeout=10)
            async with claim as buf:                 # waits, while the loop runs take_later()
                assert got == [b"a" * 100] * 2
                buf[:3] = b"xyz"
                claim.truncate(3)
            await taker
            assert await rx.recv(timeout=5) == b"xyz"
            with pytest.raises(KeyError):
                async with tx.reserve(8) as buf:
                    raise KeyError("nothing is sent")
            with pytest.raises(SendTimeout):
                await tx.send(b"b" * 100)
                await tx.send(b"c" * 100)
                async with tx.reserve(112, timeout=0.05):
                    pass
            assert await rx.recv_many(10, timeout=5) == [b"b" * 100, b"c" * 100]

    run(main())


class _Bytes(bytes):
    """A bytes subclass: not exactly bytes, so it takes the codec's general way."""


def test_send_and_send_many_take_bytes_and_other_buffers_alike_and_refuse_the_too_long(channel):
    """Exact bytes go a shorter way than other buffers on a byte channel: both keep the cap,
    the message's own length as its room, and send_many's "what came before is sent"."""
    with Sender(channel, max_queued_bytes=1024) as tx, Receiver(channel, max_queued_bytes=1024) as rx:
        top = tx.message_length
        kinds = [b"exact", _Bytes(b"subclass"), bytearray(b"bytearray"), memoryview(b"memoryview"), b""]
        for m in kinds:
            tx.send(m)
        assert [rx.recv(timeout=5) for _ in kinds] == [bytes(m) for m in kinds]
        assert tx.send_many(kinds) == len(kinds)
        assert rx.recv_many(100, timeout=5) == [bytes(m) for m in kinds]
        for too_long in (b"x" * (top + 1), _Bytes(b"y" * (top + 1)), bytearray(top + 1)):
            with pytest.raises(MessageTooLongError, match=f"{top + 1} bytes.*message_length={top}"):
                tx.send(too_long)
            with pytest.raises(MessageTooLongError, match=f"{top + 1} bytes.*message_length={top}"):
                tx.send_many([b"before", too_long, b"after"])
            # The one before went out; the long one and the one after did not.
            assert rx.recv_many(100, timeout=5) == [b"before"]
        assert rx.try_recv() is None
        tx.send(b"z" * top)
        assert rx.recv(timeout=5) == b"z" * top


@pytest.mark.timeout(60)
@pytest.mark.parametrize("hook", ["on_message", "on_batch"])
def test_an_on_error_receiver_stops_on_a_record_it_cannot_step_over(channel, mapped, hook):
    # A record whose header is impossible has no length to step over.  With on_error the
    # thread once handed the error to the hook and stepped on by the length of the record
    # before it, into the middle of this one, and delivered its bytes as a message ("EVIL",
    # never sent).  It stops on it now, as without on_error, and takes nothing more.
    kw = dict(max_queued_bytes=256, message_length=40)
    first = b"a" * 10                                   # a record of 8 + 16 bytes, at byte 0
    bad = b"x" * 16 + struct.pack("<II", 4, 0) + b"EVIL" + b"y" * 2   # at byte 24
    got, errors = [], []
    with Sender(channel, **kw) as tx:
        with mapped(channel) as mm:
            tx.send_many([first, bad, b"after"], timeout=5)
            ring = slots_offset_for()
            length, kind = struct.unpack_from("<II", mm, ring + 24)
            assert (length, kind) == (len(bad), 0)
            struct.pack_into("<II", mm, ring + 24, length, 9)       # no record has kind 9
        if hook == "on_message":
            more = dict(on_message=got.append)
        else:
            more = dict(on_batch=got.extend)
        rx = Receiver(channel, **kw, **more, on_error=errors.append)
        deadline = time.monotonic() + 10
        while rx.running and time.monotonic() < deadline:
            time.sleep(0.01)
        stopped = not rx.running
        try:
            rx.close()
        except ChannelCorruptError as exc:
            raised = str(exc)
        else:
            raised = None
    assert stopped and got == [first] and errors == [], (
        f"the thread went on past a record it cannot step over: it delivered {got}, "
        f"the hook got {errors}")
    assert raised is not None and "the record at byte 24 has kind 9" in raised, raised

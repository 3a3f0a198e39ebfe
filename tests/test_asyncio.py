"""cywhip.asyncio: ends awaited on an event loop (asyncio's own and uvloop)."""
import asyncio
import ctypes
import json
import os
import queue
import random
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import cywhip
import cywhip.asyncio as ca
from cywhip._testing.peer import expected_crc, payload

try:
    import uvloop
except ImportError:      # pragma: no cover - uvloop is in the test extra
    uvloop = None

try:
    import numpy as np
except ImportError:      # pragma: no cover
    np = None

needs_numpy = pytest.mark.skipif(np is None, reason="needs NumPy")


def waker_threads():
    return [t for t in threading.enumerate() if t.name == "cywhip-asyncio-waker" and t.is_alive()]


@pytest.fixture
def thread_waker(monkeypatch):
    """The ends of this test are woken by waker threads (CYWHIP_ASYNCIO_WAKER=thread)."""
    monkeypatch.setattr(ca, "_WAKER", "thread")


@pytest.fixture(params=["fd", "thread"])
def waker(request, monkeypatch):
    """Each way an asyncio end is woken: its own descriptor watched by the loop, or a thread."""
    monkeypatch.setattr(ca, "_WAKER", request.param)
    return request.param


@pytest.fixture(autouse=True)
def no_waker_thread_outlives_a_test():
    yield
    deadline = time.monotonic() + 5
    while waker_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert waker_threads() == []


async def _cancelled(coro):
    """Await coro, returning the CancelledError it raises: read inside the task, because on
    Python 3.10 awaiting a cancelled task raises a new CancelledError without its attributes."""
    try:
        await coro
    except asyncio.CancelledError as exc:
        return exc
    raise AssertionError("not cancelled")


def number(msg):
    return int.from_bytes(bytes(msg[:8]), "little")


class Ticker:
    """A coroutine that ticks every millisecond and records the longest gap between ticks."""

    def __init__(self):
        self.max_gap = 0.0
        self.ticks = 0
        self.task = None

    async def _run(self):
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.001)
            now = time.monotonic()
            self.max_gap = max(self.max_gap, now - last)
            self.ticks += 1
            last = now

    def start(self):
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self):
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass


# --------------------------------------------------------------- streams


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["recv", "recv_many", "async_for"])
def test_a_stream_from_a_sender_process_arrives_complete_and_in_order_while_the_loop_ticks(
        channel, peers, run, mode):
    count = 30_000 if mode != "recv_many" else 300_000

    async def main():
        ticker = Ticker()
        ticker.start()
        got = []
        async with ca.Receiver(channel, message_length=32, max_queued_messages=1024) as rx:
            sender = peers.start("send", channel, "--count", count, "--mode", "send_many")
            if mode == "recv":
                for _ in range(count):
                    got.append(await rx.recv(timeout=30))
            elif mode == "recv_many":
                while len(got) < count:
                    got += await rx.recv_many(4096, timeout=30)
            else:
                async for msg in rx:
                    got.append(msg)
                    if len(got) == count:
                        break
        await ticker.stop()
        return got, ticker, sender

    got, ticker, sender = run(main(), timeout=100)
    assert peers.finish(sender)[0] == 0
    assert len(got) == count
    assert [number(m) for m in got] == list(range(count))
    crc = 0
    import zlib
    for m in got:
        crc = zlib.crc32(m, crc)
    assert crc == expected_crc(count)
    # Liveness, not speed: the loop kept running other tasks throughout.
    assert ticker.ticks > 0
    assert ticker.max_gap < 0.5, ticker.max_gap


@pytest.mark.timeout(60)
def test_an_asyncio_sender_streams_to_a_receiver_process_with_back_pressure(channel, peers, run):
    count = 100_000

    async def main():
        ticker = Ticker()
        ticker.start()
        async with ca.Sender(channel, message_length=32, max_queued_messages=64) as tx:
            receiver = peers.start("recv", channel, "--count", count, "--mode", "recv",
                                   "--capacity", 64)
            msgs = [payload(i) for i in range(count)]
            half = count // 2
            for m in msgs[:1000]:
                await tx.send(m, timeout=30)
            assert await tx.send_many(msgs[1000:half], timeout=30) == half - 1000
            assert await tx.send_many(iter(msgs[half:]), timeout=30) == count - half
        await ticker.stop()
        return receiver, ticker

    receiver, ticker = run(main())
    rc, out, err = peers.finish(receiver)
    assert rc == 0, err
    report = json.loads(out)
    assert report["received"] == count and report["in_order"] and report["crc32"] == expected_crc(count)
    assert ticker.max_gap < 0.5, ticker.max_gap


def test_a_waiting_message_is_returned_without_suspending(channel, run):
    async def main():
        async with ca.Receiver(channel, message_length=8) as rx:
            with cywhip.Sender(channel, message_length=8) as tx:
                tx.send(b"a")
                tx.send(b"b")
                # As if the end had just let the loop run (and would not owe it a turn for a
                # second, however long this process waits for a CPU).
                rx._ran = time.monotonic_ns() + 10 ** 9
                coro = rx.recv()
                with pytest.raises(StopIteration) as stop:
                    coro.send(None)             # completes in one step: no trip through the loop
                assert stop.value.value == b"a"
                assert await rx.recv() == b"b"
    run(main())


def test_send_and_async_for_complete_in_their_first_step_when_they_can(channel, run):
    async def main():
        async with ca.Receiver(channel, message_length=8) as rx, ca.Sender(channel, message_length=8) as tx:
            rx._ran = tx._ran = time.monotonic_ns() + 10 ** 9    # owing the loop no turn
            with pytest.raises(StopIteration) as stop:
                tx.send(b"a").send(None)
            assert stop.value.value is None and rx.depth == 1
            with pytest.raises(StopIteration) as stop:
                rx.__anext__().send(None)
            assert stop.value.value == b"a"
            tx.try_send(b"b")
            with pytest.raises(StopIteration) as stop:
                rx.recv_many(5).send(None)
            assert stop.value.value == [b"b"]
    run(main())


# ------------------------------------------------------- a call's first step


def test_a_call_is_a_coroutine_to_asyncio_and_is_awaited_once(channel, run):
    async def main():
        async with ca.Receiver(channel, message_length=8) as rx, ca.Sender(channel, message_length=8) as tx:
            call = tx.send(b"a")
            assert asyncio.iscoroutine(call) and call.__qualname__ == "Sender.send"
            await call
            with pytest.raises(RuntimeError, match="already awaited"):
                await call
            call = rx.recv()
            task = asyncio.get_running_loop().create_task(call)
            assert "Receiver.recv" in repr(task)
            assert await task == b"a"
            with pytest.raises(RuntimeError, match="already awaited"):
                call.send(None)
            call = rx.recv()
            with pytest.raises(TypeError, match="non-None"):
                call.send(1)
            call.close()
    run(main())


def test_a_call_never_awaited_takes_and_sends_nothing_and_warns(channel, run):
    async def main():
        async with ca.Receiver(channel, message_length=8) as rx, ca.Sender(channel, message_length=8) as tx:
            tx.try_send(b"first")
            with pytest.warns(RuntimeWarning, match=r"Receiver\.recv\(\) was never awaited"):
                rx.recv()
            with pytest.warns(RuntimeWarning, match=r"Sender\.send\(\) was never awaited"):
                tx.send(b"never")
            with pytest.warns(RuntimeWarning, match=r"Receiver\.recv_many\(\) was never awaited"):
                rx.recv_many(10)
            assert rx.depth == 1
            assert await rx.recv() == b"first"
            assert rx.try_recv() is None
    run(main())


def test_a_call_closed_before_its_first_step_takes_nothing(channel, run):
    async def main():
        async with ca.Receiver(channel, message_length=8) as rx, ca.Sender(channel, message_length=8) as tx:
            tx.try_send(b"first")
            for call in (rx.recv(), rx.recv_many(3), rx.__anext__(), tx.send(b"closed")):
                call.close()
                call.close()
                with pytest.raises(RuntimeError, match="already awaited"):
                    await call
            assert rx.depth == 1
            assert [m async for m in _take(rx, 1)] == [b"first"]
    run(main())


async def _take(rx, n):
    async for msg in rx:
        yield msg
        n -= 1
        if not n:
            return


def test_throw_into_a_call_before_its_first_step_raises_there_and_takes_nothing(channel, run):
    async def main():
        async with ca.Receiver(channel, message_length=8) as rx, ca.Sender(channel, message_length=8) as tx:
            tx.try_send(b"first")
            with pytest.raises(ValueError, match="one"):
                rx.recv().throw(ValueError("one"))
            with pytest.raises(KeyError):
                rx.recv_many(2).throw(KeyError)
            with pytest.raises(ValueError, match="three"):
                tx.send(b"x").throw(ValueError, ValueError("three"), None)
            with pytest.raises(TypeError):
                rx.recv().throw(42)
            assert rx.depth == 1 and not rx._busy
            assert await rx.recv() == b"first"
    run(main())


def test_a_task_cancelled_before_its_first_step_takes_and_sends_nothing(channel, run):
    async def main():
        loop = asyncio.get_running_loop()
        async with ca.Receiver(channel, message_length=8) as rx, ca.Sender(channel, message_length=8) as tx:
            tx.try_send(b"first")
            tasks = [loop.create_task(rx.recv()), loop.create_task(tx.send(b"cancelled")),
                     loop.create_task(rx.recv_many(5))]
            for task in tasks:
                task.cancel()                 # before the task ever ran
            for task in tasks:
                with pytest.raises(asyncio.CancelledError):
                    await task
            with pytest.raises((TimeoutError, asyncio.TimeoutError)):
                await asyncio.wait_for(rx.recv(), 0)    # wait_for(..., 0) cancels it unstarted
            assert rx.depth == 1
            assert await rx.recv() == b"first"
            assert rx.try_recv() is None
    run(main())


def test_a_waiting_call_passes_send_throw_and_close_to_its_wait(channel, run):
    async def main():
        async with ca.Receiver(channel, message_length=8) as rx, ca.Sender(channel, message_length=8) as tx:
            call = rx.recv()
            call.send(None)                    # nothing waiting: the call now waits
            assert rx._busy
            with pytest.raises(RuntimeError, match="one task at a time"):
                await rx.recv()
            tx.try_send(b"first")
            with pytest.raises(asyncio.CancelledError):
                call.throw(asyncio.CancelledError())
            assert not rx._busy and rx.depth == 1     # the cancelled wait took nothing
            with pytest.raises(RuntimeError, match="already awaited"):
                call.send(None)

            call = rx.recv_many(4)
            assert await call == [b"first"]
            call = rx.recv()
            call.send(None)
            call.close()                       # ends the wait; the end is free again
            assert not rx._busy
            tx.try_send(b"second")
            assert await rx.recv() == b"second"
    run(main())


def test_a_message_that_deserializes_to_none_is_returned_as_none(channel, run):
    async def main():
        async with ca.Receiver(channel, lambda buf: None, message_length=8) as rx, \
                ca.Sender(channel, message_length=8) as tx:
            await tx.send(b"a")
            await tx.send(b"b")
            assert await rx.recv() is None
            assert [m async for m in _take(rx, 1)] == [None]
            assert rx.depth == 0
    run(main())


# ------------------------------------------------------------------ spinning


def test_a_message_that_comes_while_the_end_spins_is_taken_without_the_waker(channel, run):
    async def main():
        loop = asyncio.get_running_loop()
        async with ca.Receiver(channel, message_length=8) as rx, ca.Sender(channel, message_length=8) as tx:
            for word in (b"one", b"two", b"three"):
                loop.call_soon(tx.try_send, word)      # runs in the loop's next round
                assert await rx.recv(timeout=5) == word
            assert not rx._has_slept and waker_threads() == []   # it never had to sleep
            loop.call_later(0.02, tx.try_send, b"late")    # long after the spin: the end sleeps
            assert await rx.recv(timeout=5) == b"late"
            assert rx._has_slept
    run(main())


def test_an_end_sleeps_without_spinning_after_a_long_wait_or_with_spin_time_zero(channel, run):
    async def main():
        loop = asyncio.get_running_loop()
        async with ca.Receiver(channel, message_length=8) as rx, ca.Sender(channel, message_length=8) as tx:
            rx._slept = 10 ** 9                       # its last wait slept for a second
            # and the loop is owed no turn for a minute: no look of the first step is put off for
            # a round of the loop (in which try_send would run), however slow the machine.
            rx._ran = time.monotonic_ns() + 60 * 10 ** 9
            loop.call_soon(tx.try_send, b"one")
            assert await rx.recv(timeout=5) == b"one"
            assert rx._has_slept                       # it slept at once
        async with ca.Receiver(channel + "-0", message_length=8, spin_time=0) as rx, \
                ca.Sender(channel + "-0", message_length=8) as tx:
            rx._ran = time.monotonic_ns() + 60 * 10 ** 9
            loop.call_soon(tx.try_send, b"two")
            assert await rx.recv(timeout=5) == b"two"
            assert rx._has_slept
        cywhip.unlink(channel + "-0", missing_ok=True)
    run(main())


def test_a_spinning_receive_cancelled_or_closed_takes_nothing(channel, run):
    async def main():
        loop = asyncio.get_running_loop()
        async with ca.Receiver(channel, message_length=8) as rx, ca.Sender(channel, message_length=8) as tx:
            task = loop.create_task(rx.recv())
            await asyncio.sleep(0)                     # the task has looked once and spins
            assert rx._busy and not rx._has_slept
            tx.try_send(b"first")
            task.cancel()                              # before its next look
            with pytest.raises(asyncio.CancelledError):
                await task
            assert rx.depth == 1 and not rx._busy

            assert await rx.recv() == b"first"

            # A timeout shorter than the spin ends it.
            t0 = time.monotonic()
            with pytest.raises(cywhip.ReceiveTimeout):
                await rx.recv(timeout=0.00001)
            assert time.monotonic() - t0 < 0.5 and not rx._has_slept

            # close() from another task ends the spin.
            task = loop.create_task(rx.recv())
            await asyncio.sleep(0)
            rx.close()
            with pytest.raises(cywhip.ChannelClosedError):
                await task
    run(main())


# ------------------------------------------------------------ cancellation


@pytest.mark.timeout(150)
@pytest.mark.parametrize("call", ["recv", "recv_many"])
def test_a_storm_of_cancelled_receives_loses_and_duplicates_nothing(channel, run, call):
    # The sender goes on until the receiver has both taken 20,000 messages and seen 500 of its
    # waits cut short by their deadlines (how fast that comes depends on the machine: a slow or
    # loaded one needs more messages for as many cancellations), then stops; every message it
    # sent must arrive once, in order.
    count, storm = 20_000, 500
    stop = threading.Event()
    sent = []

    def feed():
        with cywhip.Sender(channel, message_length=16, max_queued_messages=256) as tx:
            rnd = random.Random(1)
            i = 0
            while not stop.is_set():
                tx.send(i.to_bytes(8, "little"), timeout=30)
                i += 1
                if rnd.random() < 0.03:
                    time.sleep(rnd.random() * 0.003)
            sent.append(i)

    async def main():
        got = []
        cancelled = 0
        rnd = random.Random(2)
        async with ca.Receiver(channel, message_length=16, max_queued_messages=256) as rx:
            t = threading.Thread(target=feed)
            t.start()
            try:
                deadline = time.monotonic() + 100
                while (len(got) < count or cancelled < storm) and time.monotonic() < deadline:
                    wait = rnd.choice((0, 0.00001, 0.0001, 0.0005, 0.001))
                    try:
                        if call == "recv":
                            got.append(await asyncio.wait_for(rx.recv(), wait))
                        else:
                            got += await asyncio.wait_for(rx.recv_many(rnd.randint(1, 50)), wait)
                    except (TimeoutError, asyncio.TimeoutError):
                        cancelled += 1
            finally:
                stop.set()
                # The sender may wait for room: keep taking until it has stopped.
                while t.is_alive():
                    got += await rx.recv_many(256, timeout=0.05) if rx.depth else []
                    await asyncio.sleep(0)
                t.join(60)
            while rx.depth:
                got += await rx.recv_many(256, timeout=5)
        return got, cancelled

    got, cancelled = run(main(), timeout=140)
    assert sent and [number(m) for m in got] == list(range(sent[0]))
    assert len(got) >= count and cancelled >= storm, (len(got), cancelled)


@pytest.mark.timeout(60)
def test_a_cancelled_receive_leaves_the_message_first_in_line(channel, run):
    async def main():
        async with ca.Receiver(channel, message_length=8) as rx:
            with cywhip.Sender(channel, message_length=8) as tx:
                task = asyncio.get_running_loop().create_task(rx.recv())
                await asyncio.sleep(0.05)       # the receiver sleeps
                tx.send(b"first")               # its wake-up is under way...
                task.cancel()                   # ...when it is cancelled
                with pytest.raises(asyncio.CancelledError):
                    await task
                tx.send(b"second")
                assert await rx.recv(timeout=5) == b"first"
                assert await rx.recv(timeout=5) == b"second"
    run(main())


@pytest.mark.timeout(120)
def test_a_storm_of_cancelled_sends_sends_each_message_once_or_not_at_all(channel, run):
    count = 10_000
    got = []

    def drain():
        with cywhip.Receiver(channel, message_length=16, max_queued_messages=8) as rx:
            rnd = random.Random(3)
            while len(got) < count:
                got.extend(rx.recv_many(rnd.randint(1, 8), timeout=30))
                if rnd.random() < 0.05:
                    time.sleep(0.001)

    async def main():
        cancelled = 0
        rnd = random.Random(4)
        async with ca.Sender(channel, message_length=16, max_queued_messages=8) as tx:
            t = threading.Thread(target=drain)
            t.start()
            try:
                i = 0
                while i < count:
                    try:
                        await asyncio.wait_for(tx.send(i.to_bytes(8, "little")),
                                               rnd.choice((0, 0.00001, 0.0002)))
                        i += 1
                    except (TimeoutError, asyncio.TimeoutError):
                        cancelled += 1      # not sent: the same number goes again
            finally:
                t.join(60)
        return cancelled

    cancelled = run(main(), timeout=110)
    assert [number(m) for m in got] == list(range(count))
    assert cancelled > 0


def test_a_cancelled_send_many_says_how_many_went_out(channel, run):
    async def main():
        loop = asyncio.get_running_loop()
        async with ca.Sender(channel, message_length=8, max_queued_messages=8) as tx:
            with cywhip.Receiver(channel, message_length=8, max_queued_messages=8) as rx:
                msgs = [i.to_bytes(8, "little") for i in range(20)]
                task = loop.create_task(_cancelled(tx.send_many(msgs)))
                await asyncio.sleep(0.05)
                task.cancel()
                err = await task
                assert err.sent == 8 and err.unsent == []
                assert [number(m) for m in rx.recv_many(100)] == list(range(8))

                # A one-shot iterator: what was drawn and not sent comes back as `unsent`.
                it = iter(msgs)
                task = loop.create_task(_cancelled(tx.send_many(it)))
                await asyncio.sleep(0.05)
                task.cancel()
                err = await task
                assert err.sent == 8 and len(err.unsent) > 0
                assert [number(m) for m in err.unsent + list(it)] == list(range(8, 20))
                assert rx.depth == 8

                # A cancelled single send did not send.
                task = loop.create_task(tx.send(b"late"))
                await asyncio.sleep(0.05)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert [number(m) for m in rx.recv_many(100)] == list(range(8))
                assert rx.try_recv() is None
    run(main())


def test_timeouts_raise_the_plain_errors_with_what_was_sent(channel, run):
    async def main():
        async with ca.Sender(channel, message_length=8, max_queued_messages=4) as tx, \
                ca.Receiver(channel, message_length=8, max_queued_messages=4) as rx:
            with pytest.raises(cywhip.ReceiveTimeout) as err:
                await rx.recv(timeout=0.05)
            assert isinstance(err.value, queue.Empty)
            with pytest.raises(queue.Empty):
                await rx.recv_many(10, timeout=0)
            with pytest.raises(cywhip.SendTimeout) as err:
                await tx.send_many([b"x"] * 10, timeout=0.05)
            assert isinstance(err.value, queue.Full) and err.value.sent == 4
            with pytest.raises(queue.Full):
                await tx.send(b"y", timeout=0.02)
            assert len(await rx.recv_many(10, timeout=1)) == 4
            with pytest.raises(ValueError):
                await rx.recv(timeout=-1)
            with pytest.raises(TypeError):
                await rx.recv_many(1.5)
    run(main())


# ----------------------------------------------------------- back-pressure


@pytest.mark.timeout(60)
def test_a_sender_on_a_full_ring_waits_for_room_without_holding_the_loop(channel, run):
    count = 2000
    got = []

    def slow_reader():
        with cywhip.Receiver(channel, message_length=8, max_queued_messages=4) as rx:
            while len(got) < count:
                got.extend(rx.recv_many(4, timeout=30))
                time.sleep(0.0002)

    async def main():
        ticker = Ticker()
        ticker.start()
        async with ca.Sender(channel, message_length=8, max_queued_messages=4) as tx:
            t = threading.Thread(target=slow_reader)
            t.start()
            try:
                depths = []
                for i in range(count):
                    await tx.send(i.to_bytes(8, "little"), timeout=30)
                    depths.append(tx.depth)
            finally:
                t.join(30)
            wakeups = tx._wt.waker.wakeups if tx._wt is not None else tx._wakeups
        await ticker.stop()
        return depths, ticker, wakeups

    depths, ticker, wakeups = run(main())
    assert [number(m) for m in got] == list(range(count))
    assert max(depths) <= 4 and 4 in depths        # the ring was full, and never over
    assert wakeups > 0                             # the sender slept on it, woken by the reader
    assert ticker.max_gap < 0.5


# ------------------------------------------------------------- idle ends


@pytest.mark.timeout(60)
def test_fifty_idle_receivers_cost_almost_no_cpu_and_all_wake(channel, run, waker):
    names = [f"{channel}-{i}" for i in range(50)]

    async def main():
        rxs = [ca.Receiver(n, message_length=8) for n in names]
        txs = [cywhip.Sender(n, message_length=8) for n in names]
        try:
            tasks = [asyncio.get_running_loop().create_task(rx.recv()) for rx in rxs]
            await asyncio.sleep(0.2)
            # Woken by their descriptors, they need no thread at all.
            assert len(waker_threads()) == (1 if waker == "thread" else 0)
            cpu, wall = time.process_time(), time.monotonic()
            await asyncio.sleep(1.0)
            cpu, wall = time.process_time() - cpu, time.monotonic() - wall
            assert not any(t.done() for t in tasks)
            for i, tx in enumerate(txs):
                tx.send(i.to_bytes(8, "little"))
            results = await asyncio.wait_for(asyncio.gather(*tasks), 10)
            return cpu / wall, [number(m) for m in results]
        finally:
            for e in rxs + txs:
                e.close()
            for n in names:
                cywhip.unlink(n, missing_ok=True)

    share, results = run(main())
    assert results == list(range(50))
    # A coarse fact no busy loop can meet: the process used under 5 % of a core while they waited.
    assert share < 0.05, share


@pytest.mark.timeout(60)
def test_more_waiting_ends_than_one_waker_serves_get_more_waker_threads(channel, run, thread_waker):
    names = [f"{channel}-{i}" for i in range(200)]

    async def main():
        rxs = [ca.Receiver(n, message_length=8, max_queued_messages=2) for n in names]
        txs = [cywhip.Sender(n, message_length=8, max_queued_messages=2) for n in names]
        try:
            tasks = [asyncio.get_running_loop().create_task(rx.recv()) for rx in rxs]
            await asyncio.sleep(0.2)
            threads = len(waker_threads())
            for i in reversed(range(200)):
                txs[i].send(i.to_bytes(8, "little"))
            results = await asyncio.wait_for(asyncio.gather(*tasks), 10)
            return threads, [number(m) for m in results]
        finally:
            for e in rxs + txs:
                e.close()
            for n in names:
                cywhip.unlink(n, missing_ok=True)

    threads, results = run(main())
    assert threads == 2
    assert results == list(range(200))


# --------------------------------------------------------------- closing


def test_close_from_another_task_ends_a_wait_and_an_async_for(channel, run):
    async def main():
        loop = asyncio.get_running_loop()
        rx = ca.Receiver(channel, message_length=8)
        task = loop.create_task(rx.recv())
        await asyncio.sleep(0.05)
        rx.close()
        with pytest.raises(cywhip.ChannelClosedError):
            await asyncio.wait_for(task, 5)

        rx = ca.Receiver(channel, message_length=8)
        tx = cywhip.Sender(channel, message_length=8)
        seen = []

        async def consume():
            async for msg in rx:
                seen.append(msg)

        task = loop.create_task(consume())
        tx.send(b"one")
        await asyncio.sleep(0.05)
        rx.close()
        await asyncio.wait_for(task, 5)           # the loop ended, no error
        tx.close()
        assert seen == [b"one"]
        with pytest.raises(cywhip.ChannelClosedError):
            await rx.recv()
    run(main())


def test_close_from_another_thread_ends_a_wait(channel, run):
    async def main():
        rx = ca.Receiver(channel, message_length=8)
        tx = ca.Sender(channel + "-full", message_length=8, max_queued_messages=1)
        try:
            await tx.send(b"full")
            loop = asyncio.get_running_loop()
            waits = [loop.create_task(rx.recv_many(5)), loop.create_task(tx.send(b"more"))]
            await asyncio.sleep(0.05)
            assert not any(w.done() for w in waits)     # both sleep: nothing to take, no room
            closer = threading.Thread(target=lambda: (rx.close(), tx.close()))
            closer.start()
            results = await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), 5)
            closer.join(5)
            return results
        finally:
            cywhip.unlink(channel + "-full", missing_ok=True)

    results = run(main())
    assert [type(r) for r in results] == [cywhip.ChannelClosedError] * 2


def test_an_end_serves_one_task_at_a_time(channel, run):
    async def main():
        async with ca.Receiver(channel, message_length=8) as rx:
            loop = asyncio.get_running_loop()
            first = loop.create_task(rx.recv())
            await asyncio.sleep(0.01)
            with pytest.raises(RuntimeError, match="one task at a time"):
                await rx.recv()
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
    run(main())


def test_async_with_closes_and_nothing_is_left_running(channel, run, waker):
    async def main():
        async with ca.Receiver(channel, message_length=8) as rx, \
                ca.Sender(channel, message_length=8) as tx:
            with pytest.raises(cywhip.ReceiveTimeout):
                await rx.recv(timeout=0.02)
            assert len(waker_threads()) == (1 if waker == "thread" else 0)
            await tx.send(b"hi")
            assert await rx.recv() == b"hi"
        assert rx.closed and tx.closed
        with pytest.raises(cywhip.ChannelClosedError):
            await tx.send(b"late")
    run(main())
    assert waker_threads() == []


def test_an_end_may_move_to_another_loop(channel):
    rx = ca.Receiver(channel, message_length=8)
    tx = cywhip.Sender(channel, message_length=8)
    try:
        for word in (b"one", b"two"):
            async def main():
                loop = asyncio.get_running_loop()
                loop.call_later(0.05, tx.send, word)
                return await rx.recv(timeout=5)
            assert asyncio.run(main()) == word
    finally:
        rx.close()
        tx.close()


def test_a_program_that_leaves_ends_open_exits_cleanly_and_leaves_no_files(channel):
    script = textwrap.dedent("""
        import asyncio, sys
        import cywhip.asyncio as ca

        async def main():
            rx = ca.Receiver(sys.argv[1], message_length=8)
            tx = ca.Sender(sys.argv[1], message_length=8)
            waiting = asyncio.get_running_loop().create_task(rx.recv_many(3))
            await asyncio.sleep(0.1)
            globals()["ends"] = (rx, tx, waiting)   # still open and waiting at exit
        asyncio.run(main())
        import cywhip
        cywhip.unlink(sys.argv[1])
    """)
    out = subprocess.run([sys.executable, "-c", script, channel], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert not any(channel in f for f in os.listdir("/dev/shm"))


# ------------------------------------------------------------------ kinds


def test_other_arguments_pass_through_to_the_plain_ends(channel, run):
    async def main():
        async with ca.Sender(channel, lambda m, b: b.write_bytes(m.encode()), 16, 8, spin_time=0) as tx, \
                ca.Receiver(channel, lambda b: b.read_bytes().decode(), 16, 8, spin_time=0) as rx:
            await tx.send("hello")
            assert await rx.recv() == "hello"
            assert tx.max_queued_messages == 8 and rx.message_length == 16
        with pytest.raises(TypeError):
            ca.Receiver(channel, message_length=8, no_such_argument=1)
        with pytest.raises(TypeError, match="on_message"):
            ca.Receiver(channel, message_length=8, on_message=print)
    run(main())


class Point(ctypes.Structure):
    _fields_ = [("seq", ctypes.c_int64), ("x", ctypes.c_double)]


def test_a_ctypes_channel_is_awaited_like_any_other(channel, run):
    async def main():
        async with ca.Sender(channel, message_type=Point) as tx, \
                ca.Receiver(channel, message_type=Point) as rx:
            await tx.send_many([Point(i, i / 2) for i in range(10)])
            got = await rx.recv_many(100)
            assert [(p.seq, p.x) for p in got] == [(i, i / 2) for i in range(10)]
    run(main())


@needs_numpy
def test_numpy_arrays_go_out_in_steps_and_come_back_through_recv_into(channel, run):
    dt = np.dtype([("seq", "<i8"), ("v", "<f8", (7,))])        # 64-byte records
    count = 100_000                                             # 6.4 MB: several 1 MiB steps

    async def main():
        ticker = Ticker()
        ticker.start()
        async with ca.Sender(channel, message_type=dt, max_queued_messages=65536) as tx, \
                ca.Receiver(channel, message_type=dt, max_queued_messages=65536) as rx:
            arr = np.zeros(count, dt)
            arr["seq"] = np.arange(count)
            sending = asyncio.get_running_loop().create_task(tx.send_array(arr, timeout=30))
            out = np.empty(count, dt)
            got = 0
            biggest = 0
            while got < count:
                k = await rx.recv_into(out[got:], timeout=30)
                biggest = max(biggest, k)
                got += k
            assert await sending == count
            assert np.array_equal(out["seq"], np.arange(count))
            assert biggest <= (1 << 20) // dt.itemsize         # one step per call at most
            arr2 = await rx.recv_array(5, timeout=0.01) if rx.depth else None
            assert arr2 is None
        await ticker.stop()
        return ticker

    ticker = run(main())
    assert ticker.max_gap < 0.5


@needs_numpy
def test_a_cancelled_send_array_says_how_many_records_went_out(channel, run):
    dt = np.dtype([("seq", "<i8")])

    async def main():
        async with ca.Sender(channel, message_type=dt, max_queued_messages=16) as tx, \
                ca.Receiver(channel, message_type=dt, max_queued_messages=16) as rx:
            arr = np.zeros(100, dt)
            arr["seq"] = np.arange(100)
            task = asyncio.get_running_loop().create_task(_cancelled(tx.send_array(arr)))
            await asyncio.sleep(0.05)
            task.cancel()
            err = await task
            assert err.sent == 16
            with pytest.raises(cywhip.SendTimeout) as err:
                await tx.send_array(arr[16:], timeout=0.02)
            assert err.value.sent == 0
            out = np.empty(100, dt)
            n = await rx.recv_into(out)
            assert n == 16 and np.array_equal(out["seq"][:16], np.arange(16))
    run(main())


def test_the_package_stub_names_what_the_module_exports():
    import ast
    import pathlib
    stub = pathlib.Path(ca.__file__).with_suffix(".pyi")
    tree = ast.parse(stub.read_text())
    classes = {n.name: {m.name for m in n.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))}
               for n in tree.body if isinstance(n, ast.ClassDef)}
    for cls in ("Sender", "Receiver"):
        for member in classes[cls]:
            assert hasattr(getattr(ca, cls), member), (cls, member)
    from cywhip import _async
    for name in ("Waker", "futex_waitv_supported", "WAKER_SLOTS"):
        assert name in stub.with_name("_async.pyi").read_text() and hasattr(_async, name)


@pytest.mark.timeout(60)
def test_the_asyncio_benchmark_workers_run_and_report():
    from cywhip import _bench
    from cywhip._bench import cywhip_workers as w
    r = _bench.run_pair(w._w_cywhip_async_pingpong, {"name": _bench._name("tap"), "count": 100})
    assert 0 < r["p50_us"] <= r["p99_us"]
    r = _bench.run_pair(w._w_cywhip_waiting, {"name": _bench._name("taw"), "count": 2000, "asyncio": True})
    assert r["rate"] > 0
    r = _bench.run_pair(w._w_cywhip_async_stream, {"name": _bench._name("tas"), "count": 5000, "size": 32,
                                                   "mode": "many"})
    assert r["rate"] > 0
    labels = [row["label"] for row in _bench.workloads(quick=True)]
    assert "asyncio recv, messages waiting" in labels and "zmq.asyncio PULL recv, PUSH send" in labels


# ------------------------------------------------------------- many senders


@pytest.mark.timeout(120)
def test_asyncio_senders_of_a_many_senders_channel_share_a_full_ring_and_lose_nothing(channel, run):
    from cywhip._testing.fanin import Tally, payload as fan_payload
    n, length = 5000, 64

    async def main():
        receiver = cywhip.Receiver(channel, message_length=length, max_queued_messages=4, max_senders=3)
        senders = [ca.Sender(channel, message_length=length, max_queued_messages=4, max_senders=3)
                   for _ in range(2)]
        plain = cywhip.Sender(channel, message_length=length, max_queued_messages=4, max_senders=3)
        tally = Tally(length)
        stop = threading.Event()

        def receive():
            # A slow receiver: the ring is full most of the time, so every sender sleeps on
            # the one waiting word they share.
            while tally.count < 3 * n and not stop.is_set():
                try:
                    for m in receiver.recv_many(3, timeout=0.5):
                        tally.add(m)
                except cywhip.ReceiveTimeout:
                    pass

        def send_plain():
            for i in range(n):
                plain.send(fan_payload(2, i, length), timeout=30)

        async def send(tag, s):
            for i in range(n):
                if i % 2:
                    await s.send(fan_payload(tag, i, length), timeout=30)
                else:
                    assert await s.send_many([fan_payload(tag, i, length)], timeout=30) == 1

        threads = [threading.Thread(target=receive), threading.Thread(target=send_plain)]
        for t in threads:
            t.start()
        try:
            await asyncio.gather(*(send(tag, s) for tag, s in enumerate(senders)))
        finally:
            for t in threads[1:]:
                t.join(60)
            threads[0].join(60)
            stop.set()
            for s in senders:
                s.close()
            plain.close()
            depth = receiver.depth
            skipped = receiver._skipped
            receiver.close()
        assert tally.errors == []
        assert tally.next == {0: n, 1: n, 2: n}
        assert depth == 0
        # No sender died and no serializer raised: no slot was claimed and left empty.
        assert skipped == (0, 0)
    run(main(), timeout=110)


@pytest.mark.timeout(120)
def test_an_asyncio_receiver_takes_three_sender_processes_in_each_senders_order(channel, peers, run):
    from cywhip._testing.fanin import Tally
    n, length = 20_000, 64

    async def main():
        tally = Tally(length)
        async with ca.Receiver(channel, message_length=length, max_queued_messages=64, max_senders=3) as r:
            procs = [peers.start(*("--role", "stream", channel, length, 64, 3, tag, n, "send"),
                                 script="import sys; from cywhip._testing.fanin import main; "
                                        "sys.exit(main(sys.argv[1:]))")
                     for tag in range(3)]
            while tally.count < 3 * n:
                for m in await r.recv_many(1000, timeout=60):
                    tally.add(m)
        return procs, tally
    procs, tally = run(main(), timeout=110)
    for proc in procs:
        rc, out, err = peers.finish(proc, timeout=30)
        assert rc == 0, err
    assert tally.errors == [] and tally.next == {0: n, 1: n, 2: n}


# ------------------------------------------------------------- one core, one set of words

def test_the_compiled_base_names_every_method_its_fast_calls_call():
    # _Call (cywhip/_async.pyx) calls methods of its end through the compiled base _Core: each
    # is declared there (a cdef method, or one a subclass may override), none exists only in
    # cywhip/asyncio.py's subclasses.
    import re
    from pathlib import Path
    from cywhip._async import _Core
    source = (Path(ca.__file__).parent / "_async.pyx").read_text()
    called = set(re.findall(r"\bcore\.(\w+)\(", source))
    assert {"_recv_waiting", "_send_waiting"} <= called, called
    cdefs = set(re.findall(r"^\s+cdef[^(\n]*?\b(\w+)\(self\b", source, re.M))
    missing = sorted(name for name in called - cdefs if name not in vars(_Core))
    assert not missing, missing


@pytest.mark.parametrize("timeout", ["0.5", b"1", [1]])
def test_a_timeout_an_asyncio_end_cannot_take_is_refused_in_the_plain_ends_words(channel, run, timeout):
    with cywhip.Receiver(channel, message_length=8) as plain:
        with pytest.raises(TypeError) as expected:
            plain.recv(timeout=timeout)

    async def main():
        async with ca.Receiver(channel, message_length=8) as rx, ca.Sender(channel, message_length=8) as tx:
            calls = [lambda: rx.recv(timeout), lambda: rx.recv_many(4, timeout), lambda: tx.send(b"x", timeout),
                     lambda: tx.send_many([b"x"], timeout)]
            for call in calls:
                with pytest.raises(TypeError) as got:
                    await asyncio.wait_for(call(), 5)
                assert str(got.value) == str(expected.value)
            assert rx.depth == 0
    run(main())


def test_an_asyncio_end_refuses_pickling_in_the_plain_ends_words(channel, run):
    import pickle

    async def main():
        async with ca.Receiver(channel, message_length=8) as rx, ca.Sender(channel, message_length=8) as tx:
            for end in (rx, tx):
                with pytest.raises(TypeError) as got:
                    pickle.dumps(end)
                with pytest.raises(TypeError) as expected:
                    end._end.__reduce__()
                assert str(got.value) == str(expected.value)
                assert "cannot be pickled" in str(got.value) and repr(channel) in str(got.value)
    run(main())


def test_asyncio_timeouts_say_what_the_plain_ends_say(channel, run):
    with cywhip.Sender(channel, message_length=8, max_queued_messages=2) as tx, \
            cywhip.Receiver(channel, message_length=8, max_queued_messages=2) as rx:
        with pytest.raises(cywhip.ReceiveTimeout) as plain_empty:
            rx.recv(timeout=0.01)
        tx.send(b"a")
        tx.send(b"b")
        with pytest.raises(cywhip.SendTimeout) as plain_full:
            tx.send(b"c", timeout=0.01)
        with pytest.raises(cywhip.SendTimeout) as plain_many:
            tx.send_many([b"c", b"d"], timeout=0.01)
        rx.recv_many(2)

    async def main():
        async with ca.Sender(channel, message_length=8, max_queued_messages=2) as atx, \
                ca.Receiver(channel, message_length=8, max_queued_messages=2) as arx:
            for call in (lambda: arx.recv(0.01), lambda: arx.recv_many(2, 0.01)):
                with pytest.raises(cywhip.ReceiveTimeout) as got:
                    await call()
                assert str(got.value) == str(plain_empty.value)
            await atx.send(b"a")
            await atx.send(b"b")
            with pytest.raises(cywhip.SendTimeout) as got:
                await atx.send(b"c", timeout=0.01)
            assert str(got.value) == str(plain_full.value) and got.value.sent == 0
            with pytest.raises(cywhip.SendTimeout) as got:
                await atx.send_many([b"c", b"d"], timeout=0.01)
            assert str(got.value) == str(plain_many.value) and got.value.sent == plain_many.value.sent == 0
    run(main())

"""Sleeping ends wake for each reason their plain wait would, and only for those: a hole whose
claimer dies, a fellow group member that dies holding a claim, a group creator that dies
midway; the asyncio waker and the shared waiting words alike."""
import asyncio
import json
import os
import pathlib
import shutil
import signal
import subprocess
import textwrap
import time

import pytest

import cywhip
import cywhip.asyncio as ca
from cywhip._testing._model import RingModel
from cywhip._testing import groups as g
from cywhip._testing.fanin import payload

try:
    import uvloop
except ImportError:      # pragma: no cover - uvloop is in the test extra
    uvloop = None


async def _in_thread(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def _slice(end, timeout=5):
    """Why the asyncio end's armed slot sleeps in slices, and how long it has left (an end that
    sleeps in slices is between two of them now and then: let the loop run, look again)."""
    deadline = time.monotonic() + timeout
    while True:
        got = end._armed_slice()
        if got is not None:
            return got
        assert time.monotonic() < deadline, "the end is not asleep"
        await asyncio.sleep(0)


@pytest.fixture(params=["fd", "thread"])
def waker(request, monkeypatch):
    """Each way an asyncio end is woken: its own descriptor watched by the loop, or the waker
    thread (CYWHIP_ASYNCIO_WAKER=thread): both keep the ring's slices."""
    monkeypatch.setattr(ca, "_WAKER", request.param)
    return request.param


def _wakeups(end):
    """How often what wakes the asyncio end woke: its waker thread (shared by the ends of its
    loop), or the loop's reader of its own descriptor."""
    return end._wt.waker.wakeups if end._wt is not None else end._wakeups


async def _until_armed(end, timeout=5):
    """Until the asyncio end sleeps: armed, awaiting its future."""
    deadline = time.monotonic() + timeout
    while end._fut is None:
        if time.monotonic() > deadline:
            raise AssertionError("the end never went to sleep")
        await asyncio.sleep(0.001)


# ------------------------------------------------------------ shared waiting words


@pytest.mark.parametrize("sending", [True, False], ids=["senders", "members"])
def test_a_sharer_announcing_after_a_wake_up_does_not_hide_it_from_a_sleeper(sending):
    # One sharer announced and found nothing; the other end's progress cleared the word
    # before that sharer's futex wait began; another sharer announced meanwhile.  The first
    # must not sleep through the wake-up (with 1 for every sharer the word would read 1).
    assert RingModel(4, 8).sleep_after_another_announces(sending, 2.0) == "woken"


# ------------------------------------------------------------------ many senders


CLAIM_AND_HOLD = ("import sys; from cywhip._testing.fanin import run_step; "
                  "run_step(sys.argv[1], 64, 16, 2, 0, 0, sys.argv[2], True, int(sys.argv[3]))")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("step", ["claimed", "half"])
@pytest.mark.parametrize("receiver", ["one receiver", "group member"])
def test_an_asyncio_receiver_at_a_live_senders_hole_goes_on_when_that_sender_dies(
        channel, peers, run, step, receiver, waker):
    member = receiver == "group member"
    kw = dict(message_length=64, max_queued_messages=16, max_senders=2, max_receivers=4 if member else 1)

    async def main():
        async with ca.Receiver(channel, **kw, **({"group": "g"} if member else {})) as rx:
            # A sender that claimed the next slot and stops before publishing it.
            proc = peers.start(channel, step, kw["max_receivers"], script=CLAIM_AND_HOLD)
            assert "claim" in json.loads(await _in_thread(proc.stdout.readline))["done"]
            with cywhip.Sender(channel, **kw) as other:
                # Published behind the live sender's claim: the receiver waits at the hole.
                other.send(payload(1, 0, 64))
                recv = asyncio.ensure_future(rx.recv())
                await _until_armed(rx)
                await asyncio.sleep(0.2)
                assert not recv.done()
                assert (await _slice(rx))[0] == "hole"
                # Its claimer's death wakes nobody: the receiver looks again by itself.
                proc.kill()
                await _in_thread(proc.wait)
                assert await asyncio.wait_for(recv, 5) == payload(1, 0, 64)
            assert rx._end._skipped == (1, 0)

    run(main())


PUBLISH_AND_DIE = textwrap.dedent("""
    import os, signal, sys
    from cywhip import Sender
    from cywhip._testing._steps import SenderSteps
    from cywhip._testing.fanin import payload

    tx = Sender(sys.argv[1], message_length=64, max_queued_messages=16, max_senders=2,
                max_receivers=int(sys.argv[2]))
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
    print("open", flush=True)
    signal.sigwait([signal.SIGUSR1])
    steps = SenderSteps(tx)
    steps.intent()
    steps.claim()
    steps.write(payload(0, 0, 64), 64)
    steps.length(64)
    steps.publish()
    os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("receiver", ["one receiver", "group member"])
def test_an_asyncio_receiver_gets_what_a_sender_published_before_it_died_without_waking_it(
        channel, peers, run, receiver, waker):
    # A sender killed between its publish and its wake-up owes the sleeping receiver a
    # wake-up nobody else sends, and no other sender opens afterwards (which would wake it):
    # the idle sleep itself must end in time.
    member = receiver == "group member"
    kw = dict(message_length=64, max_queued_messages=16, max_senders=2, max_receivers=4 if member else 1)

    async def main():
        async with ca.Receiver(channel, **kw, **({"group": "g"} if member else {})) as rx:
            proc = peers.start(channel, kw["max_receivers"], script=PUBLISH_AND_DIE)
            assert (await _in_thread(proc.stdout.readline)).strip() == "open"
            # Asleep after the sender's opening woke it (W3): nothing but the publish is owed.
            recv = asyncio.ensure_future(rx.recv())
            await _until_armed(rx)
            await asyncio.sleep(0.1)
            await _until_armed(rx)
            proc.send_signal(signal.SIGUSR1)
            assert await _in_thread(proc.wait) == -9
            assert await asyncio.wait_for(recv, 5) == payload(0, 0, 64)

    run(main())


# --------------------------------------------------------------------- groups


FEED_EVERY_MS = textwrap.dedent("""
    import os, sys, time
    from cywhip import Sender
    with Sender(sys.argv[1], message_length=8) as tx:
        print("feeding", flush=True)
        i = 0
        while not os.path.exists(sys.argv[2]):
            tx.try_send(i.to_bytes(8, "little"))
            i += 1
            time.sleep(float(sys.argv[3]))
""")


@pytest.mark.timeout(60)
def test_a_member_gets_a_dead_members_claim_while_another_end_of_its_loop_is_woken_every_ms(
        channel, tmp_path, peers, run, waker):
    # The waker's deadline for the member is not put off by the wake-ups of the busy end.
    busy_name = channel + "-busy"
    kw = dict(message_length=32, max_queued_messages=16, max_receivers=4)
    stop_file = str(tmp_path / "stop")
    log = str(tmp_path / "fellow.log")
    fellow = None
    tx = cywhip.Sender(channel, **kw)
    try:
        # The fellow member sits in its callback holding message 0.
        fellow = g.spawn_member(channel, 32, 16, 4, "w", "on_message", log, stop_file, pause=60.0)
        tx.send(g.payload(0, 32))
        deadline = time.monotonic() + 20
        while g.read_log(log) != [0]:
            assert time.monotonic() < deadline, "the fellow member never took message 0"
            time.sleep(0.005)

        async def main():
            got = []
            async with ca.Receiver(channel, group="w", **kw) as member, \
                    ca.Receiver(busy_name, message_length=8) as busy:
                # Another process sends to the busy end every millisecond.
                feeder = peers.start(busy_name, stop_file, 0.001, script=FEED_EVERY_MS)
                assert (await _in_thread(feeder.stdout.readline)).strip() == "feeding"

                async def consume():
                    while True:
                        got.append(await busy.recv())

                consumer = asyncio.ensure_future(consume())
                try:
                    recv = asyncio.ensure_future(member.recv())
                    await _until_armed(member)
                    started = len(got)
                    await asyncio.sleep(0.2)
                    assert not recv.done()
                    assert (await _slice(member))[0] == "member"
                    assert len(got) - started >= 20      # the busy end is woken meanwhile
                    fellow.kill()
                    await _in_thread(fellow.wait)
                    # Its place lock is gone: the member takes its claim over within a slice.
                    msg = await asyncio.wait_for(recv, 0.5)
                    assert g.number(msg, 32) == 0
                finally:
                    open(stop_file, "w").close()
                    consumer.cancel()
                    try:
                        await consumer
                    except asyncio.CancelledError:
                        pass
                    await _in_thread(feeder.wait, 10)

        run(main())
    finally:
        open(stop_file, "w").close()
        if fellow is not None and fellow.poll() is None:
            fellow.kill()
            fellow.wait()
        tx.close()
        cywhip.unlink(busy_name, missing_ok=True)


async def _take(rx, count):
    """The next count messages (a member hands out a claim over several calls)."""
    out = []
    while len(out) < count:
        out += await rx.recv_many(count - len(out), timeout=5)
    return out


def test_idle_asyncio_members_and_senders_sleep_without_waking(channel, run, waker):
    kw = dict(message_length=8, max_queued_messages=2, max_receivers=3)

    async def main():
        async with ca.Receiver(channel, group="d", **kw) as member, ca.Sender(channel, **kw) as tx:
            # A member with nothing to take, no other member: woken by a publish only.
            recv = asyncio.ensure_future(member.recv())
            await _until_armed(member)
            why, left = await _slice(member)
            assert why == "idle" and 0 < left <= 1_000_000_000
            before = _wakeups(member)
            await asyncio.sleep(0.3)
            # At most the thread's wake-up to list the word the end just armed (it may come
            # after the look above); 10 ms slices would be about 30.
            assert _wakeups(member) - before <= 1
            await tx.send(b"0")
            assert await asyncio.wait_for(recv, 5) == b"0"

            # A sender held back by a durable group: woken by its take only.
            await tx.send_many([b"1", b"2"])
            send = asyncio.ensure_future(tx.send(b"3"))
            await _until_armed(tx)
            why, left = await _slice(tx)
            assert why == "idle" and 0 < left <= 1_000_000_000
            before = _wakeups(tx)
            await asyncio.sleep(0.3)
            assert _wakeups(tx) - before <= 1 and not send.done()
            assert await member.recv() == b"1"
            await asyncio.wait_for(send, 5)

            # Held back by a non-durable group alone: the sender looks again in slices, as a
            # plain one does (its last member's death would wake nobody).
            with cywhip.Receiver(channel, group="n", durable=False, **kw) as gone:
                assert await _take(member, 2) == [b"2", b"3"]
                assert gone.recv_many(10) == [b"2", b"3"]
                await tx.send_many([b"4", b"5"])
                assert await _take(member, 2) == [b"4", b"5"]
                send = asyncio.ensure_future(tx.send(b"6"))
                await _until_armed(tx)
                why, left = (await _slice(tx))
                assert why == "group" and left <= 10_000_000
                assert gone.recv_many(10) == [b"4", b"5"]
                await asyncio.wait_for(send, 5)

    run(main())


CREATOR_STOPPED_MIDWAY = textwrap.dedent("""
    import os, signal, sys
    from cywhip import Receiver, _region

    def hook(point, path):
        if point == "create_group":      # groups lock held, groups_gen odd
            print("creating", flush=True)
            os.kill(os.getpid(), signal.SIGSTOP)

    _region._test_hook = hook
    Receiver(sys.argv[1], group="b", message_length=8, max_queued_messages=2, max_receivers=3)
""")


@pytest.mark.timeout(60)
def test_an_asyncio_sender_asleep_during_a_group_creation_goes_on_when_its_creator_dies(channel, peers, run, waker):
    kw = dict(message_length=8, max_queued_messages=2, max_receivers=3)

    async def main():
        async with ca.Sender(channel, **kw) as tx:
            with cywhip.Receiver(channel, group="a", **kw) as a:
                await tx.send_many([b"0", b"1"])
                creator = peers.start(channel, script=CREATOR_STOPPED_MIDWAY)
                assert (await _in_thread(creator.stdout.readline)).strip() == "creating"
                _, status = await _in_thread(os.waitpid, creator.pid, os.WUNTRACED)
                assert os.WIFSTOPPED(status)
                send = asyncio.ensure_future(tx.send(b"2"))
                await _until_armed(tx)
                # Room now, but no bound is known while the creation is under way.
                assert a.recv_many(10) == [b"0", b"1"]
                await asyncio.sleep(0.2)
                assert not send.done()
                assert (await _slice(tx))[0] == "creator"
                # The creator dies between its two steps: nobody wakes the sender.
                creator.kill()
                await _in_thread(creator.wait)
                await asyncio.wait_for(send, 5)
                assert a.recv(timeout=5) == b"2"

    run(main())


# ------------------------------------------------------------ the waker's thread


def test_a_waker_thread_that_outlives_stop_keeps_its_eventfd_open_until_it_ends(channel, monkeypatch):
    # stop() waits a while for the thread; one still running after that (starved, stopped
    # in a debugger) must not be left writing into a closed descriptor, whose number another
    # file may have taken meanwhile.
    import threading
    from cywhip import asyncio as cywhip_asyncio
    go = threading.Event()
    run_waker = cywhip_asyncio._WakerThread._run

    def late(wt):
        go.wait(30)
        run_waker(wt)

    monkeypatch.setattr(cywhip_asyncio._WakerThread, "_run", late)
    monkeypatch.setattr(cywhip_asyncio, "_WAKER", "thread")
    monkeypatch.setattr(cywhip_asyncio, "_STOP_JOIN_S", 0)
    kept = {}

    async def main():
        async with ca.Receiver(channel, message_length=8) as rx:
            with pytest.raises(cywhip.ReceiveTimeout):
                await rx.recv(timeout=0.02)
            kept["wt"] = rx._wt
        # Closed: the end let go of its slot and stop() gave up waiting for the thread.

    asyncio.run(main())
    wt = kept["wt"]
    try:
        assert wt.thread.is_alive()
        assert os.readlink(f"/proc/self/fd/{wt.efd}") == "anon_inode:[eventfd]"
    finally:
        go.set()
        wt.thread.join(10)
    assert not wt.thread.is_alive()
    with pytest.raises(FileNotFoundError):
        os.readlink(f"/proc/self/fd/{wt.efd}")


# ---------------------------------------------------------------------- the model

MODEL = pathlib.Path(__file__).resolve().parent.parent / "docs" / "models" / "waiting.pml"


def _spin(tmp_path, *defines):
    if not MODEL.is_file():
        pytest.skip(f"{MODEL} is not in this tree (installed without the docs)")
    cc = next((c for c in (os.environ.get("CC", "").split()[:1] + ["cc", "gcc", "clang"]) if shutil.which(c)), None)
    if shutil.which("spin") is None or cc is None:
        pytest.skip("spin (the SPIN model checker) or a C compiler is not on PATH")
    shutil.copy(MODEL, tmp_path)
    subprocess.run(["spin", *defines, "-a", MODEL.name], cwd=tmp_path, check=True, capture_output=True, timeout=60)
    subprocess.run([cc, "-O2", "-DVECTORSZ=2048", "-o", "pan", "pan.c"], cwd=tmp_path, check=True,
                   capture_output=True, timeout=120)
    return subprocess.run(["./pan"], cwd=tmp_path, capture_output=True, text=True, timeout=120).stdout


@pytest.mark.model
@pytest.mark.timeout(300)
@pytest.mark.parametrize("size", [(2, 2), (3, 3)], ids=["2 sharers 2 messages", "3 sharers 3 messages"])
def test_the_model_of_shared_waiting_words_loses_no_wake_up_with_tokens_and_one_with_a_flag(tmp_path, size):
    sharers, messages = size
    out = _spin(tmp_path, f"-DS={sharers}", f"-DN={messages}")
    assert "errors: 0" in out and "invalid end states\t+" in out, out
    flagged = tmp_path / "flag"
    flagged.mkdir()
    out = _spin(flagged, "-DFLAG", f"-DS={sharers}", f"-DN={messages}")
    assert "invalid end state" in out and "errors: 1" in out, out

"""A lifecycle fuzzer for receiver groups: ends joining, closing, being SIGKILLed and stopped,
``remove_group`` and ``remove_stale`` running, plain and asyncio ends, one sender or many.

    python -m cywhip._testing.lifecycle --runs N --seconds S [--seed X] [--features LIST]

Each run draws a channel (max_senders 1 to 3, max_receivers 2 to 5, a small ring), one to three
group names (each durable or not, broadcast -- at most one member at a time -- or work-sharing)
and a schedule of events, from its seed (run k of ``--seed X`` has seed ``X + k``).  Every end is
a process of its own, plain or ``cywhip.asyncio``; the driver starts and closes senders and
members, SIGKILLs them at random moments, stops them (SIGSTOP) for a while and then kills or
resumes them, calls ``remove_group`` and ``remove_stale`` (also right after killing every end, as
new ends start), and at the end stops the senders, gives every group left a member, waits until
every group has taken everything, closes the members and checks every delivery.

Message ``seq`` of sender incarnation ``sid`` is ``<I sid><I seq><I crc>`` followed by a filler
made from both; the CRC-32 covers the rest, so a torn or invented message shows.  A sender logs
each call before it starts (the messages it may put in flight) and after it returns (how many
went out).  A member logs every message it receives to a file of its own, so that a killed
member's deliveries count up to its death: ``on_message``, ``on_batch`` and ``borrow`` record a
message before it counts as taken; the other calls (``recv``, ``recv_many``, ``try_recv`` and the
asyncio ones) after (taken at the return): a member killed inside such a call may have taken
what it did not record, at most the call's ``max_count``, which the check excuses (and counts).

What each group must have received.  The members of a group name are cut into **segments**: a
new segment starts at a member whose join may have found the group removed since the segment's
last member certainly lived (non-durable with no member certainly alive, a ``remove_group`` that
succeeded, the channel removed by ``remove_stale``).  Within a segment:

- every delivery is whole, of a sender that exists, of a message that sender attempted;
- a message is delivered at most once, except a copy delivered by a killed member in its last
  callback, batch or borrow (given back: it may be delivered again);
- broadcast: each sender's messages arrive in order without gaps (but the excused ones), and
  every message whose send began after the segment's first member had joined is delivered if any
  later message of its sender is; two broadcast segments see common messages in the same order;
- a segment alive at the end (drained) has every message of every sender from the first whose
  send began after the segment was created (or earlier, from where it started) up to the last
  confirmed one, without gaps (but the excused ones); all such segments agree on where a killed
  sender's messages end.

During the run, senders must make progress while no end is stopped, every durable group has a
member and a sender is open (a ``Sender`` is never held by a group that has left); an end's call
must not raise (``ChannelCorruptError`` on a sound channel), a join must not report a busy channel
held by no process; ``remove_stale`` and ``remove_group`` must not remove what a live end uses.

Each failure prints the run's seed, the command that replays its schedule (the timing of the
processes differs from run to run), what was wrong (the messages) and the trail of events that
led to it.  Exit status 1 if any run failed.

``--features`` chooses what the schedule does (default: all): ``async`` (asyncio ends),
``nondurable`` (non-durable groups), ``many`` (max_senders > 1), ``remove_group``,
``remove_stale``, ``blackout`` (kill every end, then remove_stale while new ends start),
``stop`` (SIGSTOP then kill or resume), ``kill``, ``nowait`` (try_send and send with timeout 0),
``jitter`` (every end runs under an LD_PRELOAD shim that sleeps up to a few milliseconds around
the byte locks of joins, closes and removals, stretching their windows), ``burst`` (close up to
three members at once, remove a group and join another in the same moment), ``quiet`` (with only
non-durable groups: close every member and check that the senders go on without any group),
``orphan`` (kill every member of a non-durable group, join none for a while, every other group
keeping its members: the senders must go on), ``forever`` (some members receive with
``timeout=None``: only a wake-up ends their wait).

``--byte-groups`` runs the same schedule and checks on byte channels (``max_queued_bytes``; one
sender, or with ``--senders M`` M sender processes at once, each killed, also while parked inside
a ``reserve()`` block, whose message must then never be delivered, stopped, closed and replaced
by a new one in the place it left): a small ring (256 to 1000 bytes, so that padding
records at its end come often), message ``seq`` of sender ``sid`` 12 bytes to message_length
long (lifecycle_bytes.length_of(), self-checking by the same CRC), senders also sending through
``reserve()`` blocks (now and then truncated, paused in, or given up by an exception: the next
call sends the same message again, so a given-up block published all the same shows as a
message delivered twice), members also iterating (``for m in rx``, with ``forever``).

``--bytes`` runs byte channels instead (lifecycle_bytes.py): one sender and one receiver killed,
stopped, closed and restarted at random moments, a sender killed inside a ``reserve()`` block;
with ``--senders M`` (2 or more), a byte channel of ``max_senders=M``: M sender processes at once,
each killed, stopped, closed and replaced (a new one takes the place a dead one left).
"""
import argparse
import asyncio
import bisect
import contextlib
import faulthandler
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

import cywhip
from cywhip import Receiver, Sender, unlink
from cywhip.errors import ChannelBusyError, ChannelClosedError, ReceiveTimeout, SendTimeout
from cywhip._testing.crash import _map

FEATURES = ("async", "nondurable", "many", "remove_group", "remove_stale", "blackout", "stop", "kill",
            "nowait", "jitter", "burst", "quiet", "orphan", "forever")
HEAD = struct.Struct("<III")          # sender id, sequence number, CRC-32 of the rest
REC = struct.Struct("<IIII")          # a member's log: sender id, seq, unit, whole (1) or not (0)
SREC = struct.Struct("<IIIq")         # a sender's log: kind (ATTEMPT, CONFIRM), first seq, count, ns
ATTEMPT, CONFIRM = 1, 2
FAULTS = ("drop", "dup", "torn", "invent", "reorder")
WORD = struct.Struct("<q")
# State words of a child (int64, in a file mapped by the child and the driver).
S_OPEN_START, S_OPEN_END, S_IN_CALL, S_CALL_MAX, S_CLOSE_START, S_CLOSE_END, S_CONFIRMED, \
    S_ATTEMPTED, S_RESULT, S_COUNT, S_AT_GATE, S_GATE_OPEN, S_PARKED, S_PARK_GATE, S_FAULTED = range(15)
STATE_WORDS = 16
R_OK, R_BUSY, R_ERROR = 0, 1, 2
# Calls whose message counts as taken before the member records it.
RECORD_BEFORE_TAKE = ("on_message", "on_batch", "borrow")
PLAIN_MEMBER_MODES = ("on_message", "on_batch", "borrow", "recv", "recv_many", "try_recv")
ASYNC_MEMBER_MODES = ("arecv", "arecv_many", "aiter")
PLAIN_SENDER_MODES = ("send", "send_many")
NOWAIT_SENDER_MODES = ("try_send", "send0")
ASYNC_SENDER_MODES = ("asend", "asend_many")
ASYNC_NOWAIT_SENDER_MODES = ("atry_send",)
STALL_SECONDS = 10.0
NS = 1_000_000_000
# The ring sizes of --byte-groups runs (max_queued_bytes): small, so that padding records at the
# ring's end come often.
BYTE_RINGS = (256, 256, 512, 1000)


# Sleeps around open-file-description byte locks (fcntl F_OFD_SETLK/F_OFD_GETLK), the locks of
# joins, closes and removals: a random delay before a lock attempt and after a successful one,
# so that these steps interleave in ways their short windows rarely allow.
SHIM_SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#ifndef F_OFD_GETLK
#define F_OFD_GETLK 36
#define F_OFD_SETLK 37
#endif
static int (*real_fcntl)(int, int, ...);
static unsigned seed;
static long max_us = -1;
static void jitter(int scale)
{
    if (max_us < 0) {
        const char *e = getenv("CYWHIP_LIFECYCLE_JITTER_US");
        max_us = e ? atol(e) : 0;
        seed = (unsigned)getpid() * 2654435761u;
    }
    if (max_us <= 0)
        return;
    seed = seed * 1103515245u + 12345u;
    if ((seed >> 16) % 4 != 0)
        return;
    seed = seed * 1103515245u + 12345u;
    long us = (long)((seed >> 8) % (unsigned)(max_us / scale + 1));
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}
static int call(int fd, int cmd, void *arg)
{
    if (!real_fcntl)
        real_fcntl = (int (*)(int, int, ...))dlsym(RTLD_NEXT, "fcntl");
    if (cmd != F_OFD_SETLK && cmd != F_OFD_GETLK)
        return real_fcntl(fd, cmd, arg);
    struct flock *fl = arg;
    int unlock = fl->l_type == F_UNLCK;
    jitter(cmd == F_OFD_GETLK ? 8 : 1);
    int rc = real_fcntl(fd, cmd, arg);
    if (rc == 0 && cmd == F_OFD_SETLK && !unlock)
        jitter(1);
    return rc;
}
int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return call(fd, cmd, arg);
}
int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return call(fd, cmd, arg);
}
"""


def build_shim(directory):
    """Compile the lock-jitter shim into directory; its path, or None without a C compiler."""
    src = os.path.join(directory, "jitter.c")
    out = os.path.join(directory, "jitter.so")
    with open(src, "w") as f:
        f.write(SHIM_SOURCE)
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        return None
    rc = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", out, src, "-ldl"], capture_output=True)
    return out if rc.returncode == 0 else None


def payload(sid, seq, length, ring=0):
    """The content of message seq of sender sid: length bytes, or on a byte channel (ring: its
    bytes) a length from 12 to length drawn from sid and seq (lifecycle_bytes.length_of)."""
    if ring:
        from cywhip._testing.lifecycle_bytes import payload as variable
        return variable(sid, seq, length)
    seed = struct.pack("<II", sid, seq)
    body = (seed * ((length - HEAD.size) // 8 + 1))[:length - HEAD.size]
    return HEAD.pack(sid, seq, zlib.crc32(seed + body)) + body


def parse(msg, length, ring=0):
    """(sid, seq, whole) of a received message."""
    msg = bytes(msg)
    if ring:
        from cywhip._testing.lifecycle_bytes import parse as variable
        return variable(msg, length)
    if len(msg) != length:
        return 0xFFFFFFFF, 0, False
    sid, seq, _ = HEAD.unpack_from(msg)
    return sid, seq, msg == payload(sid, seq, length)


def _now():
    return time.monotonic_ns()


def _close_timed(ch, end):
    """Close an end between the two marks the checker reads (S_CLOSE_START, S_CLOSE_END)."""
    ch.put(S_CLOSE_START, _now())
    end.close()
    ch.put(S_CLOSE_END, _now())


@contextlib.contextmanager
def _until_closed(ch):
    """Around a member's receiving loop: a ChannelClosedError ends it if the run is stopping it
    (its close() from on_stop), then the marks the checker reads: out of any call, closed."""
    try:
        yield
    except ChannelClosedError:
        if not ch.stop.is_set():
            raise
    ch.put(S_IN_CALL, 0)
    ch.put(S_CLOSE_END, _now())


def _try_send_each(tx, msgs):
    """try_send() the messages in turn until one finds no room; return how many went."""
    sent = 0
    for m in msgs:
        if not tx.try_send(m):
            break
        sent += 1
    return sent


# ------------------------------------------------------------------ the child processes

class _Child:
    """What a member or sender process shares: its state words, its log, the close command."""

    def __init__(self, spec):
        self.spec = spec
        self.state = _map(spec["state"], STATE_WORDS)
        self.log = os.open(spec["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.stop = threading.Event()
        self.on_stop = []
        faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
        delay = spec.get("claim_delay", 0)
        if delay or spec.get("gate"):
            # Stretch the window between opening the file and locking a place, or wait there
            # until the driver opens the gate (a test hook).
            from cywhip import _region
            rng = random.Random(spec["seed"] + 1)

            def hook(point, path):
                if point != "claim":
                    return
                if spec.get("gate") and not self.get(S_GATE_OPEN):
                    self.put(S_AT_GATE, 1)
                    limit = time.monotonic() + 30
                    while not self.get(S_GATE_OPEN) and time.monotonic() < limit:
                        time.sleep(0.0002)
                if delay:
                    time.sleep(rng.random() * delay)
            _region._test_hook = hook
        threading.Thread(target=self._commands, daemon=True).start()

    def _commands(self):
        try:
            sys.stdin.readline()        # "close", or end of file: the driver is gone
        finally:
            self.stop.set()
            for fn in self.on_stop:
                fn()

    def put(self, word, value):
        WORD.pack_into(self.state, 8 * word, value)

    def get(self, word):
        return WORD.unpack_from(self.state, 8 * word)[0]

    def kw(self):
        s = self.spec
        kw = dict(message_length=s["length"], max_senders=s["senders"], max_receivers=s["receivers"])
        if s.get("ring"):
            kw["max_queued_bytes"] = s["ring"]
        else:
            kw["max_queued_messages"] = s["capacity"]
        if s["role"] == "member":
            kw.update(group=s["group"], durable=s["durable"])
        return kw

    def open(self, cls, *args, **extra):
        self.put(S_OPEN_START, _now())
        try:
            end = cls(self.spec["name"], *args, **self.kw(), **extra)
        except ChannelBusyError as exc:
            self.put(S_RESULT, R_BUSY)
            print(f"busy: {exc} (pids {exc.pids})", file=sys.stderr, flush=True)
            raise SystemExit(3)
        self.put(S_OPEN_END, _now())
        return end


def run_member(spec):
    ch = _Child(spec)
    length, mode = spec["length"], spec["mode"]
    rng = random.Random(spec["seed"])
    timeout = spec["timeout"]
    unit = [0]

    fault = spec.get("fault")
    seen = [0]
    faulted = [False]

    def record(msgs):
        unit[0] += 1
        out = []
        for m in msgs:
            sid, seq, ok = parse(m, length, spec.get("ring"))
            seen[0] += 1
            # From the 20th delivery on, once: a reorder needs a sequence of 2 or more to move back.
            if fault and not faulted[0] and seen[0] >= 20 and (fault != "reorder" or seq >= 2):
                faulted[0] = True
                # The checker's own test: a member that misreports one delivery.
                if fault == "drop":
                    continue
                if fault == "dup":
                    out.append(REC.pack(sid, seq, unit[0], ok))
                elif fault == "torn":
                    ok = False
                elif fault == "invent":
                    seq += 1 << 20
                elif fault == "reorder":
                    seq -= 2
            out.append(REC.pack(sid, seq, unit[0], ok))
        if out:
            os.write(ch.log, b"".join(out))
            ch.put(S_COUNT, ch.get(S_COUNT) + len(out))
        if faulted[0]:
            ch.put(S_FAULTED, 1)

    def pause():
        if rng.random() < 0.2:
            time.sleep(rng.random() * 0.004)   # kills land inside callbacks and blocks too

    if mode in ASYNC_MEMBER_MODES:
        return _run_async_member(ch, spec, record)
    if mode in ("on_message", "on_batch"):
        done = threading.Event()

        def one(msg):
            record([msg])
            pause()

        def batch(msgs):
            record(list(msgs))
            pause()
        rx = ch.open(Receiver, **({"on_message": one} if mode == "on_message" else {"on_batch": batch}))
        ch.on_stop.append(done.set)
        if ch.stop.is_set():
            done.set()
        done.wait()
        _close_timed(ch, rx)
        if rx.exception is not None:
            raise rx.exception
        return
    rx = ch.open(Receiver)

    def close():
        ch.put(S_CLOSE_START, _now())
        rx.close()
    ch.on_stop.append(close)
    if ch.stop.is_set():
        close()
    many = rng.choice((4, 16, 64))
    if mode == "iterate":
        # Waits without a timeout: only close() (from on_stop) ends the loop.
        with _until_closed(ch):
            ch.put(S_CALL_MAX, 1)
            ch.put(S_IN_CALL, 1)
            for m in rx:
                record([m])
        return
    with _until_closed(ch):
        while not ch.stop.is_set():
            if mode == "try_recv":
                ch.put(S_CALL_MAX, 1)
                ch.put(S_IN_CALL, 1)
                m = rx.try_recv()
                if m is not None:
                    record([m])
                ch.put(S_IN_CALL, 0)
                if m is None:
                    time.sleep(0.0005)
                continue
            if mode == "borrow":
                try:
                    with rx.borrow(many, timeout=timeout) as lent:
                        record(list(lent))
                        pause()
                except ReceiveTimeout:
                    pass
                continue
            ch.put(S_CALL_MAX, 1 if mode == "recv" else many)
            ch.put(S_IN_CALL, 1)
            try:
                got = [rx.recv(timeout=timeout)] if mode == "recv" else rx.recv_many(many, timeout=timeout)
            except ReceiveTimeout:
                got = []
            record(got)
            ch.put(S_IN_CALL, 0)


def _run_async_member(ch, spec, record):
    import cywhip.asyncio as ca
    mode, timeout = spec["mode"], spec["timeout"]
    many = random.Random(spec["seed"]).choice((4, 16, 64))

    async def main():
        loop = asyncio.get_running_loop()
        rx = ch.open(ca.Receiver)

        def close():
            ch.put(S_CLOSE_START, _now())
            rx.close()
        ch.on_stop.append(lambda: loop.call_soon_threadsafe(close))
        if ch.stop.is_set():
            close()
        with _until_closed(ch):
            if mode == "aiter":
                ch.put(S_CALL_MAX, 1)
                ch.put(S_IN_CALL, 1)
                async for m in rx:
                    record([m])
            else:
                while not ch.stop.is_set():
                    ch.put(S_CALL_MAX, 1 if mode == "arecv" else many)
                    ch.put(S_IN_CALL, 1)
                    try:
                        got = [await rx.recv(timeout)] if mode == "arecv" else await rx.recv_many(many, timeout)
                    except ReceiveTimeout:
                        got = []
                    record(got)
                    ch.put(S_IN_CALL, 0)
    _run_loop(spec, main())


def _run_loop(spec, coro):
    if spec.get("uvloop"):
        try:
            import uvloop
            uvloop.run(coro)
            return
        except ImportError:
            pass
    asyncio.run(coro)


def _reserve_send(tx, msg, rng, length, timeout, park=None):
    """Send msg through a reserve() block (a byte channel): now and then reserving more and
    truncating, pausing inside the block (a kill or a stop lands there: nothing is sent), or
    giving up by an exception (nothing is sent: the next call sends the same message, so that
    a given-up block published all the same shows as a message delivered twice).  With a
    channel of many senders, ``park`` (a function) now and then parks the sender inside the
    block, its payload written, until the driver opens its gate or kills it there.  1 if sent."""
    room = len(msg) if rng.random() < 0.7 else rng.randint(len(msg), length)
    give_up = rng.random() < 0.1
    parking = park is not None and rng.random() < 0.1
    claim = tx.reserve(room, timeout=timeout)
    try:
        with claim as buf:
            buf[:len(msg)] = msg
            if room != len(msg):
                claim.truncate(len(msg))
            if rng.random() < 0.05:
                time.sleep(0.002)
            if give_up:
                raise _GiveUp()
            if parking:
                park()
    except _GiveUp:
        return 0
    return 1


class _GiveUp(Exception):
    pass


def run_sender(spec):
    ch = _Child(spec)
    sid, length, cap, mode = spec["sid"], spec["length"], spec["capacity"], spec["mode"]
    rng = random.Random(spec["seed"])
    seq = [0]

    def log(kind, first, count):
        os.write(ch.log, SREC.pack(kind, first, count, _now()))

    def before(n):
        log(ATTEMPT, seq[0], n)
        ch.put(S_ATTEMPTED, seq[0] + n)
        return [payload(sid, s, length, spec.get("ring")) for s in range(seq[0], seq[0] + n)]

    def after(sent):
        log(CONFIRM, seq[0], sent)
        seq[0] += sent
        ch.put(S_CONFIRMED, seq[0])

    def size():
        return rng.randint(1, 2 * cap) if rng.random() < 0.5 else rng.randint(1, 4)

    def gap():
        return rng.random() * 0.003 if rng.random() < 0.7 else 0

    def park():
        # Inside a reserve() block, the payload written: wait for the driver to open the gate
        # (or kill this process here; then the message is never sent).
        ch.put(S_PARK_GATE, 0)
        ch.put(S_PARKED, seq[0] + 1)
        limit = time.monotonic() + 5
        while not ch.get(S_PARK_GATE) and time.monotonic() < limit and not ch.stop.is_set():
            time.sleep(0.0003)
        ch.put(S_PARKED, 0)

    serializer = None
    if spec.get("slow"):
        half = length // 2

        def serializer(msg, buffer):
            # In two halves, now and then with a pause between (after the claim, before the
            # publish): a stop or a kill lands mid-copy, leaving a hole.
            buffer.write(msg[:half])
            if rng.random() < 0.05:
                time.sleep(0.0005)
            buffer.write(msg[half:])

    if mode in ASYNC_SENDER_MODES + ASYNC_NOWAIT_SENDER_MODES:
        import cywhip.asyncio as ca

        async def main():
            tx = ch.open(ca.Sender, serializer)
            while not ch.stop.is_set():
                if mode == "asend":
                    msgs = before(1)
                    try:
                        await tx.send(msgs[0], rng.choice((0.2, 1.0)))
                        sent = 1
                    except SendTimeout:
                        sent = 0
                elif mode == "asend_many":
                    msgs = before(size())
                    try:
                        sent = await tx.send_many(msgs, rng.choice((0.2, 1.0)))
                    except SendTimeout as exc:
                        sent = exc.sent
                else:
                    msgs = before(size())
                    sent = _try_send_each(tx, msgs)
                    if sent < len(msgs):
                        after(sent)
                        await asyncio.sleep(0.001)
                        continue
                after(sent)
                await asyncio.sleep(gap())
            _close_timed(ch, tx)
        _run_loop(spec, main())
        return
    tx = ch.open(Sender, serializer)
    while not ch.stop.is_set():
        if mode == "send":
            msgs = before(1)
            try:
                tx.send(msgs[0], timeout=rng.choice((0.2, 1.0)))
                sent = 1
            except SendTimeout:
                sent = 0
        elif mode == "send0":
            msgs = before(1)
            try:
                tx.send(msgs[0], timeout=0)
                sent = 1
            except SendTimeout:
                sent = 0
                time.sleep(0.0005)
        elif mode == "send_many":
            msgs = before(size())
            try:
                sent = tx.send_many(msgs, timeout=rng.choice((0.2, 1.0)))
            except SendTimeout as exc:
                sent = exc.sent
        elif mode == "reserve":
            msgs = before(1)
            try:
                sent = _reserve_send(tx, msgs[0], rng, length, rng.choice((0.2, 1.0)),
                                     park if spec["senders"] > 1 else None)
            except SendTimeout:
                sent = 0
        else:
            msgs = before(size())
            sent = _try_send_each(tx, msgs)
            if sent < len(msgs):
                time.sleep(0.0005)
        after(sent)
        d = gap()
        if d:
            time.sleep(d)
    _close_timed(ch, tx)


def child_main(spec_json):
    spec = json.loads(spec_json)
    try:
        (run_member if spec["role"] == "member" else run_sender)(spec)
    except SystemExit:
        raise
    except BaseException:
        try:
            WORD.pack_into(_map(spec["state"], STATE_WORDS), 8 * S_RESULT, R_ERROR)
        finally:
            raise
    return 0


# ------------------------------------------------------------------ the driver

class Proc:
    """One child as the driver sees it."""

    def __init__(self, pid_name, role, spec, popen, err_path, t_spawn):
        self.id = pid_name
        self.role = role
        self.spec = spec
        self.popen = popen
        self.err_path = err_path
        self.state = _map(spec["state"], STATE_WORDS)
        self.t_spawn = t_spawn
        self.t_close_cmd = None
        self.t_kill = None
        self.stopped_at = None
        self.fate = None            # what the driver does when it resumes a stopped child
        self.final = False          # closed in the final close-out, after the drain
        self.exit_seen = False
        self.killed_in_call = 0     # a take-then-record call's max_count, if killed inside it
        self.killed_parked = None   # the seq of the reserve() block a sender was killed in

    def parked(self):
        """The seq + 1 of the reserve() block this sender waits in for its gate, else 0.  Once the
        driver has opened the gate the sender may leave the block at any moment: parked no more."""
        return self.get(S_PARKED) if self.role == "sender" and not self.get(S_PARK_GATE) else 0

    def get(self, word):
        return WORD.unpack_from(self.state, 8 * word)[0]

    @property
    def group(self):
        return self.spec.get("group")

    @property
    def mode(self):
        return self.spec["mode"]

    def alive(self):
        return self.popen.poll() is None

    def opened(self):
        return self.get(S_OPEN_END) != 0

    def live(self):
        """Open, not killed, not told to close."""
        return self.opened() and self.t_kill is None and self.t_close_cmd is None and self.alive()

    def end_start(self):
        ts = [t for t in (self.t_kill, self.get(S_CLOSE_START) or None, self.t_close_cmd) if t]
        return min(ts) if ts else None

    def stderr(self):
        try:
            with open(self.err_path, errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""


class Failure(Exception):
    def __init__(self, kind, detail, at=None, finding=None):
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail, self.at, self.finding = kind, detail, at, finding


class Run:
    def __init__(self, seed, seconds, features=FEATURES, log=print, verbose=False, fault=None, shim=None,
                 bytes_=False, senders=1):
        self.seed = seed
        self.bytes = bytes_
        self.ring = 0
        self.fault = fault
        self.shim = shim if "jitter" in features else None
        self.quiet = None
        self.busy = []              # (proc, its error, when it was seen) of ends refused as busy
        self.seconds = seconds
        self.features = set(features)
        self.log = log
        self.verbose = verbose
        rng = self.rng = random.Random(seed)
        self.name = f"lifecycle-{'b-' if bytes_ else ''}{os.getpid()}-{seed}"
        self.senders = rng.choice((2, 3)) if "many" in self.features and rng.random() < 0.6 else 1
        self.receivers = rng.randint(2, 5)
        self.capacity = rng.choice((8, 16, 64))
        self.length = rng.choice((32, 64, 200))
        ngroups = rng.randint(1, min(3, self.receivers))
        self.groups = {}
        for k in range(ngroups):
            durable = not ("nondurable" in self.features and rng.random() < 0.5)
            broadcast = rng.random() < 0.5
            self.groups[f"{'b' if broadcast else 'w'}{k}{'' if durable else 'n'}"] = {
                "durable": durable, "broadcast": broadcast}
        if bytes_:
            # A byte channel (groups take one sender there): a small ring, so that padding
            # records at its end come often, and messages from 12 bytes to message_length.
            from cywhip._testing._model import var_capacity, var_max_length, var_record_size
            self.senders = senders
            self.ring = rng.choice(BYTE_RINGS)
            top = var_max_length(var_capacity(self.ring), senders)
            self.length = top if rng.random() < 0.4 else rng.randint(24, top)
            # The most messages the ring holds (all of the shortest length): the bound of what
            # a held sender may still send.
            self.capacity = var_capacity(self.ring) // var_record_size(HEAD.size)
        self.t0 = _now()
        self.procs = []
        self.serial = 0
        self.events = []            # (ns, text)
        self.admin = []             # (kind, group or None, t_start, t_end, result)
        self.failures = []
        self.figures = dict(kills=0, stops=0, joins=0, leaves=0, senders=0, removals=0, remove_group=0,
                            remove_stale=0, blackouts=0, busy_joins=0, messages=0, excused=0, redelivered=0,
                            parked_kills=0)
        self.workdir = tempfile.mkdtemp(prefix="cywhip-lifecycle-")
        self.admin_thread = None
        self.progress = (_now(), 0)
        self.excused_until = _now()

    # -- bookkeeping

    def event(self, text, t=None):
        t = t or _now()
        self.events.append((t, text))
        if self.verbose:
            self.log(f"  {self.rel(t):8.3f} {text}")

    def rel(self, t):
        return (t - self.t0) / NS

    def describe(self):
        size = (f"max_queued_bytes={self.ring} message_length={self.length} (12 to {self.length} bytes)"
                if self.bytes else f"capacity={self.capacity} length={self.length}")
        return (f"max_senders={self.senders} max_receivers={self.receivers} {size} groups=" + ", ".join(
                    f"{g}({'durable' if v['durable'] else 'non-durable'}, "
                    f"{'broadcast' if v['broadcast'] else 'sharing'})" for g, v in self.groups.items()))

    def spawn(self, role, **spec):
        self.serial += 1
        pid_name = f"{'m' if role == 'member' else 's'}{self.serial}"
        base = os.path.join(self.workdir, pid_name)
        spec.update(role=role, name=self.name, length=self.length, capacity=self.capacity, ring=self.ring,
                    senders=self.senders, receivers=self.receivers, state=base + ".state",
                    log=base + ".log", seed=self.rng.randrange(1 << 30), sid=self.serial,
                    uvloop=self.rng.random() < 0.3)
        _map(spec["state"], STATE_WORDS).close()
        err = open(base + ".err", "w")
        env = None
        if self.shim and self.rng.random() < 0.7:
            # After whatever is preloaded already: a sanitizer's runtime must come first.
            preload = " ".join(filter(None, [os.environ.get("LD_PRELOAD", ""), self.shim]))
            env = dict(os.environ, LD_PRELOAD=preload,
                       CYWHIP_LIFECYCLE_JITTER_US=str(self.rng.choice((300, 2000, 8000))))
        popen = subprocess.Popen([sys.executable, "-m", "cywhip._testing.lifecycle", "--child", json.dumps(spec)],
                                 stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, text=True, env=env)
        err.close()
        p = Proc(pid_name, role, spec, popen, base + ".err", _now())
        self.procs.append(p)
        what = f"group {spec['group']!r} " if role == "member" else ""
        self.event(f"start {role} {pid_name} {what}mode {spec['mode']} (pid {popen.pid})")
        return p

    def members(self, group=None):
        return [p for p in self.procs if p.role == "member" and (group is None or p.group == group)]

    def senders_(self):
        return [p for p in self.procs if p.role == "sender"]

    def running(self, procs):
        return [p for p in procs if p.alive() and p.t_kill is None and p.t_close_cmd is None]

    # -- actions

    def join(self, group, drainer=False, gate=False):
        g = self.groups[group]
        modes = list(PLAIN_MEMBER_MODES)
        if "async" in self.features:
            # async for waits without a timeout.
            modes += [m for m in ASYNC_MEMBER_MODES if m != "aiter" or "forever" in self.features]
        if self.bytes and "forever" in self.features:
            modes.append("iterate")     # for m in rx: waits without a timeout
        mode = "on_batch" if drainer else self.rng.choice(modes)
        timeout = (self.rng.choice((0.05, 0.5, None) if "forever" in self.features else (0.05, 0.5))
                   if mode not in RECORD_BEFORE_TAKE else 0.2)
        if timeout is None and mode in ("try_recv",):
            timeout = 0.1
        self.figures["joins"] += 1
        return self.spawn("member", group=group, durable=g["durable"], mode=mode, timeout=timeout,
                          fault=self.fault, gate=gate,
                          claim_delay=self.rng.choice((0, 0, 0.005, 0.02)) if not (drainer or gate) else 0)

    def start_sender(self):
        modes = list(PLAIN_SENDER_MODES)
        if "nowait" in self.features:
            modes += NOWAIT_SENDER_MODES
        if self.bytes:
            modes.append("reserve")
        if "async" in self.features:
            modes += ASYNC_SENDER_MODES
            if "nowait" in self.features:
                modes += ASYNC_NOWAIT_SENDER_MODES
        self.figures["senders"] += 1
        return self.spawn("sender", mode=self.rng.choice(modes), slow=self.rng.random() < 0.5,
                          claim_delay=self.rng.choice((0, 0, 0.005)))

    def close(self, p):
        p.t_close_cmd = _now()
        self.event(f"close {p.id}")
        if p.role == "member":
            self.figures["leaves"] += 1
        try:
            p.popen.stdin.write("close\n")
            p.popen.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def kill(self, p, why="kill"):
        self.kill_all([p], why)

    def kill_all(self, procs, why="kill"):
        """SIGKILL every one of procs at once, then reap them."""
        procs = [p for p in procs if p.t_kill is None]
        for p in procs:
            p.t_kill = _now()
            p.stopped_at = None
            try:
                p.popen.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in procs:
            p.popen.wait()
            self._killed(p, why)

    def _killed(self, p, why):
        if p.role == "member" and p.mode not in RECORD_BEFORE_TAKE and p.get(S_IN_CALL):
            p.killed_in_call = p.get(S_CALL_MAX)
        if p.parked():
            p.killed_parked = p.parked() - 1
            self.figures["parked_kills"] += 1
        self.figures["kills"] += 1
        self.event(f"{why} {p.id}" + (" (open)" if p.opened() else " (while opening)")
                   + (f" inside a call taking up to {p.killed_in_call}" if p.killed_in_call else "")
                   + (f" parked in the reserve() block of message {p.killed_parked}"
                      if p.killed_parked is not None else ""))

    def handle_parked(self):
        """A sender parked inside a reserve() block (many senders): killed there (always the first
        one of a run), else let go."""
        for p in self.senders_():
            if p.t_kill is not None or p.stopped_at is not None or not p.alive() or not p.parked():
                continue
            if not self.figures["parked_kills"] or self.rng.random() < 0.5:
                self.kill(p)
            else:
                WORD.pack_into(p.state, 8 * S_PARK_GATE, 1)

    def stop(self, p):
        try:
            p.popen.send_signal(signal.SIGSTOP)
        except ProcessLookupError:
            return
        p.stopped_at = _now()
        p.fate = (self.rng.choice(("kill", "cont")) if "kill" in self.features else "cont",
                  _now() + int(self.rng.uniform(0.005, 0.4) * NS))
        self.figures["stops"] += 1
        self.event(f"stop {p.id}" + (" (while opening)" if not p.opened() else ""))

    def resume_due(self, force=False):
        for p in self.procs:
            if p.stopped_at is None:
                continue
            what, due = p.fate
            if not force and _now() < due:
                continue
            p.stopped_at = None
            if what == "kill":
                self.kill(p, "kill stopped")
            else:
                try:
                    p.popen.send_signal(signal.SIGCONT)
                except ProcessLookupError:
                    pass            # it exited as it was stopped
                self.event(f"resume {p.id}")
            self.excused_until = max(self.excused_until, _now() + NS // 2)

    def admin_call(self, kind, group=None):
        """remove_group or remove_stale in a thread of this process (either may wait for a lock)."""
        t_start = _now()
        record = [kind, group, t_start, None, None]
        self.admin.append(record)

        def call():
            try:
                if kind == "remove_group":
                    cywhip.remove_group(self.name, group)
                    record[4] = "removed"
                else:
                    record[4] = "removed" if cywhip.remove_stale([self.name]) else "nothing"
            except ChannelBusyError as exc:
                record[4] = f"busy: {exc}"
            except (KeyError, FileNotFoundError, ValueError) as exc:
                record[4] = f"absent: {type(exc).__name__}"
            except Exception as exc:    # noqa: BLE001 - reported as a failure
                record[4] = f"error: {type(exc).__name__}: {exc}"
            record[3] = _now()
            self.event(f"{kind}{'(' + repr(group) + ')' if group else ''} -> {record[4]}", record[3])
        self.event(f"{kind}{'(' + repr(group) + ')' if group else ''} starts")
        self.admin_thread = threading.Thread(target=call, daemon=True)
        self.admin_thread.start()

    def admin_busy(self):
        return self.admin_thread is not None and self.admin_thread.is_alive()

    def blackout(self):
        """Start new ends and hold them (members at the claim hook, just before they join; a
        sender as it opens), kill every other end, remove the channel and let the new ends go
        as the removal runs."""
        self.figures["blackouts"] += 1
        rng = self.rng
        old = [p for p in self.procs if p.alive()]
        self.event("blackout: start new ends, then kill every other one and call remove_stale")
        gated = []
        for _ in range(rng.randint(1, 3)):
            g = rng.choice(sorted(self.groups))
            if not self.groups[g]["broadcast"]:
                gated.append(self.join(g, gate=True))
        if self.senders > 1:
            self.start_sender()
        new = [p for p in self.procs if p not in old]
        limit = _now() + 10 * NS
        while _now() < limit and not (all(p.get(S_AT_GATE) or not p.alive() for p in gated)
                                      and any(p.get(S_OPEN_START) for p in new)):
            time.sleep(0.002)
        self.kill_all(old, "kill (blackout)")
        self.admin_call("remove_stale")
        for p in gated:
            time.sleep(rng.choice((0, 0.0005, 0.002, 0.005)) * rng.random())
            WORD.pack_into(p.state, 8 * S_GATE_OPEN, 1)
        self.event(f"gates open: {[p.id for p in gated]}")
        if self.senders == 1:
            self.start_sender()     # its place is free only now
        self.excused_until = max(self.excused_until, _now() + 2 * NS)

    # -- the schedule

    def reap(self):
        for p in self.procs:
            if p.exit_seen or p.alive():
                continue
            p.exit_seen = True
            rc = p.popen.returncode
            if p.t_kill is not None:
                continue
            res = p.get(S_RESULT)
            if res == R_BUSY:
                self.figures["busy_joins"] += 1
                err = p.stderr()
                self.event(f"{p.id} could not open: {err.strip().splitlines()[-1] if err.strip() else '?'}")
                self.busy.append((p, err.strip()[-600:], _now()))
                continue
            if rc != 0 or res == R_ERROR:
                err = p.stderr()
                # ChannelCorruptError on a sound channel: with many senders, a stalled group creation once made
                # a sender compare the claim cursor with an old bound.
                finding = "stalled creation called corrupt" if "ChannelCorruptError" in err and self.senders > 1 else None
                self.fail("end raised", f"{p.id} ({p.role}, mode {p.mode}"
                          + (f", group {p.group!r}" if p.group else "") + f") exited with {rc}:\n"
                          + err.strip()[-2500:], finding=finding)
            elif p.t_close_cmd is None:
                self.fail("end stopped", f"{p.id} exited by itself ({rc}): {p.stderr()[-1000:]}")
            else:
                self.event(f"{p.id} closed")

    def fail(self, kind, detail, at=None, finding=None):
        f = Failure(kind, detail, at if at is not None else _now(), finding)
        self.failures.append(f)
        self.event(f"FAILURE {kind}")

    def certainly_live_members(self, group):
        return [p for p in self.members(group) if p.live() and p.stopped_at is None]

    def group_present(self, group):
        """Whether the group may be in the channel (generous: any member ever started)."""
        return bool(self.members(group))

    def check_progress(self):
        now = _now()
        confirmed = sum(p.get(S_CONFIRMED) for p in self.senders_())
        if confirmed != self.progress[1]:
            self.progress = (now, confirmed)
            return
        excuse = any(p.stopped_at is not None for p in self.procs) or self.admin_busy()
        excuse = excuse or not any(p.live() for p in self.senders_())
        # A durable group without a live member holds the senders, as it should; so does any
        # group whose only members are opening or closing.
        for g, v in self.groups.items():
            if not self.certainly_live_members(g) and (v["durable"] and self.group_present(g)
                                                        or any(p.alive() for p in self.members(g))):
                excuse = True
        if excuse:
            self.excused_until = max(self.excused_until, now)
            return
        since = max(self.progress[0], self.excused_until)
        if now - since > STALL_SECONDS * NS:
            listing = _groups_listing(self.name)
            finding = None
            modes = {p.mode for p in self.senders_() if p.live()}
            if modes and modes <= set(NOWAIT_SENDER_MODES + ASYNC_SENDER_MODES + ASYNC_NOWAIT_SENDER_MODES):
                finding = "dead group held"
            if not any(p.alive() for p in self.members()):
                finding = "held after every group left"
            self.dump_stacks()
            self.fail("stall", f"no sender made progress for {(now - since) / NS:.1f} s with every end "
                      f"running and every durable group a live member; live senders "
                      f"{[(p.id, p.mode) for p in self.senders_() if p.live()]}, live members "
                      f"{[(p.id, p.group, p.mode) for p in self.members() if p.live()]}; groups {listing}"
                      + self.stacks_text(), at=since, finding=finding)
            raise _Abort()

    def split_brain(self):
        """A live end mapping a channel file that has lost its name: remove_stale() removed the
        channel under it (no end of this run ever unlinks it)."""
        path = f"/dev/shm/cywhip.{self.name} (deleted)"
        for p in self.procs:
            if not p.live() or p.stopped_at is not None:
                continue
            try:
                with open(f"/proc/{p.popen.pid}/maps") as f:
                    maps = f.read()
            except OSError:
                continue
            if path in maps and p.live():
                self.fail("split brain", f"{p.id} ({p.role} {p.mode}"
                          + (f", group {p.group!r}" if p.group else "") + f", opened at "
                          f"{self.rel(p.get(S_OPEN_END)):.3f} s) works on a channel file that remove_stale() "
                          f"unlinked: ends opening later cannot reach it", at=p.get(S_OPEN_END),
                          finding="joined an unlinked file" if p.role == "member" else None)
                return

    def dump_stacks(self):
        for p in self.procs:
            # Only a child that has set up its handler (it does before it opens its end).
            if p.alive() and p.get(S_OPEN_START):
                try:
                    p.popen.send_signal(signal.SIGUSR1)
                except ProcessLookupError:
                    pass
        time.sleep(0.3)

    def stacks_text(self):
        out = []
        for p in self.procs:
            if p.alive():
                err = p.stderr()
                if "Thread" in err:
                    out.append(f"\n  --- {p.id} ({p.role} {p.mode}) stacks:\n" + err[-1500:])
        return "".join(out[:4])

    def burst(self, open_members):
        """Members closing together while their group is removed and another group joins: a
        member of that other group is started first and held just before it joins (at the
        claim hook) until the closes and the removal are under way."""
        rng = self.rng
        chosen = rng.sample(open_members, min(len(open_members), rng.randint(2, 3)))
        # Rather a group with two members or more, closing together.
        crowded = [p.group for p in open_members if sum(q.group == p.group for q in open_members) > 1]
        group = rng.choice(crowded or [p.group for p in chosen])
        closing = [p for p in open_members if p.group == group] + [p for p in chosen if p.group != group]
        others = [g for g in self.groups if g != group and (not self.groups[g]["broadcast"]
                                                          or not any(p.alive() for p in self.members(g)))]
        # Rather a group that is not there (its creation may take the entry of the one going).
        absent = [g for g in others if not any(p.alive() for p in self.members(g))]
        if absent and rng.random() < 0.7:
            others = absent
        gated = None
        if others:
            gated = self.join(rng.choice(others), gate=True)
            limit = _now() + 10 * NS
            while not gated.get(S_AT_GATE) and gated.alive() and _now() < limit:
                time.sleep(0.002)
        self.event(f"burst: close {[p.id for p in closing]}, remove group {group!r}"
                   + (f", let {gated.id} join {gated.group!r}" if gated else ""))
        for p in closing:
            self.close(p)
        if not self.admin_busy() and "remove_group" in self.features:
            time.sleep(rng.random() * 0.003)
            self.figures["remove_group"] += 1
            self.admin_call("remove_group", group)
        if gated is not None:
            time.sleep(rng.choice((0, 0.001, 0.003, 0.01)) * rng.random())
            WORD.pack_into(gated.state, 8 * S_GATE_OPEN, 1)

    def start_quiet(self):
        """Every group non-durable: close every member, join none for a while; the senders
        must go on (a channel whose groups have all left does not hold them)."""
        self.event("quiet: close every member, no joins for 2 s")
        for p in self.running(self.members()):
            if p.opened():
                self.close(p)
            else:
                self.kill(p, "kill (quiet)")
        self.quiet = dict(until=_now() + 2 * NS, base=None)

    def start_orphan(self, group):
        """Kill every member of a non-durable group and join none for a while, every other group
        keeping its members: the senders must go on (a sender finding the dead group on a full
        ring removes it)."""
        self.event(f"orphan: kill every member of {group!r}, no joins for 2 s")
        self.kill_all([p for p in self.members(group) if p.alive()], "kill (orphan)")
        self.quiet = dict(until=_now() + 2 * NS, base=None, group=group)

    def check_quiet(self):
        q = self.quiet
        now = _now()
        group = q.get("group")
        others_ok = all(self.certainly_live_members(h) for h in self.groups if h != group)
        if group is not None and not others_ok:
            self.event("orphan abandoned: another group lost its members")
            self.quiet = None
            return False
        busy = (any(p.alive() for p in self.members(group)) if group is not None
                else any(p.alive() for p in self.members()))
        if busy or any(p.stopped_at is not None for p in self.procs):
            q["base"] = None        # not quiet yet
            q["until"] = max(q["until"], now + NS)
            if now - q["until"] > 20 * NS:
                self.quiet = None
            return True
        live = [p for p in self.senders_() if p.live() and p.stopped_at is None]
        if q["base"] is None:
            q["base"] = (now, {p.id: p.get(S_CONFIRMED) for p in live})
            q["until"] = now + int(1.5 * NS)
            return True
        if now < q["until"]:
            return True
        t, base = q["base"]
        moved = {p.id: p.get(S_CONFIRMED) - base[p.id] for p in live if p.id in base}
        self.quiet = None
        if moved and max(moved.values()) <= self.capacity and group is not None:
            listing = _groups_listing(self.name)
            # The dead group still listed: nobody removed it; gone, or every group gone, and the
            # senders still held: the floor was not moved up (F).
            still = listing is not None and any(g == group for g, _, _ in listing)
            self.dump_stacks()
            self.fail("senders held", f"group {group!r} (non-durable) has had no live member for "
                      f"{(now - t) / NS:.1f} s, every other group its members, and the senders "
                      f"{[(p.id, p.mode) for p in live]} sent {moved} (ring of {self.capacity}): "
                      + ("the dead group is still there and holds them" if still else
                         "the dead group is gone and they are held all the same")
                      + f"; groups {listing}" + self.stacks_text(), at=t, finding="dead group held" if still else "held after every group left")
        elif moved and max(moved.values()) <= self.capacity:
            self.fail("senders held", f"no member and only non-durable groups for {(now - t) / NS:.1f} s, and "
                      f"the senders sent {moved} (ring of {self.capacity}): the groups that left still "
                      f"hold them; groups {_groups_listing(self.name)}", at=t, finding="held after every group left")
        else:
            self.event(f"quiet over: senders sent {moved}")
        return False

    def step(self):
        rng = self.rng
        if self.quiet is not None and self.check_quiet():
            return
        live_senders = self.running(self.senders_())
        alive_senders = [p for p in self.senders_() if p.alive() and p.t_kill is None]
        if len(alive_senders) < self.senders and (not live_senders or rng.random() < 0.05):
            self.start_sender()
        members = self.running(self.members())
        # Keep a place free for a late join (and the drain).
        room = self.receivers - len(members) - sum(1 for p in self.members() if p.alive() and p not in members)
        choices = []
        for g, v in self.groups.items():
            gm = self.running(self.members(g))
            if room > 0 and (not v["broadcast"] or not any(p.alive() for p in self.members(g))):
                weight = 3 if not gm else 1
                if v["durable"] and not gm and self.group_present(g):
                    weight = 8
                choices += [("join", g)] * weight
        open_members = [p for p in members if p.stopped_at is None and p.opened()]
        if open_members:
            choices += [("close", None)] * 2
            if "kill" in self.features:
                choices += [("kill", None)] * 3
        if "stop" in self.features and [p for p in self.procs if p.alive() and p.stopped_at is None]:
            choices += [("stop", None)]
        opened_senders = [p for p in live_senders if p.opened() and p.stopped_at is None]
        if opened_senders:
            choices += [("close_sender", None)] * (1 if len(live_senders) > 1 or rng.random() < 0.3 else 0)
            if "kill" in self.features:
                choices += [("kill_sender", None)]
        if not self.admin_busy():
            if "remove_group" in self.features:
                choices += [("remove_group", None)] * 2
            if "remove_stale" in self.features:
                choices += [("remove_stale", None)]
            if "blackout" in self.features and rng.random() < 0.3:
                choices += [("blackout", None)]
            if "burst" in self.features and len(open_members) >= 2:
                choices += [("burst", None)]
        if ("quiet" in self.features and open_members and rng.random() < 0.1
                and not any(v["durable"] for v in self.groups.values())):
            choices += [("quiet", None)]
        if "orphan" in self.features and "kill" in self.features and rng.random() < 0.1:
            orphans = [g for g, v in self.groups.items() if not v["durable"] and self.certainly_live_members(g)
                       and all(self.certainly_live_members(h) for h in self.groups if h != g)]
            if orphans and not any(p.stopped_at is not None for p in self.procs):
                choices += [("orphan", rng.choice(orphans))]
        if not choices:
            return
        what, g = rng.choice(choices)
        if what == "join":
            self.join(g)
        elif what == "close":
            self.close(rng.choice(open_members))
        elif what == "kill":
            opening = [p for p in members if not p.opened() and p.stopped_at is None]
            self.kill(rng.choice(opening if opening and rng.random() < 0.15 else open_members))
        elif what == "stop":
            self.stop(rng.choice([p for p in self.procs if p.alive() and p.stopped_at is None
                                  and p.t_kill is None]))
        elif what == "close_sender":
            self.close(rng.choice(opened_senders))
        elif what == "kill_sender":
            self.kill(rng.choice(opened_senders if rng.random() < 0.85 else live_senders))
        elif what == "remove_group":
            self.figures["remove_group"] += 1
            self.admin_call("remove_group", rng.choice(sorted(self.groups)))
        elif what == "remove_stale":
            self.figures["remove_stale"] += 1
            self.admin_call("remove_stale")
        elif what == "blackout":
            self.figures["remove_stale"] += 1
            self.blackout()
        elif what == "burst":
            self.burst(open_members)
        elif what == "quiet":
            self.start_quiet()
        elif what == "orphan":
            self.start_orphan(g)

    def run(self):
        from cywhip import _region
        delay_rng = random.Random(self.seed + 2)

        def hook(point, path):
            if point == "remove" and path.endswith(self.name):
                # Stretch the removal's window, or not (an end that checked the name just
                # before may then lock its place just after).
                time.sleep(delay_rng.choice((0, 0, 0.001, 0.02)) * delay_rng.random())
        _region._test_hook = hook
        unlink(self.name, missing_ok=True)
        self.event(f"run seed {self.seed}: {self.describe()}")
        try:
            try:
                # The first ends, open before the schedule's clock starts (processes start
                # slowly on a loaded machine).
                # Every sender place filled at once (max_senders of them), then the groups' first members.
                first = [self.start_sender() for _ in range(self.senders)] + [self.join(g) for g in self.groups]
                limit = _now() + 60 * NS
                while not all(p.opened() or not p.alive() for p in first) and _now() < limit:
                    time.sleep(0.02)
                self.progress = (_now(), 0)
                deadline = _now() + int(self.seconds * NS)
                while _now() < deadline and not self.failures:
                    self.reap()
                    self.resume_due()
                    self.handle_parked()
                    self.check_progress()
                    if any(a[4] == "removed" and _now() - a[3] > NS // 2 for a in self.admin[-3:]):
                        self.split_brain()
                    if self.rng.random() < 0.4:
                        self.step()
                    time.sleep(self.rng.uniform(0.01, 0.1))
                if self.fault and not self.failures:
                    self.await_fault()
                if not self.failures:
                    self.finish()
                self.reap()
            except _Abort:
                pass
            if not self.failures:
                self.check()
        finally:
            self.cleanup()
        return self.failures

    def await_fault(self):
        """The checker's own test: go on past the schedule, with no new steps (a slow machine's
        members may have left before any saw 20 messages), until a member has misreported."""
        deadline = _now() + 60 * NS
        while _now() < deadline and not self.failures:
            if any(p.get(S_FAULTED) for p in self.members()):
                return
            self.reap()
            self.resume_due()
            self.handle_parked()
            if not any(p.alive() for p in self.senders_()):
                self.start_sender()
            for g in self.groups:
                if not any(p.alive() for p in self.members(g)):
                    self.join(g)
            time.sleep(0.05)
        if not self.failures:
            self.fail("fault never made", f"no member reached its misreport ({self.fault}) within 60 s "
                      f"of the schedule's end")

    def finish(self):
        """Stop the senders, give every group left a member, wait for the drain, close."""
        self.event("finish: resume stopped ends, close the senders")
        self.resume_due(force=True)
        while self.admin_busy():
            time.sleep(0.01)
        for p in self.running(self.senders_()):
            WORD.pack_into(p.state, 8 * S_PARK_GATE, 1)
            self.close(p)
        self.wait_exit(self.senders_(), 15, "sender did not stop")
        self.reap()
        if self.failures:
            return
        deadline = _now() + 40 * NS
        self.drain_start = _now()
        while _now() < deadline:
            self.reap()
            if self.failures:
                return
            listing = _groups_listing(self.name)
            if listing is None:
                break
            if all(depth == 0 for _, depth, _ in listing):
                break
            for g, _, _ in listing:
                if g not in self.groups:
                    self.fail("unknown group", f"the channel lists group {g!r}, which no member named")
                    return
                refused = sum(1 for q, _, seen in self.busy if q.group == g and seen > self.drain_start)
                if (not self.groups[g]["durable"] and refused >= 3
                        and not any(p.alive() for p in self.members(g))):
                    # No place for it (the others' members hold them all): a non-durable group
                    # without a member may go, as a sender would remove it.
                    self.busy = [b for b in self.busy if not (b[0].group == g and b[2] > self.drain_start)]
                    self.figures["remove_group"] += 1
                    self.admin_call("remove_group", g)
                    while self.admin_busy():
                        time.sleep(0.01)
                    continue
                if refused >= 3:
                    # A durable group must be drained: free a place, closing one member of a group
                    # that has several.
                    crowded = [h for h in self.groups if len(self.running(self.members(h))) > 1]
                    if crowded:
                        self.close(self.running(self.members(crowded[0]))[0])
                        self.busy = [b for b in self.busy if not (b[0].group == g and b[2] > self.drain_start)]
                if self.groups[g]["broadcast"]:
                    if not any(p.alive() for p in self.members(g)):    # one member at a time
                        self.join(g, drainer=True)
                elif not any(p.alive() and p.t_close_cmd is None and p.t_kill is None for p in self.members(g)):
                    self.join(g, drainer=True)
            time.sleep(0.2)
        else:
            self.dump_stacks()
            self.fail("drain stalled", f"the groups did not take every message within 40 s of the senders "
                      f"closing: {_groups_listing(self.name)}" + self.stacks_text())
            return
        self.split_brain()
        self.event("drained: close the members")
        for p in self.running(self.members()):
            if p.opened():
                p.final = True
                self.close(p)
        for p in self.members():
            if p.alive() and not p.final and p.t_close_cmd is None:
                self.kill(p, "kill (never opened)")
        self.wait_exit(self.members(), 15, "member did not close")

    def wait_exit(self, procs, seconds, what):
        deadline = time.monotonic() + seconds
        for p in procs:
            try:
                p.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.dump_stacks()
                self.fail("hang", f"{what}: {p.id} ({p.role} {p.mode}) within {seconds} s" + self.stacks_text())
                self.kill(p, "kill (hung)")

    def cleanup(self):
        from cywhip import _region
        _region._test_hook = None
        for p in self.procs:
            if p.alive():
                try:
                    p.popen.send_signal(signal.SIGKILL)
                except ProcessLookupError:
                    pass
            p.popen.wait()
            if p.popen.stdin and not p.popen.stdin.closed:
                try:
                    p.popen.stdin.close()
                except OSError:
                    pass
            p.state.close()
        if self.admin_thread is not None:
            self.admin_thread.join(10)
        unlink(self.name, missing_ok=True)
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- the check

    def check(self):
        senders = {}
        for p in self.senders_():
            attempts, confirms = _read_sender_log(p.spec["log"])
            senders[p.spec["sid"]] = _SenderRecord(p, attempts, confirms)
        admin = [a for a in self.admin if a[4] == "removed"]
        for kind, group, t0, t1, _ in admin:
            live = [p for p in self.procs if p.opened() and p.get(S_OPEN_END) < t0
                    and (p.end_start() is None or p.end_start() > t1)
                    and (kind == "remove_stale" or p.group == group)]
            if live:
                self.fail(f"{kind} removed a live end's channel" if kind == "remove_stale"
                          else "remove_group removed a group with a live member",
                          f"{kind}({group!r}) at {self.rel(t0):.3f}-{self.rel(t1):.3f} s removed while "
                          f"{[p.id for p in live]} were open", at=t0, finding="joined an unlinked file" if kind == "remove_stale" else None)
        self.figures["removals"] = len(admin)
        for p, err, seen in self.busy:
            t_open = p.get(S_OPEN_START) or p.t_spawn
            during = [a for a in admin if a[0] == "remove_stale" and a[2] <= seen and a[3] >= t_open]
            named = [int(x) for x in re.findall(r"\d+", err[err.rfind("(pids ["):])] if "(pids [" in err else []
            holders = [q for q in self.procs if q.popen.pid in named and (q.t_kill is None or q.t_kill > seen)]
            # Ends of its kind that may have held a place meanwhile: as many as there are places,
            # and the refusal may be right.
            rivals = [q for q in self.procs if q is not p and q.role == p.role and q.t_spawn <= seen
                      and (q.t_kill is None or q.t_kill >= t_open)
                      and (q.get(S_CLOSE_END) == 0 or q.get(S_CLOSE_END) >= t_open)]
            places = self.receivers if p.role == "member" else self.senders
            if during and not holders and len(rivals) < places:
                self.fail("busy during a removal", f"{p.id} ({p.role}, {p.mode}) opening from "
                          f"{self.rel(t_open):.3f} s was refused as busy while remove_stale() removed the "
                          f"channel ({self.rel(during[0][2]):.3f}-{self.rel(during[0][3]):.3f} s) instead of "
                          f"waiting for the removal: {err}", at=during[0][3], finding="busy during a removal")
        segments = []
        for g, v in self.groups.items():
            segments += self.segments(g, v, admin)
        finals = [s for s in segments if s["final"]]
        for s in segments:
            self.check_segment(s, senders)
        self.check_finals(finals, senders)
        bcast = [s for s in segments if s["broadcast"] and len(s["order"]) > 1]
        for i, a in enumerate(bcast):
            for b in bcast[i + 1:]:
                self.check_same_order(a, b)

    def segments(self, group, v, admin):
        """The group's members cut into segments (members certainly in one incarnation of the
        group), each with its cluster (the members that may be in that incarnation)."""
        members = sorted((p for p in self.members(group) if p.opened()), key=lambda p: p.get(S_OPEN_START))
        removals = [(t0, t1) for kind, g, t0, t1, _ in admin if kind == "remove_stale" or g == group]
        out = []
        cur = None
        for p in members:
            os_, oe = p.get(S_OPEN_START), p.get(S_OPEN_END)
            if cur is not None and self.same_incarnation(cur, p, v, removals):
                cur["members"].append(p)
            else:
                cur = dict(group=group, broadcast=v["broadcast"], durable=v["durable"], members=[p],
                           start=os_, created=oe)
                out.append(cur)
        certain = self.certain_removals(group, v, removals)
        for s in out:
            s["final"] = any(p.final for p in s["members"])
            first_os = s["start"]
            s["cluster"] = [p for p in members
                            if not any(p.get(S_OPEN_END) < r0 and r1 < first_os for r0, r1 in certain)]
            self.read_segment(s)
        return out

    @staticmethod
    def end_of(p):
        """When a member certainly no longer held its place (killed, or its close returned)."""
        ts = [t for t in (p.t_kill, p.get(S_CLOSE_END) or None) if t]
        return min(ts) if ts else 1 << 62

    def same_incarnation(self, seg, p, v, removals):
        """Whether member p certainly joined the incarnation of the group that seg's members are in."""
        os_, oe = p.get(S_OPEN_START), p.get(S_OPEN_END)
        if any(r1 >= seg["start"] and r0 <= oe for r0, r1 in removals):
            return False
        if v["durable"]:
            return True          # a durable group goes only by remove_group() or remove_stale()
        # A non-durable group lives while it has a member: p joined while one certainly lived.
        return any(q.get(S_OPEN_END) <= os_ and (q.end_start() or 1 << 62) >= oe for q in seg["members"])

    def certain_removals(self, group, v, removals):
        """Windows in which the group was certainly removed: a remove_group() or remove_stale()
        that succeeded, or the close of a non-durable group's last member (no other member,
        opening or open, possibly alive meanwhile)."""
        out = list(removals)
        if v["durable"]:
            return out
        members = self.members(group)
        for p in members:
            cs, ce = p.get(S_CLOSE_START), p.get(S_CLOSE_END)
            if not (cs and ce) or p.t_kill is not None:
                continue
            if not any(q is not p and q.t_spawn <= ce and self.end_of(q) >= p.t_spawn for q in members):
                out.append((cs, ce))
        return out

    def read_segment(self, s):
        recs = []       # (sid, seq, member, unit, ok, excusable)
        for p in s["members"]:
            rows = _read_member_log(p.spec["log"])
            last_unit = rows[-1][2] if rows else None
            given_back = p.t_kill is not None and p.mode in RECORD_BEFORE_TAKE
            for sid, seq, unit, ok in rows:
                recs.append((sid, seq, p, unit, ok, given_back and unit == last_unit))
        s["recs"] = recs
        s["excused"] = sum(p.killed_in_call for p in s["members"])
        seen = set()
        order = []
        for sid, seq, *_ in recs:
            if (sid, seq) not in seen:
                seen.add((sid, seq))
                order.append((sid, seq))
        s["order"] = order
        s["set"] = seen
        have = set()
        for p in s["cluster"]:
            have.update((sid, seq) for sid, seq, _, _ in _read_member_log(p.spec["log"]))
        s["have"] = have | seen
        s["cluster_excused"] = sum(p.killed_in_call for p in set(s["cluster"]) | set(s["members"]))

    def seg_name(self, s):
        return (f"group {s['group']!r} ({'durable' if s['durable'] else 'non-durable'}, "
                f"{'broadcast' if s['broadcast'] else 'sharing'}) segment from {self.rel(s['start']):.3f} s, "
                f"members {[p.id for p in s['members']]}")

    def check_segment(self, s, senders):
        self.figures["messages"] += len(s["recs"])
        copies = {}
        for sid, seq, p, unit, ok, excusable in s["recs"]:
            if not ok:
                self.fail("torn message", f"{self.seg_name(s)}: {p.id} received a message that is not "
                          f"whole (reads as sender {sid} message {seq})", at=p.get(S_OPEN_END))
                return
            snd = senders.get(sid)
            if snd is None or seq >= snd.attempted:
                self.fail("invented message", f"{self.seg_name(s)}: {p.id} received sender {sid}'s message "
                          f"{seq}, which it never sent", at=p.get(S_OPEN_END))
                return
            if seq == snd.proc.killed_parked:
                self.fail("sent a killed reserve", f"{self.seg_name(s)}: sender {sid} was killed inside the "
                          f"reserve() block of message {seq}, yet {p.id} received it", at=snd.proc.t_kill)
                return
            c = copies.setdefault((sid, seq), [0, 0, []])
            c[0] += 1
            c[1] += excusable
            c[2].append(p.id)
        twice = [(k, c) for k, c in copies.items() if c[0] - c[1] > 1]
        self.figures["redelivered"] += sum(c[0] - 1 for c in copies.values() if c[0] > 1)
        if twice:
            (sid, seq), c = min(twice)
            self.fail("delivered twice", f"{self.seg_name(s)}: {len(twice)} messages delivered more than once "
                      f"and not given back by a killed member, first sender {sid} message {seq} "
                      f"(by {c[2]}); others {[k for k, _ in sorted(twice)[1:8]]}",
                      at=senders[sid].start(seq))
        if s["broadcast"]:
            # Per sender in order without gaps; the excused gaps of killed take-then-record calls.
            last = {}
            gaps = 0
            for sid, seq in s["order"]:
                if sid in last and seq != last[sid] + 1:
                    if seq <= last[sid]:
                        self.fail("reordered", f"{self.seg_name(s)}: sender {sid} message {seq} after "
                                  f"{last[sid]}", at=senders[sid].start(seq))
                        return
                    gaps += seq - last[sid] - 1
                    if gaps > s["excused"]:
                        self.fail("lost", f"{self.seg_name(s)}: sender {sid}'s messages {last[sid] + 1}.."
                                  f"{seq - 1} missing between {last[sid]} and {seq} (excused: {s['excused']})",
                                  at=senders[sid].start(last[sid] + 1))
                        return
                last[sid] = max(last.get(sid, seq), seq)
            # What was sent after the segment was created must be there if anything later is.
            firsts = {}
            for sid, seq in s["order"]:
                firsts.setdefault(sid, seq)
            for sid, snd in senders.items():
                if sid not in firsts:
                    continue
                need = _first_after(snd, s["created"])
                if need is not None and firsts[sid] > need + s["excused"]:
                    self.fail("late start", f"{self.seg_name(s)}: sender {sid}'s first message delivered is "
                              f"{firsts[sid]}, but {need} was sent after the segment was created "
                              f"(at {self.rel(s['created']):.3f} s)", at=s["created"])
                    return
            self.figures["excused"] += gaps

    def check_finals(self, finals, senders):
        """A segment alive at the end, drained: every message from where it started (or the first
        sent after it was created) to each sender's last confirmed, delivered to its incarnation
        (the members of its cluster: those that may have been in it)."""
        ends = {}
        for s in finals:
            missing = []
            mine, have = {}, {}
            for sid, q in s["set"]:
                mine.setdefault(sid, []).append(q)
            for sid, q in s["have"]:
                have.setdefault(sid, set()).add(q)
            for sid, snd in senders.items():
                got = mine.get(sid, [])
                need = _first_after(snd, s["created"])
                lo = min(got) if got else need
                if need is not None and lo is not None:
                    lo = min(lo, need)
                if lo is None:
                    continue
                h = have.get(sid, set())
                hi = snd.confirmed if not snd.killed else max(snd.confirmed, max(h, default=-1) + 1)
                missing += [(sid, q) for q in range(lo, hi) if q not in h and q != snd.proc.killed_parked]
                if snd.killed and h:
                    ends.setdefault(sid, {})[s["group"]] = (max(h), s)
            if len(missing) > s["cluster_excused"]:
                sid, q = missing[0]
                self.fail("lost", f"{self.seg_name(s)} (alive at the end, drained; its incarnation may also "
                          f"include {sorted({p.id for p in s['cluster']} - {p.id for p in s['members']})}): "
                          f"{len(missing)} messages never delivered (excused {s['cluster_excused']}), first "
                          f"sender {sid} message {q}; {sorted(missing)[:12]}", at=senders[sid].start(q))
            self.figures["excused"] += min(len(missing), s["cluster_excused"])
        for sid, per_group in ends.items():
            if len({e for e, _ in per_group.values()}) > 1:
                self.fail("groups disagree", f"killed sender {sid}'s last message differs between groups: "
                          + ", ".join(f"{e} in {self.seg_name(s)}" for e, s in per_group.values()))

    def check_same_order(self, a, b):
        pos = {k: i for i, k in enumerate(a["order"])}
        last, prev = -1, None
        for k in b["order"]:
            i = pos.get(k)
            if i is None:
                continue
            if i < last:
                self.fail("orders differ", f"{self.seg_name(a)} has {prev} before {k}, {self.seg_name(b)} "
                          f"the other way round")
                return
            last, prev = i, k

    # -- the report

    def report_failures(self):
        out = []
        for f in self.failures:
            out.append(f"FAILURE seed {self.seed}: {f.kind}"
                       + (f" (like a defect of older versions: {f.finding})" if f.finding else ""))
            out.append(f"  replay the schedule: python -m cywhip._testing.lifecycle --runs 1 --seed {self.seed} "
                       f"--seconds {self.seconds:g} --features {','.join(sorted(self.features))}"
                       + (" --byte-groups" if self.bytes else "")
                       + (f" --senders {self.senders}" if self.bytes and self.senders > 1 else ""))
            out.append(f"  channel: {self.describe()}")
            out.append("  " + f.detail.replace("\n", "\n  "))
            out.append("  trail (seconds from the start of the run):")
            at = f.at or self.events[-1][0]
            window = [e for e in self.events if e[0] <= at + NS]
            for t, text in ([self.events[0]] if window[:1] != self.events[:1] else []) + window[-45:]:
                out.append(f"    {self.rel(t):8.3f}  {text}")
        return "\n".join(out)


class _Abort(Exception):
    pass


_LISTING = """
import json, sys, cywhip
for c in cywhip.channels():
    if c.name == sys.argv[1]:
        print(json.dumps([(g.name, g.depth, list(g.members)) for g in c.groups]))
        break
else:
    print("null")
"""


def _groups_listing(name):
    """[(group, depth, members)] of the channel, or None if it does not exist.  Asked of a
    process of its own: channels() maps every channel file in /dev/shm, and a file that another
    program truncates meanwhile would kill this one with SIGBUS."""
    for _ in range(3):
        try:
            out = subprocess.run([sys.executable, "-c", _LISTING, name], capture_output=True, text=True,
                                 timeout=30)
        except subprocess.TimeoutExpired:
            continue
        if out.returncode == 0:
            return json.loads(out.stdout)
    raise RuntimeError(f"could not list channel {name!r}: {out.stderr[-500:]}")


def _first_after(snd, t):
    """The first message of a sender whose send began after time t and was confirmed (None if none)."""
    return snd.first_after(t)


class _SenderRecord:
    """A sender incarnation's log: what it attempted (and when each message was first tried), what
    it confirmed."""

    def __init__(self, proc, attempts, confirms):
        self.proc = proc
        self.killed = proc.t_kill is not None
        self.attempted = max((f + c for f, c, _ in attempts), default=0)
        self.confirmed = max((f + c for f, c, _ in confirms), default=0)
        # (time of an attempt, every seq below this was first tried before it)
        self.times, self.below = [], []
        hi = 0
        for first, count, t in attempts:
            self.times.append(t)
            self.below.append(hi)
            hi = max(hi, first + count)

    def first_after(self, t):
        j = bisect.bisect_right(self.times, t)
        if j >= len(self.times):
            return None
        seq = self.below[j]
        return seq if seq < self.confirmed else None

    def start(self, seq):
        """When message seq was first tried (None if never)."""
        j = bisect.bisect_right(self.below, seq) - 1
        return self.times[j] if 0 <= j < len(self.times) else None


def _read_member_log(path):
    try:
        data = open(path, "rb").read()
    except FileNotFoundError:
        return []
    data = data[:len(data) - len(data) % REC.size]
    return [REC.unpack_from(data, k) for k in range(0, len(data), REC.size)]


def _read_sender_log(path):
    try:
        data = open(path, "rb").read()
    except FileNotFoundError:
        return [], []
    data = data[:len(data) - len(data) % SREC.size]
    attempts, confirms = [], []
    for k in range(0, len(data), SREC.size):
        kind, first, count, t = SREC.unpack_from(data, k)
        (attempts if kind == ATTEMPT else confirms).append((first, count, t))
    return attempts, confirms


def fuzz(runs, seconds, seed=0, features=FEATURES, log=print, verbose=False, fault=None, bytes_=False,
         senders=1):
    """Run the fuzzer; return its figures (a dict, with ``failures``: the failure reports).
    ``bytes_``: byte channels (max_queued_bytes) with receiver groups, of ``senders`` senders
    (max_senders; as many sender processes at once)."""
    totals = dict(runs=0, kills=0, stops=0, joins=0, leaves=0, senders=0, removals=0, remove_group=0,
                  remove_stale=0, blackouts=0, busy_joins=0, messages=0, excused=0, redelivered=0,
                  parked_kills=0)
    reports = []
    t0 = time.monotonic()
    shim_dir = tempfile.mkdtemp(prefix="cywhip-lifecycle-shim-")
    try:
        shim = build_shim(shim_dir) if "jitter" in features else None
        if "jitter" in features and shim is None:
            log("no C compiler: running without the lock-jitter shim")
        _fuzz_runs(runs, seconds, seed, features, log, verbose, fault, shim, totals, reports, bytes_, senders)
    finally:
        shutil.rmtree(shim_dir, ignore_errors=True)
    totals["failures"] = reports
    totals["seconds"] = round(time.monotonic() - t0, 1)
    return totals


def _fuzz_runs(runs, seconds, seed, features, log, verbose, fault, shim, totals, reports, bytes_=False, senders=1):
    for k in range(runs):
        run = Run(seed + k, seconds, features, log=log, verbose=verbose, fault=fault, shim=shim, bytes_=bytes_,
                  senders=senders)
        failures = run.run()
        totals["runs"] += 1
        for key, v in run.figures.items():
            totals[key] += v
        if failures:
            text = run.report_failures()
            reports.append({"seed": run.seed, "kinds": [f.kind for f in failures],
                            "findings": [f.finding for f in failures], "text": text})
            log(text)
        else:
            log(f"run seed {run.seed}: ok ({run.describe()}; {run.figures['messages']} deliveries checked, "
                f"{run.figures['kills']} kills)")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child_main(argv[1])
    if argv[:1] == ["--bytes-child"]:
        from cywhip._testing.lifecycle_bytes import child_main as bytes_child_main
        return bytes_child_main(json.loads(argv[1]))
    ap = argparse.ArgumentParser(prog="python -m cywhip._testing.lifecycle", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each run's schedule")
    ap.add_argument("--seed", type=int, default=None, help="seed of the first run (default: random)")
    ap.add_argument("--features", default=",".join(FEATURES),
                    help=f"comma-separated, from {', '.join(FEATURES)} (default: all)")
    ap.add_argument("--verbose", action="store_true", help="print every event as it happens")
    ap.add_argument("--fault", choices=FAULTS, default=None,
                    help="the checker's own test: every member misreports its 20th delivery so")
    ap.add_argument("--byte-groups", action="store_true",
                    help="receiver groups on byte channels (max_queued_bytes, one sender): messages of "
                         "12 bytes to message_length, a small ring (padding at its end), reserve() senders")
    ap.add_argument("--bytes", action="store_true",
                    help="byte channels instead (lifecycle_bytes.py): one sender and one receiver killed, "
                         "stopped, closed and restarted, a sender killed inside reserve()")
    ap.add_argument("--senders", type=int, default=1,
                    help="with --bytes or --byte-groups: max_senders of the byte channel, as many sender "
                         "processes at once (default 1)")
    args = ap.parse_args(argv)
    features = [f for f in args.features.split(",") if f]
    unknown = set(features) - set(FEATURES)
    if unknown:
        ap.error(f"unknown features {sorted(unknown)}; choose from {', '.join(FEATURES)}")
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)

    faulthandler.enable()       # a fatal signal still leaves a trail

    def on_term(signum, frame):
        raise SystemExit(128 + signum)     # through each run's cleanup: no child, no file left
    signal.signal(signal.SIGTERM, on_term)
    if args.bytes:
        from cywhip._testing import lifecycle_bytes
        totals = lifecycle_bytes.fuzz(args.runs, args.seconds, seed, senders=args.senders)
        failures = totals.pop("failures")
        print(f"byte runs {totals['runs']}, kills {totals['kills']} ({totals['parked_kills']} inside reserve()), "
              f"stops {totals['stops']}, sender starts {totals['senders']}, receiver starts {totals['receivers']}, "
              f"deliveries checked {totals['messages']} (delivered again {totals['redelivered']}, excused "
              f"{totals['excused']}), failures {len(failures)} (seeds {[f['seed'] for f in failures]}), "
              f"{totals['seconds']} s; first seed {seed}")
        return 1 if failures else 0
    if args.senders > 1 and not (args.bytes or args.byte_groups):
        ap.error("--senders goes with --bytes or --byte-groups (the slot channels' runs draw max_senders)")
    totals = fuzz(args.runs, args.seconds, seed, features, verbose=args.verbose, fault=args.fault,
                  bytes_=args.byte_groups, senders=args.senders if args.byte_groups else 1)
    failures = totals.pop("failures")
    print(f"{'byte-channel ' if args.byte_groups else ''}runs {totals['runs']}, kills {totals['kills']}, stops {totals['stops']}, joins {totals['joins']}, "
          f"leaves {totals['leaves']}, sender starts {totals['senders']}, removals {totals['removals']} "
          f"(remove_group calls {totals['remove_group']}, remove_stale calls {totals['remove_stale']}, "
          f"blackouts {totals['blackouts']}), busy joins {totals['busy_joins']}, deliveries checked "
          f"{totals['messages']} (given back and delivered again {totals['redelivered']}, excused as "
          f"unrecorded at a kill {totals['excused']}), senders killed inside reserve() {totals['parked_kills']}, "
          f"failures {len(failures)} "
          f"(seeds {[f['seed'] for f in failures]}), {totals['seconds']} s; first seed {seed}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Many senders into one receiver, each sender in a process of its own: streams, crash points
and a SIGKILL soak.

    python -m cywhip._testing.fanin --kills 1000 [--senders 3] [--seed N] [--capacity 16] [--length 64] [--ring BYTES]

runs the soak: ``--senders`` sender processes (the channel's max_senders) send numbered
messages with ``send``, ``send_many`` and ``try_send`` into a small ring; one is SIGKILLed at
a random moment (copying, between the messages of a batch, waiting on a full ring) and a new
one takes its place at once; this process receives and checks every message.  Each sender
process is an incarnation with a tag of its own, and records after each call returns how
many of its messages went out.  At the end every incarnation's messages must have arrived
in order, whole, once each, every confirmed one among them, and the last senders' all.

Message ``i`` of tag ``t`` is the 12 bytes ``<I t><Q i>`` repeated to its length, so a
message mixed from two others shows.
"""
import argparse
import json
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

from cywhip import Receiver, Sender, unlink
from cywhip._testing.crash import _map, _remove_workdir
from cywhip.errors import ReceiveTimeout

HEAD = struct.Struct("<IQ")
WORD = struct.Struct("<q")
# The shared log (int64 words): [2 * tag] pid once the sender is open, [2 * tag + 1] messages
# of that tag confirmed sent (every call that returned).
MIN_LENGTH = HEAD.size

# The steps of one send with many senders (docs/protocol.md), in order: a sender killed
# after step k has done steps 1..k of its last message.
STEPS = ("intent", "claimed", "half", "written", "published", "cleared")


def payload(tag, i, length):
    """The content of message i of sender tag."""
    head = HEAD.pack(tag, i)
    return (head * (length // len(head) + 1))[:length]


class Tally:
    """Checks a merged stream: per tag, numbers 0, 1, 2, ... in order, each message whole (of
    length bytes; of any length if length is None)."""

    def __init__(self, length):
        self.length = length
        self.next = {}
        self.errors = []
        self.count = 0

    def add(self, msg):
        msg = bytes(msg)
        if len(msg) < MIN_LENGTH:
            self.errors.append(f"a message of {len(msg)} bytes")
            return
        tag, i = HEAD.unpack_from(msg)
        if msg != payload(tag, i, self.length if self.length is not None else len(msg)):
            self.errors.append(f"message {i} of tag {tag} is torn")
            return
        expect = self.next.get(tag, 0)
        if i != expect:
            self.errors.append(f"tag {tag}: message {i} arrived where {expect} was next")
        self.next[tag] = i + 1
        self.count += 1



def take_with(mode, rx, count, timeout=5):
    """count messages from receiver rx by one receive call: "recv", "try_recv" (until the
    timeout), "recv_many", "iterate" or "borrow" (copied out of the lent views)."""
    if mode == "recv":
        return [rx.recv(timeout=timeout) for _ in range(count)]
    if mode == "try_recv":
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            m = rx.try_recv()
            if m is not None:
                out.append(m)
        return out
    if mode == "recv_many":
        out = []
        while len(out) < count:
            out += rx.recv_many(count - len(out), timeout=timeout)
        return out
    if mode == "iterate":
        out = []
        for m in rx:
            out.append(m)
            if len(out) == count:
                break
        return out
    if mode == "borrow":
        out = []
        while len(out) < count:
            with rx.borrow(count - len(out), timeout=timeout) as lent:
                out += [bytes(m) for m in lent]
        return out
    raise ValueError(f"no receive call {mode!r}")

def _size(tag, i, length, ring):
    """Message i's length: length on a slot channel; on a byte channel (ring bytes) from 12 bytes
    to length, mixed."""
    if not ring:
        return length
    return MIN_LENGTH + (i * 7919 + tag * 104729) % (length - MIN_LENGTH + 1)


def run_sender(name, length, capacity, senders, tag, log_path, words, stop_path, seed, ring=0):
    """A sender incarnation: numbered messages until stop_path exists (or it is killed).  ring:
    a byte channel of that many bytes (messages of mixed lengths up to length, and reserve()
    blocks too), else a slot channel of capacity slots."""
    rng = random.Random(seed)
    log = _map(log_path, words)
    sent = 0
    fail = []
    def serialize(msg, buffer):
        # In two parts with Python work between, so that kills land mid-copy too (after
        # the claim, before the publish); now and then it raises instead (a void slot).
        half = len(msg) // 2
        buffer.write(msg[:half])
        if fail:
            fail.clear()
            raise ValueError("this message cannot be built")
        if rng.random() < 0.05:
            time.sleep(0.0005)      # a slow serializer: the receiver waits at its hole
        buffer.write(msg[half:])

    serializer = serialize if rng.random() < 0.5 else None
    geometry = (dict(max_queued_bytes=ring, message_length=length) if ring
                else dict(message_length=length, max_queued_messages=capacity))
    with Sender(name, serializer, max_senders=senders, **geometry) as sender:
        WORD.pack_into(log, 16 * tag, os.getpid())
        while not os.path.exists(stop_path):
            n = rng.randint(1, capacity * 2)
            msgs = [payload(tag, i, _size(tag, i, length, ring)) for i in range(sent, sent + n)]
            how = rng.random()
            if how < 0.3:
                for m in msgs:
                    if serializer is not None and rng.random() < 0.02:
                        fail.append(True)
                        try:
                            sender.send(m)
                        except ValueError:
                            pass        # not sent: the receiver steps over its slot
                        else:
                            raise AssertionError("the serializer's error was not raised")
                    sender.send(m)
                    sent += 1
                    WORD.pack_into(log, 16 * tag + 8, sent)
            elif how < 0.4:
                for m in msgs:
                    while not sender.try_send(m):
                        time.sleep(0.0001)
                    sent += 1
                    WORD.pack_into(log, 16 * tag + 8, sent)
            elif ring and how < 0.5:
                for m in msgs:
                    # Room for the longest message, written in two parts, the rest given back;
                    # now and then a block given up (a void).
                    if rng.random() < 0.02:
                        try:
                            with sender.reserve(len(m)) as buf:
                                buf[:len(m) // 2] = m[:len(m) // 2]
                                raise KeyError("given up")
                        except KeyError:
                            pass
                    res = sender.reserve(length)
                    with res as buf:
                        buf[:len(m) // 2] = m[:len(m) // 2]
                        buf[len(m) // 2:len(m)] = m[len(m) // 2:]
                        res.truncate(len(m))
                    sent += 1
                    WORD.pack_into(log, 16 * tag + 8, sent)
            else:
                sent += sender.send_many(msgs)
                WORD.pack_into(log, 16 * tag + 8, sent)
            if rng.random() < 0.3:
                time.sleep(rng.random() * 0.001)


def run_stream(name, length, capacity, senders, tag, count, mode):
    """A sender that sends count messages of tag and exits; prints 'done'."""
    with Sender(name, message_length=length, max_queued_messages=capacity, max_senders=senders) as sender:
        print("ready", flush=True)
        msgs = (payload(tag, i, length) for i in range(count))
        if mode == "send_many":
            sender.send_many(msgs, timeout=60)
        else:
            for m in msgs:
                sender.send(m, timeout=60)
    print("done", flush=True)


def run_step(name, length, capacity, senders, tag, before, step, hold=False, receivers=1):
    """Send `before` messages, then do the steps of the next one up to `step`, and die (SIGKILL);
    with hold, wait there to be killed instead.  `receivers`: the channel's max_receivers."""
    from cywhip._testing._steps import SenderSteps
    sender = Sender(name, message_length=length, max_queued_messages=capacity, max_senders=senders,
                    max_receivers=receivers)
    for i in range(before):
        sender.send(payload(tag, i, length), timeout=30)
    steps = SenderSteps(sender)
    data = payload(tag, before, length)
    done = []

    def do(what, *args):
        getattr(steps, what)(*args)
        done.append(what)

    do("intent")
    if step != "intent":
        do("claim")
    if step not in ("intent", "claimed"):
        do("write", data, length // 2)
    if step not in ("intent", "claimed", "half"):
        do("write", data, length)
        do("length", length)
    if step in ("published", "cleared"):
        do("publish")
    if step == "cleared":
        do("clear")
        do("wake")
    print(json.dumps({"done": done}), flush=True)
    if hold:
        time.sleep(3600)
    os.kill(os.getpid(), signal.SIGKILL)


def _start(role, *args):
    return subprocess.Popen([sys.executable, "-m", "cywhip._testing.fanin", "--role", role, *map(str, args)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def soak(kills, senders=3, seed=0, length=64, capacity=16, workdir=None, timeout=600, ring=0):
    """Run the soak; return a report (dict).  ``report["ok"]`` says whether every check held.
    ring: a byte channel of that many bytes, messages of mixed lengths up to length."""
    if length < MIN_LENGTH:
        raise ValueError(f"length must be at least {MIN_LENGTH}, got {length}")
    rng = random.Random(seed)
    name = f"fanin-{os.getpid()}-{seed}"
    own_dir = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="cywhip-fanin-")
    log_path, stop = os.path.join(workdir, "senders.log"), os.path.join(workdir, "stop")
    words = 2 * (kills + senders + 1)
    log = _map(log_path, words)
    report = {"senders": senders, "kills": 0, "errors": []}
    deadline = time.monotonic() + timeout
    tally = Tally(None if ring else length)
    geometry = (dict(max_queued_bytes=ring, message_length=length) if ring
                else dict(message_length=length, max_queued_messages=capacity))
    receiver = Receiver(name, max_senders=senders, **geometry)
    procs = {}            # slot -> (tag, Popen)
    killed = []           # tags killed
    finished = threading.Event()
    gaps = []             # (time of a receive, gap since the one before)

    def receive():
        last = time.monotonic()
        r = random.Random(seed + 1)
        while not finished.is_set():
            try:
                batch = receiver.recv_many(r.randint(1, 3 * capacity), timeout=0.05)
            except ReceiveTimeout:
                continue
            now = time.monotonic()
            gaps.append((now, now - last))
            last = now
            for m in batch:
                tally.add(m)
            if r.random() < 0.05:
                time.sleep(r.random() * 0.005)    # let the ring fill: senders wait on it

    def start(slot, tag):
        proc = _start("sender", name, length, capacity, senders, tag, log_path, words, stop,
                      rng.randrange(1 << 30), ring)
        procs[slot] = (tag, proc)

    def ready(tag):
        return WORD.unpack_from(log, 16 * tag)[0] != 0

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    next_tag = 0
    try:
        for slot in range(senders):
            start(slot, next_tag)
            next_tag += 1
        while report["kills"] < kills and time.monotonic() < deadline:
            time.sleep(rng.random() * 0.02)
            slot = rng.randrange(senders)
            tag, proc = procs[slot]
            if not ready(tag):
                if proc.poll() is not None:
                    report["errors"].append(f"sender {tag} exited before it opened ({proc.returncode}): "
                                            f"{proc.stderr.read().decode()[-2000:]}")
                    return report
                continue
            if proc.poll() is not None:
                report["errors"].append(f"sender {tag} exited early ({proc.returncode}): "
                                        f"{proc.stderr.read().decode()[-2000:]}")
                return report
            proc.kill()
            proc.wait()
            proc.stderr.close()
            report["kills"] += 1
            killed.append(tag)
            # Its place is free at once: the new sender must open without waiting.
            start(slot, next_tag)
            next_tag += 1
        with open(stop, "w"):
            pass
        for slot, (tag, proc) in procs.items():
            try:
                rc = proc.wait(timeout=max(1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                report["errors"].append(f"sender {tag} did not stop")
                return report
            err = proc.stderr.read().decode()
            proc.stderr.close()
            if rc != 0:
                report["errors"].append(f"sender {tag} failed ({rc}): {err[-2000:]}")
                return report
        confirmed = {tag: WORD.unpack_from(log, 16 * tag + 8)[0] for tag in range(next_tag)}
        # Drain: every confirmed message must arrive; then the ring must be empty.
        while time.monotonic() < deadline:
            if all(tally.next.get(t, 0) >= c for t, c in confirmed.items()) and receiver.depth == 0:
                break
            time.sleep(0.01)
        else:
            report["errors"].append("the receiver did not get every confirmed message before the deadline")
        finished.set()
        thread.join(5)
        report["messages"] = tally.count
        report["incarnations"] = next_tag
        report["holes_skipped"], report["void_skipped"] = receiver._skipped
        report["errors"].extend(tally.errors[:20])
        for tag in range(next_tag):
            got, sent = tally.next.get(tag, 0), confirmed[tag]
            if got < sent:
                report["errors"].append(f"sender {tag}: {sent} confirmed, {got} delivered")
            elif got > sent and tag not in killed:
                report["errors"].append(f"sender {tag} stopped cleanly after {sent}, {got} delivered")
        # Stalls: the receiver's longest gap after a kill against its longest in the second before.
        report["longest_gap_ms"] = round(1000 * max((g for _, g in gaps), default=0), 2)
        return report
    finally:
        finished.set()
        for tag, proc in procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if not proc.stderr.closed:
                proc.stderr.close()
        thread.join(5)
        receiver.close()
        log.close()
        unlink(name, missing_ok=True)
        if own_dir:
            _remove_workdir(workdir, (log_path, stop))
        report["ok"] = not report["errors"]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m cywhip._testing.fanin", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=("sender", "stream", "step"), help=argparse.SUPPRESS)
    parser.add_argument("--kills", type=int, default=1000)
    parser.add_argument("--senders", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--capacity", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--ring", type=int, default=0,
                        help="a byte channel of this many bytes (messages of mixed lengths up to --length)")
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "sender":
        name, length, capacity, senders, tag, log_path, words, stop, seed, ring = args.args
        run_sender(name, int(length), int(capacity), int(senders), int(tag), log_path, int(words), stop,
                   int(seed), int(ring))
        return 0
    if args.role == "stream":
        name, length, capacity, senders, tag, count, mode = args.args
        run_stream(name, int(length), int(capacity), int(senders), int(tag), int(count), mode)
        return 0
    if args.role == "step":
        name, length, capacity, senders, tag, before, step, *hold = args.args
        run_step(name, int(length), int(capacity), int(senders), int(tag), int(before), step, hold == ["hold"])
        return 0
    t0 = time.monotonic()
    report = soak(args.kills, args.senders, args.seed, args.length, args.capacity, timeout=args.timeout,
                  ring=args.ring)
    report["seconds"] = round(time.monotonic() - t0, 1)
    print(json.dumps(report, indent=1))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""Crash-safety soak: SIGKILL a sender and a receiver at random moments and check the stream.

    python -m cywhip._testing.crash --kills 1000 [--seed N] [--length 256] [--capacity 32]

The sender resumes a numbered stream from ``Sender.published`` after every
restart and records, after each send/send_many returns, how far it got. The
receiver checks every message's content (a torn message fails) and logs each
number from its on_message callback. At the end the log must read 0, 1, 2, ...
with nothing missing, and the only repeats allowed are the message whose
callback was running when a receiver was killed (documented: delivered again),
at most one per receiver kill.
"""
import argparse
import json
import mmap
import os
import random
import struct
import subprocess
import sys
import tempfile
import threading
import time

from cywhip import Receiver, Sender, unlink
from cywhip._testing.peer import payload

WORD = struct.Struct("<q")
# Receiver log layout (int64 words): [0] entries, [1] torn messages seen, [2..] numbers in arrival order.
LOG_HEAD = 2


def _map(path, words):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_size < words * 8:
            os.ftruncate(fd, words * 8)
        return mmap.mmap(fd, words * 8)
    finally:
        os.close(fd)


def run_sender(name, length, capacity, log_path, stop_path, seed):
    rng = random.Random(seed)
    log = _map(log_path, 1)
    with Sender(name, message_length=length, max_queued_messages=capacity) as sender:
        seq = sender.published
        WORD.pack_into(log, 0, seq)
        print("ready", flush=True)
        while not os.path.exists(stop_path):
            n = rng.randint(1, capacity * 2)
            msgs = [payload(i, length) for i in range(seq, seq + n)]
            if rng.random() < 0.3:
                for m in msgs:
                    sender.send(m)
            else:
                sender.send_many(msgs)
            seq += n
            WORD.pack_into(log, 0, seq)   # everything below seq has been sent
            if rng.random() < 0.5:
                time.sleep(rng.random() * 0.002)


def run_receiver(name, length, capacity, log_path, total_words):
    log = _map(log_path, total_words)

    def on_message(msg):
        seq = WORD.unpack_from(msg, 0)[0]
        if msg != payload(seq, length):
            WORD.pack_into(log, 8, WORD.unpack_from(log, 8)[0] + 1)
        k = WORD.unpack_from(log, 0)[0]
        if LOG_HEAD + k < total_words:
            WORD.pack_into(log, (LOG_HEAD + k) * 8, seq)
            WORD.pack_into(log, 0, k + 1)

    receiver = Receiver(name, message_length=length, max_queued_messages=capacity, on_message=on_message)
    print("ready", flush=True)
    try:
        threading.Event().wait()   # until killed
    finally:
        receiver.close()


def _start(role, *args):
    return subprocess.Popen([sys.executable, "-m", "cywhip._testing.crash", "--role", role, *map(str, args)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def soak(kills, seed=0, length=256, capacity=32, max_messages=20_000_000, workdir=None, timeout=600):
    """Run the soak; return a report (dict). ``report["ok"]`` says whether every check held."""
    rng = random.Random(seed)
    name = f"crash-{os.getpid()}-{seed}"
    own_dir = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="cywhip-crash-")
    slog, rlog, stop = (os.path.join(workdir, f) for f in ("sender.log", "receiver.log", "stop"))
    words = LOG_HEAD + max_messages
    rmap = _map(rlog, words)
    smap = _map(slog, 1)
    procs = {}
    report = {"kills": 0, "sender_kills": 0, "receiver_kills": 0, "errors": []}
    acked_at_kill = []
    deadline = time.monotonic() + timeout

    def start(role):
        if role == "sender":
            proc = _start("sender", name, length, capacity, slog, stop, rng.randrange(1 << 30))
        else:
            proc = _start("receiver", name, length, capacity, rlog, words)
        procs[role] = proc
        return proc

    def await_ready(proc, role):
        # The end is open once the child says so; a kill before that tests nothing.
        if proc.stdout.readline().strip() != b"ready":
            proc.wait()
            raise RuntimeError(f"{role} failed to start ({proc.returncode}): "
                               f"{proc.stderr.read().decode()[-2000:]}")

    try:
        await_ready(start("receiver"), "receiver")
        await_ready(start("sender"), "sender")
        while report["kills"] < kills and time.monotonic() < deadline:
            time.sleep(rng.random() * 0.03)
            victims = rng.choice((["sender"], ["receiver"], ["sender", "receiver"]))
            for role in victims:
                proc = procs[role]
                if proc.poll() is not None:
                    report["errors"].append(f"{role} exited early ({proc.returncode}): "
                                            f"{proc.stderr.read().decode()[-2000:]}")
                    return report
                proc.kill()
                proc.wait()
                proc.stderr.close()
                proc.stdout.close()
                report["kills"] += 1
                report[f"{role}_kills"] += 1
                if role == "sender":
                    acked_at_kill.append(WORD.unpack_from(smap, 0)[0])
            for role in victims:
                start(role)
            for role in victims:
                await_ready(procs[role], role)
        # Let the sender stop at the end of a batch, and the receiver drain everything.
        with open(stop, "w"):
            pass
        rc = procs["sender"].wait(timeout=max(1, deadline - time.monotonic()))
        err = procs["sender"].stderr.read().decode()
        if rc != 0:
            report["errors"].append(f"final sender failed ({rc}): {err[-2000:]}")
            return report
        total = WORD.unpack_from(smap, 0)[0]
        report["messages"] = total
        while time.monotonic() < deadline:
            k = WORD.unpack_from(rmap, 0)[0]
            if total == 0 or (k and WORD.unpack_from(rmap, (LOG_HEAD + k - 1) * 8)[0] >= total - 1):
                break
            time.sleep(0.01)
        else:
            report["errors"].append("the receiver did not get every message before the deadline")
        # Check the log.
        k = WORD.unpack_from(rmap, 0)[0]
        seqs = struct.unpack_from(f"<{k}q", rmap, LOG_HEAD * 8)
        report["torn"] = WORD.unpack_from(rmap, 8)[0]
        expect = 0
        repeats = 0
        for s in seqs:
            if s == expect:
                expect += 1
            elif s == expect - 1:
                repeats += 1
            else:
                report["errors"].append(f"log reads {s} where {expect} was next")
                break
        report["delivered"] = expect
        report["redelivered"] = repeats
        if report["torn"]:
            report["errors"].append(f"{report['torn']} torn messages")
        if expect != total:
            report["errors"].append(f"delivered 0..{expect - 1}, the sender sent 0..{total - 1}")
        if repeats > report["receiver_kills"]:
            report["errors"].append(f"{repeats} repeats for {report['receiver_kills']} receiver kills")
        if any(a > expect for a in acked_at_kill):
            report["errors"].append("a message acknowledged before a kill was never delivered")
        return report
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if not stream.closed:
                    stream.close()
        rmap.close()
        smap.close()
        unlink(name, missing_ok=True)
        if own_dir:
            _remove_workdir(workdir, (slog, rlog, stop))
        report["ok"] = not report["errors"]


def _remove_workdir(workdir, files):
    """Remove a soak's own working directory and the files it made there."""
    for f in files:
        if os.path.exists(f):
            os.unlink(f)
    os.rmdir(workdir)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m cywhip._testing.crash", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=("sender", "receiver"), help=argparse.SUPPRESS)
    parser.add_argument("--kills", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--capacity", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "sender":
        name, length, capacity, slog, stop, seed = args.args
        run_sender(name, int(length), int(capacity), slog, stop, int(seed))
        return 0
    if args.role == "receiver":
        name, length, capacity, rlog, words = args.args
        run_receiver(name, int(length), int(capacity), rlog, int(words))
        return 0
    t0 = time.monotonic()
    report = soak(args.kills, args.seed, args.length, args.capacity, timeout=args.timeout)
    report["seconds"] = round(time.monotonic() - t0, 1)
    print(json.dumps(report, indent=1))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

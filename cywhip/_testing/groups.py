"""Receiver groups with each member in a process of its own: streams and a SIGKILL soak.

    python -m cywhip._testing.groups --kills 300 [--seed N] [--count 200000]

runs the soak: this process sends ``--count`` numbered messages into a small ring with
receiver groups: a work group "w" of two member processes that split the stream, and a
broadcast group "b" of one.  Again and again one member (of either group) is SIGKILLed at a
random moment -- inside its callback, between the messages of a batch, waiting -- and a new
member of its group starts at once.  Members record each message in their log inside the
callback, before it returns (before the message counts as taken).  At the end each group
must have every message, whole; a message recorded twice in a group must have been in
flight at a member that was killed: at most one per kill with on_message, at most one batch
with on_batch.

Message ``i`` is the 8 bytes ``<Q i>`` repeated to its length, so a torn message shows.
With ``--bytes N`` the channel is a byte channel of an N-byte ring (``max_queued_bytes``), and
message ``i`` is ``size(i)`` bytes long, from 8 to ``--length``: records of many sizes, with
padding where one would cross the ring's end.
"""
import argparse
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

WORD = struct.Struct("<Q")
MODES = ("recv", "recv_many", "on_message", "on_batch", "borrow", "iterate", "try_recv")


def size(i, length, variable):
    """The length of message i: length, or (variable) from 8 to length, fixed by i."""
    if not variable:
        return length
    return 8 + (i * 2654435761 >> 7) % (length - 7)


def payload(i, length, variable=False):
    """The content of message i."""
    n = size(i, length, variable)
    return (WORD.pack(i) * (n // WORD.size + 1))[:n]


def number(msg, length, variable=False):
    """The number of a message, or raise ValueError if it is not whole."""
    msg = bytes(msg)
    (i,) = WORD.unpack_from(msg)
    if msg != payload(i, length, variable):
        raise ValueError(f"message {i} is torn: {msg!r}")
    return i


def channel_kw(length, capacity, receivers, ring_bytes=0):
    """The geometry of the ends: a slot channel of capacity messages, or (ring_bytes) a byte
    channel of that many bytes whose messages are at most length bytes."""
    if ring_bytes:
        return dict(message_length=length, max_queued_bytes=ring_bytes, max_receivers=receivers)
    return dict(message_length=length, max_queued_messages=capacity, max_receivers=receivers)


def run_member(name, length, capacity, receivers, group, mode, log_path, stop_path, durable=True,
               pause=0.0, ring_bytes=0):
    """A member process: take messages in ``mode`` and write each one's number to its log
    before the message counts as taken, until stop_path exists."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    variable = bool(ring_bytes)

    def record(numbers):
        os.write(fd, b"".join(WORD.pack(n) for n in numbers))
        if pause:
            time.sleep(pause)

    def one(msg):
        record([number(msg, length, variable)])

    def batch(msgs):
        record([number(m, length, variable) for m in msgs])

    kw = dict(channel_kw(length, capacity, receivers, ring_bytes), group=group, durable=durable)
    if mode in ("on_message", "on_batch"):
        rx = Receiver(name, **kw, **({"on_message": one} if mode == "on_message" else {"on_batch": batch}))
        os.write(fd, b"")
        print("ready", flush=True)
        while not os.path.exists(stop_path):
            time.sleep(0.01)
        rx.close()
        return
    rx = Receiver(name, **kw)
    print("ready", flush=True)
    try:
        while not os.path.exists(stop_path):
            if mode == "recv":
                try:
                    one(rx.recv(timeout=0.05))
                except Exception as exc:
                    if type(exc).__name__ != "ReceiveTimeout":
                        raise
            elif mode == "try_recv":
                m = rx.try_recv()
                if m is None:
                    time.sleep(0.001)
                else:
                    one(m)
            elif mode == "recv_many":
                try:
                    batch(rx.recv_many(64, timeout=0.05))
                except Exception as exc:
                    if type(exc).__name__ != "ReceiveTimeout":
                        raise
            elif mode == "borrow":
                try:
                    with rx.borrow(16, timeout=0.05) as lent:
                        batch(lent)
                except Exception as exc:
                    if type(exc).__name__ != "ReceiveTimeout":
                        raise
            elif mode == "iterate":
                # The loop waits as long as it takes: a thread closes the receiver once the
                # stop file appears, which ends the loop.
                threading.Thread(target=_close_when, args=(rx, stop_path), daemon=True).start()
                for m in rx:
                    one(m)
    finally:
        rx.close()
        os.close(fd)


def _close_when(rx, stop_path):
    while not os.path.exists(stop_path):
        time.sleep(0.01)
    rx.close()


def read_log(path):
    """The numbers a member recorded, in order."""
    try:
        data = open(path, "rb").read()
    except FileNotFoundError:
        return []
    data = data[:len(data) - len(data) % WORD.size]
    return [WORD.unpack_from(data, k)[0] for k in range(0, len(data), WORD.size)]


def spawn_member(name, length, capacity, receivers, group, mode, log_path, stop_path, durable=True,
                 pause=0.0, ring_bytes=0):
    """Start a member process; return it once its receiver is open."""
    code = ("import sys; from cywhip._testing.groups import run_member; "
            f"run_member({name!r}, {length}, {capacity}, {receivers}, {group!r}, {mode!r}, "
            f"{log_path!r}, {stop_path!r}, durable={durable!r}, pause={pause!r}, ring_bytes={ring_bytes!r})")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    return wait_ready(proc)


def wait_ready(proc, stderr_of=None):
    """A member process (its stdout a text pipe) once it has printed "ready"; else it is killed
    and RuntimeError tells what it printed, its exit status and, with stderr_of, its stderr
    (stderr_of(proc), once it has ended)."""
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        proc.wait()
        err = f": {stderr_of(proc)}" if stderr_of is not None else ""
        raise RuntimeError(f"member process did not start ({line!r}, exit {proc.returncode}){err}")
    return proc


def stop_members(procs, stop_path, timeout=10):
    """The end of member processes: the stop file made, each process waited for (killed if it
    has not ended within timeout seconds) and its stdout closed."""
    open(stop_path, "w").close()
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except Exception:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def command_line_listing(capsys, channel):
    """What ``python -m cywhip channels`` prints of channel (its line and its groups' lines),
    read through pytest's capsys."""
    from cywhip.__main__ import main
    main(["channels"])
    lines = capsys.readouterr().out.splitlines()
    first = [i for i, line in enumerate(lines) if line.startswith(f"{channel}:")][0]
    block = [lines[first]]
    for line in lines[first + 1:]:
        if not line.startswith("  "):
            break
        block.append(line)
    return "\n".join(block)


def account(logs, count):
    """Check a group's logs against messages 0..count-1: (missing, duplicates) as sorted lists."""
    seen = {}
    for path in logs:
        for n in read_log(path):
            seen[n] = seen.get(n, 0) + 1
    missing = [i for i in range(count) if i not in seen]
    extra = sorted(n for n in seen if n >= count)
    if extra:
        raise AssertionError(f"numbers never sent were recorded: {extra[:10]}")
    duplicates = sorted(n for n, k in seen.items() if k > 1)
    return missing, duplicates


def soak(kills, seed=0, count=200_000, length=32, capacity=64, timeout=600, log=print, ring_bytes=0):
    """The SIGKILL soak (see the module docstring).  Returns a summary dict; raises
    AssertionError on a lost, torn or wrongly duplicated message."""
    rng = random.Random(seed)
    variable = bool(ring_bytes)
    if ring_bytes:
        # The most messages one batch can hold: records of at least 16 bytes.
        capacity = ring_bytes // 16
    name = f"groups-soak-{os.getpid()}-{seed}"
    work = tempfile.mkdtemp(prefix="cywhip-groups-")
    stop = os.path.join(work, "stop")
    groups = {"w": 2, "b": 1}
    logs = {g: [] for g in groups}
    members = {g: [] for g in groups}
    killed = {g: 0 for g in groups}
    batch_kills = {g: 0 for g in groups}
    serial = [0]

    def start(group):
        serial[0] += 1
        mode = rng.choice(("on_message", "on_batch"))
        path = os.path.join(work, f"{group}-{serial[0]}.log")
        logs[group].append(path)
        # A pause inside the callback makes kills land mid-callback.
        proc = spawn_member(name, length, capacity, 4, group, mode, path, stop, pause=rng.choice((0, 0, 0.0005)),
                            ring_bytes=ring_bytes)
        members[group].append((proc, mode))

    unlink(name, missing_ok=True)
    tx = Sender(name, **channel_kw(length, capacity, 4, ring_bytes))
    t0 = time.monotonic()
    try:
        for g, k in groups.items():
            for _ in range(k):
                start(g)
        sent = 0
        done_kills = 0
        every = max(1, count // (kills + 1))
        while sent < count:
            n = min(every, count - sent)
            tx.send_many((payload(i, length, variable) for i in range(sent, sent + n)), timeout=60)
            sent += n
            if done_kills < kills:
                g = rng.choice(sorted(groups))
                victim = rng.randrange(len(members[g]))
                proc, mode = members[g].pop(victim)
                time.sleep(rng.random() * 0.002)
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed[g] += 1
                batch_kills[g] += mode == "on_batch"
                done_kills += 1
                start(g)
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"soak ran out of time after {sent} messages")
        # Let the groups drain, then stop the members.
        deadline = time.monotonic() + 60
        while tx.depth and time.monotonic() < deadline:
            time.sleep(0.01)
        drained = tx.depth == 0
        open(stop, "w").close()
        for g in groups:
            for proc, _ in members[g]:
                proc.wait(timeout=30)
        summary = {"messages": count, "kills": sum(killed.values()), "seconds": round(time.monotonic() - t0, 1)}
        for g in groups:
            missing, duplicates = account(logs[g], count)
            if missing:
                raise AssertionError(f"group {g!r} lost {len(missing)} messages, first {missing[:10]} "
                                     f"(drained: {drained})")
            # on_message claims one message at a time while others share the group; a batch
            # of on_batch claims at most the ring's capacity.
            allowed = killed[g] + batch_kills[g] * (capacity - 1)
            if len(duplicates) > allowed:
                raise AssertionError(f"group {g!r}: {len(duplicates)} messages recorded twice, more than "
                                     f"the {allowed} its {killed[g]} killed members could have had in flight")
            summary[g] = {"kills": killed[g], "duplicates": len(duplicates)}
        log(f"ok: {summary}")
        return summary
    finally:
        open(stop, "w").close()
        for g in groups:
            for proc, _ in members[g]:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
        tx.close()
        unlink(name, missing_ok=True)
        for entry in os.listdir(work):
            os.unlink(os.path.join(work, entry))
        os.rmdir(work)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--count", type=int, default=200_000)
    ap.add_argument("--bytes", type=int, default=0, help="a byte channel of this many bytes")
    ap.add_argument("--length", type=int, default=32, help="the (largest) message length")
    args = ap.parse_args(argv)
    soak(args.kills, seed=args.seed, count=args.count, length=args.length, ring_bytes=args.bytes)


if __name__ == "__main__":
    main()

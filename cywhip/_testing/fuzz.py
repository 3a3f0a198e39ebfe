"""Hostile shared memory: random mutations of a channel's header and slots, one child per case.

    python -m cywhip._testing.fuzz --cases 10000 [--seed N]

Each case runs in a forked child: it fills a channel, corrupts the file (the
header's geometry, cursors, waiting words, pids, slot lengths and payloads, or
its size), then opens ends and sends and receives, corrupting again between
calls, as a hostile process sharing the mapping could. Every call must either
work, with messages no longer than message_length, or raise a clear error; a
child killed by a signal (a crash), one that hangs (5 s alarm) or one that sees
an impossible message is a failure.
"""
import argparse
import json
import mmap
import os
import random
import signal
import struct
import sys
import time

from cywhip import CywhipError, Receiver, Sender, unlink
from cywhip._region import channel_path
from cywhip._ring import layout

EXPECTED_ERRORS = (CywhipError, OSError, RuntimeError)
BAD_MESSAGE = 3
UNEXPECTED_ERROR = 4


def _targets(capacity, slot_size):
    lay = layout()
    fields = [(lay[f], 8) for f in ("magic", "message_length", "capacity", "slot_size", "file_size",
                                    "type_fingerprint", "type_size", "write_cursor", "read_cursor",
                                    "sender_pid", "receiver_pid", "sender_starts", "receiver_starts")]
    fields += [(lay["version"], 4), (lay["header_size_field"], 4),
               (lay["sender_waiting"], 4), (lay["receiver_waiting"], 4)]
    slots = [(lay["header_size"] + i * slot_size, 4) for i in range(capacity)]
    payloads = [(lay["header_size"] + i * slot_size + 8, slot_size - 8) for i in range(capacity)]
    return fields, slots, payloads


def _mutate(rng, mm, capacity, slot_size, count):
    fields, slots, payloads = (
        [(off, size) for off, size in group if off + size <= len(mm)]
        for group in _targets(capacity, slot_size))
    slots = slots or fields
    payloads = payloads or fields
    for _ in range(count):
        kind = rng.random()
        if kind < 0.45:
            off, size = rng.choice(fields)
        elif kind < 0.8:
            off, size = rng.choice(slots)
        else:
            off, size = rng.choice(payloads)
            off += rng.randrange(size)
            size = 1
        if size in (4, 8):
            top = (1 << (size * 8)) - 1
            value = rng.choice([0, 1, top, top >> 1, capacity, capacity + 1, rng.randrange(top + 1),
                                struct.unpack_from("<Q" if size == 8 else "<I", mm, off)[0] + rng.randint(-3, 3)])
            struct.pack_into("<Q" if size == 8 else "<I", mm, off, value & top)
        else:
            mm[off] = rng.randrange(256)


def _numpy():
    try:
        import numpy
    except ImportError:
        return None
    return numpy


def _case(rng, name):
    length = rng.choice([1, 8, 13, 32, 100])
    capacity = rng.choice([1, 2, 3, 7, 16])
    np = _numpy()
    # A third of the cases use a typed channel (NumPy records), read with the array paths.
    dtype = np.dtype([("x", "u1", (length,))]) if np is not None and rng.random() < 0.33 else None
    kw = dict(message_type=dtype) if dtype is not None else dict(message_length=length)
    with Sender(name, max_queued_messages=capacity, **kw) as s:
        for i in range(rng.randint(0, capacity)):
            if dtype is not None:
                s.try_send(np.full(1, i % 256, dtype)[0])
            else:
                s.try_send(bytes([i % 256]) * rng.randint(0, length))
    path = channel_path(name)
    slot_size = 8 + (length + 7) // 8 * 8
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        if rng.random() < 0.05:
            os.ftruncate(fd, rng.choice([0, 100, 4096, size - 4096, size + 4096]))
            size = os.fstat(fd).st_size
        mm = mmap.mmap(fd, max(size, 4096) if size else 4096) if size >= 4096 else None
    finally:
        os.close(fd)
    if mm is not None:
        _mutate(rng, mm, capacity, slot_size, rng.randint(1, 4))
    ends = []
    try:
        for make in (lambda: Receiver(name, max_queued_messages=capacity, **kw),
                     lambda: Sender(name, max_queued_messages=capacity, **kw)):
            try:
                ends.append(make())
            except EXPECTED_ERRORS:
                pass
        for step in range(rng.randint(1, 12)):
            for end in ends:
                try:
                    if isinstance(end, Receiver) and dtype is not None:
                        how = rng.random()
                        if how < 0.4:
                            got = end.recv_array(capacity + 1, timeout=0)
                            if got.dtype != dtype or len(got) > capacity:
                                os._exit(BAD_MESSAGE)
                        elif how < 0.7:
                            out = np.zeros(capacity + 1, dtype)
                            if not 1 <= end.recv_into(out, timeout=0) <= capacity:
                                os._exit(BAD_MESSAGE)
                        else:
                            with end.borrow(capacity, timeout=0) as batch:
                                if len(batch) > capacity or int(batch["x"].sum()) < 0:
                                    os._exit(BAD_MESSAGE)
                    elif isinstance(end, Receiver):
                        msgs = end.recv_many(capacity + 1, timeout=0) if rng.random() < 0.5 else [end.try_recv()]
                        for m in msgs:
                            if m is not None and (type(m) is not bytes or len(m) > length):
                                os._exit(BAD_MESSAGE)
                    elif dtype is not None:
                        end.try_send(np.zeros(1, dtype)[0])
                    else:
                        end.try_send(b"z" * rng.randint(0, length))
                except EXPECTED_ERRORS:
                    pass
                except Exception:
                    import traceback
                    traceback.print_exc()
                    os._exit(UNEXPECTED_ERROR)
            if mm is not None and rng.random() < 0.5:
                _mutate(rng, mm, capacity, slot_size, 1)
    finally:
        for end in ends:
            end.close()


def run(cases, seed=0, progress=None):
    """Run the cases; return a report with the failures (case seed and how it failed)."""
    failures = []
    name = f"fuzz-{os.getpid()}"
    # Import NumPy once, single-threaded, before forking: each child then has it for free.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    _numpy()
    t0 = time.monotonic()
    for case in range(cases):
        case_seed = seed * 1_000_003 + case
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                signal.alarm(5)
                _case(random.Random(case_seed), name)
            except EXPECTED_ERRORS:
                status = 0
            except BaseException:
                import traceback
                traceback.print_exc()
                status = UNEXPECTED_ERROR
            os._exit(status)
        _, status = os.waitpid(pid, 0)
        unlink(name, missing_ok=True)
        if status != 0:
            how = (f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
                   else {BAD_MESSAGE: "a message longer than message_length or not bytes",
                         UNEXPECTED_ERROR: "an unexpected exception"}.get(os.WEXITSTATUS(status),
                                                                       f"exit status {os.WEXITSTATUS(status)}"))
            failures.append({"case_seed": case_seed, "failure": how})
        if progress and (case + 1) % progress == 0:
            print(f"{case + 1} cases, {len(failures)} failures, {time.monotonic() - t0:.0f} s",
                  file=sys.stderr, flush=True)
    return {"cases": cases, "failures": failures, "seconds": round(time.monotonic() - t0, 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m cywhip._testing.fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    report = run(args.cases, args.seed, progress=10_000)
    print(json.dumps(report, indent=1))
    return 0 if not report["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())

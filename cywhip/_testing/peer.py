"""A peer program for tests, the demo and benchmarks: one end of a channel in its own process.

    python -m cywhip._testing.peer send NAME --count N [--mode send|send_many|example]
    python -m cywhip._testing.peer recv NAME --count N [--mode recv|recv_many|on_message|example]

Messages are numbered: message ``i`` is ``i`` as 8 little-endian bytes,
repeated to fill ``--length`` bytes, so the receiver checks order, loss,
duplication and content of every message.  The receiver prints one JSON
line: what arrived, whether it was all in order, a CRC-32 over every byte,
and how fast.
"""
import argparse
import ctypes
import json
import sys
import threading
import time
import zlib

from cywhip import Receiver, Sender

SEND_MODES = ("send", "send_many", "example", "send_array")
RECV_MODES = ("recv", "recv_many", "on_message", "example", "recv_into", "on_batch", "borrow")
# Typed modes move records of four int64 fields, all equal to the record's number:
# byte for byte the same as payload(i, 32).
RECORD_FIELDS = [("seq", "<i8"), ("a", "<i8"), ("b", "<i8"), ("c", "<i8")]
ARRAY_CHUNK = 1 << 20
BATCH = 4096
CHUNK = 65536


def payload(i, length=32):
    """The content of message number ``i``."""
    word = i.to_bytes(8, "little")
    return (word * (length // 8 + 1))[:length]


def expected_crc(count, length=32, start=0):
    """The CRC-32 a receiver should report for messages start..start+count-1."""
    crc = 0
    for i in range(start, start + count):
        crc = zlib.crc32(payload(i, length), crc)
    return crc


class Message(ctypes.Structure):
    """The record of WhIPCrack's example."""
    _fields_ = [("seq", ctypes.c_int64), ("x", ctypes.c_double), ("y", ctypes.c_double), ("k", ctypes.c_int64)]


def message_serializer(msg, buffer):
    buffer.write(msg)


def message_deserializer(buffer):
    return buffer.read(Message)


def example_message(i):
    return Message(i, i * 0.5, i * 0.25, i * 7)


def run_sender(name, count, mode="send_many", length=32, capacity=1024, start=0, timeout=60.0):
    """Send messages start..start+count-1; return the seconds it took."""
    if mode not in SEND_MODES:
        raise ValueError(f"unknown send mode {mode!r}; choose from {SEND_MODES}")
    if mode == "send_array":
        return _send_records(name, count, capacity, start, timeout)
    serializer = message_serializer if mode == "example" else None
    # Built before the clock starts, so that the figures are the channel's.
    messages = [payload(i, length) for i in range(start, start + count)] if mode != "example" else None
    t0 = time.perf_counter()
    with Sender(name, message_serializer=serializer, message_length=length,
                max_queued_messages=capacity) as sender:
        if mode == "send":
            send = sender.send
            for msg in messages:
                send(msg, timeout)
        elif mode == "send_many":
            for lo in range(0, count, BATCH):
                sender.send_many(messages[lo:lo + BATCH], timeout)
        else:
            for i in range(start, start + count):
                sender.send(example_message(i), timeout)
    return time.perf_counter() - t0


class _Tally:
    """Checks arriving messages against the numbers expected next.

    Plain messages are checked in chunks, at C speed: the first word of each
    must be its number, and a CRC-32 over every byte, compared with
    expected_crc() afterwards, vouches for the rest of the content.
    """

    def __init__(self, start, length):
        self.next = start
        self.length = length
        self.in_order = True
        self.crc = 0
        self.first_at = None
        self.bad = None
        self.pending = []

    def add(self, msg):
        """Queue one message for checking (checked every CHUNK messages and at the end)."""
        pending = self.pending
        pending.append(msg)
        if len(pending) >= CHUNK:
            self.check_chunk(pending)
            pending.clear()

    def check_chunk(self, msgs):
        if not msgs:
            return
        if self.first_at is None:
            self.first_at = time.perf_counter()
        n = len(msgs)
        joined = b"".join(msgs)
        if len(joined) != n * self.length:
            self._fail(msgs, "a message of the wrong length")
        else:
            words = memoryview(joined).cast("q")[::self.length // 8].tolist()
            if words != list(range(self.next, self.next + n)):
                self._fail(msgs, "out of order")
        self.crc = zlib.crc32(joined, self.crc)
        self.next += n

    def _fail(self, msgs, what):
        if self.in_order:
            for k, msg in enumerate(msgs):
                if msg != payload(self.next + k, self.length):
                    self.bad = {"what": what, "expected": self.next + k, "got": msg.hex()[:64]}
                    break
        self.in_order = False

    def check_example(self, msg):
        if self.first_at is None:
            self.first_at = time.perf_counter()
        i = self.next
        ok = (msg.seq == i and msg.x == i * 0.5 and msg.y == i * 0.25 and msg.k == i * 7)
        if not ok and self.in_order:
            self.bad = {"expected": i, "got": [msg.seq, msg.x, msg.y, msg.k]}
            self.in_order = False
        self.crc = zlib.crc32(msg, self.crc)
        self.next += 1

    def report(self, start, count):
        self.check_chunk(self.pending)
        self.pending = []
        last_at = time.perf_counter()
        received = self.next - start
        elapsed = (last_at - self.first_at) if self.first_at is not None else 0.0
        return {
            "received": received,
            "expected": count,
            "in_order": self.in_order and received == count,
            "first": start if received else None,
            "last": self.next - 1 if received else None,
            "crc32": self.crc,
            "seconds": elapsed,
            "rate": received / elapsed if elapsed > 0 else None,
            "bad": self.bad,
        }


def records(lo, hi):
    """Records number lo..hi-1 as a NumPy array."""
    import numpy as np
    arr = np.empty(hi - lo, RECORD_FIELDS)
    seq = np.arange(lo, hi, dtype="<i8")
    for field, _ in RECORD_FIELDS:
        arr[field] = seq
    return arr


def _send_records(name, count, capacity, start, timeout):
    arrays = [records(lo, min(lo + ARRAY_CHUNK, start + count))
              for lo in range(start, start + count, ARRAY_CHUNK)]
    t0 = time.perf_counter()
    with Sender(name, message_type=RECORD_FIELDS, max_queued_messages=capacity) as sender:
        for arr in arrays:
            sender.send_array(arr, timeout)
    return time.perf_counter() - t0


class _RecordTally:
    """Checks arriving record arrays, every field of every record, vectorised."""

    def __init__(self, start):
        import numpy as np
        self.np = np
        self.next = start
        self.in_order = True
        self.first_at = None
        self.bad = None

    def check(self, arr):
        np = self.np
        if self.first_at is None:
            self.first_at = time.perf_counter()
        n = len(arr)
        want = np.arange(self.next, self.next + n, dtype="<i8")
        ok = all(np.array_equal(arr[field], want) for field, _ in RECORD_FIELDS)
        if not ok and self.in_order:
            k = int(np.argmax(arr["seq"] != want)) if not np.array_equal(arr["seq"], want) else 0
            self.bad = {"expected": self.next + k, "got": arr[k].tolist()}
            self.in_order = False
        self.next += n

    def report(self, start, count):
        elapsed = (time.perf_counter() - self.first_at) if self.first_at is not None else 0.0
        received = self.next - start
        return {"received": received, "expected": count, "in_order": self.in_order and received == count,
                "first": start if received else None, "last": self.next - 1 if received else None,
                "crc32": None, "seconds": elapsed, "rate": received / elapsed if elapsed > 0 else None,
                "bad": self.bad}


def _receive_records(name, count, mode, capacity, start, timeout):
    import numpy as np
    tally = _RecordTally(start)
    end = start + count
    if mode == "on_batch":
        done = threading.Event()

        def on_batch(batch):
            tally.check(batch)
            if tally.next >= end:
                done.set()

        receiver = Receiver(name, message_type=RECORD_FIELDS, max_queued_messages=capacity, on_batch=on_batch)
        try:
            if not done.wait(timeout):
                tally.in_order = False
        finally:
            receiver.close()
        return tally.report(start, count)
    if mode == "borrow":
        with Receiver(name, message_type=RECORD_FIELDS, max_queued_messages=capacity) as receiver:
            while tally.next < end:
                with receiver.borrow(end - tally.next, timeout) as batch:
                    tally.check(batch)
        return tally.report(start, count)
    out = np.empty(min(count, 1 << 16), RECORD_FIELDS)
    with Receiver(name, message_type=RECORD_FIELDS, max_queued_messages=capacity) as receiver:
        while tally.next < end:
            room = min(len(out), end - tally.next)
            got = receiver.recv_into(out[:room], timeout)
            tally.check(out[:got])
    return tally.report(start, count)


def run_receiver(name, count, mode="recv_many", length=32, capacity=1024, start=0, timeout=60.0):
    """Receive ``count`` messages, checking each; return the report (a dict)."""
    if mode not in RECV_MODES:
        raise ValueError(f"unknown receive mode {mode!r}; choose from {RECV_MODES}")
    if mode in ("recv_into", "on_batch", "borrow"):
        return _receive_records(name, count, mode, capacity, start, timeout)
    tally = _Tally(start, length)
    end = start + count
    if mode in ("on_message", "example"):
        done = threading.Event()
        check = tally.check_example if mode == "example" else tally.add

        seen = [0]
        opened = threading.Event()
        holder = []

        def on_message(msg):
            check(msg)
            seen[0] += 1
            if seen[0] >= count:
                # Closing from the callback: this message is the last one taken.
                opened.wait()
                holder[0].close()
                done.set()

        receiver = Receiver(name, message_deserializer=message_deserializer if mode == "example" else None,
                            message_length=length, max_queued_messages=capacity, on_message=on_message)
        holder.append(receiver)
        opened.set()
        try:
            finished = done.wait(timeout)
        finally:
            receiver.close()
        if not finished:
            tally.in_order = False
        return tally.report(start, count)

    with Receiver(name, message_length=length, max_queued_messages=capacity) as receiver:
        if mode == "recv":
            recv = receiver.recv
            add = tally.add
            for _ in range(count):
                add(recv(timeout))
        else:
            while tally.next < end:
                tally.check_chunk(receiver.recv_many(min(end - tally.next, CHUNK), timeout))
    return tally.report(start, count)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m cywhip._testing.peer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("role", choices=("send", "recv"))
    parser.add_argument("name")
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--mode", default=None)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--capacity", type=int, default=1024)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    if args.role == "send":
        seconds = run_sender(args.name, args.count, args.mode or "send_many", args.length,
                             args.capacity, args.start, args.timeout)
        print(json.dumps({"sent": args.count, "seconds": seconds}), flush=True)
    else:
        report = run_receiver(args.name, args.count, args.mode or "recv_many", args.length,
                              args.capacity, args.start, args.timeout)
        print(json.dumps(report), flush=True)
        if not report["in_order"]:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())


def spawn_receive(name, count, results):
    """Target for a multiprocessing child (spawn start method): receive count messages, report them."""
    with Receiver(name, message_length=32, max_queued_messages=1024) as receiver:
        got = []
        while len(got) < count:
            got.extend(receiver.recv_many(count - len(got), timeout=30))
    results.put(got)

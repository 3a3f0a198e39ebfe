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

SEND_MODES = ("send", "send_many", "example")
RECV_MODES = ("recv", "recv_many", "on_message", "example")
BATCH = 4096


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
    serializer = message_serializer if mode == "example" else None
    t0 = time.perf_counter()
    with Sender(name, message_serializer=serializer, message_length=length,
                max_queued_messages=capacity) as sender:
        if mode == "send":
            send = sender.send
            for i in range(start, start + count):
                send(payload(i, length), timeout)
        elif mode == "send_many":
            for lo in range(start, start + count, BATCH):
                hi = min(lo + BATCH, start + count)
                sender.send_many([payload(i, length) for i in range(lo, hi)], timeout)
        else:
            for i in range(start, start + count):
                sender.send(example_message(i), timeout)
    return time.perf_counter() - t0


class _Tally:
    """Checks each arriving message against the next expected number."""

    def __init__(self, start, length):
        self.next = start
        self.length = length
        self.in_order = True
        self.crc = 0
        self.first_at = None
        self.last_at = None
        self.bad = None

    def check(self, msg):
        if self.first_at is None:
            self.first_at = time.perf_counter()
        if msg != payload(self.next, self.length):
            if self.in_order:
                self.bad = {"expected": self.next, "got": msg.hex()[:64]}
            self.in_order = False
        self.crc = zlib.crc32(msg, self.crc)
        self.next += 1

    def check_example(self, msg):
        if self.first_at is None:
            self.first_at = time.perf_counter()
        i = self.next
        ok = (msg.seq == i and msg.x == i * 0.5 and msg.y == i * 0.25 and msg.k == i * 7)
        if not ok and self.in_order:
            self.bad = {"expected": i, "got": [msg.seq, msg.x, msg.y, msg.k]}
            self.in_order = False
        self.crc = zlib.crc32(bytes(msg), self.crc)
        self.next += 1

    def report(self, start, count):
        self.last_at = time.perf_counter()
        received = self.next - start
        elapsed = (self.last_at - self.first_at) if self.first_at is not None else 0.0
        return {
            "received": received,
            "expected": count,
            "in_order": self.in_order and received == count,
            "first": start if received else None,
            "last": self.next - 1 if received else None,
            "crc32": self.crc,
            "seconds": elapsed,
            "rate": (received - 1) / elapsed if elapsed > 0 else None,
            "bad": self.bad,
        }


def run_receiver(name, count, mode="recv_many", length=32, capacity=1024, start=0, timeout=60.0):
    """Receive ``count`` messages, checking each; return the report (a dict)."""
    if mode not in RECV_MODES:
        raise ValueError(f"unknown receive mode {mode!r}; choose from {RECV_MODES}")
    tally = _Tally(start, length)
    end = start + count
    if mode in ("on_message", "example"):
        done = threading.Event()
        check = tally.check_example if mode == "example" else tally.check

        def on_message(msg):
            check(msg)
            if tally.next >= end:
                done.set()

        receiver = Receiver(name, message_deserializer=message_deserializer if mode == "example" else None,
                            message_length=length, max_queued_messages=capacity, on_message=on_message)
        try:
            finished = done.wait(timeout)
        finally:
            receiver.close()
        if not finished:
            tally.in_order = False
        return tally.report(start, count)

    with Receiver(name, message_length=length, max_queued_messages=capacity) as receiver:
        check = tally.check
        if mode == "recv":
            recv = receiver.recv
            for _ in range(count):
                check(recv(timeout))
        else:
            while tally.next < end:
                for msg in receiver.recv_many(end - tally.next, timeout):
                    check(msg)
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

"""Single send/recv in one process, against the Python call floor: seconds where the slots stay
in one core's cache.

    python asv_bench/one_process.py [--rounds R] [--count N]

The bench's single send/recv row runs the sender and the receiver in two processes, so each
message's slot and the cursors move between two cores' caches.  Here one process sends N
messages of 32 bytes (at most 512 at a time) and then receives them, through cywhip, through the
bench's Python call floor (cywhip._bench._floor.CallFloor: a no-op send, a recv returning a fresh
bytes object) and, if subetha-ipc is installed, through SubEtha's SpscRing (push/pop).  The
forms run in turn, R rounds of each; it prints each form's median nanoseconds per message (a
send and a recv) and the median of the per-round ratios against cywhip.  Where a ratio here
differs from the bench's, the difference is what the second core costs.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

CHUNK = 512
MESSAGE = b"x" * 32


def _loop(send, recv, count):
    """ns per message of count messages sent and received, CHUNK at a time."""
    rounds = max(1, count // CHUNK)
    t0 = time.perf_counter_ns()
    for _ in range(rounds):
        for _ in range(CHUNK):
            send(MESSAGE)
        for _ in range(CHUNK):
            recv()
    return (time.perf_counter_ns() - t0) / (rounds * CHUNK)


def measure(rounds, count):
    """{form: [ns per message of each round]}, the forms in turn within each round."""
    import cywhip
    from cywhip._bench._floor import CallFloor
    forms = {}
    name = f"one-process-{os.getpid()}"
    with tempfile.TemporaryDirectory() as tmp, \
            cywhip.Sender(name, message_length=32, max_queued_messages=1024) as tx, \
            cywhip.Receiver(name, message_length=32, max_queued_messages=1024) as rx:
        try:
            floor = CallFloor(32)
            calls = {"cywhip send/recv": (tx.send, rx.recv), "Python call floor": (floor.send, floor.recv)}
            try:
                import subetha
            except ImportError:
                pass
            else:
                ring = subetha.SpscRing(os.path.join(tmp, "ring"), 1024)
                producer = subetha.SpscRing.open(os.path.join(tmp, "ring"), 1024)
                calls["SubEtha SpscRing push/pop"] = (producer.push, ring.pop)
            for _ in range(rounds):
                for form, (send, recv) in calls.items():
                    forms.setdefault(form, []).append(_loop(send, recv, count))
        finally:
            cywhip.unlink(name, missing_ok=True)
    return forms


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--count", type=int, default=200_000, help="messages per form and round")
    args = parser.parse_args(argv)
    forms = measure(args.rounds, args.count)
    mine = forms["cywhip send/recv"]
    print("| form | ns per message (send + recv), median | ÷ cywhip's time, median of rounds (range) |")
    print("| --- | --- | --- |")
    for form, times in forms.items():
        ratios = [t / c for t, c in zip(times, mine)]
        print(f"| {form} | {statistics.median(times):.1f} | {statistics.median(ratios):.2f} "
              f"({min(ratios):.2f}-{max(ratios):.2f}) |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Instructions per message, counted by callgrind: repeatable where seconds are not.

    python asv_bench/instructions.py [--count N] [FORM ...]

For each message form (bytes, callbacks, ctypes; array: send_array and
recv_into in blocks of 4,096 records), one process opens a sender and a
receiver on a fresh channel and runs the loop "send N, receive N" (in rounds of
at most the ring's capacity) twice, once with N and once with 2N messages, each
under ``valgrind --tool=callgrind`` with a fixed hash seed; the difference of
the two totals divided by N is the cost of one message sent and received,
without start-up and set-up.
Needs valgrind on the PATH.
"""
import argparse
import ctypes
import os
import re
import subprocess
import sys
import tempfile

FORMS = ("bytes", "callbacks", "ctypes", "array")


class Record(ctypes.Structure):
    _fields_ = [("seq", ctypes.c_int64), ("x", ctypes.c_double), ("y", ctypes.c_double), ("k", ctypes.c_int64)]


def _serialize(msg, buffer):
    buffer.write(msg)


def _deserialize(buffer):
    return buffer.read(Record)


def loop(form, count):
    """Send count messages of one form, then receive them, in this process."""
    import cywhip
    name = f"instructions-{os.getpid()}"
    capacity = 1 << 16
    if form == "bytes":
        kw_s = kw_r = dict(message_length=32)
    elif form == "callbacks":
        kw_s = dict(message_serializer=_serialize, message_length=32)
        kw_r = dict(message_deserializer=_deserialize, message_length=32)
    elif form == "ctypes":
        kw_s = kw_r = dict(message_type=Record)
    else:
        import numpy as np
        kw_s = kw_r = dict(message_type=np.dtype(Record))
    try:
        with cywhip.Sender(name, max_queued_messages=capacity, **kw_s) as s, \
                cywhip.Receiver(name, max_queued_messages=capacity, **kw_r) as r:
            if form == "array":
                import numpy as np
                # Blocks of 4,096 records, each sent and then received: the per-call costs count too.
                block = np.zeros(4096, np.dtype(Record))
                out = np.empty(4096, np.dtype(Record))
                for _ in range(count // 4096):
                    s.send_array(block)
                    got = 0
                    while got < 4096:
                        got += r.recv_into(out[got:])
                return
            msg = b"x" * 32 if form == "bytes" else Record(1, 2.0, 3.0, 4)
            send, recv = s.send, r.recv
            for _ in range(count // capacity + 1):
                k = min(count, capacity)
                for _ in range(k):
                    send(msg)
                for _ in range(k):
                    recv()
                count -= k
    finally:
        cywhip.unlink(name, missing_ok=True)


def _instructions(form, count):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        # A fixed hash seed: the interpreter's own work (imports, dicts) then repeats exactly.
        env = dict(os.environ, PYTHONHASHSEED="0")
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                        sys.executable, __file__, "--run", form, "--count", str(count)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        with open(out) as f:
            for line in f:
                m = re.match(r"summary: (\d+)", line) or re.match(r"totals: (\d+)", line)
                if m:
                    return int(m.group(1))
    raise RuntimeError("callgrind wrote no total")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("forms", nargs="*", metavar="FORM", help=f"any of {', '.join(FORMS)} (default: all)")
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--run", choices=FORMS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    bad = [f for f in args.forms if f not in FORMS]
    if bad:
        parser.error(f"unknown form {bad[0]!r}; choose from {', '.join(FORMS)}")
    args.forms = args.forms or list(FORMS)
    if args.run:
        loop(args.run, args.count)
        return 0
    print("| form | instructions per message (send + receive) |")
    print("| --- | --- |")
    for form in args.forms:
        # Array runs cost little per record: measure over more of them.
        count = args.count * 16 // 4096 * 4096 if form == "array" else args.count
        one = _instructions(form, count)
        two = _instructions(form, 2 * count)
        per = (two - one) / count
        print(f"| {form} | {per:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

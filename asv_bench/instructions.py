"""Instructions per message, counted by callgrind: repeatable where seconds are not.

    python asv_bench/instructions.py [--count N] [FORM ...]

For each message form (bytes, callbacks, ctypes; array: send_array and
recv_into in blocks of 4,096 records; capi: the Cython API's nogil loops of
cywhip/_bench/capi_loops.pyx, one message per capi.send()/capi.recv() call;
capi-blocks: capi.send_records()/capi.recv_records() in blocks of 256), one
process opens a sender and a receiver on a fresh channel and runs the loop
"send N, receive N" (in rounds of at most the ring's capacity) twice, once with
N and once with 2N messages, each under ``valgrind --tool=callgrind`` with a
fixed hash seed; the difference of the two totals divided by N is the cost of
one message sent and received, without start-up and set-up.  Three forms run
only when named: floor, the loop of bytes through the bench's Python call floor
(a no-op send and a recv returning a fresh bytes object); subetha, the same loop
through SubEtha's SpscRing (push/pop, its ring of 1,024 slots; needs subetha-ipc);
batches, send_many of a list of 4,096 messages of 32 bytes and recv_many(4096),
the list received dropped before the next.  bytes-bytes and batches-bytes (only
when named too) are bytes and batches through a byte channel (max_queued_bytes)
that holds as many messages.  The Cython API's
loops are compiled once per run of this script, into a temporary directory, as
the benchmark compiles them (cywhip._bench.capi).

With ``--repeat 2`` each figure is measured twice and both are printed with
their spread, which shows how far a figure can be trusted (it should be well
under 0.5 %).
Needs valgrind on the PATH.
"""
import argparse
import ctypes
import os
import re
import subprocess
import sys
import tempfile

FORMS = ("bytes", "callbacks", "ctypes", "array", "capi", "capi-blocks")
# Not run unless named: the same loop as bytes through the bench's Python call floor
# (cywhip._bench._floor.CallFloor: a no-op send, a recv returning a fresh bytes object).
EXTRA_FORMS = ("floor", "subetha", "batches", "bytes-bytes", "batches-bytes")
# Messages per send_many()/recv_many() call of the form batches, as the benchmark's row.
BATCH = 4096
# Messages per capi.send_records()/capi.recv_records() call, as the benchmark's row.
CAPI_BLOCK = 256


class Record(ctypes.Structure):
    _fields_ = [("seq", ctypes.c_int64), ("x", ctypes.c_double), ("y", ctypes.c_double), ("k", ctypes.c_int64)]


def _serialize(msg, buffer):
    buffer.write(msg)


def _deserialize(buffer):
    return buffer.read(Record)


def loop(form, count, build_dir=None):
    """Send count messages of one form, then receive them, in this process."""
    import cywhip
    name = f"instructions-{os.getpid()}"
    capacity = 1 << 16
    if form == "floor":
        from cywhip._bench._floor import CallFloor
        s = r = CallFloor(32)
        _send_recv(s.send, r.recv, b"x" * 32, count, capacity)
        return
    if form == "subetha":
        import subetha
        with tempfile.TemporaryDirectory() as tmp:
            ring = subetha.SpscRing(os.path.join(tmp, "ring"), 1024)
            producer = subetha.SpscRing.open(os.path.join(tmp, "ring"), 1024)
            _send_recv(producer.push, ring.pop, b"x" * 32, count, 1024)
        return
    if form.startswith("capi"):
        sys.path.insert(0, build_dir)
        import capi_loops
        kw_s = kw_r = dict(message_length=32)
    elif form in ("bytes", "batches", "bytes-bytes", "batches-bytes"):
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
        if form.endswith("-bytes"):
            # A byte channel holding as many 32-byte messages (a record is 40 bytes).
            queue = dict(max_queued_bytes=capacity * 40)
            form = form[:-len("-bytes")]
        else:
            queue = dict(max_queued_messages=capacity)
        with cywhip.Sender(name, **queue, **kw_s) as s, \
                cywhip.Receiver(name, **queue, **kw_r) as r:
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
            if form == "batches":
                msgs = [bytes([i % 251]) * 32 for i in range(BATCH)]
                for _ in range(count // BATCH):
                    s.send_many(msgs)
                    got = r.recv_many(BATCH)
                    if len(got) != BATCH:
                        raise RuntimeError(f"recv_many returned {len(got)} of {BATCH} messages")
                    del got
                return
            if form.startswith("capi"):
                # The loops number the messages of each call from 0 and check them on receipt.
                while count > 0:
                    k = min(count, capacity)
                    if form == "capi":
                        capi_loops.send_each(s, k, 32)
                        _, wrong = capi_loops.recv_each(r, k, 32)
                    else:
                        capi_loops.send_blocks(s, k, 32, CAPI_BLOCK)
                        _, wrong = capi_loops.recv_blocks(r, k, 32, CAPI_BLOCK)
                    if wrong:
                        raise RuntimeError(f"{wrong} of {k} messages were wrong")
                    count -= k
                return
            msg = b"x" * 32 if form == "bytes" else Record(1, 2.0, 3.0, 4)
            _send_recv(s.send, r.recv, msg, count, capacity)
    finally:
        cywhip.unlink(name, missing_ok=True)


def _send_recv(send, recv, msg, count, capacity):
    """The loop of the single forms: send count messages and receive them, in rounds of at
    most capacity."""
    for _ in range(count // capacity + 1):
        k = min(count, capacity)
        for _ in range(k):
            send(msg)
        for _ in range(k):
            recv()
        count -= k


def build_capi_loops(into):
    """Compile cywhip/_bench/capi_loops.pyx into directory into, as the benchmark does."""
    import shutil
    from cywhip._bench import capi
    shutil.copy(capi.HERE / "capi_loops.pyx", into)
    proc = subprocess.run([sys.executable, "-c", capi._SETUP_CYWHIP], cwd=into, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"building capi_loops failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def _instructions(form, count, build_dir=None, keep=None):
    """Callgrind's total for one run of loop(form, count); with keep, its output file is
    copied there (for callgrind_annotate)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        # A fixed hash seed: the interpreter's own work (imports, dicts) then repeats exactly.
        # One thread for NumPy's BLAS: its pool's threads spin at import for as long as the
        # scheduler lets them, which made the array form's figure vary by 15 % between runs.
        env = dict(os.environ, PYTHONHASHSEED="0", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
                   MKL_NUM_THREADS="1")
        extra = ["--build-dir", build_dir] if build_dir else []
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                        sys.executable, __file__, "--run", form, "--count", str(count)] + extra,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        if keep:
            import shutil
            shutil.copy(out, keep)
        with open(out) as f:
            for line in f:
                m = re.match(r"summary: (\d+)", line) or re.match(r"totals: (\d+)", line)
                if m:
                    return int(m.group(1))
    raise RuntimeError("callgrind wrote no total")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("forms", nargs="*", metavar="FORM",
                        help=f"any of {', '.join(FORMS + EXTRA_FORMS)} (default: {', '.join(FORMS)})")
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=1, help="measure each figure this many times")
    parser.add_argument("--keep", metavar="DIR", help="keep callgrind's output files in DIR")
    parser.add_argument("--run", choices=FORMS + EXTRA_FORMS, help=argparse.SUPPRESS)
    parser.add_argument("--build-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    bad = [f for f in args.forms if f not in FORMS + EXTRA_FORMS]
    if bad:
        parser.error(f"unknown form {bad[0]!r}; choose from {', '.join(FORMS + EXTRA_FORMS)}")
    args.forms = args.forms or list(FORMS)
    if args.run:
        loop(args.run, args.count, args.build_dir)
        return 0
    with tempfile.TemporaryDirectory() as build_dir:
        if any(f.startswith("capi") for f in args.forms):
            build_capi_loops(build_dir)
        runs = " | ".join(f"run {i + 1}" for i in range(args.repeat))
        print(f"| form | instructions per message (send + receive) | {runs} | spread |" if args.repeat > 1 else
              "| form | instructions per message (send + receive) |")
        print("| --- " * (2 + (args.repeat + 1 if args.repeat > 1 else 0)) + "|")
        for form in args.forms:
            # Array and Cython API runs cost little per message: measure over more of them.
            count = args.count * 16 // 4096 * 4096 if form in ("array", "capi", "capi-blocks", "batches",
                                                                "batches-bytes") \
                else args.count
            figures = []
            for i in range(args.repeat):
                keep = [os.path.join(args.keep, f"{form}-{n}-{i + 1}.out") for n in (1, 2)] if args.keep \
                    else [None, None]
                one = _instructions(form, count, build_dir, keep[0])
                two = _instructions(form, 2 * count, build_dir, keep[1])
                figures.append((two - one) / count)
            mean = sum(figures) / len(figures)
            if args.repeat > 1:
                spread = (max(figures) - min(figures)) / mean * 100
                cells = " | ".join(f"{f:.2f}" for f in figures)
                print(f"| {form} | {mean:.1f} | {cells} | {spread:.3f} % |", flush=True)
            else:
                print(f"| {form} | {mean:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What every benchmark worker and runner shares: names, the two-process runner, small helpers."""
import multiprocessing
import os
import time
import uuid

MESSAGE = 32
# Batches of 4,096 go through a ring four times their size: 16,384 slots of 40 bytes (640 KiB),
# under the 1 MiB buffer the cloudtoid-interprocess figures use.
BATCH_RING = 16384
SPAWN = multiprocessing.get_context("spawn")

# ------------------------------------------------------------------ helpers


def _name(tag):
    return f"bench-{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _percentiles(values):
    values = sorted(values)
    n = len(values)
    return values[n // 2], values[min(n - 1, (n * 99) // 100)]


def _timed_receive(receive, n, *first_args):
    """Receive n messages; the clock starts at the first (taken with first_args, e.g. a timeout,
    the rest with none, so the loop costs the same for every system). Return messages/s."""
    receive(*first_args)
    t0 = time.perf_counter()
    for _ in range(n - 1):
        receive()
    return {"rate": (n - 1) / (time.perf_counter() - t0)}


def _record_bytes(size, count):
    """The ring of a byte channel that queues count messages of size bytes, as a slot channel of
    count slots does: each record is an 8-byte header and the message padded to 8 bytes."""
    from cywhip._testing._model import record_size
    return count * record_size(size)


# ------------------------------------------------------------ mixed sizes
# One stream for every system: MIXED_KINDS messages of seeded log-uniform sizes from MIXED_MIN to
# MIXED_MAX bytes, sent over and over; each starts with its index and length (u32 each) and goes
# on with seeded random bytes.  The receiver compares every message, byte for byte, with the one
# sent at its place in the stream.

MIXED_MIN, MIXED_MAX = 16, 64 << 10
MIXED_KINDS = 1024
MIXED_SEED = 27
MIXED_RING = 4 << 20           # the byte channel (and cloudtoid's queue) of the mixed rows
MIXED_SLOTS = 1024             # a slot channel for the same stream: 1,024 slots of MIXED_MAX


def _mixed_messages(kinds=MIXED_KINDS, seed=MIXED_SEED):
    """The messages of the mixed-size stream, in the order they are sent (then again)."""
    import math
    import random
    import struct
    rng = random.Random(seed)
    low, high = math.log(MIXED_MIN), math.log(MIXED_MAX)
    out = []
    for j in range(kinds):
        size = min(MIXED_MAX, max(MIXED_MIN, int(math.exp(rng.uniform(low, high)))))
        out.append(struct.pack("<II", j, size) + rng.randbytes(size - 8))
    return out


def _mixed_stream(n, messages):
    """The first n messages of the stream: messages, cycled."""
    from itertools import cycle, islice
    return islice(cycle(messages), n)


def _timed_mixed(receive, n, messages, *first_args):
    """Receive the n messages of the mixed-size stream, checking each against the one sent at
    its place; the clock starts at the first (taken with first_args).  Return messages/s and
    GB/s (of the messages after the first), and what the check found."""
    from itertools import islice
    stream = _mixed_stream(n, messages)
    wrong = int(receive(*first_args) != next(stream))
    t0 = time.perf_counter()
    for want in stream:
        if receive() != want:
            wrong += 1
    elapsed = time.perf_counter() - t0
    total = sum(map(len, islice(_mixed_stream(n, messages), 1, None)))
    note = (f"every message byte for byte (checked, {n:,})" if not wrong else
            f"NOT every message: {wrong:,} of {n:,} not the one sent at its place")
    return {"rate": (n - 1) / elapsed, "bytes_rate": total / elapsed / 1e9, "wrong": wrong, "note": note}


def _object_message(size):
    """The message of the Python objects rows: a dict holding a float64 array of size bytes."""
    import numpy as np
    return {"seq": 0, "values": np.ones(size // 8), "label": "frame"}


def _timed_objects(receive, n, size, *first_args):
    """_timed_receive() for the Python objects rows, checking that the last message arrived whole."""
    receive(*first_args)
    t0 = time.perf_counter()
    for _ in range(n - 2):
        receive()
    last = receive()
    rate = (n - 1) / (time.perf_counter() - t0)
    if last["label"] != "frame" or last["values"].nbytes != size:
        raise AssertionError(f"the last message arrived as {last!r:.200}")
    return {"rate": rate}


def _send_or_time(role, ready, results, send, receive, n, size, *first_args):
    """The two sides of a stream of one call per message: the producer, once the consumer is
    ready, calls send(msg) n times with a message of size bytes; the consumer times n calls
    of receive() (the first with first_args) and reports the rate."""
    if role == "producer":
        msg = b"x" * size
        ready.wait(60)
        for _ in range(n):
            send(msg)
        return
    ready.set()
    results.put(_timed_receive(receive, n, *first_args))


class _Shm:
    """A file in /dev/shm shared by the floor workers, removed by whoever created it."""

    def __init__(self, name, size, create):
        import mmap
        self.path = f"/dev/shm/{name}"
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        fd = os.open(self.path, flags, 0o600)
        try:
            if create:
                os.ftruncate(fd, size)
            self.map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.created = create

    def close(self):
        self.map.close()
        if self.created:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


# ----------------------------------------------------------------- running


class Hung(RuntimeError):
    """A run with a process still running at its deadline (it was killed)."""


class _AllReady:
    """An Event for several consumers: set() by each, wait() returns once all have."""

    def __init__(self, need):
        self.need = need
        self.count = SPAWN.Value("i", 0)
        self.event = SPAWN.Event()

    def set(self):
        with self.count.get_lock():
            self.count.value += 1
            if self.count.value >= self.need:
                self.event.set()

    def wait(self, timeout=None):
        return self.event.wait(timeout)


def run_pair(worker, params, shared=None, timeout=300, producers=1, consumers=1):
    """Run worker as consumer(s) and producer(s) in spawned processes; return the consumer's or
    producer's result (whichever reports).  With several producers each sends params["count"]
    messages and the consumer receives params["total"] = producers * count.  With several
    consumers (params["index"] 0, 1, ...; params["consumers"] says how many) the producers wait
    until all are ready, and the result is the list of the consumers' results."""
    ready = SPAWN.Event() if consumers == 1 else _AllReady(consumers)
    results = SPAWN.SimpleQueue()
    if producers > 1:
        params = dict(params, total=params["count"] * producers)
    params = dict(params, consumers=consumers)
    procs = [SPAWN.Process(target=worker, args=(role, dict(params, index=i), ready, results, shared),
                           daemon=True)
             for i, role in enumerate(["consumer"] * consumers + ["producer"] * producers)]
    for proc in procs:
        proc.start()
    out = []
    try:
        deadline = time.monotonic() + timeout
        # Results are taken as they come: a large one fills the pipe, and its sender
        # would not exit before it is read.
        # One that failed ends the run: the others may wait for it forever.
        failed = lambda: any(proc.exitcode for proc in procs)
        while any(proc.is_alive() for proc in procs) and time.monotonic() < deadline and not failed():
            if results.empty():
                time.sleep(0.01)
            else:
                out.append(results.get())
        for proc in procs:
            if failed():
                break
            proc.join(max(0.1, deadline - time.monotonic()))
        if failed():
            raise RuntimeError(f"{worker.__name__} failed: exit codes {[proc.exitcode for proc in procs]}")
        if any(proc.is_alive() for proc in procs):
            raise Hung(f"{worker.__name__} still running after {timeout} s: exit codes "
                       f"{[proc.exitcode for proc in procs]}")
        while not results.empty():
            out.append(results.get())
        if not out:
            raise RuntimeError(f"{worker.__name__} reported nothing")
        if consumers == 1:
            return out[0]
        if len(out) != consumers:
            raise RuntimeError(f"{worker.__name__}: {len(out)} of {consumers} consumers reported")
        return out
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
        name = params.get("name")
        if name and not name.startswith("cywhip-"):      # floors clean up their own files
            from cywhip import unlink
            for suffix in ("", "-a", "-b"):
                unlink(name + suffix, missing_ok=True)


def _available(module):
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def _in_dir(fn):
    """Run fn with a fresh directory in /dev/shm for a peer's files; remove it afterwards."""
    import shutil
    import tempfile
    d = tempfile.mkdtemp(prefix="cywhip-bench-peer-", dir="/dev/shm")
    try:
        return fn(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _removing(name, fn):
    """Run fn(); then remove what a peer left under its own names in /dev/shm and /tmp (any entry
    whose name contains `name`, unique to the run), also when a process of the run was killed."""
    try:
        return fn()
    finally:
        _remove_leftovers(name)


def _remove_leftovers(name):
    """Remove every entry of /dev/shm and /tmp whose name contains `name` (unique to a run)."""
    for d in ("/dev/shm", "/tmp"):
        for entry in os.listdir(d):
            if name in entry:
                try:
                    os.unlink(os.path.join(d, entry))
                except OSError:
                    pass


def _gbps(result, size):
    """result with its messages/s as GB/s of size-byte messages (what else it says kept)."""
    return dict(result, rate=result["rate"] * size / 1e9)


# ------------------------------------------------- several consumers: groups of rows
# A consumer of these rows reports {"count": messages, "t0": clock at its first, "t1": clock at
# its last} (time.perf_counter: CLOCK_MONOTONIC, the same clock in every process), and for work
# sharing "seqs": the numbers of the messages it got, for the coordinator's exactly-once check.

END = b""      # after the numbered messages of a work-sharing stream: one per consumer


def _numbered(n, size=MESSAGE, tag=0, start=0):
    """n distinct messages of size bytes, message i starting with tag << 40 | start + i (8 bytes,
    little-endian): tag tells apart the producers of one stream; or start, where one count runs
    across the producers (work sharing: producer j of several sending n each starts at j * n)."""
    pad = b"." * (size - 8)
    base = tag << 40
    return [(base | i).to_bytes(8, "little") + pad for i in range(start, start + n)]


def _seqs(kept, size=MESSAGE):
    """The numbers of messages from _numbered(), as the bytes of an array of int64."""
    from array import array
    words = array("q")
    words.frombytes(b"".join(kept))
    return words[::size // 8].tobytes()


def _send_ends(send_end, done, consumers, repeat=False):
    """After a work-sharing stream: one END per consumer; with repeat, more (send_end must not
    block) until every consumer is done: a system may hand two ENDs to one consumer, or drop one."""
    for _ in range(consumers):
        send_end()
    deadline = time.monotonic() + 60
    while repeat and done.value < consumers and time.monotonic() < deadline:
        time.sleep(0.001)
        send_end()


def _consumer_done(done):
    with done.get_lock():
        done.value += 1


def _last_done(done, of):
    """Count one more process done in the Value done; True for the one that makes it `of` (the
    last of several producers: the one to send the ENDs, after every producer's messages)."""
    with done.get_lock():
        done.value += 1
        return done.value == of


def _per_consumer(results, sent):
    """Broadcast: each consumer's messages per second from its first message to its last,
    averaged over the consumers.  A note says what share of the messages arrived if not all, and
    what the check of their numbers found where the consumers checked them (_checked)."""
    rates = [(r["count"] - 1) / (r["t1"] - r["t0"]) for r in results]
    got = [r["count"] for r in results]
    out = {"rate": sum(rates) / len(rates), "rates": rates, "received": got}
    if all("lost" in r for r in results):
        out["lost"] = sum(r["lost"] for r in results)
        notes = [f"consumer {i}: {r['note']}" for i, r in enumerate(results) if not r["complete"]]
        if notes or all(r["note"] for r in results):
            out["note"] = "; ".join(notes) or f"each consumer got every message, in order (checked, {sent:,})"
    elif min(got) < sent:
        out["lost"] = sum(sent - g for g in got)
        out["note"] = "received " + " and ".join(f"{g / sent:.1%}" for g in got) + f" of {sent:,}"
    return out


def _words(kept, size=None):
    """The first 8 bytes of each message of kept (a list of bytes of one length: a system may
    hand back its whole slot, longer than what was sent), as a numpy array of int64."""
    import numpy as np
    if not kept:
        return np.zeros(0, "<i8")
    step = size or len(kept[0])
    joined = b"".join(kept)
    if len(joined) != step * len(kept):
        raise RuntimeError(f"messages of several lengths arrived (the first of {len(kept[0])} bytes)")
    return np.frombuffer(joined, "u1").reshape(-1, step)[:, :8].copy().view("<i8").ravel()


def _checked(kept, sent, producers=1):
    """Check the numbers of what one consumer got (kept: the messages, or their numbers as an
    array; tag << 40 | i for i in range(sent) from each of `producers` producers, tags 0, 1, ...,
    in order of arrival): every message once, each producer's in the order it sent them.  Return
    {"count", "lost", "duplicated", "disordered", "complete", "note"}; a note starting with NOT
    says what went wrong (report.run keeps those of every run)."""
    import numpy as np
    words = _words(kept) if isinstance(kept, list) else np.asarray(kept, "<i8")
    tags, seqs = words >> 40, words & ((1 << 40) - 1)
    total = sent * producers
    lost = duplicated = disordered = strangers = 0
    for tag in range(producers):
        mine = seqs[tags == tag]
        disordered += int(np.count_nonzero(np.diff(mine) <= 0))
        valid = mine[mine < sent]
        distinct = len(np.unique(valid))
        duplicated += len(valid) - distinct
        lost += sent - distinct
        strangers += len(mine) - len(valid)
    strangers += int(np.count_nonzero((tags < 0) | (tags >= producers)))
    complete = lost == duplicated == disordered == strangers == 0
    if complete:
        note = f"every message, in order (checked, {total:,})"
    else:
        parts = [f"lost {lost / total:.1%} ({lost:,} of {total:,})"] if lost else []
        parts += [f"{duplicated:,} duplicated"] if duplicated else []
        parts += [f"{disordered:,} out of order"] if disordered else []
        parts += [f"{strangers:,} not sent"] if strangers else []
        note = "NOT every message: " + ", ".join(parts)
    return {"count": len(words), "lost": lost, "duplicated": duplicated, "disordered": disordered,
            "complete": complete, "note": note}


def _poll_until_done(receive, done, kept=None):
    """Poll receive() (None: nothing yet) until done() and nothing is left, counting what
    arrives, or keeping it in kept (a list); return (how many, clock at the first, clock at the
    last, taken when receive() next found nothing)."""
    give_up = time.monotonic() + 60
    m = receive()
    while m is None:
        if time.monotonic() > give_up:
            raise RuntimeError("no message arrived in 60 s")
        m = receive()
    clock = time.perf_counter
    t0 = clock()
    got = 0
    keep = kept.append if kept is not None else None
    while True:
        got += 1
        if keep:
            keep(m)
        m = receive()
        if m is None:
            t1 = clock()
            while m is None:
                if done():
                    m = receive()        # one more look once the producers are done
                    if m is None:
                        return got, t0, t1
                    break
                m = receive()


def _counted(count, sent):
    """What one consumer got when it only counted (as the figures' timed loops do: keeping
    every message costs an allocation per message that cywhip's rows do not pay): how many
    arrived of those sent; the rest is lost.  The same keys as _checked()."""
    lost = max(0, sent - count)
    note = None if lost == 0 else f"NOT every message: lost {lost / sent:.1%} ({lost:,} of {sent:,})"
    return {"count": count, "lost": lost, "duplicated": 0, "disordered": 0, "complete": lost == 0, "note": note}


def _outcome(t0, t1, sent, count=None, kept=None, producers=1, rate=True):
    """One consumer's result: its messages, checked (kept: what it got, numbered) or counted,
    and its clock at the first and last; with rate, messages per second from the first to the
    last that arrived (what was delivered, not what was sent)."""
    out = _checked(kept, sent, producers) if kept is not None else _counted(count, sent * producers)
    out.update(t0=t0, t1=t1)
    if rate:
        out["rate"] = (out["count"] - 1) / (t1 - t0)
    return out


def _aggregate(results, sent):
    """Work sharing: all the consumers' messages per second, from the first message any of them
    got to the last; each message must have arrived exactly once across them."""
    from array import array
    total = sum(r["count"] for r in results)
    span = max(r["t1"] for r in results) - min(r["t0"] for r in results)
    out = {"rate": (total - 1) / span, "received": [r["count"] for r in results]}
    if all("seqs" in r for r in results):
        seen = array("q")
        for r in results:
            seen.frombytes(r["seqs"])
        distinct = set(seen)
        duplicated = len(seen) - len(distinct)
        missing = sent - len(distinct & set(range(sent)))
        out["duplicated"], out["missing"] = duplicated, missing
        out["exactly_once"] = duplicated == 0 and missing == 0 and len(distinct) == sent
        out["note"] = ("each message exactly once (checked)" if out["exactly_once"] else
                       f"NOT exactly once: {duplicated:,} duplicated, {missing:,} missing of {sent:,}")
    elif total != sent:
        raise RuntimeError(f"the consumers got {total:,} messages of {sent:,} sent")
    return out

"""What every benchmark worker and runner shares: names, the two-process runner, small helpers."""
import multiprocessing
import os
import time
import uuid

MESSAGE = 32
# Batches of 4,096 go through a ring four times their size: 16,384 slots of 40 bytes (640 KiB),
# under the 1 MiB buffer the cloudtoid-interprocess figures use.
BATCH_RING = 16384
HIGHER_IS_BETTER = ("msg/s", "rec/s", "GB/s")
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


def run_pair(worker, params, shared=None, timeout=300, producers=1):
    """Run worker as consumer and producer(s) in spawned processes; return the consumer's or
    producer's result (whichever reports).  With several producers each sends params["count"]
    messages and the consumer receives params["total"] = producers * count."""
    ready = SPAWN.Event()
    results = SPAWN.SimpleQueue()
    if producers > 1:
        params = dict(params, total=params["count"] * producers)
    procs = [SPAWN.Process(target=worker, args=(role, dict(params, index=i), ready, results, shared),
                           daemon=True)
             for i, role in enumerate(["consumer"] + ["producer"] * producers)]
    for proc in procs:
        proc.start()
    try:
        deadline = time.monotonic() + timeout
        for proc in procs:
            proc.join(max(0.1, deadline - time.monotonic()))
        if any(proc.is_alive() for proc in procs):
            raise Hung(f"{worker.__name__} still running after {timeout} s: exit codes "
                       f"{[proc.exitcode for proc in procs]}")
        if any(proc.exitcode for proc in procs):
            raise RuntimeError(f"{worker.__name__} failed: exit codes {[proc.exitcode for proc in procs]}")
        if results.empty():
            raise RuntimeError(f"{worker.__name__} reported nothing")
        return results.get()
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


def _gbps(result, size):
    return {"rate": result["rate"] * size / 1e9}

"""Benchmarks: the same workloads for cywhip, its peers and raw C floors, each in two processes.

``python -m cywhip bench`` runs them all and prints a table; the asv suite in
asv_bench/ calls the same functions.  Every figure is measured in the process
where it happens (the receiver for throughput, the pinging side for round
trips) and sent back to the coordinator.  Processes start with the spawn
method: a worker imports only what its system needs.
"""
import json
import multiprocessing
import os
import sys
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


# ------------------------------------------------------------------ workers
# Each worker runs in its own spawned process: (role, params, ready, results, shared).
# Consumers set `ready` once they can receive; producers wait for it.

def _w_cywhip_stream(role, p, ready, results, shared):
    from cywhip import Receiver, Sender
    name, n, size, mode = p["name"], p["count"], p["size"], p["mode"]
    cap = p.get("capacity", 1024)
    if role == "producer":
        msg = b"x" * size
        ready.wait(60)
        with Sender(name, message_length=size, max_queued_messages=cap) as s:
            if mode == "single":
                send = s.send
                for _ in range(n):
                    send(msg)
            else:
                batch = [msg] * 4096
                left = n
                while left:
                    k = min(left, 4096)
                    s.send_many(batch if k == 4096 else batch[:k])
                    left -= k
        return
    with Receiver(name, message_length=size, max_queued_messages=cap) as r:
        ready.set()
        if mode == "single":
            results.put(_timed_receive(r.recv, n, 60))
            return
        got = len(r.recv_many(8192, timeout=60))
        t0 = time.perf_counter()
        while got < n:
            got += len(r.recv_many(8192))
        results.put({"rate": (n - 1) / (time.perf_counter() - t0)})


def _w_cywhip_callback(role, p, ready, results, shared):
    """on_message with a trivial serializer and deserializer."""
    import threading
    from cywhip import Receiver, Sender
    name, n, size = p["name"], p["count"], p["size"]
    if role == "producer":
        msg = b"x" * size
        ready.wait(60)
        with Sender(name, message_serializer=lambda m, b: b.write_bytes(m), message_length=size,
                    max_queued_messages=1024) as s:
            batch = [msg] * 4096
            for _ in range(n // 4096):
                s.send_many(batch)
        return
    done = threading.Event()
    state = {"count": 0, "t0": None}

    def on_message(msg):
        if state["t0"] is None:
            state["t0"] = time.perf_counter()
        state["count"] += 1
        if state["count"] >= n // 4096 * 4096:
            done.set()

    r = Receiver(name, message_deserializer=lambda b: b.read_bytes(), message_length=size,
                 max_queued_messages=1024, on_message=on_message)
    ready.set()
    done.wait(120)
    elapsed = time.perf_counter() - state["t0"]
    r.close()
    results.put({"rate": (state["count"] - 1) / elapsed})


def _w_cywhip_array(role, p, ready, results, shared):
    import numpy as np
    from cywhip import Receiver, Sender
    name, n, cap = p["name"], p["count"], p.get("capacity", 65536)
    dt = np.dtype([("seq", "<i8"), ("a", "<i8"), ("b", "<i8"), ("c", "<i8")])
    if role == "producer":
        arr = np.zeros(min(n, 1 << 20), dt)
        ready.wait(60)
        with Sender(name, message_type=dt, max_queued_messages=cap) as s:
            left = n
            while left:
                k = min(left, len(arr))
                s.send_array(arr[:k])
                left -= k
        return
    out = np.empty(65536, dt)
    with Receiver(name, message_type=dt, max_queued_messages=cap) as r:
        ready.set()
        got = r.recv_into(out, timeout=60)
        t0 = time.perf_counter()
        while got < n:
            got += r.recv_into(out)
        results.put({"rate": (n - 1) / (time.perf_counter() - t0)})


def _w_cywhip_pingpong(role, p, ready, results, shared):
    from cywhip import Receiver, Sender
    name, n, spin = p["name"], p["count"], p["spin"]
    a, b = name + "-a", name + "-b"
    msg = b"x" * MESSAGE
    if role == "producer":      # the pinging side
        ready.wait(60)
        with Sender(a, message_length=MESSAGE, max_queued_messages=16, spin_time=spin) as s, \
                Receiver(b, message_length=MESSAGE, max_queued_messages=16, spin_time=spin) as r:
            send, recv, clock = s.send, r.recv, time.perf_counter_ns
            rtts = [0] * n
            for _ in range(min(1000, n)):       # warm up
                send(msg)
                recv()
            for i in range(n):
                t0 = clock()
                send(msg)
                recv()
                rtts[i] = clock() - t0
        p50, p99 = _percentiles(rtts)
        results.put({"p50_us": p50 / 1000, "p99_us": p99 / 1000})
        return
    with Receiver(a, message_length=MESSAGE, max_queued_messages=16, spin_time=spin) as r, \
            Sender(b, message_length=MESSAGE, max_queued_messages=16, spin_time=spin) as s:
        ready.set()
        send, recv = s.send, r.recv
        for _ in range(n + min(1000, n)):
            send(recv(timeout=60))


def _w_cywhip_wakeup(role, p, ready, results, shared):
    """A receiver idle between messages: CPU while idle, and how late it wakes."""
    from cywhip import Receiver, Sender
    name, n, idle = p["name"], p["count"], p["idle"]
    if role == "producer":
        ready.wait(60)
        with Sender(name, message_length=16, max_queued_messages=16) as s:
            for _ in range(n):
                time.sleep(idle)
                s.send(time.perf_counter_ns().to_bytes(8, "little"))
        return
    with Receiver(name, message_length=16, max_queued_messages=16) as r:
        ready.set()
        lat = []
        for _ in range(n):
            sent = int.from_bytes(r.recv(timeout=60), "little")
            lat.append(time.perf_counter_ns() - sent)
        p50, p99 = _percentiles(lat)
        results.put({"p50_us": p50 / 1000, "p99_us": p99 / 1000})


def _w_cywhip_idle(role, p, ready, results, shared):
    from cywhip import Receiver, ReceiveTimeout
    if role == "producer":
        return
    with Receiver(p["name"], message_length=16, max_queued_messages=16) as r:
        ready.set()
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            r.recv(timeout=p["seconds"])
        except ReceiveTimeout:
            pass
        results.put({"cpu_percent": 100 * (time.process_time() - cpu) / (time.perf_counter() - wall)})


def _w_queue(role, p, ready, results, shared):
    """multiprocessing.Queue, or faster_fifo.Queue (same interface), one put/get per message."""
    q = shared
    n, size, batch = p["count"], p["size"], p.get("batch", False)
    if role == "producer":
        msg = b"x" * size
        ready.wait(60)
        if batch:
            chunk = [msg] * 1024
            for _ in range(n // 1024):
                q.put_many(chunk, timeout=60)
        else:
            put = q.put
            for _ in range(n):
                put(msg)
        return
    ready.set()
    if batch:
        got = len(q.get_many(timeout=60, max_messages_to_get=4096))
        t0 = time.perf_counter()
        while got < n // 1024 * 1024:
            got += len(q.get_many(timeout=60, max_messages_to_get=4096))
        results.put({"rate": (got - 1) / (time.perf_counter() - t0)})
        return
    results.put(_timed_receive(q.get, n, True, 60))


def _w_pipe(role, p, ready, results, shared):
    recv_end, send_end = shared
    n, size = p["count"], p["size"]
    if role == "producer":
        msg = b"x" * size
        ready.wait(60)
        send = send_end.send_bytes
        for _ in range(n):
            send(msg)
        return
    ready.set()
    results.put(_timed_receive(recv_end.recv_bytes, n))


def _w_zmq(role, p, ready, results, shared):
    import zmq
    n, size, addr = p["count"], p["size"], f"ipc:///tmp/{p['name']}.zmq"
    ctx = zmq.Context()
    try:
        if role == "producer":
            sock = ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.SNDHWM, 100_000)
            ready.wait(60)
            sock.connect(addr)
            msg = b"x" * size
            send = sock.send
            for _ in range(n):
                send(msg, copy=True)
            sock.close(linger=10_000)
            return
        sock = ctx.socket(zmq.PULL)
        sock.setsockopt(zmq.RCVHWM, 100_000)
        sock.bind(addr)
        ready.set()
        results.put(_timed_receive(sock.recv, n))
        sock.close(linger=0)
        try:
            os.unlink(addr[len("ipc://"):])
        except FileNotFoundError:
            pass
    finally:
        ctx.term()


def _w_cloudtoid(role, p, ready, results, shared):
    import cloudtoid_interprocess as ci
    n, size, batch, name = p["count"], p["size"], p.get("batch", False), p["name"]
    capacity = 1 << 20
    if role == "producer":
        msg = b"x" * size
        ready.wait(60)
        with ci.Publisher(name, capacity, path=p["dir"]) as pub:
            if batch:
                chunk = [msg] * 4096
                left = n
                while left:
                    sent = pub.try_send_batch(chunk[:min(left, 4096)])
                    left -= sent
            else:
                send = pub.try_send
                left = n
                while left:
                    if send(msg):
                        left -= 1
        return
    with ci.Subscriber(name, capacity, path=p["dir"]) as sub:
        ready.set()
        results.put(_timed_receive(sub.receive, n, 60))


def _w_iceoryx2_pingpong(role, p, ready, results, shared):
    import ctypes
    import iceoryx2 as iox2

    class Msg(ctypes.Structure):
        _fields_ = [("seq", ctypes.c_int64), ("pad", ctypes.c_uint8 * (MESSAGE - 8))]

    n, name = p["count"], p["name"]
    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)

    def service(suffix):
        return node.service_builder(iox2.ServiceName.new(f"{name}/{suffix}")) \
            .publish_subscribe(Msg).open_or_create()

    ping, pong = service("ping"), service("pong")
    if role == "producer":
        pub, sub = ping.publisher_builder().create(), pong.subscriber_builder().create()
        ready.wait(60)
        time.sleep(0.2)  # let the echo side's ports connect
        clock = time.perf_counter_ns
        rtts = [0] * n
        for i in range(n + min(1000, n)):
            t0 = clock()
            sample = pub.loan_uninit().write_payload(Msg(seq=i))
            sample.send()
            while True:                      # busy polling, iceoryx2's fastest mode
                got = sub.receive()
                if got is not None:
                    break
            if i >= min(1000, n):
                rtts[i - min(1000, n)] = clock() - t0
        p50, p99 = _percentiles(rtts)
        results.put({"p50_us": p50 / 1000, "p99_us": p99 / 1000})
        return
    pub, sub = pong.publisher_builder().create(), ping.subscriber_builder().create()
    ready.set()
    for i in range(n + min(1000, n)):
        while True:
            got = sub.receive()
            if got is not None:
                break
        seq = got.payload().contents.seq
        del got
        pub.loan_uninit().write_payload(Msg(seq=seq)).send()


def _w_iceoryx2_stream(role, p, ready, results, shared):
    """iceoryx2 publish-subscribe of 32-byte ctypes records, nothing dropped: the publisher
    retries while the subscriber's buffer is full, the subscriber busy-polls."""
    import ctypes
    import iceoryx2 as iox2

    class Msg(ctypes.Structure):
        _fields_ = [("seq", ctypes.c_int64), ("pad", ctypes.c_uint8 * (MESSAGE - 8))]

    n, name = p["count"], p["name"]
    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    service = node.service_builder(iox2.ServiceName.new(name)).publish_subscribe(Msg) \
        .enable_safe_overflow(False).subscriber_max_buffer_size(1024).open_or_create()
    if role == "producer":
        pub = service.publisher_builder() \
            .backpressure_strategy(iox2.BackpressureStrategy.RetryUntilDelivered).create()
        ready.wait(60)
        time.sleep(0.2)  # let the subscriber's port connect
        for i in range(n):
            pub.loan_uninit().write_payload(Msg(seq=i)).send()
        return
    sub = service.subscriber_builder().buffer_size(1024).create()
    ready.set()

    def receive():
        while True:
            sample = sub.receive()
            if sample is not None:
                return sample

    results.put(_timed_receive(receive, n))


def _w_floor_ring(role, p, ready, results, shared):
    from cywhip import _floor
    size, n = p["size"], p["count"]
    if role == "producer":
        ready.wait(60)
    shm = _Shm(p["name"], _floor.ring_bytes(size), create=(role == "consumer"))
    try:
        if role == "producer":
            _floor.ring_send(shm.map, n, size)
            return
        ready.set()
        seconds = _floor.ring_recv(shm.map, n, size)
        results.put({"rate": n / seconds})
    finally:
        shm.close()


def _w_floor_futex(role, p, ready, results, shared):
    from array import array
    from cywhip import _floor
    n = p["count"]
    if role == "producer":
        ready.wait(60)
    shm = _Shm(p["name"], 4096, create=(role == "consumer"))
    try:
        if role == "producer":
            rtt = array("q", bytes(8 * n))
            _floor.futex_pingpong(shm.map, n, True, rtt)
            p50, p99 = _percentiles(rtt.tolist())
            results.put({"p50_us": p50 / 1000, "p99_us": p99 / 1000})
            return
        ready.set()
        _floor.futex_pingpong(shm.map, n, False)
    finally:
        shm.close()


# ----------------------------------------------------------------- running

def run_pair(worker, params, shared=None, timeout=300):
    """Run worker as consumer and producer in two spawned processes; return the consumer's or
    producer's result (whichever reports)."""
    ready = SPAWN.Event()
    results = SPAWN.SimpleQueue()
    procs = [SPAWN.Process(target=worker, args=(role, params, ready, results, shared), daemon=True)
             for role in ("consumer", "producer")]
    for proc in procs:
        proc.start()
    try:
        deadline = time.monotonic() + timeout
        for proc in procs:
            proc.join(max(0.1, deadline - time.monotonic()))
        if any(proc.is_alive() for proc in procs) or any(proc.exitcode for proc in procs):
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


def workloads(quick=False):
    """The benchmark table: (group, label, system, runner, unit, figure key, higher_is_better)."""
    n = 200_000 if quick else 2_000_000
    rt = 20_000 if quick else 500_000        # round trips: 2 messages each
    blocking_rt = 5_000 if quick else 500_000
    rows = []

    def add(group, system, label, unit, key, fn, needs=None, versus=None):
        # versus: part of the label of the cywhip row a peer is compared with (default: the first).
        rows.append({"group": group, "system": system, "label": label, "unit": unit, "key": key,
                     "run": fn, "needs": needs, "versus": versus})

    single = "single send/recv, 32 B"
    add(single, "cywhip", "send/recv", "msg/s", "rate",
        lambda: run_pair(_w_cywhip_stream, {"name": _name("s"), "count": n, "size": MESSAGE, "mode": "single"}))
    add(single, "multiprocessing.Queue", "put/get", "msg/s", "rate",
        lambda: run_pair(_w_queue, {"count": max(n // 10, 100_000) if quick else 1_000_000, "size": MESSAGE},
                         shared=SPAWN.Queue()))
    add(single, "multiprocessing.Pipe", "send_bytes/recv_bytes", "msg/s", "rate",
        lambda: run_pair(_w_pipe, {"count": n // 2, "size": MESSAGE}, shared=SPAWN.Pipe(duplex=False)))
    add(single, "faster-fifo", "put/get", "msg/s", "rate",
        lambda: run_pair(_w_queue, {"count": n // 2, "size": MESSAGE}, shared=_faster_fifo()),
        needs="faster_fifo")
    add(single, "pyzmq ipc://", "PUSH/PULL send/recv", "msg/s", "rate",
        lambda: run_pair(_w_zmq, {"name": _name("z"), "count": n // 2, "size": MESSAGE}), needs="zmq")
    add(single, "cloudtoid-interprocess", "try_send/receive", "msg/s", "rate",
        lambda: _in_dir(lambda d: run_pair(_w_cloudtoid, {"name": _name("c"), "dir": d, "count": n,
                                                           "size": MESSAGE})),
        needs="cloudtoid_interprocess")

    add(single, "iceoryx2", "loan/send + busy-poll receive", "msg/s", "rate",
        lambda: run_pair(_w_iceoryx2_stream, {"name": _name("j"), "count": n // 4}), needs="iceoryx2")

    batch = "batches, 32 B"
    add(batch, "cywhip", "send_many/recv_many", "msg/s", "rate",
        lambda: run_pair(_w_cywhip_stream, {"name": _name("m"), "count": n * 2, "size": MESSAGE, "mode": "many",
                                            "capacity": BATCH_RING}))
    add(batch, "cloudtoid-interprocess", "try_send_batch/receive", "msg/s", "rate",
        lambda: _in_dir(lambda d: run_pair(_w_cloudtoid, {"name": _name("c"), "dir": d, "count": n,
                                                           "size": MESSAGE, "batch": True})),
        needs="cloudtoid_interprocess", versus="send_many")
    add(batch, "faster-fifo", "put_many/get_many", "msg/s", "rate",
        lambda: run_pair(_w_queue, {"count": n, "size": MESSAGE, "batch": True}, shared=_faster_fifo()),
        needs="faster_fifo", versus="send_many")
    add(batch, "cywhip", "on_message, trivial (de)serializer", "msg/s", "rate",
        lambda: run_pair(_w_cywhip_callback, {"name": _name("o"), "count": n, "size": MESSAGE}))

    typed = "typed records, 32 B"
    add(typed, "cywhip", "send_array/recv_into", "rec/s", "rate",
        lambda: run_pair(_w_cywhip_array, {"name": _name("t"), "count": n * 10}), needs="numpy")
    add(typed, "raw C ring (floor)", "memcpy ring, spinning", "rec/s", "rate",
        lambda: run_pair(_w_floor_ring, {"name": "cywhip-" + _name("f"), "count": n * 10, "size": MESSAGE}))

    rtt = "round trip, 32 B"
    add(rtt, "cywhip", "send+recv, default wait (p50)", "µs", "p50_us",
        lambda: run_pair(_w_cywhip_pingpong, {"name": _name("p"), "count": rt, "spin": 50e-6}))
    add(rtt, "iceoryx2", "loan/send + busy-poll receive (p50)", "µs", "p50_us",
        lambda: run_pair(_w_iceoryx2_pingpong, {"name": _name("i"), "count": rt}), needs="iceoryx2",
        versus="default")
    add(rtt, "cywhip", "send+recv, spin_time=0 (p50)", "µs", "p50_us",
        lambda: run_pair(_w_cywhip_pingpong, {"name": _name("q"), "count": blocking_rt, "spin": 0.0}))
    add(rtt, "futex ping-pong (floor)", "pure blocking (p50)", "µs", "p50_us",
        lambda: run_pair(_w_floor_futex, {"name": "cywhip-" + _name("x"), "count": blocking_rt}),
        versus="spin_time=0")

    big = "1 MiB messages"
    add(big, "cywhip", "send/recv", "GB/s", "rate",
        lambda: _gbps(run_pair(_w_cywhip_stream, {"name": _name("b"), "count": 500 if quick else 4000,
                                                   "size": 1 << 20, "mode": "single", "capacity": 16}), 1 << 20))
    add(big, "multiprocessing.Pipe", "send_bytes/recv_bytes", "GB/s", "rate",
        lambda: _gbps(run_pair(_w_pipe, {"count": 200 if quick else 2000, "size": 1 << 20},
                               shared=SPAWN.Pipe(duplex=False)), 1 << 20))

    idle = "idle receiver"
    add(idle, "cywhip", "CPU of a receiver idle 2 s", "% core", "cpu_percent",
        lambda: run_pair(_w_cywhip_idle, {"name": _name("d"), "seconds": 2.0}))
    add(idle, "cywhip", "wake-up after 50 ms idle (p50)", "µs", "p50_us",
        lambda: run_pair(_w_cywhip_wakeup, {"name": _name("w"), "count": 20 if quick else 100, "idle": 0.05}))
    return rows


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


def _faster_fifo():
    import faster_fifo
    return faster_fifo.Queue(max_size_bytes=64 * 1024 * 1024)


# Targets of the benchmarks issue: (description, cywhip row, peer row, test on cywhip ÷ peer).
# A row is (group, system, part of its label).
TARGETS = [
    ("single send/recv ≥ 3× cloudtoid try_send/receive", ("single send/recv, 32 B", "cywhip", "send/recv"),
     ("single send/recv, 32 B", "cloudtoid-interprocess", ""), lambda r: r >= 3),
    ("single send/recv ≥ 50× multiprocessing.Queue", ("single send/recv, 32 B", "cywhip", "send/recv"),
     ("single send/recv, 32 B", "multiprocessing.Queue", ""), lambda r: r >= 50),
    ("send_many/recv_many ≥ 10× cloudtoid try_send_batch", ("batches, 32 B", "cywhip", "send_many"),
     ("batches, 32 B", "cloudtoid-interprocess", ""), lambda r: r >= 10),
    ("send_array/recv_into ≥ ½ raw C ring", ("typed records, 32 B", "cywhip", ""),
     ("typed records, 32 B", "raw C ring (floor)", ""), lambda r: r >= 0.5),
    ("round trip p50 ≤ ⅕ iceoryx2 busy-poll", ("round trip, 32 B", "cywhip", "default"),
     ("round trip, 32 B", "iceoryx2", ""), lambda r: r <= 0.2),
    ("blocking round trip p50 ≤ 1.2× futex floor", ("round trip, 32 B", "cywhip", "spin_time=0"),
     ("round trip, 32 B", "futex ping-pong (floor)", ""), lambda r: r <= 1.2),
]


def run(quick=False, progress=None):
    """Run every workload; return the rows with their figures (or why they were skipped)."""
    out = []
    for row in workloads(quick):
        rec = {k: v for k, v in row.items() if k != "run"}
        if row["needs"] and not _available(row["needs"]):
            rec["skipped"] = f"{row['needs']} is not installed (pip install -e '.[bench]')"
        else:
            if progress:
                progress(f"{row['group']}: {row['system']} {row['label']} ...")
            t0 = time.perf_counter()
            try:
                values = [row["run"]()[row["key"]]]
                # Short figures are taken best of three: this is a shared machine, and noise
                # only ever makes a run slower.
                if not quick and time.perf_counter() - t0 < 5:
                    values += [row["run"]()[row["key"]] for _ in range(2)]
                rec["value"] = max(values) if row["unit"] in HIGHER_IS_BETTER else min(values)
                rec["runs"] = len(values)
            except Exception as exc:      # a peer that breaks must not sink the table
                rec["skipped"] = f"failed: {exc}"
            rec["seconds"] = round(time.perf_counter() - t0, 1)
        out.append(rec)
    return out


def _find(rows, group, system, label_part=""):
    for r in rows:
        if r["group"] == group and r["system"] == system and label_part in r["label"] and "value" in r:
            return r
    return None


def targets(rows):
    """Each target with the measured figure (a ratio, or GB/s, or % of a core) and whether it holds."""
    out = []
    for desc, mine, peer, ok in TARGETS:
        a, b = _find(rows, *mine), _find(rows, *peer)
        ratio = a["value"] / b["value"] if a is not None and b is not None else None
        out.append({"target": desc, "measured": ratio, "met": None if ratio is None else bool(ok(ratio))})
    for desc, row, ok in (("1 MiB messages ≥ 5 GB/s", ("1 MiB messages", "cywhip", ""), lambda v: v >= 5),
                          ("idle receiver < 1% of a core", ("idle receiver", "cywhip", "CPU"), lambda v: v < 1)):
        r = _find(rows, *row)
        out.append({"target": desc, "measured": r and r["value"], "met": None if r is None else bool(ok(r["value"]))})
    return out


def _fmt(value, unit):
    if unit in ("msg/s", "rec/s"):
        return f"{value / 1e6:,.2f} M {unit}"
    if unit == "GB/s":
        return f"{value:.2f} GB/s"
    if unit == "µs":
        return f"{value:.2f} µs"
    return f"{value:.2f} {unit}"


def table(rows):
    """The results as a Markdown table, with cywhip's ratio to each peer in its group."""
    lines = ["| workload | system | API | figure | cywhip ÷ this |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        if "value" not in r:
            lines.append(f"| {r['group']} | {r['system']} | {r['label']} | skipped: {r['skipped']} | |")
            continue
        ratio = ""
        if r["system"] != "cywhip":
            mine = _find(rows, r["group"], "cywhip", r["versus"] or "")
            if mine is not None:
                ratio = f"{mine['value'] / r['value']:.2f}×"
        lines.append(f"| {r['group']} | {r['system']} | {r['label']} | {_fmt(r['value'], r['unit'])} | {ratio} |")
    return "\n".join(lines)


def machine():
    import platform
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, "
            f"Python {platform.python_version()}")


def main(argv):
    import argparse
    parser = argparse.ArgumentParser(prog="python -m cywhip bench",
                                     description="cywhip against its peers and raw C floors, "
                                                 "each workload in two processes")
    parser.add_argument("--quick", action="store_true", help="fewer messages per figure (a smoke run)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    rows = run(args.quick, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    checks = targets(rows)
    if args.json:
        print(json.dumps({"machine": machine(), "rows": rows, "targets": checks}, indent=1))
        return 0
    print(f"\nMachine: {machine()}\n")
    print(table(rows))
    print("\n| target | measured | met |\n| --- | --- | --- |")
    for t in checks:
        measured = "n/a" if t["measured"] is None else f"{t['measured']:.2f}"
        met = "n/a" if t["met"] is None else ("yes" if t["met"] else "no")
        print(f"| {t['target']} | {measured} | {met} |")
    return 0

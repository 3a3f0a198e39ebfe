"""Killing one of two producers, beside the peers: who hangs, who loses what, how long the
consumer stalls.

Each run: a consumer (this process) and two producer processes, each sending numbered 32-byte
messages one call per message and recording, after each call returns, how many it has sent
("confirmed").  One second into the stream producer A is SIGKILLed; a second later producer B
is told to stop.  The run then checks: did B stop and the consumer get all of B's confirmed
messages (else: a hang), how many confirmed messages of either producer never arrived, and the
consumer's longest gap between two messages in the second after the kill against its longest
in the second before it.
"""
import os
import queue
import signal
import struct
import time

from cywhip._bench.common import SPAWN, _available, _name

HEAD = struct.Struct("<IQ")
SIZE = 32
# Seconds without a message, with messages still owed, after which the consumer counts a hang.
HANG_SECONDS = 3.0


def _payload(tag, i):
    return HEAD.pack(tag, i).ljust(SIZE, b".")


# ----------------------------------------------------------- the systems' two ends
# consumer(name, shared) -> (recv(timeout) -> bytes or None, close());  producer(name, shared) -> send(bytes)

def _cywhip_consumer(name, shared):
    from cywhip import Receiver, ReceiveTimeout
    r = Receiver(name, message_length=SIZE, max_queued_messages=1024, max_senders=2)

    def recv(timeout):
        try:
            return r.recv(timeout=timeout)
        except ReceiveTimeout:
            return None

    def close():
        # Whether the killed producer left a claimed, unpublished slot the receiver stepped over.
        _notes["hole_skipped"] = r._skipped[0]
        r.close()
    return recv, close


_notes = {}


def _cywhip_producer(name, shared):
    from cywhip import Sender
    return Sender(name, message_length=SIZE, max_queued_messages=1024, max_senders=2).send


def _cykit_consumer(name, shared):
    from cykit.ipc import Consumer, ShmMode
    c = Consumer(name, block_count=1024, block_size=64, mode=ShmMode.MPSC)

    def recv(timeout):
        end = time.monotonic() + timeout
        while True:
            try:
                msg = c.try_pop()
            except Exception:
                msg = None
            if msg:
                return msg
            if time.monotonic() >= end:
                return None
            time.sleep(0.00005)
    return recv, lambda: None


def _cykit_producer(name, shared):
    from cykit.ipc import MsgKind, Producer, ShmMode
    return Producer(name, block_count=1024, block_size=64, mode=ShmMode.MPSC, msg_kind=MsgKind.BYTES).push


def _queue_consumer(name, shared):
    def recv(timeout):
        try:
            return shared.get(timeout=timeout)
        except queue.Empty:
            return None
    return recv, lambda: None


def _queue_producer(name, shared):
    return shared.put


def _cloudtoid_consumer(name, shared):
    import cloudtoid_interprocess as ci
    sub = ci.Subscriber(name, 1 << 20, path="/dev/shm")
    return (lambda timeout: sub.receive(timeout)), sub.close if hasattr(sub, "close") else (lambda: None)


def _cloudtoid_producer(name, shared):
    import cloudtoid_interprocess as ci
    pub = ci.Publisher(name, 1 << 20, path="/dev/shm")

    def send(msg):
        while not pub.try_send(msg):
            pass
    return send


def _zmq_consumer(name, shared):
    import zmq
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.bind(f"ipc:///tmp/{name}.zmq")

    def recv(timeout):
        if sock.poll(int(timeout * 1000)):
            return sock.recv()
        return None

    def close():
        sock.close(linger=0)
        ctx.term()
        try:
            os.unlink(f"/tmp/{name}.zmq")
        except FileNotFoundError:
            pass
    return recv, close


def _zmq_producer(name, shared):
    import zmq
    sock = zmq.Context().socket(zmq.PUSH)
    sock.connect(f"ipc:///tmp/{name}.zmq")
    return sock.send


def _faster_fifo_queue():
    import faster_fifo
    return faster_fifo.Queue(max_size_bytes=1 << 20)


# (system, module it needs, consumer, producer, shared object factory)
SYSTEMS = [
    ("cywhip (max_senders=2)", None, _cywhip_consumer, _cywhip_producer, None),
    ("cykit 0.1.0 MPSC", "cykit", _cykit_consumer, _cykit_producer, None),
    ("cloudtoid-interprocess", "cloudtoid_interprocess", _cloudtoid_consumer, _cloudtoid_producer, None),
    ("pyzmq ipc:// PUSH/PULL", "zmq", _zmq_consumer, _zmq_producer, None),
    ("faster-fifo", "faster_fifo", _queue_consumer, _queue_producer, _faster_fifo_queue),
    ("multiprocessing.Queue", None, _queue_consumer, _queue_producer, lambda: SPAWN.Queue(maxsize=1024)),
]


def _produce(make, name, shared, tag, confirmed, stop):
    send = make(name, shared)
    i = 0
    confirmed[2 + tag] = 1          # open
    while True:
        send(_payload(tag, i))
        i += 1
        confirmed[tag] = i
        if (i & 63) == 0 and stop.value:
            return


def crash_run(system, seconds=1.0):
    """One run: returns a dict of what happened (see the module's docstring)."""
    _, _, make_consumer, make_producer, make_shared = [s for s in SYSTEMS if s[0] == system][0]
    name = _name("crash")
    shared = make_shared() if make_shared else None
    confirmed = SPAWN.Array("q", 4, lock=False)
    stop = SPAWN.Value("b", 0, lock=False)
    recv, close = make_consumer(name, shared)
    procs = [SPAWN.Process(target=_produce, args=(make_producer, name, shared, tag, confirmed, stop), daemon=True)
             for tag in (0, 1)]
    out = {"hang": False, "lost": 0, "survivor_complete": False}
    got = [0, 0]
    order_errors = 0
    times = []
    try:
        for p in procs:
            p.start()
        deadline = time.monotonic() + 30
        while not (confirmed[2] and confirmed[3]) and time.monotonic() < deadline:
            time.sleep(0.001)
        kill_at = stop_at = None
        last = time.monotonic()
        while True:
            msg = recv(0.05)
            now = time.monotonic()
            if msg is not None:
                tag, i = HEAD.unpack_from(msg)
                if tag > 1 or i != got[tag]:
                    order_errors += 1
                got[tag] = i + 1 if tag <= 1 else got[tag]
                times.append(now)
                last = now
                if kill_at is None and len(times) == 1:
                    kill_at = now + seconds
            if kill_at is not None and stop_at is None:
                if now >= kill_at:
                    os.kill(procs[0].pid, signal.SIGKILL)
                    kill_time = now
                    stop_at = now + seconds
                    # The consumer's own time in kill() is not a stall of the channel's.
                    times.append(time.monotonic())
            if stop_at is not None and now >= stop_at and not stop.value:
                stop.value = 1      # B stops after its current batch of 64; keep receiving meanwhile
            if stop.value and not procs[1].is_alive():
                # B is done: its confirmed messages must all be here; A's missing ones are lost.
                if got[1] >= confirmed[1] and (got[0] >= confirmed[0] or now - last > 0.5):
                    break
            elif stop.value and now - stop_at > 10:
                out["hang"] = "producer B did not stop"
                break
            if now - last > HANG_SECONDS:
                out["hang"] = "the consumer got nothing for 3 s with messages owed"
                break
        out["lost"] = max(0, confirmed[0] - got[0]) + max(0, confirmed[1] - got[1])
        out["survivor_complete"] = not out["hang"] and got[1] == confirmed[1]
        out["order_errors"] = order_errors
        if stop_at is not None:
            before = [b - a for a, b in zip(times, times[1:]) if kill_time - seconds <= a and b < kill_time]
            after = [b - a for a, b in zip(times, times[1:]) if b >= kill_time and a < kill_time + seconds]
            out["gap_before_ms"] = 1000 * max(before, default=0)
            out["stall_after_ms"] = 1000 * max(after, default=0)
        out["messages"] = sum(got)
        return out
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join()
        try:
            _notes.clear()
            close()
            out.update(_notes)
        except Exception:
            pass
        from cywhip import unlink
        unlink(name, missing_ok=True)
        # Files some peers leave behind when a producer is killed.
        for entry in os.listdir("/dev/shm"):
            if name in entry:
                try:
                    os.unlink(os.path.join("/dev/shm", entry))
                except OSError:
                    pass


def crash_table(runs=3, progress=None):
    """Run every installed system `runs` times; return one summary row per system."""
    rows = []
    for system, needs, *_ in SYSTEMS:
        if needs and not _available(needs):
            rows.append({"system": system, "skipped": f"{needs} is not installed"})
            continue
        results = []
        for k in range(runs):
            if progress:
                progress(f"crash: {system}, run {k + 1} of {runs} ...")
            try:
                results.append(crash_run(system))
            except Exception as exc:
                results.append({"hang": f"failed: {exc}", "lost": 0, "survivor_complete": False})
        rows.append({
            "system": system, "runs": runs,
            "hangs": sum(1 for r in results if r["hang"]),
            "lost": sum(r["lost"] for r in results),
            "survivor_complete": sum(1 for r in results if r["survivor_complete"]),
            "stall_after_ms": max((r.get("stall_after_ms", 0) for r in results), default=0),
            "gap_before_ms": max((r.get("gap_before_ms", 0) for r in results), default=0),
            "order_errors": sum(r.get("order_errors", 0) for r in results),
        })
    return rows


def crash_markdown(rows):
    lines = ["| system | runs | hangs | confirmed messages lost | survivor's stream complete | "
             "longest stall after the kill | longest gap in the second before |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['system']} | skipped: {r['skipped']} | | | | | |")
            continue
        lines.append(f"| {r['system']} | {r['runs']} | {r['hangs']} | {r['lost']} | "
                     f"{r['survivor_complete']} of {r['runs']} | {r['stall_after_ms']:.2f} ms | "
                     f"{r['gap_before_ms']:.2f} ms |")
    return "\n".join(lines)

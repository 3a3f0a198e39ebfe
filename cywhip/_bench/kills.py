"""Killing one of two producers, and one of two consumers, beside the peers: who hangs, who
loses what, how long the others stall.

Killing a producer, each run: a consumer process and two producer processes, each producer
sending numbered 32-byte messages one call per message and recording, after each call returns,
how many it has sent ("confirmed").  One second into the stream producer A is SIGKILLed; a
second later producer B is told to stop.  The run then checks: did B stop and the consumer get
all of B's confirmed messages (else: a hang), how many confirmed messages of either producer
never arrived, and the consumer's longest gap between two messages in the second after the kill
against its longest in the second before it.  The consumer records what it gets in shared
memory and this process only watches: a consumer stuck in a peer's receive call (a lock the
killed producer held) is a hang to report, not one of the bench.  Killing a consumer: see
consumer_crash_run().
"""
import os
import queue
import signal
import struct
import time
from functools import partial

from cywhip._bench.common import SPAWN, _available, _name, _remove_leftovers

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


def _cykit_recv(name, mode):
    """recv(timeout), polling a cykit Consumer of shared-memory mode `mode` ("MPSC", "SPMC"), and
    its close."""
    from cykit.ipc import Consumer, ShmMode
    c = Consumer(name, block_count=1024, block_size=64, mode=getattr(ShmMode, mode))

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


def _cykit_push(name, mode):
    """The push of a cykit Producer of shared-memory mode `mode`."""
    from cykit.ipc import MsgKind, Producer, ShmMode
    return Producer(name, block_count=1024, block_size=64, mode=getattr(ShmMode, mode),
                    msg_kind=MsgKind.BYTES).push


def _cykit_consumer(name, shared):
    return _cykit_recv(name, "MPSC")


def _cykit_producer(name, shared):
    return _cykit_push(name, "MPSC")


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


def _polled(take):
    """recv(timeout) over a take() that answers None when there is nothing: polled every 50 µs."""
    def recv(timeout):
        end = time.monotonic() + timeout
        while True:
            msg = take()
            if msg is not None:
                return msg
            if time.monotonic() >= end:
                return None
            time.sleep(0.00005)
    return recv


def _counter():
    return SPAWN.Value("i", 0)


def _next(counter):
    """The next number from a shared counter: which producer (or consumer) this process is."""
    with counter.get_lock():
        counter.value += 1
        return counter.value - 1


def _subetha_mpsc_consumer(name, shared):
    import subetha
    _, consumer = subetha.mpsc_pool(f"/dev/shm/{name}-pool", 2, 1024)
    return _polled(consumer.pop), lambda: None


def _subetha_mpsc_producer(name, shared):
    """Producer k of the pool (shared: a counter handing out k) pushes into its own ring,
    retrying while it is full."""
    import subetha
    producers, _ = subetha.mpsc_pool_open(f"/dev/shm/{name}-pool", 2, 1024)
    push = producers[_next(shared)].push

    def send(msg):
        while not push(msg):
            pass
    return send


KICKMSG_SUB_RING = 1024


def _kickmsg_region(name, subscribers):
    import kickmsg
    cfg = kickmsg.Config()
    cfg.max_subscribers = subscribers
    cfg.sub_ring_capacity = KICKMSG_SUB_RING
    cfg.pool_size = 4096
    cfg.max_payload_size = 64
    return kickmsg.SharedRegion.create_or_open("/" + name, kickmsg.ChannelType.PubSub, cfg, "cywhip-bench")


def _kickmsg_subscriber(name, subscribers):
    """A Subscriber of the run's PubSub region (made by the first to come) and its blocking
    receive."""
    import kickmsg
    sub = kickmsg.Subscriber(_kickmsg_region(name, subscribers))
    return sub.receive, lambda: None


def _kickmsg_consumer(name, shared):
    return _kickmsg_subscriber(name, 1)


def _kickmsg_producer(name, shared):
    """A Publisher of the run's region; a send refused because the pool of slots is empty is
    retried (kickmsg never waits for a subscriber: a full subscriber ring is overwritten)."""
    import kickmsg
    send = kickmsg.Publisher(kickmsg.SharedRegion.open("/" + name)).send

    def publish(msg):
        while True:
            try:
                return send(msg)
            except BlockingIOError:
                pass
    return publish


def _zenoh_session(name, shm, listen=(), connect=()):
    import json
    import zenoh
    conf = zenoh.Config()
    conf.insert_json5("mode", '"peer"')
    conf.insert_json5("scouting/multicast/enabled", "false")
    conf.insert_json5("scouting/gossip/enabled", "false")
    conf.insert_json5("listen/endpoints", json.dumps([f"unixsock-stream//tmp/{name}-{i}.sock" for i in listen]))
    conf.insert_json5("connect/endpoints", json.dumps([f"unixsock-stream//tmp/{name}-{i}.sock" for i in connect]))
    conf.insert_json5("transport/shared_memory/enabled", json.dumps(shm))
    return zenoh.open(conf)


def _zenoh_subscriber(name, index, shm=False):
    """A Zenoh subscriber (FifoChannel) listening on a socket of its own: recv(timeout) polls."""
    import zenoh
    session = _zenoh_session(name, shm, listen=[index])
    sub = session.declare_subscriber(f"cywhip/crash/{name}", zenoh.handlers.FifoChannel(1024))
    try_recv = sub.try_recv

    def take():
        sample = try_recv()
        return None if sample is None else sample.payload.to_bytes()
    return _polled(take), session.close


def _zenoh_consumer(name, shared):
    return _zenoh_subscriber(name, 0)


def _zenoh_publisher(name, consumers, shm=False):
    """A Zenoh publisher (CongestionControl.BLOCK) connected to each subscriber's socket, once
    it matches a subscriber; put(bytes), or through a buffer allocated in shared memory."""
    import zenoh
    session = _zenoh_session(name, shm, connect=range(consumers))
    pub = session.declare_publisher(f"cywhip/crash/{name}", congestion_control=zenoh.CongestionControl.BLOCK)
    deadline = time.monotonic() + 10
    while not pub.matching_status and time.monotonic() < deadline:
        time.sleep(0.001)
    _zenoh_publisher.keep = session      # the session lives as long as the process
    if not shm:
        return pub.put
    import zenoh.shm as zshm
    provider = zshm.ShmProvider.default_backend(1 << 20)
    policy = zshm.BlockOn(zshm.GarbageCollect())

    def put(msg):
        buf = provider.alloc(len(msg), policy=policy)
        buf[:] = msg
        pub.put(buf)
    return put


def _zenoh_producer(name, shared):
    return _zenoh_publisher(name, 1)


# (system, module it needs, consumer, producer, shared object factory)
SYSTEMS = [
    ("cywhip (max_senders=2)", None, _cywhip_consumer, _cywhip_producer, None),
    ("cykit 0.1.0 MPSC", "cykit", _cykit_consumer, _cykit_producer, None),
    ("cloudtoid-interprocess", "cloudtoid_interprocess", _cloudtoid_consumer, _cloudtoid_producer, None),
    ("pyzmq ipc:// PUSH/PULL", "zmq", _zmq_consumer, _zmq_producer, None),
    ("faster-fifo", "faster_fifo", _queue_consumer, _queue_producer, _faster_fifo_queue),
    ("multiprocessing.Queue", None, _queue_consumer, _queue_producer, lambda: SPAWN.Queue(maxsize=1024)),
    ("SubEtha 0.6.0 mpsc_pool", "subetha", _subetha_mpsc_consumer, _subetha_mpsc_producer, _counter),
    ("kickmsg 0.9.2, 2 Publishers → 1 Subscriber", "kickmsg", _kickmsg_consumer, _kickmsg_producer, None),
    ("Zenoh 1.10.2, 2 publishers → 1 subscriber, plain", "zenoh", _zenoh_consumer, _zenoh_producer, None),
]
# Systems of the benchmark that have no two producers of one stream: (system, module, why).
NO_FANIN = [
    ("msgq 1.0", "msgq", "one publisher per endpoint: a second one takes it over (the first is refused)"),
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


def _consume(make, name, shared, index, rec, finish):
    """A consumer process: record the tag and number (tag << 40 | number) and the arrival time
    of each message it gets, then how many it has got and, per tag, the number after the last,
    until told to finish; then what its close() noted.  rec.busy is 1 from a receive call until
    what it returned is recorded: a consumer killed then may have got a message it did not
    record."""
    recv, close = make(name, shared, index)
    rec.opened.value = 1
    seen, times, count, last, busy = rec.seen, rec.times, rec.count, rec.last, rec.busy
    n, room = 0, len(seen)
    try:
        while not finish.value:
            busy.value = 1
            msg = recv(0.05)
            if msg is not None:
                tag, i = HEAD.unpack_from(msg)
                if n < room:
                    seen[n] = tag << 40 | i
                    times[n] = time.monotonic()
                n += 1
                count.value = n
                if tag < 2:
                    last[tag] = i + 1
            busy.value = 0
    finally:
        _notes.clear()
        close()
        rec.notes.put(dict(_notes))


class _Consumer:
    """One consumer process and what it records, in shared memory: it may die, or hang in a
    peer's receive call while this process watches."""

    def __init__(self, make, name, shared, index, finish, room=1 << 22):
        self.seen = SPAWN.RawArray("q", room)
        self.times = SPAWN.RawArray("d", room)
        self.count = SPAWN.Value("q", 0, lock=False)
        self.last = SPAWN.Array("q", 2, lock=False)
        self.opened = SPAWN.Value("b", 0, lock=False)
        self.busy = SPAWN.Value("b", 0, lock=False)
        self.notes = SPAWN.SimpleQueue()
        self.proc = SPAWN.Process(target=_consume, args=(make, name, shared, index, self, finish), daemon=True)

    def __getstate__(self):
        # What the consumer process needs (the Process object stays here).
        return {k: v for k, v in self.__dict__.items() if k != "proc"}

    def recorded(self):
        """The words recorded, in order of arrival."""
        return self.seen[:min(self.count.value, len(self.seen))]

    def overflowed(self):
        return self.count.value > len(self.seen)

    def start(self, deadline):
        """Start the process; return once it has opened its end."""
        self.proc.start()
        while not self.opened.value:
            if not self.proc.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("a consumer failed to open its end")
            time.sleep(0.001)

    def finish_notes(self, finish, wait):
        """Tell the process to finish; return what its close() noted ({} if it did not finish)."""
        finish.value = 1
        self.proc.join(wait)
        return {} if self.proc.is_alive() or self.notes.empty() else self.notes.get()


def _one(make, name, shared, index):
    """A make_consumer(name, shared) of the producer-kill table as make(name, shared, index)."""
    return make(name, shared)


def _gaps(times, kill_time, before, after):
    """The longest gap between two arrivals in the `before` seconds before kill_time, and in the
    `after` seconds from it (the first arrival after the kill counts from the last before), in ms."""
    b = [y - x for x, y in zip(times, times[1:]) if kill_time - before <= x and y < kill_time]
    a = [y - x for x, y in zip(times, times[1:]) if y >= kill_time and x < kill_time + after]
    return 1000 * max(b, default=0), 1000 * max(a, default=0)


def crash_run(system, seconds=1.0):
    """One run: returns a dict of what happened (see the module's docstring)."""
    _, _, make_consumer, make_producer, make_shared = [s for s in SYSTEMS if s[0] == system][0]
    name = _name("crash")
    shared = make_shared() if make_shared else None
    confirmed = SPAWN.Array("q", 4, lock=False)
    stop = SPAWN.Value("b", 0, lock=False)
    finish = SPAWN.Value("b", 0, lock=False)
    consumer = _Consumer(partial(_one, make_consumer), name, shared, 0, finish, room=1 << 23)
    procs = [SPAWN.Process(target=_produce, args=(make_producer, name, shared, tag, confirmed, stop), daemon=True)
             for tag in (0, 1)]
    out = {"hang": False, "lost": 0, "survivor_complete": False}
    try:
        deadline = time.monotonic() + 30
        consumer.start(deadline)
        for p in procs:
            p.start()
        while not (confirmed[2] and confirmed[3]) and time.monotonic() < deadline:
            time.sleep(0.001)
        kill_at = stop_at = kill_time = None
        last, last_count = time.monotonic(), 0
        got = consumer.last
        while True:
            time.sleep(0.001)
            now = time.monotonic()
            if consumer.count.value != last_count:
                last_count, last = consumer.count.value, now
                if kill_at is None:
                    kill_at = now + seconds
            if kill_at is not None and stop_at is None and now >= kill_at:
                os.kill(procs[0].pid, signal.SIGKILL)
                kill_time = now
                stop_at = now + seconds
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
                out["hang"] = f"the consumer got nothing for {HANG_SECONDS:g} s with messages owed"
                break
        out.update(consumer.finish_notes(finish, 1.0 if out["hang"] else HANG_SECONDS))
        if consumer.proc.is_alive():
            out["hang"] = out["hang"] or "the consumer did not finish"
        got, order_errors = [0, 0], 0
        seen = [set(), set()]
        for word in consumer.recorded():
            tag, i = word >> 40, word & ((1 << 40) - 1)
            if tag > 1 or i != got[tag]:
                order_errors += 1
            if tag <= 1:
                got[tag] = i + 1
                seen[tag].add(i)
        # Lost: confirmed messages that never arrived, a gap in a stream (a system that
        # overwrites) as well as its end.
        arrived = [sum(1 for i in seen[t] if i < confirmed[t]) for t in (0, 1)]
        out["lost"] = (confirmed[0] - arrived[0]) + (confirmed[1] - arrived[1])
        out["survivor_complete"] = (not out["hang"] and arrived[1] == confirmed[1] == got[1]
                                    and not consumer.overflowed())
        out["order_errors"] = order_errors
        if kill_time is not None:
            out["gap_before_ms"], out["stall_after_ms"] = _gaps(consumer.times[:len(consumer.recorded())],
                                                                kill_time, seconds, seconds)
        out["messages"] = sum(got)
        return out
    finally:
        for p in procs + [consumer.proc]:
            if p.is_alive():
                p.kill()
            if p.pid is not None:
                p.join()
        _clean_up(name, system)


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
                results.append(_segments_removed(system, partial(crash_run, system)))
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
    for system, needs, why in NO_FANIN:
        rows.append({"system": system, "skipped": why if _available(needs) else f"{needs} is not installed"})
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


# ================================================= killing one of two consumers
# Each run: a producer process sending numbered 32-byte messages one call per message (recording
# how many calls returned: "confirmed") and two consumer processes, A and B, each recording the
# number and arrival time of every message it gets, in shared memory (a consumer may hang in a
# peer's receive call; this process only watches).  KILL_AFTER seconds after B's first message A
# is SIGKILLed; RUN_AFTER_KILL seconds later the producer is told to stop.
#   broadcast (every consumer gets every message): B's stream must be complete: every confirmed
#     message, in order.
#   work sharing (each message to one of them): every confirmed message must have reached A
#     (recorded before its death) or B; a message both got is a duplicate.  A killed inside a
#     receive call may have got one message it never recorded (counted lost, and said so).
# A stall after the kill (nothing moves for STALL_SECONDS) is handed to the system's own tool
# where it has one.  A hang: B gets nothing for CONSUMER_HANG_SECONDS, or the producer does not
# stop within that time after being told; everything is killed.

CONSUMER_HANG_SECONDS = 2.0
KILL_AFTER = 0.5
RUN_AFTER_KILL = 0.7
# A stall after the kill this long (no message for B, the producer not getting on) is looked
# into by the system's own tools where it has some (cywhip: channels() and remove_group();
# iceoryx2: the cleanup of dead nodes).
STALL_SECONDS = 0.3
HELLO = b"h"
# PUB/SUB high-water marks: a PUB drops past them, for a live SUB too.  Higher, a survivor that
# fell behind would drain its backlog for seconds after the stop.
PUBSUB_HWM = 100_000


def _cywhip_member(durable, name, shared, index, share=False):
    from cywhip import Receiver, ReceiveTimeout
    r = Receiver(name, message_length=SIZE, max_queued_messages=1024, max_receivers=2,
                 group="work" if share else f"g{index}", durable=durable)

    def recv(timeout):
        try:
            return r.recv(timeout=timeout)
        except ReceiveTimeout:
            return None
    return recv, r.close


def _cywhip_group_producer(name, shared):
    from cywhip import Sender
    return Sender(name, message_length=SIZE, max_queued_messages=1024, max_receivers=2).send


def _cywhip_release(name):
    """A stall after the kill: what channels() shows of the groups, then remove_group() of the
    dead consumer's group."""
    from cywhip import channels, remove_group
    info = [c for c in channels() if c.name == name]
    held = [g.name for g in info[0].groups if g.holding_back] if info else []
    remove_group(name, "g0")
    return (f"producer held back; channels(): {', '.join(held) or 'no group'} holding_back; "
            f"released by remove_group()")


def _cywhip_groups_left(name):
    from cywhip import channels
    info = [c for c in channels() if c.name == name]
    return "groups left: " + (", ".join(g.name for g in info[0].groups) or "none") if info else ""


def _cykit_spmc_consumer(name, shared, index):
    return _cykit_recv(name, "SPMC")


def _cykit_spmc_producer(name, shared):
    return _cykit_push(name, "SPMC")


def _iceoryx2_service(name):
    import ctypes
    import iceoryx2 as iox2

    class Msg(ctypes.Structure):
        _fields_ = [("data", ctypes.c_uint8 * SIZE)]

    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    service = node.service_builder(iox2.ServiceName.new(name)).publish_subscribe(Msg) \
        .enable_safe_overflow(False).subscriber_max_buffer_size(1024).max_subscribers(2).open_or_create()
    return iox2, node, service, Msg


def _iceoryx2_consumer(name, shared, index):
    iox2, node, service, Msg = _iceoryx2_service(name)
    sub = service.subscriber_builder().buffer_size(1024).create()

    def recv(timeout):
        end = time.monotonic() + timeout
        while True:
            sample = sub.receive()
            if sample is not None:
                return bytes(sample.payload().contents.data)
            if time.monotonic() >= end:
                return None
            time.sleep(0.00005)

    def close():
        node.try_cleanup_dead_nodes()      # the killed consumer's and producer's resources
    return recv, close


def _iceoryx2_release(name):
    """A stall after the kill: remove the dead nodes' resources (iceoryx2's own tool)."""
    import iceoryx2 as iox2
    iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc).try_cleanup_dead_nodes()
    return "publisher held back; Node.try_cleanup_dead_nodes() called"


def _iceoryx2_producer(name, shared):
    iox2, node, service, Msg = _iceoryx2_service(name)
    pub = service.publisher_builder().backpressure_strategy(iox2.BackpressureStrategy.RetryUntilDelivered).create()
    deadline = time.monotonic() + 10
    while service.dynamic_config.number_of_subscribers < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    pub.update_connections()

    def send(msg):
        pub.loan_uninit().write_payload(Msg.from_buffer_copy(msg)).send()
    return send


def _zmq_consumer_of(kind, name, shared, index):
    """A SUB or PULL binding an address of its own; the producer connects to both. A SUB tells
    the producer (shared: a Value) when it sees the first HELLO and drops HELLOs."""
    import zmq
    ctx = zmq.Context()
    sock = ctx.socket(kind)
    if kind == zmq.SUB:
        sock.setsockopt(zmq.RCVHWM, PUBSUB_HWM)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
    addr = f"/tmp/{name}-{index}.zmq"
    sock.bind("ipc://" + addr)
    joined = [False]

    def recv(timeout):
        end = time.monotonic() + timeout
        while sock.poll(max(0, int((end - time.monotonic()) * 1000))):
            msg = sock.recv()
            if msg != HELLO:
                return msg
            if not joined[0]:
                joined[0] = True
                with shared.get_lock():
                    shared.value += 1
        return None

    def close():
        sock.close(linger=0)
        ctx.term()
        for i in (0, 1):
            try:
                os.unlink(f"/tmp/{name}-{i}.zmq")
            except FileNotFoundError:
                pass
    return recv, close


def _zmq_sub_consumer(name, shared, index):
    import zmq
    return _zmq_consumer_of(zmq.SUB, name, shared, index)


def _zmq_pub_note(name):
    return f"PUB drops past its high-water mark ({PUBSUB_HWM:,}) for a live SUB that falls behind too"


def _zmq_pull_consumer(name, shared, index):
    import zmq
    return _zmq_consumer_of(zmq.PULL, name, shared, index)


def _zmq_producer_of(kind, name, shared):
    import zmq
    sock = zmq.Context().socket(kind)
    if kind == zmq.PUB:
        sock.setsockopt(zmq.SNDHWM, PUBSUB_HWM)
    # At exit, a second to hand over what is queued: a dead peer's queue would hold it forever.
    sock.setsockopt(zmq.LINGER, 1000)
    for i in (0, 1):
        sock.connect(f"ipc:///tmp/{name}-{i}.zmq")
    if kind == zmq.PUB:
        # The slow joiner: HELLO until both SUBs have seen one.
        deadline = time.monotonic() + 10
        while shared.value < 2 and time.monotonic() < deadline:
            sock.send(HELLO)
            time.sleep(0.001)
    return sock.send


def _zmq_pub_producer(name, shared):
    import zmq
    return _zmq_producer_of(zmq.PUB, name, shared)


def _zmq_push_producer(name, shared):
    import zmq
    return _zmq_producer_of(zmq.PUSH, name, shared)


def _cloudtoid_member(name, shared, index):
    return _cloudtoid_consumer(name, shared)


def _queue_member(name, shared, index):
    return _queue_consumer(name, shared)


def _value():
    return SPAWN.Value("i", 0)


def _joining(recv, joined):
    """recv(timeout) of a subscriber that drops HELLOs and counts itself in joined (a shared
    Value) at the first: the producer sends HELLO until both have."""
    seen = [False]

    def take(timeout):
        end = time.monotonic() + timeout
        while True:
            msg = recv(max(0.0, end - time.monotonic()))
            if msg != HELLO:
                return msg
            if not seen[0]:
                seen[0] = True
                with joined.get_lock():
                    joined.value += 1
    return take


def _hello_until_joined(send, joined, consumers=2):
    deadline = time.monotonic() + 10
    while joined.value < consumers and time.monotonic() < deadline:
        send(HELLO)
        time.sleep(0.001)


def _subetha_broadcast_consumer(name, shared, index):
    """A BroadcastRing consumer: the first makes the ring, each registers a position."""
    import subetha
    path = f"/dev/shm/{name}-broadcast"
    ring = subetha.BroadcastRing(path, 1024) if index == 0 else subetha.BroadcastRing.open(path, 1024)
    me = ring.register_consumer()
    return _polled(lambda: ring.recv(me)), lambda: ring.unregister_consumer(me)


def _subetha_broadcast_producer(name, shared):
    import subetha
    ring = subetha.BroadcastRing.open(f"/dev/shm/{name}-broadcast", 1024)
    ring.wait_for_consumers(2, 10)
    push = ring.push

    def send(msg):
        while not push(msg):
            pass
    return send


def _subetha_release(name):
    """A stall after the kill: SubEtha keeps no owner of a consumer position, so nothing tells
    which is the dead one; it is 0 here (the first registered), given back with
    unregister_consumer()."""
    import subetha
    ring = subetha.BroadcastRing.open(f"/dev/shm/{name}-broadcast", 1024)
    lag = ring.lag(0)
    ring.unregister_consumer(0)
    return (f"producer held back (every push refused, the dead consumer's position {lag} behind); "
            f"released by unregister_consumer() of that position")


def _subetha_thief(name, shared, index):
    """A WorkQueue thief: it attaches with steal_from once the producer, its owner, has made it
    (shared: a Value set then), and steals."""
    import subetha
    thief = []

    def take():
        if not thief:
            if not shared.value:
                return None
            thief.append(subetha.WorkQueue.steal_from(f"/dev/shm/{name}-work"))
        return thief[0].steal()
    return _polled(take), lambda: None


def _subetha_owner(name, shared):
    import subetha
    queue = subetha.WorkQueue(f"/dev/shm/{name}-work", 1024, thieves=2)
    shared.value = 1
    _subetha_owner.keep = queue
    push = queue.push

    def send(msg):
        while not push(msg):
            pass
    return send


def _subetha_channel_reader(name, shared, index):
    """A reader of a Channel for 1 sender and 2 readers (the first makes it): recv_for(timeout)."""
    import subetha
    path = f"/dev/shm/{name}-channel"
    ch = subetha.Channel(path, 1024, senders=1, readers=2) if index == 0 else subetha.Channel.open(path, 1024)
    return ch.recv_for, lambda: None


def _subetha_channel_sender(name, shared):
    import subetha
    ch = subetha.Channel.open(f"/dev/shm/{name}-channel", 1024)
    _subetha_channel_sender.keep = ch
    return lambda msg: ch.send_for(msg, None)


def _kickmsg_member(name, shared, index):
    return _kickmsg_subscriber(name, 2)


def _kickmsg_note(name):
    return "a subscriber whose ring is full has its oldest messages overwritten (none is held back)"


def _msgq_member(name, shared, index):
    """A msgq SubSocket (blocking receive, 50 ms at most); HELLOs dropped (shared: joined)."""
    import msgq
    sub = msgq.sub_sock(name, conflate=False, timeout=50)
    return _joining(lambda timeout: sub.receive(), shared), lambda: None


def _msgq_producer(name, shared):
    """The PubSocket (connecting resets the subscribers' places: they join again at their next
    receive); HELLO until both subscribers have seen one."""
    import msgq
    pub = msgq.pub_sock(name)
    _msgq_producer.keep = pub
    _hello_until_joined(pub.send, shared)
    return pub.send


def _msgq_note(name):
    return "a subscriber the publisher laps is reset to the newest message (none is held back)"


def _zenoh_member(shm, name, shared, index):
    recv, close = _zenoh_subscriber(name, index, shm)
    return _joining(recv, shared), close


def _zenoh_group_producer(shm, name, shared):
    put = _zenoh_publisher(name, 2, shm)
    _hello_until_joined(put, shared)
    return put


# (scenario, system, module it needs, consumer(name, shared, index), producer(name, shared),
#  shared object factory, what to do about a stall after the kill, what to say at the end)
BROADCAST, SHARING = "broadcast, 2 consumers", "work sharing, 2 consumers"
CONSUMER_SYSTEMS = [
    (BROADCAST, "cywhip, 2 durable groups", None, partial(_cywhip_member, True), _cywhip_group_producer,
     None, _cywhip_release, _cywhip_groups_left),
    (BROADCAST, "cywhip, 2 groups, durable=False", None, partial(_cywhip_member, False),
     _cywhip_group_producer, None, None, _cywhip_groups_left),
    (BROADCAST, "cykit 0.1.0 SPMC", "cykit", _cykit_spmc_consumer, _cykit_spmc_producer, None, None, None),
    (BROADCAST, "iceoryx2 publish-subscribe", "iceoryx2", _iceoryx2_consumer, _iceoryx2_producer, None,
     _iceoryx2_release, None),
    (BROADCAST, "pyzmq ipc:// PUB/SUB", "zmq", _zmq_sub_consumer, _zmq_pub_producer, _value, None, _zmq_pub_note),
    (BROADCAST, "SubEtha 0.6.0 BroadcastRing", "subetha", _subetha_broadcast_consumer, _subetha_broadcast_producer,
     None, _subetha_release, None),
    (BROADCAST, "kickmsg 0.9.2 PubSub, 2 Subscribers", "kickmsg", _kickmsg_member, _kickmsg_producer, None, None,
     _kickmsg_note),
    (BROADCAST, "msgq 1.0, 2 SubSockets", "msgq", _msgq_member, _msgq_producer, _value, None, _msgq_note),
    (BROADCAST, "Zenoh 1.10.2, 2 subscribers, plain", "zenoh", partial(_zenoh_member, False),
     partial(_zenoh_group_producer, False), _value, None, None),
    (BROADCAST, "Zenoh 1.10.2, 2 subscribers, shared memory", "zenoh", partial(_zenoh_member, True),
     partial(_zenoh_group_producer, True), _value, None, None),
    (SHARING, "cywhip, 1 group of 2", None, partial(_cywhip_member, True, share=True), _cywhip_group_producer,
     None, None, _cywhip_groups_left),
    (SHARING, "cloudtoid-interprocess", "cloudtoid_interprocess", _cloudtoid_member, _cloudtoid_producer,
     None, None, None),
    (SHARING, "pyzmq ipc:// PUSH/PULL", "zmq", _zmq_pull_consumer, _zmq_push_producer, None, None, None),
    (SHARING, "faster-fifo", "faster_fifo", _queue_member, _queue_producer, _faster_fifo_queue, None, None),
    (SHARING, "multiprocessing.Queue", None, _queue_member, _queue_producer, lambda: SPAWN.Queue(maxsize=1024),
     None, None),
    (SHARING, "SubEtha 0.6.0 WorkQueue, 2 thieves", "subetha", _subetha_thief, _subetha_owner, _value, None, None),
    (SHARING, "SubEtha 0.6.0 Channel(readers=2)", "subetha", _subetha_channel_reader, _subetha_channel_sender,
     None, None, None),
]


def consumer_crash_run(scenario, system):
    """One run of killing consumer A (see "killing one of two consumers" above): returns a dict
    of what happened."""
    _, _, _, make_consumer, make_producer, make_shared, on_stall, at_end = [
        s for s in CONSUMER_SYSTEMS if s[:2] == (scenario, system)][0]
    share = scenario == SHARING
    name = _name("kill")
    shared = make_shared() if make_shared else None
    confirmed = SPAWN.Array("q", 4, lock=False)
    stop = SPAWN.Value("b", 0, lock=False)
    finish = SPAWN.Value("b", 0, lock=False)
    a, b = (_Consumer(make_consumer, name, shared, i, finish) for i in (0, 1))
    producer = SPAWN.Process(target=_produce, args=(make_producer, name, shared, 0, confirmed, stop), daemon=True)
    out = {"hang": False, "lost": 0, "duplicated": 0, "survivor_complete": False, "note": ""}

    def owed():
        """Confirmed messages that have not arrived (work sharing: recorded by A, or at B)."""
        if share:
            return confirmed[0] - len(set(a.recorded()) | set(b.recorded()))
        return confirmed[0] - b.count.value

    try:
        deadline = time.monotonic() + 30
        for c in (a, b):
            c.start(deadline)
        producer.start()
        kill_at = stop_at = kill_time = None
        last = last_progress = time.monotonic()
        last_count = last_confirmed = 0
        stalled = False
        while True:
            time.sleep(0.001)
            now = time.monotonic()
            if b.count.value != last_count:
                last_count, last = b.count.value, now
                if kill_at is None:
                    kill_at = now + KILL_AFTER
            if confirmed[0] != last_confirmed:
                last_confirmed, last_progress = confirmed[0], now
            if kill_at is not None and stop_at is None and now >= kill_at:
                os.kill(a.proc.pid, signal.SIGKILL)
                a.proc.join()
                kill_time = now
                stop_at = now + RUN_AFTER_KILL
            if (on_stall and not stalled and kill_time is not None and not stop.value
                    and now - max(last, last_progress) > STALL_SECONDS):
                stalled = True
                out["note"] = on_stall(name)
            if stop_at is not None and now >= stop_at and not stop.value:
                stop.value = 1
            if stop.value and not producer.is_alive():
                if now - last > 0.5 or (now - last > 0.05 and owed() <= 0):
                    break
            elif stop.value and now - stop_at > CONSUMER_HANG_SECONDS:
                out["hang"] = "the producer did not stop"
                break
            elif now - last > CONSUMER_HANG_SECONDS:
                out["hang"] = (f"nothing for consumer B in {CONSUMER_HANG_SECONDS:g} s"
                               + (", the producer stuck" if now - last_progress > CONSUMER_HANG_SECONDS else ""))
                break
            elif kill_at is None and now > deadline:
                out["hang"] = "no message arrived"
                break
        if at_end and not out["hang"]:
            out["note"] = "; ".join(n for n in (out["note"], at_end(name)) if n)
        b.finish_notes(finish, 1.0 if out["hang"] else CONSUMER_HANG_SECONDS)
        if b.proc.is_alive():
            out["hang"] = out["hang"] or "consumer B did not finish"
        sent, got = confirmed[0], b.recorded()
        if b.overflowed():
            out["note"] = "; ".join(n for n in (out["note"], "B's records overflowed") if n)
        if share:
            both = set(got) | set(a.recorded())
            out["lost"] = sum(1 for i in range(sent) if i not in both)
            out["duplicated"] = len(got) + len(a.recorded()) - len(both)
            # Killed inside a receive call, A may have got one message it never recorded.
            out["in_receive"] = bool(a.busy.value)
        else:
            out["lost"] = max(0, sent - len(set(got)))
            out["order_errors"] = sum(1 for k, i in enumerate(got) if i != k)
        out["survivor_complete"] = not out["hang"] and out["lost"] == 0 and not out.get("order_errors")
        if kill_time is not None:
            out["gap_before_ms"], out["stall_after_ms"] = _gaps(b.times[:len(got)], kill_time, KILL_AFTER,
                                                                RUN_AFTER_KILL)
        out["messages"] = sent
        return out
    finally:
        for p in (producer, a.proc, b.proc):
            if p.is_alive():
                p.kill()
            if p.pid is not None:
                p.join()
        _clean_up(name, system)


def _segments_removed(system, run):
    """run(); for Zenoh, then remove the shared-memory segments it left (named by number, not by
    the run)."""
    if not system.startswith("Zenoh"):
        return run()
    from cywhip._bench.peers.zenoh import _removing_segments
    return _removing_segments(run)


def _clean_up(name, system):
    """Remove what the killed (or hung) processes of a run left behind."""
    from cywhip import unlink
    unlink(name, missing_ok=True)
    _remove_leftovers(name)
    if system.startswith("iceoryx2"):
        import iceoryx2 as iox2
        iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc).try_cleanup_dead_nodes()


def consumer_crash_table(runs=1, progress=None):
    """Run every installed system's consumer-kill scenario `runs` times; one summary row each."""
    rows = []
    for scenario, system, needs, *_ in CONSUMER_SYSTEMS:
        row = {"scenario": scenario, "system": system}
        if needs and not _available(needs):
            rows.append(dict(row, skipped=f"{needs} is not installed"))
            continue
        results = []
        for k in range(runs):
            if progress:
                progress(f"crash: killing a consumer, {scenario}: {system}, run {k + 1} of {runs} ...")
            try:
                results.append(_segments_removed(system, partial(consumer_crash_run, scenario, system)))
            except Exception as exc:
                results.append({"hang": f"failed: {exc}", "lost": 0, "duplicated": 0, "survivor_complete": False,
                                "note": ""})
        rows.append(dict(
            row, runs=runs,
            hangs=sum(1 for r in results if r["hang"]),
            lost=sum(r["lost"] for r in results),
            # Runs where A died inside a receive call: one lost message each may have reached it.
            maybe_at_a=sum(1 for r in results if r.get("in_receive") and r["lost"]),
            duplicated=sum(r["duplicated"] for r in results),
            survivor_complete=sum(1 for r in results if r["survivor_complete"]),
            stall_after_ms=max((r.get("stall_after_ms", 0) for r in results), default=0),
            gap_before_ms=max((r.get("gap_before_ms", 0) for r in results), default=0),
            notes="; ".join(dict.fromkeys(r["hang"] or r["note"] for r in results if r["hang"] or r["note"])),
        ))
    return rows


def consumer_crash_markdown(rows):
    lines = ["| scenario | system | runs | hangs | confirmed messages lost | duplicates | stream complete | "
             "longest stall after the kill | longest gap in the half second before | what happened |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['scenario']} | {r['system']} | skipped: {r['skipped']} | | | | | | | |")
            continue
        lost = f"{r['lost']:,}" + (f" ({r['maybe_at_a']} may have reached A unrecorded)" if r["maybe_at_a"] else "")
        lines.append(f"| {r['scenario']} | {r['system']} | {r['runs']} | {r['hangs']} | {lost} | "
                     f"{r['duplicated']} | {r['survivor_complete']} of {r['runs']} | {r['stall_after_ms']:.2f} ms | "
                     f"{r['gap_before_ms']:.2f} ms | {r['notes']} |")
    return "\n".join(lines)

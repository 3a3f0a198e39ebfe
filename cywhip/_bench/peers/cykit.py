"""cykit's shared-memory IPC (cykit.ipc): multi-producer single-consumer, single-producer multi-consumer."""
import time

from cywhip._bench.common import _timed_receive

# Blocks of 64 bytes (room for a 32-byte message and cykit's own header), 1,024 of them.
BLOCKS, BLOCK_SIZE = 1024, 64


def _w_cykit_mpsc(role, p, ready, results, shared):
    from cykit.ipc import Consumer, MsgKind, Producer, ShmMode
    n, size, name = p["count"], p["size"], p["name"]
    if role == "producer":
        msg = b"x" * size
        ready.wait(60)
        producer = Producer(name, block_count=BLOCKS, block_size=BLOCK_SIZE, mode=ShmMode.MPSC,
                            msg_kind=MsgKind.BYTES)
        push = producer.push
        for _ in range(n):
            push(msg)
        return
    consumer = Consumer(name, block_count=BLOCKS, block_size=BLOCK_SIZE, mode=ShmMode.MPSC)
    ready.set()
    results.put(_timed_receive(consumer.pop, p.get("total", n)))


def _w_cykit_spmc(role, p, ready, results, shared):
    """cykit's single-producer multi-consumer mode: every consumer gets every message."""
    from cykit.ipc import Consumer, MsgKind, Producer, ShmMode
    n, size, name = p["count"], p["size"], p["name"]
    if role == "producer":
        msg = b"x" * size
        ready.wait(60)
        producer = Producer(name, block_count=BLOCKS, block_size=BLOCK_SIZE, mode=ShmMode.SPMC,
                            msg_kind=MsgKind.BYTES)
        push = producer.push
        for _ in range(n):
            push(msg)
        return
    consumer = Consumer(name, block_count=BLOCKS, block_size=BLOCK_SIZE, mode=ShmMode.SPMC)
    ready.set()
    pop = consumer.pop
    pop()
    t0 = time.perf_counter()
    for _ in range(n - 1):
        pop()
    results.put({"count": n, "t0": t0, "t1": time.perf_counter()})

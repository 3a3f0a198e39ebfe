"""multiprocessing.Queue and Pipe, and faster-fifo (which takes the Queue worker)."""
import time

from cywhip._bench.common import (
    END, _consumer_done, _numbered, _object_message, _send_ends, _send_or_time, _seqs, _timed_objects,
    _timed_receive,
)


def _w_queue(role, p, ready, results, shared):
    """multiprocessing.Queue, or faster_fifo.Queue (same interface), one put/get per message;
    with p["objects"], the message of the Python objects rows (a dict holding a float64 array of
    p["size"] bytes), pickled by the queue's feeder thread and unpickled by get()."""
    q = shared
    n, size, batch, objects = p["count"], p["size"], p.get("batch", False), p.get("objects", False)
    if role == "producer":
        msg = _object_message(size) if objects else b"x" * size
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
    if objects:
        results.put(_timed_objects(q.get, n, size, True, 60))
        return
    results.put(_timed_receive(q.get, p.get("total", n), True, 60))


def _w_queue_shared(role, p, ready, results, shared):
    """multiprocessing.Queue or faster_fifo.Queue with p["consumers"] getters sharing its
    messages: numbered messages, then one END per getter (a get takes one message).
    shared: (the queue, a Value counting the getters done)."""
    q, done = shared
    n, size, k = p["count"], p["size"], p["consumers"]
    if role == "producer":
        msgs = _numbered(n, size)
        ready.wait(60)
        put = q.put
        for m in msgs:
            put(m)
        _send_ends(lambda: put(END), done, k)
        return
    ready.set()
    kept = []
    keep = kept.append
    get = q.get
    m = get(True, 60)
    t0 = time.perf_counter()
    while m:
        keep(m)
        m = get()
    t1 = time.perf_counter()
    _consumer_done(done)
    results.put({"count": len(kept), "t0": t0, "t1": t1, "seqs": _seqs(kept, size)})


def _w_pipe(role, p, ready, results, shared):
    recv_end, send_end = shared
    _send_or_time(role, ready, results, send_end.send_bytes, recv_end.recv_bytes, p["count"], p["size"])


def _faster_fifo():
    import faster_fifo
    return faster_fifo.Queue(max_size_bytes=64 * 1024 * 1024)

"""cloudtoid-interprocess: one subscriber, and several competing for one queue."""
import time

from cywhip._bench.common import (
    END, MIXED_RING, _consumer_done, _mixed_messages, _mixed_stream, _numbered, _seqs, _send_ends, _timed_mixed,
    _timed_receive,
)


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
        results.put(_timed_receive(sub.receive, p.get("total", n), 60))


def _w_cloudtoid_mixed(role, p, ready, results, shared):
    """The mixed-size stream (common._mixed_messages) through a queue of p["capacity"] bytes (by
    default as large as cywhip's byte channel for it), try_send until it takes each message, one
    receive per message; the receiver checks every message."""
    import cloudtoid_interprocess as ci
    n, name, capacity = p["count"], p["name"], p.get("capacity", MIXED_RING)
    messages = _mixed_messages()
    if role == "producer":
        ready.wait(60)
        with ci.Publisher(name, capacity, path=p["dir"]) as pub:
            send = pub.try_send
            for m in _mixed_stream(n, messages):
                while not send(m):
                    pass
        return
    with ci.Subscriber(name, capacity, path=p["dir"]) as sub:
        ready.set()
        results.put(_timed_mixed(sub.receive, n, messages, 60))


def _w_cloudtoid_shared(role, p, ready, results, shared):
    """p["consumers"] Subscribers competing for one queue's messages: numbered messages, then
    END until every subscriber is done (shared: a Value counting them)."""
    import cloudtoid_interprocess as ci
    n, size, name, k = p["count"], p["size"], p["name"], p["consumers"]
    capacity = 1 << 20
    if role == "producer":
        msgs = _numbered(n, size)
        ready.wait(60)
        with ci.Publisher(name, capacity, path=p["dir"]) as pub:
            send = pub.try_send
            for m in msgs:
                while not send(m):
                    pass
            _send_ends(lambda: pub.try_send(END), shared, k, repeat=True)
        return
    with ci.Subscriber(name, capacity, path=p["dir"]) as sub:
        ready.set()
        kept = []
        keep = kept.append
        receive = sub.receive
        m = receive(60)
        t0 = time.perf_counter()
        while m:
            keep(m)
            m = receive()
        t1 = time.perf_counter()
    _consumer_done(shared)
    results.put({"count": len(kept), "t0": t0, "t1": t1, "seqs": _seqs(kept, size)})

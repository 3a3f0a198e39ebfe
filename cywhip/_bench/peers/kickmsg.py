"""kickmsg: a PubSub region (MPMC publish-subscribe in shared memory) with two publishers and one
subscriber (fan-in), or one publisher and two subscribers (broadcast).

kickmsg never holds a publisher back for a subscriber: each subscriber has a ring of its own,
and a publisher overwrites what a slow subscriber has not read yet (the subscriber's `lost`
counts it).  A publisher only waits when the region's pool of slots is empty (send raises
BlockingIOError; it is retried).  So the figures here are of what arrived, and each row says
what share was lost.  Every message is numbered; a subscriber counts what it gets (with
p["check"], keeps it and checks the numbers after its clock stops).  A subscriber polls
try_receive; once the producers are done (a Value counting them) it takes what is left and stops.
"""

from cywhip._bench.common import _numbered, _outcome, _poll_until_done

SUB_RING = 1024
POOL = 4096


def _region_name(p):
    return "/" + p["name"]


def _config(subscribers):
    import kickmsg
    cfg = kickmsg.Config()
    cfg.max_subscribers = subscribers
    cfg.sub_ring_capacity = SUB_RING
    cfg.pool_size = POOL
    cfg.max_payload_size = 64
    return cfg


def _send_all(send, msgs):
    for m in msgs:
        while True:
            try:
                send(m)
                break
            except BlockingIOError:      # the pool of slots is empty: wait for the subscribers
                pass


def _w_kickmsg(role, p, ready, results, shared):
    """p["producers"] publishers and p["consumers"] subscribers on one PubSub region, made by
    consumer 0 before any other end opens it (made: an Event); publisher k sends messages
    numbered k << 40 | i.  shared: (made, a Value counting the publishers done)."""
    import kickmsg
    n, consumers = p["count"], p["consumers"]
    producers = p.get("total", n) // n
    made, finished = shared
    if role == "producer":
        me = p["index"] - consumers
        msgs = _numbered(n, tag=me)
        ready.wait(60)
        pub = kickmsg.Publisher(kickmsg.SharedRegion.open(_region_name(p)))
        _send_all(pub.send, msgs)
        with finished.get_lock():
            finished.value += 1
        return
    if p["index"] == 0:
        region = kickmsg.SharedRegion.create(_region_name(p), kickmsg.ChannelType.PubSub, _config(consumers),
                                             "cywhip-bench")
        made.set()
    else:
        if not made.wait(60):
            raise RuntimeError("consumer 0 did not make the region")
        region = kickmsg.SharedRegion.open(_region_name(p))
    sub = kickmsg.Subscriber(region)
    ready.set()
    try:
        kept = [] if p.get("check") else None
        got, t0, t1 = _poll_until_done(sub.try_receive, lambda: finished.value >= producers, kept)
        out = _outcome(t0, t1, n, got, kept, producers, rate=consumers == 1)
        out["ring_lost"] = sub.lost
        results.put(out)
    finally:
        if p["index"] == 0:
            region.unlink()

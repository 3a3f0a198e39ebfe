"""SubEtha (subetha-ipc): a SpscRing one message per call, in lists and packed in one buffer; fan-in
through mpsc_pool; broadcast through BroadcastRing; work sharing through WorkQueue and Channel.

SubEtha's rings answer full with False and empty with None: its producers retry a refused push
and its consumers poll (the rings have no blocking receive), nothing is dropped.  A slot of a
SpscRing or an mpsc pool carries 64 bytes and a BroadcastRing's 52, and a receive hands back the
whole slot: a 32-byte message arrives padded with zeros.  Every message is numbered.  A consumer
counts what it gets, as cywhip's rows do; with p["check"] it keeps every message and checks the
numbers after its clock stops (common._checked: each once, in order), at the cost of an
allocation per message.  Work sharing keeps them always (the exactly-once check of every row of
that pattern).  Every file lives in a directory of the run's own (common._in_dir), p["dir"].
"""
import functools
import time

from cywhip._bench.common import END, MESSAGE, _consumer_done, _numbered, _outcome, _seqs, _send_ends

BATCH = 4096


def _path(p, what="ring"):
    return f"{p['dir']}/{p['name']}-{what}"


def _push_all(push, msgs):
    """One push per message, retried while the ring is full."""
    for m in msgs:
        while not push(m):
            pass


def _push_lists(push_many, msgs):
    """push_many in runs of BATCH, the rest of a run retried while the ring is full."""
    for start in range(0, len(msgs), BATCH):
        chunk = msgs[start:start + BATCH]
        while chunk:
            chunk = chunk[push_many(chunk):]


def _w_subetha_spsc(role, p, ready, results, shared):
    """SpscRing one-to-one, p["mode"]: "single" (push/pop), "many" (push_many/pop_many of up to
    4,096), "buffer" (push_buffer/pop_buffer: 4,096 messages packed end to end in one bytes object
    each way, numbered with numpy; with p["check"] the consumer keeps each message's number, read
    from the buffer through a numpy view)."""
    import subetha
    n, mode, cap = p["count"], p["mode"], p.get("capacity", 1024)
    path = _path(p)
    if role == "producer":
        if mode == "buffer":
            import numpy as np
            block = np.zeros((BATCH, MESSAGE // 8), "<i8")
            block[:, 0] = np.arange(BATCH)
        else:
            msgs = _numbered(n)
        ready.wait(60)
        ring = subetha.SpscRing.open(path, cap)
        if mode == "single":
            _push_all(ring.push, msgs)
        elif mode == "many":
            _push_lists(ring.push_many, msgs)
        else:
            push_buffer = ring.push_buffer
            for start in range(0, n, BATCH):
                k = min(BATCH, n - start)
                data = block[:k].tobytes()
                while data:
                    data = data[push_buffer(data, MESSAGE) * MESSAGE:]
                block[:, 0] += BATCH
        return
    ring = subetha.SpscRing(path, cap)
    ready.set()
    check = p.get("check", False)
    if mode == "buffer":
        import numpy as np
        step = ring.payload_size // 8
        pop_buffer, frombuffer = ring.pop_buffer, np.frombuffer
        numbers = [] if check else None
        data, k = _first(lambda: pop_buffer(BATCH), lambda got: got[1])
        t0 = time.perf_counter()
        got = 0
        while True:
            if k:
                if check:
                    numbers.append(frombuffer(data, "<i8", k * step)[::step].copy())
                got += k
                if got >= n:
                    break
            data, k = pop_buffer(BATCH)
        t1 = time.perf_counter()
        results.put(_outcome(t0, t1, n, got, np.concatenate(numbers) if check else None))
        return
    kept = [] if check else None
    if mode == "single":
        t0 = _poll_n(ring.pop, n, kept)
    else:
        pop_many = ring.pop_many
        batch = _first(lambda: pop_many(8192), len)
        t0 = time.perf_counter()
        got = len(batch)
        if check:
            keep = kept.extend
            keep(batch)
            while got < n:
                batch = pop_many(8192)
                keep(batch)
                got += len(batch)
        else:
            while got < n:
                got += len(pop_many(8192))
    t1 = time.perf_counter()
    results.put(_outcome(t0, t1, n, n, kept))


def _first(take, ok, seconds=60):
    """take() until ok(what it took), at most `seconds`: the first message (or batch) of a run."""
    deadline = time.monotonic() + seconds
    got = take()
    while not ok(got):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no message arrived in {seconds} s")
        got = take()
    return got


def _poll_n(take, n, kept):
    """n messages from take() (None: nothing yet), polling; with kept (a list), each is kept.
    Return the clock at the first."""
    m = _first(take, lambda m: m is not None)
    t0 = time.perf_counter()
    if kept is None:
        for _ in range(n - 1):
            m = take()
            while m is None:
                m = take()
        return t0
    keep = kept.append
    keep(m)
    for _ in range(n - 1):
        m = take()
        while m is None:
            m = take()
        keep(m)
    return t0


def _w_subetha_mpsc(role, p, ready, results, shared):
    """mpsc_pool: a ring per producer, drained by one consumer with pop; producer k sends
    messages numbered k << 40 | i and pushes each until it is taken."""
    import subetha
    n, producers = p["count"], p["total"] // p["count"]
    path, cap = _path(p, "pool"), p.get("capacity", 1024)
    if role == "producer":
        me = p["index"] - p["consumers"]
        msgs = _numbered(n, tag=me)
        ready.wait(60)
        pool, _ = subetha.mpsc_pool_open(path, producers, cap)
        _push_all(pool[me].push, msgs)
        return
    _, consumer = subetha.mpsc_pool(path, producers, cap)
    ready.set()
    kept = [] if p.get("check") else None
    t0 = _poll_n(consumer.pop, p["total"], kept)
    t1 = time.perf_counter()
    results.put(_outcome(t0, t1, n, n * producers, kept, producers))


def _w_subetha_broadcast(role, p, ready, results, shared):
    """BroadcastRing, one producer and p["consumers"] consumers each reading every message with
    recv(its consumer id).  The producer makes the ring and says so (shared: an Event); each
    consumer opens it and registers before it is ready; the producer retries a push refused
    because the slowest consumer is a lap behind (nothing is overwritten)."""
    import subetha
    n, cap, path = p["count"], p.get("capacity", 1024), _path(p, "broadcast")
    made = shared
    if role == "producer":
        msgs = _numbered(n)
        ring = subetha.BroadcastRing(path, cap)
        made.set()
        ready.wait(60)
        if ring.wait_for_consumers(p["consumers"], 60) < p["consumers"]:
            raise RuntimeError("the consumers did not register")
        _push_all(ring.push, msgs)
        return
    if not made.wait(60):
        raise RuntimeError("the producer did not make the ring")
    ring = subetha.BroadcastRing.open(path, cap)
    me = ring.register_consumer()
    ready.set()
    kept = [] if p.get("check") else None
    t0 = _poll_n(functools.partial(ring.recv, me), n, kept)
    t1 = time.perf_counter()
    ring.unregister_consumer(me)
    results.put(_outcome(t0, t1, n, n, kept, rate=False))


def _w_subetha_shared(role, p, ready, results, shared):
    """Work sharing, p["kind"]: "workqueue" (the producer owns a WorkQueue and pushes; each
    consumer attaches with steal_from and steals) or "channel" (a Channel for 1 sender and
    p["consumers"] readers, made by the producer; each consumer opens it and takes with recv).
    Numbered messages, then END until every consumer is done.  shared: (an Event set once the
    producer made the queue, a Value counting the consumers done)."""
    import subetha
    n, k, kind = p["count"], p["consumers"], p["kind"]
    cap, path = p.get("capacity", 1024), _path(p, kind)
    made, done = shared
    if role == "producer":
        msgs = _numbered(n)
        if kind == "workqueue":
            q = subetha.WorkQueue(path, cap, thieves=k)
            push = q.push
        else:
            q = subetha.Channel(path, cap, senders=1, readers=k)
            push = q.send
        made.set()
        ready.wait(60)
        _push_all(push, msgs)
        _send_ends(lambda: push(END), done, k, repeat=True)
        return
    if not made.wait(60):
        raise RuntimeError("the producer did not make the queue")
    if kind == "workqueue":
        take = subetha.WorkQueue.steal_from(path).steal
    else:
        take = subetha.Channel.open(path, cap).recv
    ready.set()
    kept = []
    keep = kept.append
    deadline = time.monotonic() + 60
    m = take()
    while m is None:
        if time.monotonic() > deadline:
            raise RuntimeError("no message arrived in 60 s")
        m = take()
    t0 = time.perf_counter()
    while m:
        keep(m)
        m = take()
        while m is None:
            m = take()
    t1 = time.perf_counter()
    _consumer_done(done)
    results.put({"count": len(kept), "t0": t0, "t1": t1, "seqs": _seqs(kept)})

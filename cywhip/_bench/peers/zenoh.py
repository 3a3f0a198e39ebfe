"""Zenoh (eclipse-zenoh): publish-subscribe between peer sessions linked by a Unix socket, the
messages either plain (copied through the socket; shared memory off) or in shared memory (each
allocated from a ShmProvider and written there; only a reference crosses the socket).

The sessions are told of each other by their endpoints alone: no scouting, nothing on a network.
Publishers use CongestionControl.BLOCK and subscribers a FifoChannel, which hold the publisher
back instead of dropping, and a subscriber takes with the blocking recv().  Every message is
numbered; once done, the publisher sends END until every subscriber is done; a subscriber counts
what it gets (with p["check"], keeps it and checks the numbers after its clock stops).
"""
import glob
import json
import os
import time

from cywhip._bench.common import END, _numbered, _outcome

HELLO = b"h"
QUEUE = 1024


def _config(shm, listen=(), connect=()):
    import zenoh
    conf = zenoh.Config()
    conf.insert_json5("mode", '"peer"')
    conf.insert_json5("scouting/multicast/enabled", "false")
    conf.insert_json5("scouting/gossip/enabled", "false")
    conf.insert_json5("listen/endpoints", json.dumps(list(listen)))
    conf.insert_json5("connect/endpoints", json.dumps(list(connect)))
    conf.insert_json5("transport/shared_memory/enabled", json.dumps(bool(shm)))
    return conf


def _endpoint(p, index):
    return f"unixsock-stream/{p['dir']}/{p['name']}-{index}.sock"


def _putter(session, pub, shm):
    """put(bytes) for the stream: plain, or through a buffer allocated in shared memory."""
    if not shm:
        return pub.put
    import zenoh.shm as zshm
    provider = zshm.ShmProvider.default_backend(1 << 20)
    policy = zshm.BlockOn(zshm.GarbageCollect())
    alloc, put = provider.alloc, pub.put

    def put_shm(msg):
        buf = alloc(len(msg), policy=policy)
        buf[:] = msg
        put(buf)
    return put_shm


def _take(sub, joined, done, kept=None):
    """recv() until END, counting the numbered messages or keeping them in kept (a list); HELLOs
    before the stream count this subscriber in joined once.  Return (how many, clock at the first,
    clock at the last)."""
    recv = sub.recv
    m = recv().payload.to_bytes()
    if m == HELLO:
        with joined.get_lock():
            joined.value += 1
        while m == HELLO:
            m = recv().payload.to_bytes()
    t0 = time.perf_counter()
    got = 0
    if kept is None:
        while m != END:
            got += 1
            m = recv().payload.to_bytes()
    else:
        keep = kept.append
        while m != END:
            keep(m)
            m = recv().payload.to_bytes()
        got = len(kept)
    t1 = time.perf_counter()
    with done.get_lock():
        done.value += 1
    return got, t0, t1


def _w_zenoh(role, p, ready, results, shared):
    """One publisher, p["consumers"] subscribers on one key; p["shm"]: the messages in shared
    memory.  Each subscriber listens on a socket of its own and the publisher connects to them
    all.  The publisher sends HELLO until every subscriber has seen one, then the stream, then
    END until every subscriber is done.  shared: (joined, done), Values counting subscribers."""
    import zenoh
    n, k, shm = p["count"], p["consumers"], p.get("shm", False)
    key = f"cywhip/bench/{p['name']}"
    joined, done = shared
    if role == "producer":
        msgs = _numbered(n)
        ready.wait(60)
        with zenoh.open(_config(shm, connect=[_endpoint(p, i) for i in range(k)])) as session:
            pub = session.declare_publisher(key, congestion_control=zenoh.CongestionControl.BLOCK)
            deadline = time.monotonic() + 60
            while joined.value < k and time.monotonic() < deadline:
                if pub.matching_status:
                    pub.put(HELLO)
                time.sleep(0.001)
            put = _putter(session, pub, shm)
            for m in msgs:
                put(m)
            while done.value < k and time.monotonic() < deadline + 60:
                pub.put(END)
                time.sleep(0.001)
        return
    with zenoh.open(_config(shm, listen=[_endpoint(p, p["index"])])) as session:
        sub = session.declare_subscriber(key, zenoh.handlers.FifoChannel(QUEUE))
        ready.set()
        kept = [] if p.get("check") else None
        got, t0, t1 = _take(sub, joined, done, kept)
    results.put(_outcome(t0, t1, n, got, kept, rate=k == 1))


def _removing_segments(fn):
    """Run fn(); then remove the shared-memory segments Zenoh made meanwhile and left behind
    (/dev/shm/*.zenoh, named by number, not by the run)."""
    before = set(glob.glob("/dev/shm/*.zenoh"))
    try:
        return fn()
    finally:
        for path in set(glob.glob("/dev/shm/*.zenoh")) - before:
            try:
                os.unlink(path)
            except OSError:
                pass

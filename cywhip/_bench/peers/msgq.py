"""commaai's msgq (msgq-ipc): one publisher, several subscribers, one ring in shared memory.

msgq never holds its publisher back: a subscriber the publisher laps is reset to the newest
message, and what it had not read is lost; each send also signals every subscriber (SIGUSR2).
The figures are of what arrived, and the row says what share was lost.  Every message is
numbered; each subscriber keeps what it gets and checks the numbers after its clock stops.
"""
import time

from cywhip._bench.common import _checked, _numbered, _words


def _take(receive, finished):
    """Poll receive(non_blocking=True), keeping every message, until the publisher is done and
    nothing is left; return (kept, clock at the first message, clock at the last)."""
    kept = []
    keep = kept.append
    give_up = time.monotonic() + 60
    m = receive(True)
    while m is None:
        if time.monotonic() > give_up:
            raise RuntimeError("no message arrived in 60 s")
        m = receive(True)
    clock = time.perf_counter
    t0 = t1 = clock()
    while True:
        keep(m)
        m = receive(True)
        if m is None:
            t1 = clock()
            while m is None:
                if finished.value:
                    m = receive(True)        # one more look once it is done
                    if m is None:
                        return kept, t0, t1
                    break
                m = receive(True)


def _w_msgq_broadcast(role, p, ready, results, shared):
    """One PubSocket and p["consumers"] SubSockets on one endpoint.  The publisher connects
    first (a publisher connecting resets the subscribers' places) and says so; each subscriber
    connects before it is ready.  shared: (made: an Event, finished: a Value)."""
    import msgq
    n, name = p["count"], p["name"]
    made, finished = shared
    if role == "producer":
        msgs = _numbered(n)
        pub = msgq.pub_sock(name)
        made.set()
        ready.wait(60)
        send = pub.send
        for m in msgs:
            send(m)
        finished.value = 1
        return
    if not made.wait(60):
        raise RuntimeError("the publisher did not connect")
    sub = msgq.sub_sock(name, conflate=False)
    ready.set()
    kept, t0, t1 = _take(sub.receive, finished)
    out = _checked(_words(kept), n)
    out.update(t0=t0, t1=t1)
    results.put(out)

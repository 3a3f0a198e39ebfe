"""commaai's msgq (msgq-ipc): one publisher, several subscribers, one ring in shared memory.

msgq never holds its publisher back: a subscriber the publisher laps is reset to the newest
message, and what it had not read is lost; each send also signals every subscriber (SIGUSR2).
The figures are of what arrived, and the row says what share was lost.  Every message is
numbered; a subscriber counts what it gets (with p["check"], keeps it and checks the numbers
after its clock stops), polling receive(non_blocking=True) until the publisher is done.
"""
from functools import partial

from cywhip._bench.common import _numbered, _outcome, _poll_until_done


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
    kept = [] if p.get("check") else None
    got, t0, t1 = _poll_until_done(partial(sub.receive, True), lambda: finished.value, kept)
    results.put(_outcome(t0, t1, n, got, kept, rate=False))

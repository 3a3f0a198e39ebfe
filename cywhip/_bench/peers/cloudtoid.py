"""cloudtoid-interprocess."""

from cywhip._bench.common import _timed_receive


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

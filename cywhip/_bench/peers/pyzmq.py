"""pyzmq PUSH/PULL over ipc://."""
import os

from cywhip._bench.common import _timed_receive


def _w_zmq(role, p, ready, results, shared):
    import zmq
    n, size, addr = p["count"], p["size"], f"ipc:///tmp/{p['name']}.zmq"
    ctx = zmq.Context()
    try:
        if role == "producer":
            sock = ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.SNDHWM, 100_000)
            ready.wait(60)
            sock.connect(addr)
            msg = b"x" * size
            send = sock.send
            for _ in range(n):
                send(msg, copy=True)
            sock.close(linger=10_000)
            return
        sock = ctx.socket(zmq.PULL)
        sock.setsockopt(zmq.RCVHWM, 100_000)
        sock.bind(addr)
        ready.set()
        results.put(_timed_receive(sock.recv, p.get("total", n)))
        sock.close(linger=0)
        try:
            os.unlink(addr[len("ipc://"):])
        except FileNotFoundError:
            pass
    finally:
        ctx.term()

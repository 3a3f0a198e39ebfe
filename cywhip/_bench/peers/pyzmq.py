"""pyzmq PUSH/PULL over ipc://, blocking and with zmq.asyncio."""
import os
import time

from cywhip._bench.common import MESSAGE, _percentiles, _timed_receive


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


def _w_zmq_asyncio(role, p, ready, results, shared):
    """zmq.asyncio PUSH/PULL over ipc://: a plain PUSH process, an asyncio PULL awaiting recv()."""
    import asyncio
    import zmq
    import zmq.asyncio
    n, size, addr = p["count"], p["size"], f"ipc:///tmp/{p['name']}.zmq"
    if role == "producer":
        _w_zmq(role, p, ready, results, shared)
        return

    async def consume():
        ctx = zmq.asyncio.Context()
        sock = ctx.socket(zmq.PULL)
        sock.setsockopt(zmq.RCVHWM, 100_000)
        sock.bind(addr)
        ready.set()
        try:
            await asyncio.wait_for(sock.recv(), 60)
            t0 = time.perf_counter()
            recv = sock.recv
            for _ in range(n - 1):
                await recv()
            return {"rate": (n - 1) / (time.perf_counter() - t0)}
        finally:
            sock.close(linger=0)
            ctx.term()
            try:
                os.unlink(addr[len("ipc://"):])
            except FileNotFoundError:
                pass

    results.put(asyncio.run(consume()))


def _w_zmq_asyncio_pingpong(role, p, ready, results, shared):
    """Round trips between two zmq.asyncio processes: PAIR over ipc://."""
    import asyncio
    import zmq
    import zmq.asyncio
    n, addr = p["count"], f"ipc:///tmp/{p['name']}.zmq"
    msg = b"x" * MESSAGE

    async def ping():
        ready.wait(60)
        ctx = zmq.asyncio.Context()
        sock = ctx.socket(zmq.PAIR)
        sock.connect(addr)
        rtts = [0] * n
        try:
            for _ in range(min(1000, n)):
                await sock.send(msg)
                await sock.recv()
            for i in range(n):
                t0 = time.perf_counter_ns()
                await sock.send(msg)
                await sock.recv()
                rtts[i] = time.perf_counter_ns() - t0
        finally:
            sock.close(linger=1000)
            ctx.term()
        p50, p99 = _percentiles(rtts)
        return {"p50_us": p50 / 1000, "p99_us": p99 / 1000}

    async def pong():
        ctx = zmq.asyncio.Context()
        sock = ctx.socket(zmq.PAIR)
        sock.bind(addr)
        ready.set()
        try:
            for _ in range(n + min(1000, n)):
                await sock.send(await sock.recv())
        finally:
            sock.close(linger=1000)
            ctx.term()
            try:
                os.unlink(addr[len("ipc://"):])
            except FileNotFoundError:
                pass

    if role == "producer":
        results.put(asyncio.run(ping()))
    else:
        asyncio.run(pong())

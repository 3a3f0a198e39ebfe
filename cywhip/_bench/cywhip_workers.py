"""cywhip's own workers: each runs as consumer or producer in a spawned process."""
import time

from cywhip._bench.common import (
    END, MESSAGE, MIXED_MAX, MIXED_RING, _consumer_done, _last_done, _mixed_messages, _mixed_stream, _numbered,
    _object_message, _percentiles, _send_ends, _seqs, _timed_mixed, _timed_objects, _timed_receive,
)

# ------------------------------------------------------------------ workers
# Each worker runs in its own spawned process: (role, params, ready, results, shared).
# Consumers set `ready` once they can receive; producers wait for it.


def _w_cywhip_stream(role, p, ready, results, shared):
    """One stream of p["size"]-byte messages: through a slot channel of p["capacity"] slots, or
    with p["bytes"] a byte channel of that many bytes (max_queued_bytes)."""
    from cywhip import Receiver, Sender
    name, n, size, mode = p["name"], p["count"], p["size"], p["mode"]
    cap = p.get("capacity", 1024)
    senders = p.get("senders", 1)
    ring = {"max_queued_bytes": p["bytes"]} if p.get("bytes") else {"max_queued_messages": cap}
    if role == "producer":
        msg = b"x" * size
        ready.wait(60)
        with Sender(name, message_length=size, max_senders=senders, **ring) as s:
            if mode in ("single", "single_to_many"):
                send = s.send
                for _ in range(n):
                    send(msg)
            else:
                batch = [msg] * 4096
                left = n
                while left:
                    k = min(left, 4096)
                    s.send_many(batch if k == 4096 else batch[:k])
                    left -= k
        return
    n = p.get("total", n)
    with Receiver(name, message_length=size, max_senders=senders, **ring) as r:
        ready.set()
        if mode == "single":
            results.put(_timed_receive(r.recv, n, 60))
            return
        if mode == "single_to_many":
            # One send per message, received in batches of what is waiting.
            got = len(r.recv_many(8192, timeout=60))
            t0 = time.perf_counter()
            recv_many = r.recv_many
            while got < n:
                got += len(recv_many(8192))
            results.put({"rate": (n - 1) / (time.perf_counter() - t0)})
            return
        got = len(r.recv_many(8192, timeout=60))
        t0 = time.perf_counter()
        while got < n:
            got += len(r.recv_many(8192))
        results.put({"rate": (n - 1) / (time.perf_counter() - t0)})


def _w_cywhip_mixed(role, p, ready, results, shared):
    """The mixed-size stream (common._mixed_messages: 16 B to 64 KiB) through a byte channel of
    p["bytes"] bytes, or with p["slots"] a slot channel of that many slots of 64 KiB; one send and
    one recv per message.  The receiver checks every message and reports the channel's file size."""
    import os
    from cywhip import Receiver, Sender
    from cywhip._region import channel_path
    name, n = p["name"], p["count"]
    ring = ({"max_queued_messages": p["slots"]} if p.get("slots")
            else {"max_queued_bytes": p.get("bytes", MIXED_RING)})
    messages = _mixed_messages()
    if role == "producer":
        ready.wait(60)
        with Sender(name, message_length=MIXED_MAX, **ring) as s:
            send = s.send
            for m in _mixed_stream(n, messages):
                send(m)
        return
    with Receiver(name, message_length=MIXED_MAX, **ring) as r:
        file_bytes = os.stat(channel_path(name)).st_size
        ready.set()
        out = _timed_mixed(r.recv, n, messages, 60)
    results.put(dict(out, file_bytes=file_bytes))


def _w_cywhip_fill(role, p, ready, results, shared):
    """Messages of p["size"] bytes (1 MiB) that the producer makes as it sends them, through a
    byte channel of p["capacity"] of them.  p["fill"] says how a message is made: "numpy",
    computed by NumPy (a preallocated array of 0, 1, 2, ... plus the message's number, written by
    np.add into the message); "preadv", read from a file (os.preadv into the message, a readinto
    from a file's bytes; then the message's number in its first 8 bytes).  With p["reserve"] the
    producer makes each message in the ring (reserve()); without, in a buffer of its own that
    send() then copies into the ring: the same bytes made the same way, one copy more.  The
    receiver takes each message with recv() and checks its first and last 8 bytes."""
    import struct
    from cywhip import Receiver, Sender
    from cywhip._bench.common import _record_bytes
    name, n, size, fill = p["name"], p["count"], p["size"], p["fill"]
    kw = {"message_length": size, "max_queued_bytes": _record_bytes(size, p.get("capacity", 16))}
    words = size // 8
    if role == "producer":
        import numpy as np
        base = np.arange(words, dtype="<u8")
        if fill == "numpy":
            def make(buf, i):
                np.add(base, i, out=np.frombuffer(buf, "<u8"))
        elif fill == "preadv":
            import os
            import tempfile
            source = tempfile.TemporaryFile(dir="/dev/shm")     # unlinked already: nothing is left
            source.write(base.tobytes())
            source.flush()
            fd = source.fileno()

            def make(buf, i):
                if os.preadv(fd, [buf], 0) != size:
                    raise RuntimeError(f"os.preadv read less than the {size} bytes of the source file")
                buf[:8] = i.to_bytes(8, "little")
        else:
            raise ValueError(f"fill {fill!r} is neither 'numpy' nor 'preadv'")
        ready.wait(60)
        with Sender(name, **kw) as s:
            if p["reserve"]:
                reserve = s.reserve
                for i in range(n):
                    with reserve(size) as buf:
                        make(buf, i)
            else:
                scratch = memoryview(bytearray(size))
                send = s.send
                for i in range(n):
                    make(scratch, i)
                    send(scratch)
        return
    # Message i: word 0 is i, the last word words - 1 (+ i when NumPy added i to every word).
    word = struct.Struct("<Q").unpack_from
    last, step = size - 8, 1 if fill == "numpy" else 0
    with Receiver(name, **kw) as r:
        ready.set()
        recv = r.recv
        m = recv(60)
        wrong = int(len(m) != size or word(m, 0)[0] != 0 or word(m, last)[0] != words - 1)
        t0 = time.perf_counter()
        for i in range(1, n):
            m = recv()
            if len(m) != size or word(m, 0)[0] != i or word(m, last)[0] != words - 1 + step * i:
                wrong += 1
        rate = (n - 1) / (time.perf_counter() - t0)
    note = (f"every message's number and last word (checked, {n:,})" if not wrong else
            f"NOT every message: {wrong:,} of {n:,} wrong")
    results.put({"rate": rate, "wrong": wrong, "note": note})


def _w_cywhip_groups(role, p, ready, results, shared):
    """Receiver groups, p["senders"] senders (one unless said; run_pair's producers) and
    p["consumers"] receivers taking with recv() or recv_many() (p["mode"]): each in a group of
    its own (broadcast: every receiver gets all the messages, p["count"] from each sender), or
    with p["share"] all members of one group (each message to one of them: numbered messages,
    then ENDs; shared is a Value counting the members done, and with several senders a pair of
    it and a Value counting the senders done: the last sender done sends the ENDs, after every
    sender's messages).  With p["bytes"], a byte channel whose ring holds as many records of
    that size."""
    from cywhip import Receiver, Sender
    name, n, size, mode, k = p["name"], p["count"], p["size"], p["mode"], p["consumers"]
    share = p.get("share", False)
    cap = p.get("capacity", 1024)
    senders = p.get("senders", 1)
    done, senders_done = shared if isinstance(shared, tuple) else (shared, None)
    if p.get("bytes"):
        from cywhip._testing._model import var_record_size
        kw = {"message_length": size, "max_queued_bytes": cap * var_record_size(size, senders), "max_receivers": k}
    else:
        kw = {"message_length": size, "max_queued_messages": cap, "max_receivers": k}
    if senders > 1:
        kw["max_senders"] = senders
    if role == "producer":
        # run_pair numbers the consumers first: this is sender p["index"] - k of 0, 1, ...
        msgs = _numbered(n, size, start=(p["index"] - k) * n) if share else None
        msg = b"x" * size
        ready.wait(60)
        with Sender(name, **kw) as s:
            send = s.send
            if share:
                for m in msgs:
                    send(m)
                # A member's recv_many may claim two ENDs: send more until all are done.
                if senders == 1 or _last_done(senders_done, senders):
                    _send_ends(lambda: s.try_send(END), done, k, repeat=True)
            else:
                for _ in range(n):
                    send(msg)
        return
    n = p.get("total", n)
    group = "work" if share else f"g{p['index']}"
    kept = []
    with Receiver(name, group=group, **kw) as r:
        ready.set()
        if mode == "recv_many":
            recv_many = r.recv_many
            batch = recv_many(8192, timeout=60)
            t0 = time.perf_counter()
            got = 0
            if share:
                keep = kept.extend
                while batch[-1]:
                    keep(batch)
                    batch = recv_many(8192)
                keep(batch[:batch.index(END)])
                got = len(kept)
            else:
                got = len(batch)
                while got < n:
                    got += len(recv_many(8192))
        else:
            recv = r.recv
            m = recv(60)
            t0 = time.perf_counter()
            if share:
                keep = kept.append
                while m:
                    keep(m)
                    m = recv()
                got = len(kept)
            else:
                for _ in range(n - 1):
                    recv()
                got = n
        t1 = time.perf_counter()
    out = {"count": got, "t0": t0, "t1": t1}
    if share:
        _consumer_done(done)
        out["seqs"] = _seqs(kept, size)
    results.put(out)


def _w_cywhip_callback(role, p, ready, results, shared):
    """on_message with a trivial serializer and deserializer."""
    import threading
    from cywhip import Receiver, Sender
    name, n, size = p["name"], p["count"], p["size"]
    if role == "producer":
        msg = b"x" * size
        ready.wait(60)
        with Sender(name, message_serializer=lambda m, b: b.write_bytes(m), message_length=size,
                    max_queued_messages=1024) as s:
            batch = [msg] * 4096
            for _ in range(n // 4096):
                s.send_many(batch)
        return
    done = threading.Event()
    state = {"count": 0, "t0": None}

    def on_message(msg):
        if state["t0"] is None:
            state["t0"] = time.perf_counter()
        state["count"] += 1
        if state["count"] >= n // 4096 * 4096:
            done.set()

    r = Receiver(name, message_deserializer=lambda b: b.read_bytes(), message_length=size,
                 max_queued_messages=1024, on_message=on_message)
    ready.set()
    done.wait(120)
    elapsed = time.perf_counter() - state["t0"]
    r.close()
    results.put({"rate": (state["count"] - 1) / elapsed})


def _w_cywhip_array(role, p, ready, results, shared):
    import numpy as np
    from cywhip import Receiver, Sender
    name, n, cap = p["name"], p["count"], p.get("capacity", 65536)
    dt = np.dtype([("seq", "<i8"), ("a", "<i8"), ("b", "<i8"), ("c", "<i8")])
    if role == "producer":
        arr = np.zeros(min(n, 1 << 20), dt)
        ready.wait(60)
        with Sender(name, message_type=dt, max_queued_messages=cap) as s:
            left = n
            while left:
                k = min(left, len(arr))
                s.send_array(arr[:k])
                left -= k
        return
    out = np.empty(65536, dt)
    with Receiver(name, message_type=dt, max_queued_messages=cap) as r:
        ready.set()
        got = r.recv_into(out, timeout=60)
        t0 = time.perf_counter()
        while got < n:
            got += r.recv_into(out)
        results.put({"rate": (n - 1) / (time.perf_counter() - t0)})


def _w_cywhip_objects(role, p, ready, results, shared):
    """message_type=object: a dict holding a float64 array of p["size"] bytes per message, its
    array copied straight into the ring and out of it."""
    from cywhip import Receiver, Sender
    name, n, size = p["name"], p["count"], p["size"]
    kw = {"message_length": size + 4096, "max_queued_messages": p.get("capacity", 16), "message_type": object}
    if role == "producer":
        msg = _object_message(size)
        ready.wait(60)
        with Sender(name, **kw) as s:
            send = s.send
            for _ in range(n):
                send(msg)
        return
    with Receiver(name, **kw) as r:
        ready.set()
        results.put(_timed_objects(r.recv, n, size, 60))


def _w_cywhip_pingpong(role, p, ready, results, shared):
    from cywhip import Receiver, Sender
    name, n, spin = p["name"], p["count"], p["spin"]
    a, b = name + "-a", name + "-b"
    msg = b"x" * MESSAGE
    if role == "producer":      # the pinging side
        ready.wait(60)
        with Sender(a, message_length=MESSAGE, max_queued_messages=16, spin_time=spin) as s, \
                Receiver(b, message_length=MESSAGE, max_queued_messages=16, spin_time=spin) as r:
            send, recv, clock = s.send, r.recv, time.perf_counter_ns
            rtts = [0] * n
            for _ in range(min(1000, n)):       # warm up
                send(msg)
                recv()
            for i in range(n):
                t0 = clock()
                send(msg)
                recv()
                rtts[i] = clock() - t0
        p50, p99 = _percentiles(rtts)
        results.put({"p50_us": p50 / 1000, "p99_us": p99 / 1000})
        return
    with Receiver(a, message_length=MESSAGE, max_queued_messages=16, spin_time=spin) as r, \
            Sender(b, message_length=MESSAGE, max_queued_messages=16, spin_time=spin) as s:
        ready.set()
        send, recv = s.send, r.recv
        for _ in range(n + min(1000, n)):
            send(recv(timeout=60))


def _wakeup_producer(name, n, idle, ready):
    """Send n timestamps (perf_counter_ns), each after idle seconds of nothing."""
    from cywhip import Sender
    ready.wait(60)
    with Sender(name, message_length=16, max_queued_messages=16) as s:
        for _ in range(n):
            time.sleep(idle)
            s.send(time.perf_counter_ns().to_bytes(8, "little"))


def _w_cywhip_wakeup(role, p, ready, results, shared):
    """A receiver idle between messages: CPU while idle, and how late it wakes."""
    from cywhip import Receiver
    name, n, idle = p["name"], p["count"], p["idle"]
    if role == "producer":
        _wakeup_producer(name, n, idle, ready)
        return
    with Receiver(name, message_length=16, max_queued_messages=16) as r:
        ready.set()
        lat = []
        for _ in range(n):
            sent = int.from_bytes(r.recv(timeout=60), "little")
            lat.append(time.perf_counter_ns() - sent)
        p50, p99 = _percentiles(lat)
        results.put({"p50_us": p50 / 1000, "p99_us": p99 / 1000})


def _w_cywhip_idle(role, p, ready, results, shared):
    from cywhip import Receiver, ReceiveTimeout
    if role == "producer":
        return
    with Receiver(p["name"], message_length=16, max_queued_messages=16) as r:
        ready.set()
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            r.recv(timeout=p["seconds"])
        except ReceiveTimeout:
            pass
        results.put({"cpu_percent": 100 * (time.process_time() - cpu) / (time.perf_counter() - wall)})


# ------------------------------------------------------------ asyncio workers
# The consumer (and, for round trips, both sides) runs on an asyncio event loop;
# p["loop"] == "uvloop" runs it on uvloop instead.


def _run_loop(p, coro):
    import asyncio
    if p.get("loop") == "uvloop":
        import uvloop
        return uvloop.run(coro)
    return asyncio.run(coro)


def _w_cywhip_async_stream(role, p, ready, results, shared):
    """A plain sender process; an asyncio receiver taking with recv() or recv_many()."""
    name, n, size, mode = p["name"], p["count"], p["size"], p["mode"]
    cap = p.get("capacity", 1024)
    if role == "producer":
        _w_cywhip_stream(role, p, ready, results, shared)
        return
    import cywhip.asyncio as ca

    async def consume():
        async with ca.Receiver(name, message_length=size, max_queued_messages=cap) as r:
            ready.set()
            if mode == "single":
                recv = r.recv
                await recv(timeout=60)
                t0 = time.perf_counter()
                for _ in range(n - 1):
                    await recv()
                return {"rate": (n - 1) / (time.perf_counter() - t0)}
            got = len(await r.recv_many(8192, timeout=60))
            t0 = time.perf_counter()
            while got < n:
                got += len(await r.recv_many(8192))
            return {"rate": (n - 1) / (time.perf_counter() - t0)}

    results.put(_run_loop(p, consume()))


def _w_cywhip_waiting(role, p, ready, results, shared):
    """recv() one at a time while the messages are already waiting: the producer fills the
    ring (as large as the count) and exits; the consumer then times taking them all."""
    from cywhip import Receiver, Sender
    name, n, size = p["name"], p["count"], MESSAGE
    if role == "producer":
        ready.wait(60)
        with Sender(name, message_length=size, max_queued_messages=n) as s:
            msg = b"x" * size
            s.send_many([msg] * n)
        return
    if not p.get("asyncio"):
        with Receiver(name, message_length=size, max_queued_messages=n) as r:
            ready.set()
            while r.depth < n:
                time.sleep(0.001)
            recv = r.recv
            t0 = time.perf_counter()
            for _ in range(n):
                recv()
            results.put({"rate": n / (time.perf_counter() - t0)})
        return
    import asyncio
    import cywhip.asyncio as ca

    async def consume():
        async with ca.Receiver(name, message_length=size, max_queued_messages=n) as r:
            ready.set()
            while r.depth < n:
                await asyncio.sleep(0.001)
            recv = r.recv
            t0 = time.perf_counter()
            for _ in range(n):
                await recv()
            return {"rate": n / (time.perf_counter() - t0)}

    results.put(_run_loop(p, consume()))


def _w_cywhip_async_pingpong(role, p, ready, results, shared):
    """Round trips between two asyncio processes, each awaiting its receive."""
    import cywhip.asyncio as ca
    name, n = p["name"], p["count"]
    a, b = name + "-a", name + "-b"
    msg = b"x" * MESSAGE
    kw = {"message_length": MESSAGE, "max_queued_messages": 16}

    async def ping():
        ready.wait(60)
        async with ca.Sender(a, **kw) as s, ca.Receiver(b, **kw) as r:
            clock = time.perf_counter_ns
            rtts = [0] * n
            for _ in range(min(1000, n)):
                await s.send(msg)
                await r.recv(timeout=60)
            for i in range(n):
                t0 = clock()
                await s.send(msg)
                await r.recv(timeout=60)
                rtts[i] = clock() - t0
        p50, p99 = _percentiles(rtts)
        return {"p50_us": p50 / 1000, "p99_us": p99 / 1000}

    async def pong():
        async with ca.Receiver(a, **kw) as r, ca.Sender(b, **kw) as s:
            ready.set()
            for _ in range(n + min(1000, n)):
                await s.send(await r.recv(timeout=60))

    if role == "producer":
        results.put(_run_loop(p, ping()))
    else:
        _run_loop(p, pong())


def _w_cywhip_async_wakeup(role, p, ready, results, shared):
    """An asyncio receiver idle between messages: how late it wakes."""
    import cywhip.asyncio as ca
    name, n, idle = p["name"], p["count"], p["idle"]
    if role == "producer":
        _wakeup_producer(name, n, idle, ready)
        return

    async def consume():
        async with ca.Receiver(name, message_length=16, max_queued_messages=16) as r:
            ready.set()
            lat = []
            for _ in range(n):
                sent = int.from_bytes(await r.recv(timeout=60), "little")
                lat.append(time.perf_counter_ns() - sent)
        p50, p99 = _percentiles(lat)
        return {"p50_us": p50 / 1000, "p99_us": p99 / 1000}

    results.put(_run_loop(p, consume()))

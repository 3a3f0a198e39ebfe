"""The floors built with the package (cywhip._bench._floor): a spinning memcpy ring, a futex ping-pong,
the Python call floor."""

from cywhip._bench.common import _Shm, _percentiles, _send_or_time


def _w_floor_calls(role, p, ready, results, shared):
    """The Python call floor of single send/recv: as cywhip's row, a process calling send(msg)
    per message and one calling recv() per message, on a CallFloor (its send does nothing, its
    recv returns a fresh bytes object of p["size"] bytes)."""
    from cywhip._bench import _floor
    end = _floor.CallFloor(p["size"])
    _send_or_time(role, ready, results, end.send, end.recv, p["count"], p["size"], 60)


def _w_floor_ring(role, p, ready, results, shared):
    from cywhip._bench import _floor
    size, n = p["size"], p["count"]
    if role == "producer":
        ready.wait(60)
    shm = _Shm(p["name"], _floor.ring_bytes(size), create=(role == "consumer"))
    try:
        if role == "producer":
            _floor.ring_send(shm.map, n, size)
            return
        ready.set()
        seconds = _floor.ring_recv(shm.map, n, size)
        results.put({"rate": n / seconds})
    finally:
        shm.close()


def _w_floor_futex(role, p, ready, results, shared):
    from array import array
    from cywhip._bench import _floor
    n = p["count"]
    if role == "producer":
        ready.wait(60)
    shm = _Shm(p["name"], 4096, create=(role == "consumer"))
    try:
        if role == "producer":
            rtt = array("q", bytes(8 * n))
            _floor.futex_pingpong(shm.map, n, True, rtt)
            p50, p99 = _percentiles(rtt.tolist())
            results.put({"p50_us": p50 / 1000, "p99_us": p99 / 1000})
            return
        ready.set()
        _floor.futex_pingpong(shm.map, n, False)
    finally:
        shm.close()


def _w_floor_ring_each(role, p, ready, results, shared):
    """The floor ring one record at a time: a publish (and a release) per record, in a ring of
    p["capacity"] records (default _floor.RING_SLOTS)."""
    from cywhip._bench import _floor
    size, n, cap = p["size"], p["count"], p.get("capacity", _floor.RING_SLOTS)
    if role == "producer":
        ready.wait(60)
    shm = _Shm(p["name"], _floor.ring_bytes(size, cap), create=(role == "consumer"))
    try:
        if role == "producer":
            _floor.ring_send_each(shm.map, n, size, cap)
            return
        ready.set()
        seconds, wrong = _floor.ring_recv_each(shm.map, n, size, cap)
        if wrong:
            raise RuntimeError(f"{wrong} of {n} records were wrong")
        results.put({"rate": (n - 1) / seconds})
    finally:
        shm.close()


def _w_floor_wakeup(role, p, ready, results, shared):
    """The floor of a wake-up after idle, without cywhip: n datagrams of a timestamp
    (perf_counter_ns) to an abstract socket, each after p["idle"] seconds of nothing; the
    consumer waits in a blocking recv (p["loop"] == "block"), or on an event loop
    (p["loop"]: "asyncio", "uvloop") through add_reader, a future and the task awaiting it: what
    any loop-driven wake-up pays, cywhip's asyncio ends included."""
    import socket
    import time
    name, n, idle = b"\0cywhip-floor-" + p["name"].encode(), p["count"], p["idle"]
    if role == "producer":
        ready.wait(60)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            for _ in range(n):
                time.sleep(idle)
                s.sendto(time.perf_counter_ns().to_bytes(8, "little"), name)
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(name)
        lat = []
        if p["loop"] == "block":
            ready.set()
            for _ in range(n):
                sent = int.from_bytes(sock.recv(8), "little")
                lat.append(time.perf_counter_ns() - sent)
        else:
            import asyncio

            async def consume():
                loop = asyncio.get_running_loop()
                sock.setblocking(False)
                waiting = []

                def readable():
                    data = sock.recv(8)
                    if waiting and not waiting[0].done():
                        waiting.pop().set_result(data)
                loop.add_reader(sock.fileno(), readable)
                ready.set()
                try:
                    for _ in range(n):
                        fut = loop.create_future()
                        waiting[:] = [fut]
                        sent = int.from_bytes(await fut, "little")
                        lat.append(time.perf_counter_ns() - sent)
                finally:
                    loop.remove_reader(sock.fileno())

            if p["loop"] == "uvloop":
                import uvloop
                uvloop.run(consume())
            else:
                asyncio.run(consume())
    p50, p99 = _percentiles(lat)
    results.put({"p50_us": p50 / 1000, "p99_us": p99 / 1000})

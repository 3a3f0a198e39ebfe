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

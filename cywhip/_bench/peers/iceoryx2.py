"""iceoryx2 publish-subscribe: round trips, a stream, a broadcast to several subscribers."""
import time

from cywhip._bench.common import MESSAGE, _percentiles, _timed_receive


def _w_iceoryx2_pingpong(role, p, ready, results, shared):
    import ctypes
    import iceoryx2 as iox2

    class Msg(ctypes.Structure):
        _fields_ = [("seq", ctypes.c_int64), ("pad", ctypes.c_uint8 * (MESSAGE - 8))]

    n, name = p["count"], p["name"]
    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)

    def service(suffix):
        return node.service_builder(iox2.ServiceName.new(f"{name}/{suffix}")) \
            .publish_subscribe(Msg).open_or_create()

    ping, pong = service("ping"), service("pong")
    if role == "producer":
        pub, sub = ping.publisher_builder().create(), pong.subscriber_builder().create()
        ready.wait(60)
        time.sleep(0.2)  # let the echo side's ports connect
        clock = time.perf_counter_ns
        rtts = [0] * n
        for i in range(n + min(1000, n)):
            t0 = clock()
            sample = pub.loan_uninit().write_payload(Msg(seq=i))
            sample.send()
            while True:                      # busy polling, iceoryx2's fastest mode
                got = sub.receive()
                if got is not None:
                    break
            if i >= min(1000, n):
                rtts[i - min(1000, n)] = clock() - t0
        p50, p99 = _percentiles(rtts)
        results.put({"p50_us": p50 / 1000, "p99_us": p99 / 1000})
        return
    pub, sub = pong.publisher_builder().create(), ping.subscriber_builder().create()
    ready.set()
    for i in range(n + min(1000, n)):
        while True:
            got = sub.receive()
            if got is not None:
                break
        seq = got.payload().contents.seq
        del got
        pub.loan_uninit().write_payload(Msg(seq=seq)).send()


def _w_iceoryx2_stream(role, p, ready, results, shared):
    """iceoryx2 publish-subscribe of 32-byte ctypes records, nothing dropped: the publisher
    retries while the subscriber's buffer is full, the subscriber busy-polls."""
    import ctypes
    import iceoryx2 as iox2

    class Msg(ctypes.Structure):
        _fields_ = [("seq", ctypes.c_int64), ("pad", ctypes.c_uint8 * (MESSAGE - 8))]

    n, name = p["count"], p["name"]
    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    service = node.service_builder(iox2.ServiceName.new(name)).publish_subscribe(Msg) \
        .enable_safe_overflow(False).subscriber_max_buffer_size(1024).open_or_create()
    if role == "producer":
        pub = service.publisher_builder() \
            .backpressure_strategy(iox2.BackpressureStrategy.RetryUntilDelivered).create()
        ready.wait(60)
        time.sleep(0.2)  # let the subscriber's port connect
        for i in range(n):
            pub.loan_uninit().write_payload(Msg(seq=i)).send()
        return
    sub = service.subscriber_builder().buffer_size(1024).create()
    ready.set()

    def receive():
        while True:
            sample = sub.receive()
            if sample is not None:
                return sample

    results.put(_timed_receive(receive, n))


def _w_iceoryx2_broadcast(role, p, ready, results, shared):
    """iceoryx2 publish-subscribe to p["consumers"] subscribers, nothing dropped: the publisher
    starts once it sees them all and retries while a subscriber's buffer is full; each
    subscriber busy-polls."""
    import ctypes
    import iceoryx2 as iox2

    class Msg(ctypes.Structure):
        _fields_ = [("seq", ctypes.c_int64), ("pad", ctypes.c_uint8 * (MESSAGE - 8))]

    n, name, k = p["count"], p["name"], p["consumers"]
    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    service = node.service_builder(iox2.ServiceName.new(name)).publish_subscribe(Msg) \
        .enable_safe_overflow(False).subscriber_max_buffer_size(1024).max_subscribers(max(2, k)) \
        .open_or_create()
    if role == "producer":
        pub = service.publisher_builder() \
            .backpressure_strategy(iox2.BackpressureStrategy.RetryUntilDelivered).create()
        ready.wait(60)
        deadline = time.monotonic() + 60
        while service.dynamic_config.number_of_subscribers < k and time.monotonic() < deadline:
            time.sleep(0.01)
        pub.update_connections()
        for i in range(n):
            pub.loan_uninit().write_payload(Msg(seq=i)).send()
        return
    sub = service.subscriber_builder().buffer_size(1024).create()
    ready.set()
    receive = sub.receive
    # A subscriber can miss messages (one connected late): it stops after 10 s with none and
    # reports how many it got, instead of waiting forever for the rest.
    quiet = 10.0

    def take():
        since = time.monotonic()
        while True:
            for _ in range(1000):
                if receive() is not None:
                    return True
            if time.monotonic() - since > quiet:
                return False

    if not take():
        raise RuntimeError(f"no message arrived in {quiet} s")
    got = 1
    t0 = t1 = time.perf_counter()
    while got < n and take():
        got += 1
        t1 = time.perf_counter()
    results.put({"count": got, "t0": t0, "t1": t1})

"""The benchmark table: every workload, for cywhip and each peer, as rows to run."""
import os

from cywhip._bench.common import (
    BATCH_RING, MESSAGE, MIXED_RING, MIXED_SLOTS, SPAWN, _aggregate, _gbps, _in_dir, _name, _per_consumer,
    _record_bytes, _removing, run_pair,
)
from cywhip._bench.cywhip_workers import (
    _w_cywhip_array, _w_cywhip_async_pingpong, _w_cywhip_async_stream, _w_cywhip_async_wakeup,
    _w_cywhip_callback, _w_cywhip_fill, _w_cywhip_groups, _w_cywhip_idle, _w_cywhip_mixed, _w_cywhip_objects,
    _w_cywhip_pingpong, _w_cywhip_stream, _w_cywhip_waiting, _w_cywhip_wakeup,
)
from cywhip._bench import capi
from cywhip._bench.floors import _w_floor_calls, _w_floor_futex, _w_floor_ring, _w_floor_ring_each, _w_floor_wakeup
from cywhip._bench.peers.cloudtoid import _w_cloudtoid, _w_cloudtoid_mixed, _w_cloudtoid_shared
from cywhip._bench.peers.cykit import _w_cykit_mpsc, _w_cykit_spmc
from cywhip._bench.peers.kickmsg import _w_kickmsg
from cywhip._bench.peers.msgq import _w_msgq_broadcast
from cywhip._bench.peers.subetha import (
    _w_subetha_broadcast, _w_subetha_mpsc, _w_subetha_shared, _w_subetha_spsc,
)
from cywhip._bench.peers.zenoh import _removing_segments, _w_zenoh
from cywhip._bench.peers.iceoryx2 import _w_iceoryx2_broadcast, _w_iceoryx2_pingpong, _w_iceoryx2_stream
from cywhip._bench.peers.pyzmq import (
    GROUP_HWM, MIXED_HWM, _w_zmq, _w_zmq_asyncio, _w_zmq_asyncio_pingpong, _w_zmq_pubsub, _w_zmq_shared,
)
from cywhip._bench.peers.queues import _faster_fifo, _w_pipe, _w_queue, _w_queue_shared
from cywhip._bench.peers import natsjs

BROADCAST = "broadcast to 2 consumers, 32 B, per consumer"
MIXED = "mixed sizes, 16 B to 64 KiB (log-uniform, seeded), every message checked"
BIG = "1 MiB messages"
# The byte channel of a 32-byte row queues as many messages as the slot channel beside it.
SINGLE_BYTES = _record_bytes(MESSAGE, 1024)
BATCH_BYTES = _record_bytes(MESSAGE, BATCH_RING)
OBJECTS = "Python objects: a dict holding a 1 MiB float64 array"
SHARING = "a group of 2 sharing work, 32 B, aggregate"
SUBETHA, KICKMSG, MSGQ, ZENOH = "SubEtha 0.6.0", "kickmsg 0.9.2", "msgq 1.0", "Zenoh 1.10.2"
BRIDGE = f"bridge through NATS JetStream, 32 B, batches of {natsjs.BATCH}"


CHECK = "CYWHIP_BENCH_CHECK"


def _checking(params):
    """params, with check=True where the environment says CYWHIP_BENCH_CHECK=1 (python -m cywhip
    bench --check): the newest peers' consumers then keep every message and check its number,
    each once and in order, at the cost of a Python object kept per message."""
    return dict(params, check=params.get("check", os.environ.get(CHECK) == "1"))


def _subetha(worker, params, **kw):
    """A SubEtha run, its files in a directory of its own."""
    return _in_dir(lambda d: run_pair(worker, dict(_checking(params), dir=d), **kw))


def _kickmsg(params, **kw):
    """A kickmsg run: its region is /dev/shm/<name>, removed afterwards."""
    shared = (SPAWN.Event(), SPAWN.Value("i", 0))
    return _removing(params["name"], lambda: run_pair(_w_kickmsg, _checking(params), shared=shared, **kw))


def _msgq(params, **kw):
    """A msgq run: its ring is /dev/shm/msgq_<name>, removed afterwards."""
    shared = (SPAWN.Event(), SPAWN.Value("i", 0))
    return _removing(params["name"], lambda: run_pair(_w_msgq_broadcast, _checking(params), shared=shared, **kw))


def _zenoh(params, **kw):
    """A Zenoh run: its sockets in a directory of its own, the segments it leaves removed."""
    shared = (SPAWN.Value("i", 0), SPAWN.Value("i", 0))
    return _removing_segments(lambda: _in_dir(lambda d: run_pair(_w_zenoh, dict(_checking(params), dir=d),
                                                                 shared=shared, **kw)))


def workloads(quick=False):
    """The benchmark table: (group, label, system, runner, unit, figure key, higher_is_better,
    processes: how many ran on the machine's cores at once)."""
    n = 200_000 if quick else 2_000_000
    rt = 20_000 if quick else 500_000        # round trips: 2 messages each
    blocking_rt = 5_000 if quick else 500_000
    rows = []

    def add(group, system, label, unit, key, fn, needs=None, versus=None, processes=2, also=None):
        # versus: part of the label of the cywhip row a peer is compared with (default: the first).
        # also: more figures of the same runs, [(key, unit)], shown beside the first.
        rows.append({"group": group, "system": system, "label": label, "unit": unit, "key": key,
                     "run": fn, "needs": needs, "versus": versus, "processes": processes, "also": also})

    single = "single send/recv, 32 B"
    add(single, "cywhip", "send/recv", "msg/s", "rate",
        lambda: run_pair(_w_cywhip_stream, {"name": _name("s"), "count": n, "size": MESSAGE, "mode": "single"}))
    add(single, "cywhip", f"send/recv, byte channel (max_queued_bytes={SINGLE_BYTES:,}: as many messages)",
        "msg/s", "rate",
        lambda: run_pair(_w_cywhip_stream, {"name": _name("sy"), "count": n, "size": MESSAGE, "mode": "single",
                                            "bytes": SINGLE_BYTES}))
    add(single, "multiprocessing.Queue", "put/get", "msg/s", "rate",
        lambda: run_pair(_w_queue, {"count": max(n // 10, 100_000) if quick else 1_000_000, "size": MESSAGE},
                         shared=SPAWN.Queue()))
    add(single, "multiprocessing.Pipe", "send_bytes/recv_bytes", "msg/s", "rate",
        lambda: run_pair(_w_pipe, {"count": n // 2, "size": MESSAGE}, shared=SPAWN.Pipe(duplex=False)))
    add(single, "faster-fifo", "put/get", "msg/s", "rate",
        lambda: run_pair(_w_queue, {"count": n // 2, "size": MESSAGE}, shared=_faster_fifo()),
        needs="faster_fifo")
    add(single, "pyzmq ipc://", "PUSH/PULL send/recv", "msg/s", "rate",
        lambda: run_pair(_w_zmq, {"name": _name("z"), "count": n // 2, "size": MESSAGE}), needs="zmq")
    add(single, "cloudtoid-interprocess", "try_send/receive", "msg/s", "rate",
        lambda: _in_dir(lambda d: run_pair(_w_cloudtoid, {"name": _name("c"), "dir": d, "count": n,
                                                           "size": MESSAGE})),
        needs="cloudtoid_interprocess")

    add(single, "iceoryx2", "loan/send + busy-poll receive", "msg/s", "rate",
        lambda: run_pair(_w_iceoryx2_stream, {"name": _name("j"), "count": n // 4}), needs="iceoryx2")
    add(single, SUBETHA, "SpscRing push/pop, polling", "msg/s", "rate",
        lambda: _subetha(_w_subetha_spsc, {"name": _name("es"), "count": n // 2, "mode": "single"}),
        needs="subetha")
    add(single, ZENOH, "put/recv, plain, Unix socket", "msg/s", "rate",
        lambda: _zenoh({"name": _name("zp"), "count": n // 10}), needs="zenoh")
    add(single, ZENOH, "put/recv, shared memory (a ShmProvider buffer per message)", "msg/s", "rate",
        lambda: _zenoh({"name": _name("zs"), "count": n // 40, "shm": True}), needs="zenoh")
    # What the same calls cost doing nothing: a no-op send, a recv returning a fresh bytes object.
    add(single, "Python calls (floor)", "no-op send, recv returning fresh bytes", "msg/s", "rate",
        lambda: run_pair(_w_floor_calls, {"count": n, "size": MESSAGE}))
    add(single, "cywhip", "send/recv, one sender on a max_senders=4 channel", "msg/s", "rate",
        lambda: run_pair(_w_cywhip_stream, {"name": _name("s4"), "count": n, "size": MESSAGE, "mode": "single",
                                            "senders": 4}))

    # Two producer processes and a consumer: three processes on this machine's cores.
    fanin = "2 senders → 1 receiver, 32 B, one send per message (aggregate)"
    per = n // 2
    add(fanin, "cywhip", "send → recv, max_senders=2", "msg/s", "rate",
        lambda: run_pair(_w_cywhip_stream, {"name": _name("f"), "count": per, "size": MESSAGE, "mode": "single",
                                            "senders": 2}, producers=2), processes=3)
    add(fanin, "cywhip", "send → recv_many, max_senders=2", "msg/s", "rate",
        lambda: run_pair(_w_cywhip_stream, {"name": _name("g"), "count": per, "size": MESSAGE,
                                            "mode": "single_to_many", "senders": 2}, producers=2), processes=3)
    add(fanin, "cykit 0.1.0", "MPSC push/pop", "msg/s", "rate",
        lambda: run_pair(_w_cykit_mpsc, {"name": _name("k"), "count": per, "size": MESSAGE}, producers=2),
        needs="cykit", processes=3)
    add(fanin, "cloudtoid-interprocess", "2 publishers try_send/receive", "msg/s", "rate",
        lambda: _in_dir(lambda d: run_pair(_w_cloudtoid, {"name": _name("c"), "dir": d, "count": per,
                                                           "size": MESSAGE}, producers=2)),
        needs="cloudtoid_interprocess", processes=3)
    add(fanin, "pyzmq ipc://", "2 PUSH → PULL send/recv", "msg/s", "rate",
        lambda: run_pair(_w_zmq, {"name": _name("z"), "count": per // 2, "size": MESSAGE}, producers=2),
        needs="zmq", processes=3)
    add(fanin, SUBETHA, "mpsc_pool, 2 MpscProducer push → MpscConsumer pop", "msg/s", "rate",
        lambda: _subetha(_w_subetha_mpsc, {"name": _name("em"), "count": per // 2}, producers=2),
        needs="subetha", processes=3)
    add(fanin, KICKMSG, "PubSub region, 2 Publisher send → Subscriber try_receive", "msg/s", "rate",
        lambda: _kickmsg({"name": _name("km"), "count": per // 2}, producers=2), needs="kickmsg", processes=3)
    add(fanin, "faster-fifo", "put/get", "msg/s", "rate",
        lambda: run_pair(_w_queue, {"count": per // 4, "size": MESSAGE}, shared=_faster_fifo(), producers=2),
        needs="faster_fifo", processes=3)
    add(fanin, "multiprocessing.Queue", "put/get", "msg/s", "rate",
        lambda: run_pair(_w_queue, {"count": max(per // 10, 50_000), "size": MESSAGE}, shared=SPAWN.Queue(),
                         producers=2), processes=3)

    # Receiver groups: one sender and two receivers, three processes on this machine's cores
    # (four for the byte channel of two senders, each sending half the messages).
    # Broadcast: each receiver in a group of its own gets every message; the figure is per
    # receiver, beside a one-to-one channel's in the same run.
    add(BROADCAST, "cywhip", "2 groups of 1, send → recv_many", "msg/s", "rate",
        lambda: _per_consumer(run_pair(_w_cywhip_groups, {"name": _name("ba"), "count": n, "size": MESSAGE,
                                                          "mode": "recv_many"}, consumers=2), n),
        processes=3)
    add(BROADCAST, "cywhip", "2 groups of 1, send → recv", "msg/s", "rate",
        lambda: _per_consumer(run_pair(_w_cywhip_groups, {"name": _name("bb"), "count": n, "size": MESSAGE,
                                                          "mode": "recv"}, consumers=2), n),
        processes=3)
    add(BROADCAST, "cywhip", "byte channel, 2 groups of 1, send → recv_many", "msg/s", "rate",
        lambda: _per_consumer(run_pair(_w_cywhip_groups, {"name": _name("bd"), "count": n, "size": MESSAGE,
                                                          "mode": "recv_many", "bytes": True}, consumers=2), n),
        processes=3)
    add(BROADCAST, "cywhip", "byte channel of 2 senders (max_senders=2), 2 groups of 1, send → recv_many", "msg/s",
        "rate",
        lambda: _per_consumer(run_pair(_w_cywhip_groups, {"name": _name("be"), "count": n // 2, "size": MESSAGE,
                                                          "mode": "recv_many", "bytes": True, "senders": 2},
                                       producers=2, consumers=2), n),
        processes=4)
    add(BROADCAST, "cywhip", "one-to-one send → recv_many (no groups)", "msg/s", "rate",
        lambda: run_pair(_w_cywhip_stream, {"name": _name("bc"), "count": n, "size": MESSAGE,
                                            "mode": "single_to_many"}))
    add(BROADCAST, "cykit 0.1.0", "SPMC push/pop", "msg/s", "rate",
        lambda: _per_consumer(run_pair(_w_cykit_spmc, {"name": _name("bk"), "count": n // 2, "size": MESSAGE},
                                       consumers=2), n // 2),
        needs="cykit", processes=3)
    add(BROADCAST, "pyzmq ipc://", f"PUB → 2 SUB send/recv, high-water marks {GROUP_HWM:,}", "msg/s", "rate",
        lambda: _per_consumer(run_pair(_w_zmq_pubsub, {"name": _name("bz"), "count": n // 4, "size": MESSAGE},
                                       shared=(SPAWN.Value("i", 0), SPAWN.Value("i", 0)), consumers=2), n // 4),
        needs="zmq", processes=3)
    add(BROADCAST, "iceoryx2", "publish-subscribe, loan/send + busy-poll receive", "msg/s", "rate",
        lambda: _per_consumer(run_pair(_w_iceoryx2_broadcast, {"name": _name("bj"), "count": n // 10},
                                       consumers=2), n // 10),
        needs="iceoryx2", processes=3)

    add(BROADCAST, SUBETHA, "BroadcastRing push → recv, polling", "msg/s", "rate",
        lambda: _per_consumer(_subetha(_w_subetha_broadcast, {"name": _name("eb"), "count": n // 2},
                                       shared=SPAWN.Event(), consumers=2), n // 2),
        needs="subetha", processes=3)
    add(BROADCAST, KICKMSG, "PubSub region, Publisher send → 2 Subscriber try_receive", "msg/s", "rate",
        lambda: _per_consumer(_kickmsg({"name": _name("kb"), "count": n // 2}, consumers=2), n // 2),
        needs="kickmsg", processes=3)
    add(BROADCAST, MSGQ, "PubSocket send → 2 SubSocket receive(non_blocking=True)", "msg/s", "rate",
        lambda: _per_consumer(_msgq({"name": _name("qb"), "count": n // 20}, consumers=2), n // 20),
        needs="msgq", processes=3)
    add(BROADCAST, ZENOH, "put → 2 subscribers recv, plain, Unix sockets", "msg/s", "rate",
        lambda: _per_consumer(_zenoh({"name": _name("zb"), "count": n // 10}, consumers=2), n // 10),
        needs="zenoh", processes=3)
    add(BROADCAST, ZENOH, "put → 2 subscribers recv, shared memory", "msg/s", "rate",
        lambda: _per_consumer(_zenoh({"name": _name("zc"), "count": n // 40, "shm": True}, consumers=2), n // 40),
        needs="zenoh", processes=3)

    # Work sharing: two receivers split one stream of numbered messages; the figure is both
    # together, and every message must arrive exactly once across them (checked).  With two
    # senders each numbers its half (from 0 and from share // 2), and the last done sends the ENDs.
    share = n // 2
    add(SHARING, "cywhip", "1 group of 2 members, send → recv_many", "msg/s", "rate",
        lambda: _aggregate(run_pair(_w_cywhip_groups, {"name": _name("wa"), "count": share, "size": MESSAGE,
                                                       "mode": "recv_many", "share": True},
                                    shared=SPAWN.Value("i", 0), consumers=2), share),
        processes=3)
    add(SHARING, "cywhip", "byte channel, 1 group of 2 members, send → recv_many", "msg/s", "rate",
        lambda: _aggregate(run_pair(_w_cywhip_groups, {"name": _name("wd"), "count": share, "size": MESSAGE,
                                                       "mode": "recv_many", "share": True, "bytes": True},
                                    shared=SPAWN.Value("i", 0), consumers=2), share),
        processes=3)
    add(SHARING, "cywhip", "byte channel of 2 senders (max_senders=2), 1 group of 2 members, send → recv_many",
        "msg/s", "rate",
        lambda: _aggregate(run_pair(_w_cywhip_groups, {"name": _name("we"), "count": share // 2, "size": MESSAGE,
                                                       "mode": "recv_many", "share": True, "bytes": True,
                                                       "senders": 2},
                                    shared=(SPAWN.Value("i", 0), SPAWN.Value("i", 0)), producers=2, consumers=2),
                           share),
        processes=4)
    add(SHARING, "cywhip", "1 group of 2 members, send → recv", "msg/s", "rate",
        lambda: _aggregate(run_pair(_w_cywhip_groups, {"name": _name("wb"), "count": share, "size": MESSAGE,
                                                       "mode": "recv", "share": True},
                                    shared=SPAWN.Value("i", 0), consumers=2), share),
        processes=3)
    add(SHARING, "cloudtoid-interprocess", "2 subscribers, try_send/receive", "msg/s", "rate",
        lambda: _in_dir(lambda d: _aggregate(run_pair(_w_cloudtoid_shared, {"name": _name("wc"), "dir": d,
                                                                             "count": share, "size": MESSAGE},
                                                      shared=SPAWN.Value("i", 0), consumers=2), share)),
        needs="cloudtoid_interprocess", processes=3)
    add(SHARING, "pyzmq ipc://", "PUSH → 2 PULL send/recv", "msg/s", "rate",
        lambda: _aggregate(run_pair(_w_zmq_shared, {"name": _name("wz"), "count": share // 2, "size": MESSAGE},
                                    shared=SPAWN.Value("i", 0), consumers=2), share // 2),
        needs="zmq", processes=3)
    add(SHARING, SUBETHA, "WorkQueue push → 2 thieves steal", "msg/s", "rate",
        lambda: _aggregate(_subetha(_w_subetha_shared, {"name": _name("ew"), "count": share // 2, "kind": "workqueue"},
                                    shared=(SPAWN.Event(), SPAWN.Value("i", 0)), consumers=2), share // 2),
        needs="subetha", processes=3)
    add(SHARING, SUBETHA, "Channel(readers=2) send → 2 readers recv, polling", "msg/s", "rate",
        lambda: _aggregate(_subetha(_w_subetha_shared, {"name": _name("ec"), "count": share // 2, "kind": "channel"},
                                    shared=(SPAWN.Event(), SPAWN.Value("i", 0)), consumers=2), share // 2),
        needs="subetha", processes=3)
    add(SHARING, "faster-fifo", "put → 2 getters", "msg/s", "rate",
        lambda: _aggregate(run_pair(_w_queue_shared, {"count": n // 10, "size": MESSAGE},
                                    shared=(_faster_fifo(), SPAWN.Value("i", 0)), consumers=2), n // 10),
        needs="faster_fifo", processes=3)
    add(SHARING, "multiprocessing.Queue", "put → 2 getters", "msg/s", "rate",
        lambda: _aggregate(run_pair(_w_queue_shared, {"count": max(n // 20, 20_000), "size": MESSAGE},
                                    shared=(SPAWN.Queue(), SPAWN.Value("i", 0)), consumers=2),
                           max(n // 20, 20_000)),
        processes=3)

    batch = "batches, 32 B"
    add(batch, "cywhip", "send_many/recv_many", "msg/s", "rate",
        lambda: run_pair(_w_cywhip_stream, {"name": _name("m"), "count": n * 2, "size": MESSAGE, "mode": "many",
                                            "capacity": BATCH_RING}))
    add(batch, "cywhip", f"send_many/recv_many, byte channel (max_queued_bytes={BATCH_BYTES:,}: as many messages)",
        "msg/s", "rate",
        lambda: run_pair(_w_cywhip_stream, {"name": _name("my"), "count": n * 2, "size": MESSAGE, "mode": "many",
                                            "bytes": BATCH_BYTES}))
    add(batch, "cloudtoid-interprocess", "try_send_batch/receive", "msg/s", "rate",
        lambda: _in_dir(lambda d: run_pair(_w_cloudtoid, {"name": _name("c"), "dir": d, "count": n,
                                                           "size": MESSAGE, "batch": True})),
        needs="cloudtoid_interprocess", versus="send_many")
    add(batch, "faster-fifo", "put_many/get_many", "msg/s", "rate",
        lambda: run_pair(_w_queue, {"count": n, "size": MESSAGE, "batch": True}, shared=_faster_fifo()),
        needs="faster_fifo", versus="send_many")
    add(batch, SUBETHA, "SpscRing push_many/pop_many, lists of 4,096", "msg/s", "rate",
        lambda: _subetha(_w_subetha_spsc, {"name": _name("el"), "count": n, "mode": "many",
                                           "capacity": BATCH_RING}),
        needs="subetha", versus="send_many")
    add(batch, "cywhip", "on_message, trivial (de)serializer", "msg/s", "rate",
        lambda: run_pair(_w_cywhip_callback, {"name": _name("o"), "count": n, "size": MESSAGE}))

    typed = "typed records, 32 B"
    add(typed, "cywhip", "send_array/recv_into", "rec/s", "rate",
        lambda: run_pair(_w_cywhip_array, {"name": _name("t"), "count": n * 10}), needs="numpy")
    add(typed, SUBETHA, "SpscRing push_buffer/pop_buffer, 4,096 records packed per call", "rec/s", "rate",
        lambda: _subetha(_w_subetha_spsc, {"name": _name("ep"), "count": n * 5, "mode": "buffer",
                                           "capacity": BATCH_RING}),
        needs=("subetha", "numpy"))
    add(typed, "raw C ring (floor)", "memcpy ring, spinning", "rec/s", "rate",
        lambda: run_pair(_w_floor_ring, {"name": "cywhip-" + _name("f"), "count": n * 10, "size": MESSAGE}))

    # Nogil loops of an extension built against each Cython API (cywhip._bench.capi builds them).
    cy = "Cython API, 32 B, nogil loops"
    add(cy, "cywhip", "api.send/api.recv, one message per call", "msg/s", "rate",
        lambda: capi.run_capi({"name": _name("ca"), "count": n * 2, "size": MESSAGE}), needs="Cython")
    add(cy, "cywhip", "api.send/api.recv, one message per call, spin_time=0", "msg/s", "rate",
        lambda: capi.run_capi({"name": _name("cz"), "count": n * 2, "size": MESSAGE, "spin": 0.0}),
        needs="Cython")
    add(cy, "cywhip", f"api.send_records/api.recv_records, blocks of {capi.BLOCK}", "msg/s", "rate",
        lambda: capi.run_capi({"name": _name("cb"), "count": n * 5, "size": MESSAGE, "block": capi.BLOCK}),
        needs="Cython")
    # The floor ring as the rows above use theirs: as many slots, each record numbered and checked.
    add(cy, "raw C ring (floor)", f"memcpy ring of {capi.CAPACITY} records, a publish per message", "msg/s",
        "rate",
        lambda: run_pair(_w_floor_ring_each, {"name": "cywhip-" + _name("fe"), "count": n * 2, "size": MESSAGE,
                                              "capacity": capi.CAPACITY}),
        versus="one message per call")
    add(cy, "cykit 0.1.0", "ipc_spmc_push/ipc_spmc_pop through its .pxd, one message per call", "msg/s", "rate",
        # cykit's consumer can sleep through its last wake-up: give up on a stream after a minute.
        lambda: capi.run_cykit({"count": n, "size": MESSAGE}, timeout=60), needs=("cykit", "Cython"),
        versus="one message per call")

    rtt = "round trip, 32 B"
    add(rtt, "cywhip", "send+recv, default wait (p50)", "µs", "p50_us",
        lambda: run_pair(_w_cywhip_pingpong, {"name": _name("p"), "count": rt, "spin": 50e-6}))
    add(rtt, "iceoryx2", "loan/send + busy-poll receive (p50)", "µs", "p50_us",
        lambda: run_pair(_w_iceoryx2_pingpong, {"name": _name("i"), "count": rt}), needs="iceoryx2",
        versus="default")
    add(rtt, "cywhip", "send+recv, spin_time=0 (p50)", "µs", "p50_us",
        lambda: run_pair(_w_cywhip_pingpong, {"name": _name("q"), "count": blocking_rt, "spin": 0.0}))
    add(rtt, "futex ping-pong (floor)", "pure blocking (p50)", "µs", "p50_us",
        lambda: run_pair(_w_floor_futex, {"name": "cywhip-" + _name("x"), "count": blocking_rt}),
        versus="spin_time=0")

    # Mixed sizes: the same seeded stream (common._mixed_messages) through every system, each
    # message checked byte for byte on the far side; messages/s and GB/s of the same runs.  The
    # cywhip rows report their channel's file size (the report prints both).
    mixed = 20_000 if quick else 200_000
    gb = [("bytes_rate", "GB/s")]
    add(MIXED, "cywhip", f"send/recv, byte channel of {MIXED_RING >> 20} MiB (max_queued_bytes)", "msg/s", "rate",
        lambda: run_pair(_w_cywhip_mixed, {"name": _name("xb"), "count": mixed, "bytes": MIXED_RING}), also=gb)
    add(MIXED, "cywhip", f"send/recv, slot channel of {MIXED_SLOTS:,} slots of 64 KiB", "msg/s", "rate",
        lambda: run_pair(_w_cywhip_mixed, {"name": _name("xs"), "count": mixed, "slots": MIXED_SLOTS}), also=gb)
    add(MIXED, "pyzmq ipc://", f"PUSH/PULL send/recv, high-water marks {MIXED_HWM:,}", "msg/s", "rate",
        lambda: run_pair(_w_zmq, {"name": _name("xz"), "count": mixed, "mixed": True, "hwm": MIXED_HWM}),
        needs="zmq", also=gb)
    add(MIXED, "cloudtoid-interprocess", f"try_send/receive, a queue of {MIXED_RING >> 20} MiB", "msg/s", "rate",
        lambda: _in_dir(lambda d: run_pair(_w_cloudtoid_mixed, {"name": _name("xc"), "dir": d, "count": mixed})),
        needs="cloudtoid_interprocess", also=gb)

    big = BIG
    mib = {"size": 1 << 20, "count": 500 if quick else 4000}
    add(big, "cywhip", "send/recv", "GB/s", "rate",
        lambda: _gbps(run_pair(_w_cywhip_stream, dict(mib, name=_name("b"), mode="single", capacity=16)), 1 << 20))
    big_bytes = _record_bytes(1 << 20, 16)
    add(big, "cywhip", f"send/recv, byte channel (max_queued_bytes={big_bytes:,}: as many messages)", "GB/s", "rate",
        lambda: _gbps(run_pair(_w_cywhip_stream, dict(mib, name=_name("by"), mode="single", bytes=big_bytes)),
                      1 << 20))
    # A producer that makes each message as it sends it: in a buffer of its own, then send()
    # copies it into the ring; or in the ring itself, through reserve().  Byte channels.
    for fill, how in (("numpy", "np.add of a preallocated array into"), ("preadv", "os.preadv from a file into")):
        add(big, "cywhip", f"{how} a buffer, then send() (a copy), byte channel", "GB/s", "rate",
            lambda fill=fill: _gbps(run_pair(_w_cywhip_fill, dict(mib, name=_name("bf"), fill=fill, reserve=False)),
                                    1 << 20), needs="numpy")
        add(big, "cywhip", f"{how} reserve()'s buffer in the ring, byte channel", "GB/s", "rate",
            lambda fill=fill: _gbps(run_pair(_w_cywhip_fill, dict(mib, name=_name("br"), fill=fill, reserve=True)),
                                    1 << 20), needs="numpy")
    add(big, "multiprocessing.Pipe", "send_bytes/recv_bytes", "GB/s", "rate",
        lambda: _gbps(run_pair(_w_pipe, {"count": 200 if quick else 2000, "size": 1 << 20},
                               shared=SPAWN.Pipe(duplex=False)), 1 << 20))

    add(OBJECTS, "cywhip", "message_type=object send/recv", "msg/s", "rate",
        lambda: run_pair(_w_cywhip_objects, {"name": _name("ob"), "count": 500 if quick else 4000,
                                             "size": 1 << 20}), needs="numpy")
    add(OBJECTS, "multiprocessing.Queue", "put/get", "msg/s", "rate",
        lambda: run_pair(_w_queue, {"count": 200 if quick else 2000, "size": 1 << 20, "objects": True},
                         shared=SPAWN.Queue()), needs="numpy")

    idle = "idle receiver"
    add(idle, "cywhip", "CPU of a receiver idle 2 s", "% core", "cpu_percent",
        lambda: run_pair(_w_cywhip_idle, {"name": _name("d"), "seconds": 2.0}))
    add(idle, "cywhip", "wake-up after 50 ms idle (p50)", "µs", "p50_us",
        lambda: run_pair(_w_cywhip_wakeup, {"name": _name("w"), "count": 20 if quick else 100, "idle": 0.05}),
        also=[("p99_us", "µs")])

    # cywhip.asyncio: the receiver (both sides, for round trips) awaits on asyncio's default loop.
    aio = "asyncio, 32 B"
    waiting = 50_000 if quick else 1_000_000
    add(aio, "cywhip", "plain recv, messages waiting", "msg/s", "rate",
        lambda: run_pair(_w_cywhip_waiting, {"name": _name("aw"), "count": waiting}))
    add(aio, "cywhip", "asyncio recv, messages waiting", "msg/s", "rate",
        lambda: run_pair(_w_cywhip_waiting, {"name": _name("aa"), "count": waiting, "asyncio": True}))
    add(aio, "cywhip", "asyncio recv_many, plain send_many", "msg/s", "rate",
        lambda: run_pair(_w_cywhip_async_stream, {"name": _name("am"), "count": n * 2, "size": MESSAGE,
                                                  "mode": "many", "capacity": BATCH_RING}))
    add(aio, "cywhip", "asyncio recv, plain send", "msg/s", "rate",
        lambda: run_pair(_w_cywhip_async_stream, {"name": _name("as"), "count": n, "size": MESSAGE,
                                                  "mode": "single"}))
    add(aio, "pyzmq ipc://", "zmq.asyncio PULL recv, PUSH send", "msg/s", "rate",
        lambda: run_pair(_w_zmq_asyncio, {"name": _name("az"), "count": n // 4, "size": MESSAGE}),
        needs="zmq", versus="asyncio recv, plain send")
    art = "asyncio round trip, 32 B"
    add(art, "cywhip", "asyncio send+recv (p50)", "µs", "p50_us",
        lambda: run_pair(_w_cywhip_async_pingpong, {"name": _name("ap"), "count": blocking_rt}))
    add(art, "pyzmq ipc://", "zmq.asyncio PAIR send+recv (p50)", "µs", "p50_us",
        lambda: run_pair(_w_zmq_asyncio_pingpong, {"name": _name("aq"), "count": blocking_rt}), needs="zmq")
    add(idle, "cywhip", "asyncio wake-up after 50 ms idle (p50)", "µs", "p50_us",
        lambda: run_pair(_w_cywhip_async_wakeup, {"name": _name("av"), "count": 20 if quick else 100,
                                                  "idle": 0.05}))
    add(idle, "cywhip", "asyncio wake-up after 50 ms idle (p99)", "µs", "p99_us",
        lambda: run_pair(_w_cywhip_async_wakeup, {"name": _name("ax"), "count": 20 if quick else 100,
                                                  "idle": 0.05}))
    # The same wake-ups without cywhip: a datagram to a socket, received by a blocking recv, and
    # through an event loop (add_reader, a future, the task awaiting it).
    # The ratio beside each: cywhip's plain wake-up, or its asyncio one, over this.
    for loop, what, versus in (("block", "blocking recv", "wake-up after 50 ms idle (p50)"),
                               ("asyncio", "asyncio add_reader", "asyncio wake-up after 50 ms idle (p50)"),
                               ("uvloop", "uvloop add_reader", "asyncio wake-up after 50 ms idle (p50)")):
        add(idle, "a datagram (floor)", f"{what}, wake-up after 50 ms idle (p50)", "µs", "p50_us",
            lambda loop=loop: run_pair(_w_floor_wakeup, {"name": _name("fw"), "count": 20 if quick else 100,
                                                         "idle": 0.05, "loop": loop}),
            needs="uvloop" if loop == "uvloop" else None, versus=versus)

    # NATS JetStream, one nats-server on this machine (a third process on its cores).
    def jetstream(worker, params):
        return natsjs.with_nats(lambda url: run_pair(worker, dict(params, url=url), shared=SPAWN.Value("i", 0)))
    bridge = BRIDGE
    js_n = 20_000 if quick else 200_000
    add(bridge, "cywhip", "send → bridge out → JetStream → bridge in → recv_many", "msg/s", "rate",
        lambda: jetstream(natsjs._w_cywhip_bridge, {"name": _name("nb"), "prefix": "bench", "count": js_n}),
        needs="nats", processes=3)
    add(bridge, "nats-py", "publish_async, acks awaited per batch → pull consumer fetch, ack each", "msg/s",
        "rate", lambda: jetstream(natsjs._w_natspy, {"prefix": "bench", "count": js_n}), needs="nats",
        processes=3)
    add(bridge, "nats-py", "publish with a Nats-Msg-Id each (the bridge's ids), acks awaited per batch → "
        "pull consumer fetch, ack each", "msg/s", "rate",
        lambda: jetstream(natsjs._w_natspy, {"prefix": "bench", "count": js_n, "ids": True}), needs="nats",
        processes=3)
    js_lat = 300 if quick else 3000
    add(bridge, "cywhip", "send → recv through the bridges, a message per ms (p50)", "µs", "p50_us",
        lambda: jetstream(natsjs._w_cywhip_bridge, {"name": _name("nl"), "prefix": "bench", "count": js_lat,
                                                     "interval": 0.001}), needs="nats", processes=3)
    add(bridge, "cywhip", "send → recv through the bridges, a message per ms (p99)", "µs", "p99_us",
        lambda: jetstream(natsjs._w_cywhip_bridge, {"name": _name("nm"), "prefix": "bench", "count": js_lat,
                                                     "interval": 0.001}), needs="nats", processes=3)
    add(bridge, "nats-py", "publish (ack awaited) → pull consumer fetch(1), a message per ms (p50)", "µs",
        "p50_us", lambda: jetstream(natsjs._w_natspy, {"prefix": "bench", "count": js_lat, "interval": 0.001}),
        needs="nats", processes=3, versus="(p50)")
    add(bridge, "nats-py", "publish (ack awaited) → pull consumer fetch(1), a message per ms (p99)", "µs",
        "p99_us", lambda: jetstream(natsjs._w_natspy, {"prefix": "bench", "count": js_lat, "interval": 0.001}),
        needs="nats", processes=3, versus="(p99)")
    return rows

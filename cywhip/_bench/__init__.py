"""Benchmarks: the same workloads for cywhip, its peers and raw C floors, each in two processes
(three for two senders or two receivers).

``python -m cywhip bench`` runs them all and prints a table; the asv suite in
asv_bench/ calls the same functions.  Every figure is measured in the process
where it happens (the receiver for throughput, the pinging side for round
trips) and sent back to the coordinator; with two receivers, each reports its
count and its clock at its first and last message, and the coordinator takes
them together (per receiver for a broadcast, all of them for shared work).  Processes start with the spawn
method: a worker imports only what its system needs.
"""
from cywhip._bench.common import (  # noqa: F401
    BATCH_RING, MESSAGE, SPAWN, _aggregate, _name, _per_consumer, _percentiles,
    _timed_receive, run_pair,
)
from cywhip._bench.cywhip_workers import (  # noqa: F401
    _w_cywhip_array, _w_cywhip_async_pingpong, _w_cywhip_async_stream, _w_cywhip_async_wakeup,
    _w_cywhip_callback, _w_cywhip_fill, _w_cywhip_groups, _w_cywhip_idle, _w_cywhip_mixed, _w_cywhip_objects,
    _w_cywhip_pingpong, _w_cywhip_stream, _w_cywhip_waiting, _w_cywhip_wakeup,
)
from cywhip._bench.floors import _w_floor_calls, _w_floor_futex, _w_floor_ring, _w_floor_ring_each, _w_floor_wakeup  # noqa: F401
from cywhip._bench.report import TARGETS, machine, main, run, table, targets  # noqa: F401
from cywhip._bench.workloads import workloads  # noqa: F401

"""The benchmark machinery: floors, the two-process runner, the table and the target checks."""
import subprocess
import sys

import pytest

from cywhip import _bench
from cywhip._bench.common import _available


def test_the_raw_c_ring_floor_moves_records_between_two_processes():
    result = _bench.run_pair(_bench._w_floor_ring, {"name": "cywhip-" + _bench._name("tf"),
                                                    "count": 200_000, "size": 32})
    assert result["rate"] > 0


def test_the_raw_c_ring_floor_publishing_per_message_moves_records_between_two_processes():
    # The receiver checks every record's number; a wrong one fails the run.
    for capacity in (1024, 65536):
        result = _bench.run_pair(_bench._w_floor_ring_each, {"name": "cywhip-" + _bench._name("te"),
                                                             "count": 200_000, "size": 32,
                                                             "capacity": capacity})
        assert result["rate"] > 0


def test_the_floor_ring_refuses_a_capacity_size_or_buffer_it_cannot_use_naming_the_value():
    import pytest
    from cywhip._bench import _floor
    assert _floor.ring_bytes(32, 1024) == 256 + 32 * 1024
    shm = bytearray(_floor.ring_bytes(32, 1024))
    with pytest.raises(ValueError, match="capacity 1000 is not a power of two"):
        _floor.ring_send_each(shm, 1, 32, 1000)
    with pytest.raises(ValueError, match="record size 4 is not 8 to 256"):
        _floor.ring_recv_each(shm, 1, 4, 1024)
    with pytest.raises(ValueError, match="smaller than a ring of 2048 records"):
        _floor.ring_send(shm, 1, 32, 2048)


def test_the_python_call_floor_takes_a_message_and_returns_a_fresh_bytes_object_of_its_length():
    import pytest
    from cywhip._bench import _floor
    floor = _floor.CallFloor(32)
    assert floor.send(b"x" * 32) is None and floor.send(b"x", timeout=1.0) is None
    one, two = floor.recv(), floor.recv(timeout=1.0)
    assert type(one) is bytes and len(one) == 32 and one == two and one is not two
    assert len(_floor.CallFloor(0).recv()) == 0
    with pytest.raises(ValueError, match="message_length 257 is not 0 to 256"):
        _floor.CallFloor(257)
    result = _bench.run_pair(_bench._w_floor_calls, {"count": 100_000, "size": 32})
    assert result["rate"] > 0


def test_single_send_recv_is_held_to_the_python_call_floor():
    from cywhip._bench.workloads import workloads
    group = "single send/recv, 32 B"
    assert [r["label"] for r in workloads(quick=True)
            if r["group"] == group and r["system"] == "Python calls (floor)"] == ["no-op send, recv returning fresh bytes"]
    rows = [{"group": group, "system": "cywhip", "label": "send/recv", "value": 9e6},
            {"group": group, "system": "Python calls (floor)", "label": "no-op send, recv returning fresh bytes",
             "value": 10e6}]
    found = {t["target"]: t for t in _bench.targets(rows)}
    floor = found["single send/recv ≥ 0.8× the Python call floor"]
    assert floor["measured"] == 0.9 and floor["met"] is True
    # The floor is not a peer: it is never the best peer of its pattern.
    from cywhip._bench.report import best_lossless_peer
    assert best_lossless_peer(rows, group) is None


def test_the_cython_api_is_held_to_cykit_not_to_the_raw_c_ring():
    # The floor swings 3x between runs on a shared machine: its row stays, as a figure only.
    from cywhip._bench.report import CAPI, TARGETS
    from cywhip._bench.workloads import workloads
    capi = [t for t in TARGETS if t[1][0] == CAPI]
    assert [t[0] for t in capi] == ["Cython API, one message per call ≥ 2× cykit's Cython API"]
    assert not [t for t in TARGETS if t[2][1] == "raw C ring (floor)" and t[2][0] == CAPI]
    assert [r["system"] for r in workloads(quick=True) if r["group"] == CAPI].count("raw C ring (floor)") == 1


def test_the_futex_floor_and_cywhip_ping_pong_report_percentiles():
    floor = _bench.run_pair(_bench._w_floor_futex, {"name": "cywhip-" + _bench._name("tx"), "count": 200})
    mine = _bench.run_pair(_bench._w_cywhip_pingpong, {"name": _bench._name("tp"), "count": 200, "spin": 0.0})
    for r in (floor, mine):
        assert 0 < r["p50_us"] <= r["p99_us"]


@pytest.mark.parametrize("byte_ring, senders", [(False, 1), (True, 1), (True, 2)])
def test_receiver_group_rows_report_per_receiver_and_shared_figures_with_exactly_once_checked(byte_ring, senders):
    # With two senders (a byte channel of max_senders=2) each sends half the messages, numbered
    # apart for the work sharing, and only the last one done sends the ENDs.
    from cywhip._bench.common import SPAWN, _aggregate, _per_consumer
    n = 20_000
    ends = {"size": 32, "bytes": byte_ring, "senders": senders, "count": n // senders}
    for mode in ("recv_many", "recv"):
        broadcast = _bench.run_pair(_bench._w_cywhip_groups, dict(ends, name=_bench._name("tgb"), mode=mode),
                                    producers=senders, consumers=2)
        result = _per_consumer(broadcast, n)
        assert result["received"] == [n, n] and result["rate"] > 0 and "note" not in result
    done = SPAWN.Value("i", 0) if senders == 1 else (SPAWN.Value("i", 0), SPAWN.Value("i", 0))
    shared = _bench.run_pair(_bench._w_cywhip_groups, dict(ends, name=_bench._name("tgs"), mode="recv_many",
                                                           share=True),
                             shared=done, producers=senders, consumers=2)
    result = _aggregate(shared, n)
    assert result["exactly_once"] and sum(result["received"]) == n and result["rate"] > 0, result


def test_the_receiver_group_rows_of_a_byte_channel_of_two_senders_run_four_processes():
    from cywhip._bench.workloads import BROADCAST, SHARING, workloads
    rows = {(r["group"], r["label"]): r for r in workloads(quick=True) if r["system"] == "cywhip"}
    for group, label in ((BROADCAST, "byte channel of 2 senders (max_senders=2), 2 groups of 1, send → recv_many"),
                         (SHARING, "byte channel of 2 senders (max_senders=2), 1 group of 2 members, "
                                   "send → recv_many")):
        assert rows[group, label]["processes"] == 4 and rows[group, label]["unit"] == "msg/s"
    # The one-sender rows stay the ones the targets name (the first whose label holds their part).
    from cywhip._bench.report import GROUP_SHARING, GROUPS_BROADCAST, _find
    measured = [dict(r, value=1.0) for r in workloads(quick=True)]
    assert _find(measured, *GROUPS_BROADCAST)["label"] == "2 groups of 1, send → recv_many"
    assert _find(measured, *GROUP_SHARING)["label"] == "1 group of 2 members, send → recv_many"


def test_the_shared_work_check_counts_duplicates_and_missing_messages():
    from array import array
    from cywhip._bench.common import _aggregate
    one = {"count": 3, "t0": 0.0, "t1": 1.0, "seqs": array("q", [0, 1, 2]).tobytes()}
    two = {"count": 2, "t0": 0.5, "t1": 2.0, "seqs": array("q", [2, 4]).tobytes()}
    result = _aggregate([one, two], 6)
    assert result["duplicated"] == 1 and result["missing"] == 2 and not result["exactly_once"]
    assert result["note"].startswith("NOT exactly once") and result["rate"] == 2.0


def test_killing_one_of_two_durable_groups_receivers_holds_the_sender_back_until_its_group_is_removed():
    from cywhip._bench import kills
    r = kills.consumer_crash_run(kills.BROADCAST, "cywhip, 2 durable groups")
    assert not r["hang"] and r["survivor_complete"] and r["lost"] == 0
    assert "g0 holding_back" in r["note"] and "groups left: g1" in r["note"]


def test_the_table_shows_cywhips_ratio_to_each_peer_and_skipped_peers():
    rows = [
        {"group": "g", "system": "cywhip", "label": "send_many", "unit": "msg/s", "value": 40e6, "versus": None},
        {"group": "g", "system": "cywhip", "label": "on_message", "unit": "msg/s", "value": 3e6, "versus": None},
        {"group": "g", "system": "peer", "label": "batch", "unit": "msg/s", "value": 4e6, "versus": "send_many"},
        {"group": "g", "system": "gone", "label": "x", "unit": "msg/s", "skipped": "gone is not installed",
         "versus": None},
    ]
    rows[2]["note"] = "each message exactly once (checked)"
    rows[0]["processes"] = 3
    text = _bench.table(rows)
    assert "| g | peer | batch | 4.00 M msg/s; each message exactly once (checked) | 10.00× | 2 |" in text
    assert "| g | cywhip | send_many | 40.00 M msg/s |  | 3 |" in text
    assert "skipped: gone is not installed" in text


def test_short_figures_are_run_in_interleaved_rounds_and_reported_as_their_median(monkeypatch):
    from cywhip._bench import report
    now = [0.0]
    order = []
    figures = {"a": [5e6, 9e6, 1e6], "b": [2e6, 3e6, 4e6], "slow": [7e6], "c": [1.0, 3.0, 2.0]}

    def row(group, system, unit, seconds, needs=None):
        def run():
            order.append(system)
            now[0] += seconds
            return {"rate": figures[system][sum(1 for s in order if s == system) - 1]}
        return {"group": group, "system": system, "label": system, "unit": unit, "key": "rate",
                "run": run, "needs": needs, "versus": None, "processes": 2}

    rows = [row("g", "a", "msg/s", 1), row("g", "b", "msg/s", 1), row("g", "slow", "msg/s", 9),
            row("g", "gone", "msg/s", 1, needs="no-such-module-here"), row("h", "c", "µs", 1)]
    monkeypatch.setattr(report, "workloads", lambda quick: rows)
    monkeypatch.setattr(report, "_clock", lambda: now[0])
    out = {r["system"]: r for r in report.run()}
    # A row's runs alternate with the other short rows of its group; a long one runs once.
    assert order == ["a", "b", "slow", "a", "b", "a", "b", "c", "c", "c"]
    assert out["a"]["value"] == 5e6 and out["a"]["values"] == [5e6, 9e6, 1e6] and out["a"]["runs"] == 3
    assert out["b"]["value"] == 3e6 and out["c"]["value"] == 2.0
    assert out["slow"]["value"] == 7e6 and out["slow"]["runs"] == 1 and out["slow"]["seconds"] == 9
    assert "value" not in out["gone"] and "not installed" in out["gone"]["skipped"]
    text = _bench.table(list(out.values()))
    assert "| g | a | a | 5.00 M msg/s (median of 3: 1.00 M msg/s to 9.00 M msg/s) |" in text
    assert "| g | slow | slow | 7.00 M msg/s |" in text


def test_runs_whose_note_is_none_beside_a_failed_check_of_another_run(monkeypatch):
    # A worker that found nothing to say returns "note": None; another run's failed check is
    # still shown beside the median run's figure.
    from cywhip._bench import report
    now = [0.0]
    notes = iter([None, "NOT every message: lost 3", None])

    def run():
        now[0] += 1
        return {"rate": 4e6, "note": next(notes)}
    rows = [{"group": "g", "system": "cywhip", "label": "a", "unit": "msg/s", "key": "rate", "run": run,
             "needs": None, "versus": None, "processes": 2}]
    monkeypatch.setattr(report, "workloads", lambda quick: rows)
    monkeypatch.setattr(report, "_clock", lambda: now[0])
    out = report.run()
    assert out[0]["runs"] == 3 and out[0]["note"] == "NOT every message: lost 3"


def test_rates_of_large_messages_show_their_digits_rather_than_zero_millions():
    rows = [{"group": "g", "system": "cywhip", "label": "objects", "unit": "msg/s", "value": 2680.4,
             "values": [2680.4, 1904.0, 3100.9], "runs": 3, "versus": None, "processes": 2},
            {"group": "g", "system": "peer", "label": "put/get", "unit": "msg/s", "value": 201.3,
             "versus": None, "processes": 2}]
    text = _bench.table(rows)
    assert "| g | cywhip | objects | 2,680 msg/s (median of 3: 1,904 msg/s to 3,101 msg/s) |" in text
    assert "| g | peer | put/get | 201 msg/s | 13.32× |" in text


@pytest.mark.parametrize("loop", ["block", "asyncio", "uvloop"])
def test_the_wake_up_floor_times_datagrams_after_idle_and_the_asyncio_targets_use_it(loop):
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    got = _bench.run_pair(_bench._w_floor_wakeup, {"name": _bench._name("tw"), "count": 5, "idle": 0.01,
                                                   "loop": loop})
    assert 0 < got["p50_us"] <= got["p99_us"] < 1e6
    idle = "idle receiver"
    rows = [{"group": idle, "system": "cywhip", "label": "wake-up after 50 ms idle (p50)", "value": 60.0,
             "also_values": {"p99_us": 1000.0}},
            {"group": idle, "system": "cywhip", "label": "asyncio wake-up after 50 ms idle (p50)", "value": 120.0},
            {"group": idle, "system": "cywhip", "label": "asyncio wake-up after 50 ms idle (p99)", "value": 3500.0}]
    found = {t["target"]: t for t in _bench.targets(rows)}
    p50 = found["asyncio wake-up after 50 ms idle p50 ≤ 1.5× the plain receiver's"]
    p99 = found["asyncio wake-up after 50 ms idle p99 ≤ 3× the plain receiver's p99"]
    assert (p50["measured"], p50["met"]) == (2.0, False)
    assert (p99["measured"], p99["met"]) == (3.5, False)


def test_targets_are_judged_from_the_measured_ratios():
    rows = [
        {"group": "batches, 32 B", "system": "cywhip", "label": "send_many/recv_many", "value": 30e6},
        {"group": "batches, 32 B", "system": "cloudtoid-interprocess", "label": "b", "value": 4e6},
        {"group": "idle receiver", "system": "cywhip", "label": "CPU of a receiver idle 2 s", "value": 1.5},
    ]
    found = {t["target"]: t for t in _bench.targets(rows)}
    batch = found["send_many/recv_many ≥ 10× cloudtoid try_send_batch"]
    assert batch["measured"] == 7.5 and batch["met"] is False
    assert found["idle receiver < 1% of a core"]["met"] is False
    assert found["single send/recv ≥ 3× cloudtoid try_send/receive"]["met"] is None
    from cywhip._bench.workloads import BROADCAST, SHARING
    rows = [
        {"group": BROADCAST, "system": "cywhip", "label": "2 groups of 1, send → recv_many", "value": 4e6},
        {"group": BROADCAST, "system": "cywhip", "label": "2 groups of 1, send → recv", "value": 1e6},
        {"group": BROADCAST, "system": "cywhip", "label": "one-to-one send → recv_many (no groups)", "value": 10e6},
        {"group": BROADCAST, "system": "cykit 0.1.0", "label": "SPMC push/pop", "value": 1e6},
        {"group": SHARING, "system": "cywhip", "label": "1 group of 2 members, send → recv_many", "value": 3e6},
        {"group": SHARING, "system": "multiprocessing.Queue", "label": "put → 2 getters", "value": 0.2e6},
    ]
    found = {t["target"]: t for t in _bench.targets(rows)}
    assert found["broadcast to 2 groups, per group ≥ 3× cykit SPMC"]["measured"] == 4
    assert found["broadcast to 2 groups, per group ≥ ½ one-to-one"]["met"] is False
    assert found["a group of 2 sharing work, aggregate ≥ 30× multiprocessing.Queue"]["measured"] == 15
    assert found["a group of 2 sharing work, aggregate ≥ 2× cloudtoid"]["met"] is None


def test_the_bench_command_describes_itself():
    out = subprocess.run([sys.executable, "-m", "cywhip", "bench", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "--quick" in out.stdout and "--json" in out.stdout
    assert "--hangs" in out.stdout and "--only" in out.stdout and "--check" in out.stdout


def test_check_in_the_environment_makes_the_newest_peers_keep_and_check_every_message(monkeypatch):
    from cywhip._bench.workloads import CHECK, _checking
    monkeypatch.delenv(CHECK, raising=False)
    assert _checking({"count": 1}) == {"count": 1, "check": False}
    monkeypatch.setenv(CHECK, "1")
    assert _checking({"count": 1})["check"] is True
    assert _checking({"count": 1, "check": False})["check"] is False


# ------------------------------------------------------------ the newest peers
# Each runs when its package is installed (the bench extra), and is skipped otherwise.

def _run_in_dir(worker, params, **kw):
    from cywhip._bench.common import _in_dir
    return _in_dir(lambda d: _bench.run_pair(worker, dict(params, dir=d), **kw))


def test_the_stream_check_counts_lost_duplicated_reordered_and_foreign_messages():
    import pytest
    np = pytest.importorskip("numpy")
    from cywhip._bench.common import _checked, _words, _numbered
    whole = _checked(_words(_numbered(5)), 5)
    assert whole["complete"] and whole["count"] == 5 and whole["note"].startswith("every message")
    two = _checked(np.array([0, 1 << 40, 1, (1 << 40) | 1]), 2, producers=2)
    assert two["complete"]
    # 0, 2, 2, 1 from producer 0 (3 never came), and one from a producer 5 that did not exist.
    bad = _checked(np.array([0, 2, 2, 1, 5 << 40]), 4)
    assert (bad["lost"], bad["duplicated"], bad["disordered"]) == (1, 1, 2) and not bad["complete"]
    assert bad["note"].startswith("NOT every message: lost 25.0% (1 of 4)") and "1 not sent" in bad["note"]
    # A system that hands back its whole slot: the number is read from the first 8 bytes.
    padded = [m + bytes(20) for m in _numbered(3)]
    assert list(_words(padded)) == [0, 1, 2] and _checked(padded, 3)["complete"]
    # A consumer that only counted: what did not arrive is lost, and said so.
    from cywhip._bench.common import _outcome
    counted = _outcome(0.0, 2.0, 100, count=41, producers=2)
    assert counted["lost"] == 159 and counted["rate"] == 20.0
    assert counted["note"] == "NOT every message: lost 79.5% (159 of 200)"
    assert _outcome(0.0, 1.0, 10, count=10)["note"] is None


def test_subetha_rows_deliver_every_message_checked():
    import pytest
    pytest.importorskip("subetha")
    pytest.importorskip("numpy")
    from cywhip._bench.common import SPAWN, _aggregate, _per_consumer
    from cywhip._bench.peers import subetha as se
    for mode, n in (("single", 5_000), ("many", 20_000), ("buffer", 20_000)):
        for check in (True, False):
            r = _run_in_dir(se._w_subetha_spsc, {"name": _bench._name("tse"), "count": n, "mode": mode,
                                                 "capacity": 1024, "check": check})
            assert r["complete"] and r["count"] == n and r["rate"] > 0, (mode, r)
            assert r["note"].startswith("every message, in order (checked") if check else r["note"] is None
    fanin = _run_in_dir(se._w_subetha_mpsc, {"name": _bench._name("tsm"), "count": 5_000, "check": True},
                        producers=2)
    assert fanin["complete"] and fanin["count"] == 10_000
    broadcast = _per_consumer(_run_in_dir(se._w_subetha_broadcast, {"name": _bench._name("tsb"), "count": 5_000,
                                                                         "check": True},
                                          shared=SPAWN.Event(), consumers=2), 5_000)
    assert broadcast["received"] == [5_000, 5_000] and broadcast["lost"] == 0
    assert broadcast["note"].startswith("each consumer got every message, in order (checked")
    for kind in ("workqueue", "channel"):
        shared = _aggregate(_run_in_dir(se._w_subetha_shared, {"name": _bench._name("tsw"), "count": 5_000,
                                                               "kind": kind},
                                        shared=(SPAWN.Event(), SPAWN.Value("i", 0)), consumers=2), 5_000)
        assert shared["exactly_once"], (kind, shared)


def test_kickmsg_and_msgq_rows_report_what_arrived_and_what_was_lost():
    import pytest
    pytest.importorskip("numpy")
    from cywhip._bench.workloads import _kickmsg, _msgq
    from cywhip._bench.common import _per_consumer
    runs = []
    if _available("kickmsg"):
        runs.append(("kickmsg fan-in", [_kickmsg({"name": _bench._name("tkf"), "count": 3_000, "check": True}, producers=2)], 6_000))
        runs.append(("kickmsg broadcast", _kickmsg({"name": _bench._name("tkb"), "count": 3_000, "check": True}, consumers=2), 3_000))
    if _available("msgq"):
        runs.append(("msgq broadcast", _msgq({"name": _bench._name("tqb"), "count": 2_000, "check": True}, consumers=2), 2_000))
    if not runs:
        pytest.skip("neither kickmsg nor msgq is installed")
    for what, results, sent in runs:
        for r in results:
            # These systems drop instead of waiting: whatever arrived is each message once, in
            # order, and the rest is counted lost.
            assert r["duplicated"] == r["disordered"] == 0 and r["count"] + r["lost"] == sent, (what, r)
            assert r["complete"] == (r["lost"] == 0) and r["note"].startswith("every" if r["complete"] else "NOT")
        if len(results) == 2:
            out = _per_consumer(results, sent)
            assert out["lost"] == sum(r["lost"] for r in results)
    import glob
    assert not [f for f in glob.glob("/dev/shm/*") if "-tk" in f or "-tq" in f]


def test_zenoh_rows_deliver_every_message_plain_and_in_shared_memory():
    import pytest
    pytest.importorskip("zenoh")
    pytest.importorskip("numpy")
    from cywhip._bench.workloads import _zenoh
    from cywhip._bench.common import _per_consumer
    for shm in (False, True):
        one = _zenoh({"name": _bench._name("tz"), "count": 2_000, "shm": shm, "check": True})
        assert one["complete"] and one["count"] == 2_000 and one["rate"] > 0
        both = _per_consumer(_zenoh({"name": _bench._name("tzb"), "count": 1_000, "shm": shm, "check": True},
                                    consumers=2), 1_000)
        assert both["received"] == [1_000, 1_000] and both["lost"] == 0


def test_subethas_broadcast_producer_is_held_back_by_a_dead_consumer_until_its_position_is_given_back():
    import pytest
    pytest.importorskip("subetha")
    from cywhip._bench import kills
    r = kills.consumer_crash_run(kills.BROADCAST, "SubEtha 0.6.0 BroadcastRing")
    assert not r["hang"] and r["survivor_complete"] and r["lost"] == 0
    assert "producer held back" in r["note"] and "unregister_consumer()" in r["note"]


def test_the_crash_tables_name_the_newest_peers_and_say_why_msgq_has_no_fan_in():
    from cywhip._bench import kills
    producers = [s[0] for s in kills.SYSTEMS]
    consumers = [s[1] for s in kills.CONSUMER_SYSTEMS]
    for name in ("SubEtha", "kickmsg", "Zenoh"):
        assert any(name in s for s in producers), name
    for name in ("SubEtha 0.6.0 BroadcastRing", "SubEtha 0.6.0 WorkQueue", "SubEtha 0.6.0 Channel", "kickmsg",
                 "msgq", "Zenoh 1.10.2, 2 subscribers, plain", "Zenoh 1.10.2, 2 subscribers, shared memory"):
        assert any(name in s for s in consumers), name
    text = kills.crash_markdown([{"system": s, "skipped": why} for s, _, why in kills.NO_FANIN])
    assert "| msgq 1.0 | skipped: one publisher per endpoint" in text


def test_lossy_peers_are_marked_and_are_not_the_best_lossless_peer():
    from cywhip._bench import report
    from cywhip._bench.workloads import BROADCAST, SUBETHA
    rows = [
        {"group": BROADCAST, "system": "cywhip", "label": "2 groups of 1, send → recv_many", "unit": "msg/s",
         "value": 9e6, "versus": None},
        {"group": BROADCAST, "system": "kickmsg 0.9.2", "label": "PubSub", "unit": "msg/s", "value": 8e6,
         "versus": None, "lossy": True, "note": "NOT every message: lost 40.0%"},
        {"group": BROADCAST, "system": SUBETHA, "label": "BroadcastRing", "unit": "msg/s", "value": 3e6,
         "versus": None, "lossy": False},
        {"group": "typed records, 32 B", "system": "cywhip", "label": "send_array/recv_into", "unit": "rec/s",
         "value": 50e6, "versus": None},
        {"group": "typed records, 32 B", "system": SUBETHA, "label": "SpscRing push_buffer/pop_buffer",
         "unit": "rec/s", "value": 30e6, "versus": None},
    ]
    assert report.best_lossless_peer(rows, BROADCAST)["system"] == SUBETHA
    found = {t["target"]: t for t in report.targets(rows)}
    mine = found[f"{BROADCAST}: cywhip 2 groups of 1, send → recv_many ≥ 2× the best lossless peer "
                 f"({SUBETHA} BroadcastRing)"]
    assert mine["measured"] == 3 and mine["met"] is True
    packed = found["send_array/recv_into ≥ 2× SubEtha's packed push_buffer/pop_buffer"]
    assert packed["measured"] == 50 / 30 and packed["met"] is False
    text = _bench.table(rows)
    assert "| kickmsg 0.9.2 | PubSub | 8.00 M msg/s; NOT every message: lost 40.0% | 1.12× (lossy) |" in text


def test_a_run_that_lost_messages_makes_its_row_lossy(monkeypatch):
    from cywhip._bench import report
    results = iter([{"rate": 5.0, "lost": 0}, {"rate": 6.0, "lost": 3, "note": "NOT every message: lost"},
                    {"rate": 7.0, "lost": 0}])

    def row():
        return {"group": "g", "system": "peer", "label": "x", "unit": "msg/s", "key": "rate",
                "run": lambda: next(results), "needs": None, "versus": None, "processes": 2}
    monkeypatch.setattr(report, "workloads", lambda quick: [row()])
    monkeypatch.setattr(report, "_clock", lambda: 0.0)
    out = report.run()[0]
    assert out["value"] == 6.0 and out["lossy"] and out["note"].startswith("NOT every message")


# ------------------------------------------------------------ byte channels (issue 27)

def test_byte_channel_rows_carry_32_byte_messages_one_at_a_time_and_in_batches():
    from cywhip._bench.common import _record_bytes
    for mode, n in (("single", 20_000), ("many", 40_000)):
        r = _bench.run_pair(_bench._w_cywhip_stream, {"name": _bench._name("ty"), "count": n, "size": 32,
                                                      "mode": mode, "bytes": _record_bytes(32, 1024)})
        assert r["rate"] > 0, mode


def test_the_mixed_size_stream_is_seeded_log_uniform_and_the_same_every_time():
    from cywhip._bench.common import MIXED_MAX, MIXED_MIN, _mixed_messages
    one, two = _mixed_messages(), _mixed_messages()
    assert one == two and len(one) == 1024
    sizes = sorted(len(m) for m in one)
    assert MIXED_MIN <= sizes[0] < 32 and 32 << 10 < sizes[-1] <= MIXED_MAX
    # Log-uniform: each factor of 2 between 16 B and 64 KiB holds about 1/12 of the messages.
    below_256 = sum(1 for s in sizes if s < 256)
    assert 0.25 < below_256 / len(sizes) < 0.42
    assert _mixed_messages(seed=1) != one


def test_the_mixed_size_check_counts_every_message_that_is_not_the_one_sent_at_its_place(monkeypatch):
    from cywhip._bench import report
    from cywhip._bench.common import _mixed_messages, _mixed_stream, _timed_mixed
    messages = _mixed_messages()
    sent = list(_mixed_stream(3000, messages))
    got = iter(sent)
    whole = _timed_mixed(lambda *a: next(got), 3000, messages, 60)
    assert whole["wrong"] == 0 and whole["note"] == "every message byte for byte (checked, 3,000)"
    # The bytes/s figure counts the bytes of the messages after the first.
    assert abs(whole["bytes_rate"] * 1e9 / whole["rate"] - sum(map(len, sent[1:])) / 2999) < 1e-6
    # Message 5 with its last byte changed, message 7 lost (so every later one is misplaced).
    changed = sent[:5] + [sent[5][:-1] + bytes([sent[5][-1] ^ 1])] + sent[6:7] + sent[8:] + [sent[0]]
    got = iter(changed)
    bad = _timed_mixed(lambda *a: next(got), 3000, messages)
    assert bad["wrong"] > 2000 and bad["note"].startswith("NOT every message")
    # A run with a wrong message makes its row lossy.
    results = iter([bad])
    row = {"group": "g", "system": "peer", "label": "x", "unit": "msg/s", "key": "rate", "also": None,
           "run": lambda: next(results), "needs": None, "versus": None, "processes": 2}
    monkeypatch.setattr(report, "workloads", lambda quick: [row])
    out = report.run(quick=True)[0]
    assert out["lossy"] and out["note"].startswith("NOT every message")


def test_the_mixed_size_stream_crosses_a_byte_channel_and_a_slot_channel_checked_with_their_file_sizes():
    from cywhip._bench.common import MIXED_RING, MIXED_SLOTS
    n = 3000
    byte = _bench.run_pair(_bench._w_cywhip_mixed, {"name": _bench._name("txb"), "count": n, "bytes": MIXED_RING})
    slot = _bench.run_pair(_bench._w_cywhip_mixed, {"name": _bench._name("txs"), "count": n, "slots": MIXED_SLOTS})
    for r in (byte, slot):
        assert r["wrong"] == 0 and r["note"] == f"every message byte for byte (checked, {n:,})", r
        assert r["rate"] > 0 and r["bytes_rate"] > 0
    # The ring of the byte channel and a header of a few pages; 1,024 slots of 64 KiB and more.
    assert MIXED_RING < byte["file_bytes"] < MIXED_RING + (1 << 20)
    assert slot["file_bytes"] >= MIXED_SLOTS * (64 << 10)


def test_the_mixed_size_stream_crosses_pyzmq_and_cloudtoid_checked():
    import pytest
    from cywhip._bench.peers.cloudtoid import _w_cloudtoid_mixed
    from cywhip._bench.peers.pyzmq import MIXED_HWM, _w_zmq
    ran = []
    if _available("zmq"):
        ran.append(_bench.run_pair(_w_zmq, {"name": _bench._name("txz"), "count": 2000, "mixed": True,
                                            "hwm": MIXED_HWM}))
    if _available("cloudtoid_interprocess"):
        ran.append(_run_in_dir(_w_cloudtoid_mixed, {"name": _bench._name("txc"), "count": 2000}))
    if not ran:
        pytest.skip("neither pyzmq nor cloudtoid-interprocess is installed")
    for r in ran:
        assert r["wrong"] == 0 and r["note"] == "every message byte for byte (checked, 2,000)", r
        assert r["rate"] > 0 and r["bytes_rate"] > 0


def test_1_mib_messages_made_in_reserves_buffer_or_in_a_buffer_then_sent_arrive_checked():
    import pytest
    pytest.importorskip("numpy")
    from cywhip._bench.common import _record_bytes
    for fill in ("numpy", "preadv"):
        for reserve in (False, True):
            r = _bench.run_pair(_bench._w_cywhip_fill, {"name": _bench._name("tr"), "count": 40, "size": 1 << 20,
                                                        "fill": fill, "reserve": reserve, "capacity": 4})
            assert r["wrong"] == 0 and r["rate"] > 0, (fill, reserve, r)
            assert r["note"] == "every message's number and last word (checked, 40)"
    r = _bench.run_pair(_bench._w_cywhip_stream, {"name": _bench._name("tb"), "count": 40, "size": 1 << 20,
                                                  "mode": "single", "bytes": _record_bytes(1 << 20, 4)})
    assert r["rate"] > 0


def test_the_byte_channel_rows_figures_file_sizes_and_targets_are_reported():
    from cywhip._bench import report
    from cywhip._bench.workloads import BIG, MIXED, workloads
    labels = {(r["group"], r["system"], r["label"]) for r in workloads(True)}
    for group, system, part in [t[1][:3] for t in report.TARGETS] + [t[2][:3] for t in report.TARGETS]:
        assert any(g == group and s == system and part in label for g, s, label in labels), (group, system, part)
    gb = [("bytes_rate", "GB/s")]
    rows = [
        {"group": MIXED, "system": "cywhip", "label": "send/recv, byte channel of 4 MiB", "unit": "msg/s",
         "value": 600e3, "also": gb, "also_values": {"bytes_rate": 4.5}, "file_bytes": (4 << 20) + 4096,
         "versus": None},
        {"group": MIXED, "system": "cywhip", "label": "send/recv, slot channel of 1,024 slots", "unit": "msg/s",
         "value": 500e3, "also": gb, "also_values": {"bytes_rate": 4.0}, "file_bytes": (64 << 20) + 65536,
         "versus": None},
        {"group": MIXED, "system": "pyzmq ipc://", "label": "PUSH/PULL", "unit": "msg/s", "value": 150e3,
         "also": gb, "also_values": {"bytes_rate": 1.5}, "versus": None},
        {"group": BIG, "system": "cywhip", "label": "send/recv", "unit": "GB/s", "value": 10.0, "versus": None},
        {"group": BIG, "system": "cywhip", "label": "send/recv, byte channel (max_queued_bytes=16,777,344)",
         "unit": "GB/s", "value": 8.0, "versus": None},
    ]
    text = _bench.table(rows)
    assert "0.60 M msg/s, 4.50 GB/s; channel file 4.00 MiB |" in text
    assert "| pyzmq ipc:// | PUSH/PULL | 0.15 M msg/s, 1.50 GB/s | 4.00× |" in text
    assert report.memory(rows) == ["- send/recv, byte channel of 4 MiB: 4.00 MiB (4,198,400 bytes)",
                                   "- send/recv, slot channel of 1,024 slots: 64.06 MiB (67,174,400 bytes)"]
    found = {t["target"]: t for t in _bench.targets(rows)}
    assert found["mixed sizes, byte channel ≥ 3× pyzmq PUSH/PULL in messages/s"]["measured"] == 4
    bytes_rate = found["mixed sizes, byte channel ≥ 3× pyzmq PUSH/PULL in bytes/s"]
    assert bytes_rate["measured"] == 3 and bytes_rate["met"] is True
    assert found["mixed sizes, byte channel ≥ 2× cloudtoid in bytes/s"]["met"] is None
    big = found["1 MiB messages, byte channel ≥ 0.9× the slot channel's GB/s"]
    assert big["measured"] == 0.8 and big["met"] is False


ASV_BENCH = __import__("pathlib").Path(__file__).resolve().parent.parent / "asv_bench"


def _table_rows(out):
    """{first cell: the other cells} of a Markdown table's body rows."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and not set(cells[0]) <= set("- ") and cells[0] not in ("form", "side"):
            rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.timeout(120)
def test_one_process_script_times_cywhip_beside_the_call_floor():
    """asv_bench/one_process.py (docs/performance.md): a row for cywhip and one for the floor,
    each with a time per message and a ratio to cywhip's (1.00 for cywhip itself)."""
    proc = subprocess.run([sys.executable, str(ASV_BENCH / "one_process.py"), "--rounds", "2", "--count", "1024"],
                          capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, proc.stderr
    rows = _table_rows(proc.stdout)
    assert {"cywhip send/recv", "Python call floor"} <= set(rows), proc.stdout
    assert rows["cywhip send/recv"][1].startswith("1.00 ")
    for form, (ns, ratio) in rows.items():
        assert float(ns) > 0 and float(ratio.split()[0]) > 0, (form, ns, ratio)

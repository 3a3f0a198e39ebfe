"""The benchmark machinery: floors, the two-process runner, the table and the target checks."""
import subprocess
import sys

from cywhip import _bench


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
    from cywhip import _floor
    assert _floor.ring_bytes(32, 1024) == 256 + 32 * 1024
    shm = bytearray(_floor.ring_bytes(32, 1024))
    with pytest.raises(ValueError, match="capacity 1000 is not a power of two"):
        _floor.ring_send_each(shm, 1, 32, 1000)
    with pytest.raises(ValueError, match="record size 4 is not 8 to 256"):
        _floor.ring_recv_each(shm, 1, 4, 1024)
    with pytest.raises(ValueError, match="smaller than a ring of 2048 records"):
        _floor.ring_send(shm, 1, 32, 2048)


def test_the_futex_floor_and_cywhip_ping_pong_report_percentiles():
    floor = _bench.run_pair(_bench._w_floor_futex, {"name": "cywhip-" + _bench._name("tx"), "count": 200})
    mine = _bench.run_pair(_bench._w_cywhip_pingpong, {"name": _bench._name("tp"), "count": 200, "spin": 0.0})
    for r in (floor, mine):
        assert 0 < r["p50_us"] <= r["p99_us"]


def test_receiver_group_rows_report_per_receiver_and_shared_figures_with_exactly_once_checked():
    from cywhip._bench.common import SPAWN, _aggregate, _per_consumer
    n = 20_000
    for mode in ("recv_many", "recv"):
        broadcast = _bench.run_pair(_bench._w_cywhip_groups, {"name": _bench._name("tgb"), "count": n, "size": 32,
                                                              "mode": mode}, consumers=2)
        result = _per_consumer(broadcast, n)
        assert result["received"] == [n, n] and result["rate"] > 0 and "note" not in result
    shared = _bench.run_pair(_bench._w_cywhip_groups, {"name": _bench._name("tgs"), "count": n, "size": 32,
                                                       "mode": "recv_many", "share": True},
                             shared=SPAWN.Value("i", 0), consumers=2)
    result = _aggregate(shared, n)
    assert result["exactly_once"] and sum(result["received"]) == n and result["rate"] > 0


def test_the_shared_work_check_counts_duplicates_and_missing_messages():
    from array import array
    from cywhip._bench.common import _aggregate
    one = {"count": 3, "t0": 0.0, "t1": 1.0, "seqs": array("q", [0, 1, 2]).tobytes()}
    two = {"count": 2, "t0": 0.5, "t1": 2.0, "seqs": array("q", [2, 4]).tobytes()}
    result = _aggregate([one, two], 6)
    assert result["duplicated"] == 1 and result["missing"] == 2 and not result["exactly_once"]
    assert result["note"].startswith("NOT exactly once") and result["rate"] == 2.0


def test_killing_one_of_two_durable_groups_receivers_holds_the_sender_back_until_its_group_is_removed():
    from cywhip._bench import crash
    r = crash.consumer_crash_run(crash.BROADCAST, "cywhip, 2 durable groups")
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
    assert "--hangs" in out.stdout and "--only" in out.stdout

"""The benchmark machinery: floors, the two-process runner, the table and the target checks."""
import subprocess
import sys

from cywhip import _bench


def test_the_raw_c_ring_floor_moves_records_between_two_processes():
    result = _bench.run_pair(_bench._w_floor_ring, {"name": "cywhip-" + _bench._name("tf"),
                                                    "count": 200_000, "size": 32})
    assert result["rate"] > 0


def test_the_raw_c_ring_floor_publishing_per_message_moves_records_between_two_processes():
    result = _bench.run_pair(_bench._w_floor_ring_each, {"name": "cywhip-" + _bench._name("te"),
                                                         "count": 200_000, "size": 32})
    assert result["rate"] > 0


def test_the_futex_floor_and_cywhip_ping_pong_report_percentiles():
    floor = _bench.run_pair(_bench._w_floor_futex, {"name": "cywhip-" + _bench._name("tx"), "count": 200})
    mine = _bench.run_pair(_bench._w_cywhip_pingpong, {"name": _bench._name("tp"), "count": 200, "spin": 0.0})
    for r in (floor, mine):
        assert 0 < r["p50_us"] <= r["p99_us"]


def test_the_table_shows_cywhips_ratio_to_each_peer_and_skipped_peers():
    rows = [
        {"group": "g", "system": "cywhip", "label": "send_many", "unit": "msg/s", "value": 40e6, "versus": None},
        {"group": "g", "system": "cywhip", "label": "on_message", "unit": "msg/s", "value": 3e6, "versus": None},
        {"group": "g", "system": "peer", "label": "batch", "unit": "msg/s", "value": 4e6, "versus": "send_many"},
        {"group": "g", "system": "gone", "label": "x", "unit": "msg/s", "skipped": "gone is not installed",
         "versus": None},
    ]
    text = _bench.table(rows)
    assert "| g | peer | batch | 4.00 M msg/s | 10.00× |" in text
    assert "skipped: gone is not installed" in text


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


def test_the_bench_command_describes_itself():
    out = subprocess.run([sys.executable, "-m", "cywhip", "bench", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "--quick" in out.stdout and "--json" in out.stdout
    assert "--hangs" in out.stdout and "--only" in out.stdout

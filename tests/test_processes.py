"""Separately started processes that meet only by channel name."""
import json
import os
import signal
import textwrap
import time

import pytest

import cywhip
from cywhip._region import channel_path
from cywhip._testing.peer import expected_crc

N = 1_000_000
CRC_N = expected_crc(N)


def check_report(out, count=N, start=0, crc=None):
    report = json.loads(out)
    assert report["received"] == count, report
    assert report["in_order"], report
    assert report["first"] == start and report["last"] == start + count - 1
    assert report["crc32"] == (crc if crc is not None else expected_crc(count, start=start))
    return report


@pytest.mark.timeout(120)
@pytest.mark.parametrize("send_mode,recv_mode", [
    ("send", "recv"),
    ("send_many", "recv_many"),
    ("send_many", "on_message"),
])
def test_a_million_numbered_messages_cross_between_processes_intact(channel, peers, send_mode, recv_mode):
    receiver = peers.start("recv", channel, "--count", N, "--mode", recv_mode)
    sender = peers.start("send", channel, "--count", N, "--mode", send_mode)
    rc, out, err = peers.finish(receiver, timeout=100)
    assert rc == 0, err
    check_report(out, crc=CRC_N)
    assert peers.finish(sender)[0] == 0


@pytest.mark.timeout(60)
def test_the_whipcrack_example_runs_end_to_end_across_processes(channel, peers):
    count = 20_000
    receiver = peers.start("recv", channel, "--count", count, "--mode", "example")
    sender = peers.start("send", channel, "--count", count, "--mode", "example")
    rc, out, err = peers.finish(receiver)
    assert rc == 0, err
    report = json.loads(out)
    assert report["received"] == count and report["in_order"], report
    assert peers.finish(sender)[0] == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("order", ["receiver_first", "sender_first", "sender_done_before_receiver", "together"])
def test_either_end_may_start_first(channel, peers, order):
    count = 5000 if order != "sender_done_before_receiver" else 900
    args = ("--count", count, "--capacity", 1000)
    if order == "receiver_first":
        receiver = peers.start("recv", channel, *args)
        time.sleep(0.3)
        sender = peers.start("send", channel, *args)
    elif order == "sender_first":
        sender = peers.start("send", channel, *args)
        time.sleep(0.3)
        receiver = peers.start("recv", channel, *args)
    elif order == "sender_done_before_receiver":
        sender = peers.start("send", channel, *args)
        assert peers.finish(sender)[0] == 0
        receiver = peers.start("recv", channel, *args)
    else:
        sender = peers.start("send", channel, *args)
        receiver = peers.start("recv", channel, *args)
    rc, out, err = peers.finish(receiver)
    assert rc == 0, err
    check_report(out, count)
    assert peers.finish(sender)[0] == 0


@pytest.mark.timeout(90)
def test_a_receiver_replaced_mid_stream_loses_nothing(channel, peers):
    sender = peers.start("send", channel, "--count", 300_000, "--mode", "send")
    parts = [(0, 100_000, "recv"), (100_000, 120_000, "on_message"), (220_000, 80_000, "recv_many")]
    for start, count, mode in parts:
        receiver = peers.start("recv", channel, "--count", count, "--start", start, "--mode", mode)
        rc, out, err = peers.finish(receiver)
        assert rc == 0, err
        check_report(out, count, start)
    assert peers.finish(sender)[0] == 0
    with cywhip.Receiver(channel, message_length=32, max_queued_messages=1024) as r:
        assert r.try_recv() is None


IDLE_RECEIVER = textwrap.dedent("""
    import sys, time, cywhip
    r = cywhip.Receiver(sys.argv[1], message_length=32, max_queued_messages=64)
    cpu0, wall0 = time.process_time(), time.monotonic()
    try:
        r.recv(timeout=1.0)
    except cywhip.ReceiveTimeout:
        pass
    print(time.process_time() - cpu0, time.monotonic() - wall0)
    r.close()
""")


def test_a_receiver_blocked_on_an_empty_channel_uses_almost_no_cpu(channel, peers):
    proc = peers.start(channel, script=IDLE_RECEIVER)
    rc, out, err = peers.finish(proc)
    assert rc == 0, err
    cpu, wall = map(float, out.split())
    assert wall >= 0.99
    assert cpu / wall < 0.03, f"idle receiver used {cpu:.4f} s of CPU in {wall:.3f} s"


BLOCKED_RECEIVER = textwrap.dedent("""
    import sys, cywhip
    r = cywhip.Receiver(sys.argv[1], message_length=8, max_queued_messages=4)
    print("ready", flush=True)
    try:
        r.recv()
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    r.close()
""")


@pytest.mark.parametrize("spin", ["default"])
def test_ctrl_c_interrupts_a_blocked_recv(channel, peers, spin):
    proc = peers.start(channel, script=BLOCKED_RECEIVER)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    rc, out, err = peers.finish(proc, timeout=10)
    assert out.strip() == "interrupted", err
    assert rc == 0


CLEAN_EXIT = textwrap.dedent("""
    import sys, cywhip
    name = sys.argv[1]
    got = []
    s = cywhip.Sender(name, message_length=16, max_queued_messages=8)
    r = cywhip.Receiver(name, message_length=16, max_queued_messages=8, on_message=got.append)
    s.send_many([b"%d" % i for i in range(100)])
    # Neither end is closed: interpreter exit must tidy up quietly.
    import time
    deadline = time.monotonic() + 10
    while len(got) < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    cywhip.unlink(name)
    print(len(got))
""")


def test_a_program_that_used_cywhip_exits_cleanly_and_leaves_nothing_in_dev_shm(channel, peers):
    proc = peers.start(channel, script=CLEAN_EXIT)
    rc, out, err = peers.finish(proc)
    assert (rc, out.strip(), err) == (0, "100", "")
    assert not os.path.exists(channel_path(channel))
    assert not [f for f in os.listdir("/dev/shm") if str(proc.pid) in f]

"""The lifecycle fuzzer of receiver groups (cywhip._testing.lifecycle): members and senders in
processes of their own joining, closing, killed and stopped, remove_group and remove_stale
running, every delivery checked; a short run, a longer one (soak), and the checker's own test."""
import os
import sys

import pytest

from cywhip._testing import lifecycle

# What the suite's runs do: everything the fuzzer can do (python -m cywhip._testing.lifecycle
# --features narrows a run from the command line).
SUITE_FEATURES = lifecycle.FEATURES
# Randomized runs of several processes against the shared-memory protocol (pyproject.toml).
pytestmark = pytest.mark.fuzz
# Seeds of the suite's runs: each draws its own channel and schedule.
SHORT_SEED = 20261206
SOAK_SEED = 777


def _failures(totals):
    return "\n\n".join(f["text"] for f in totals["failures"])


@pytest.mark.timeout(120)
def test_a_short_lifecycle_run_delivers_every_message_as_promised():
    totals = lifecycle.fuzz(runs=1, seconds=5, seed=SHORT_SEED, features=SUITE_FEATURES, log=lambda *a: None)
    assert not totals["failures"], _failures(totals)
    assert totals["messages"] > 0, totals
    assert totals["joins"] > 0 and totals["kills"] + totals["stops"] + totals["leaves"] > 0, totals


@pytest.mark.soak
@pytest.mark.timeout(900)
def test_lifecycle_soak():
    runs = int(os.environ.get("CYWHIP_LIFECYCLE_RUNS", "6"))
    totals = lifecycle.fuzz(runs=runs, seconds=10, seed=SOAK_SEED, features=SUITE_FEATURES, log=lambda *a: None)
    assert not totals["failures"], _failures(totals)
    assert totals["messages"] > 0 and totals["kills"] > 0, totals


# A run without kills, stops or removals, in which every member misreports its 20th delivery:
# the check must name what is wrong.
EXPECTED = {"drop": {"lost"}, "dup": {"delivered twice"}, "torn": {"torn message"},
            "invent": {"invented message"}, "reorder": {"delivered twice", "reordered"}}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fault", [
    "drop",
    *(pytest.param(f, marks=pytest.mark.soak) for f in lifecycle.FAULTS if f != "drop"),
])
def test_the_check_finds_a_member_that_misreports_a_delivery(fault):
    totals = lifecycle.fuzz(runs=1, seconds=2, seed=5, features=(), fault=fault, log=lambda *a: None)
    assert totals["failures"], f"a member misreported ({fault}) and the check found nothing: {totals}"
    kinds = set(totals["failures"][0]["kinds"])
    assert kinds & EXPECTED[fault], _failures(totals)


# Byte channels (lifecycle_bytes.py): one sender and one receiver killed, stopped, closed and
# restarted at random moments, a sender killed inside a reserve() block.
BYTES_SEED = 20261207


@pytest.mark.timeout(150)
def test_a_short_byte_channel_lifecycle_run_delivers_every_message_whole():
    from cywhip._testing import lifecycle_bytes
    totals = lifecycle_bytes.fuzz(runs=2, seconds=6, seed=BYTES_SEED, log=lambda *a: None)
    assert not totals["failures"], _failures(totals)
    assert totals["messages"] > 0 and totals["kills"] > 0, totals
    assert totals["senders"] > 1 and totals["receivers"] > 1, totals
    # A sender was killed inside a reserve() block (its message must never arrive).
    assert totals["parked_kills"] > 0, totals


@pytest.mark.timeout(150)
def test_a_short_lifecycle_run_of_many_senders_on_a_byte_channel_delivers_every_message_whole():
    # max_senders=3: three sender processes at once, each killed (inside a reserve() block too),
    # stopped and killed, closed, and replaced by a new one in the place it left.
    from cywhip._testing import lifecycle_bytes
    totals = lifecycle_bytes.fuzz(runs=1, seconds=5, seed=BYTES_SEED, log=lambda *a: None, senders=3)
    assert not totals["failures"], _failures(totals)
    assert totals["messages"] > 0 and totals["sender_kills"] > 1, totals
    assert totals["senders"] > 3 and totals["parked_kills"] > 0, totals


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fault, kind", [("torn", "torn message"), ("dup", "reordered or duplicated")])
def test_the_byte_channel_check_of_many_senders_finds_a_receiver_that_misreports_a_delivery(fault, kind):
    from cywhip._testing import lifecycle_bytes
    totals = lifecycle_bytes.fuzz(runs=1, seconds=3, seed=5, log=lambda *a: None, fault=fault, senders=2)
    assert totals["failures"], f"a receiver misreported ({fault}) and the check found nothing: {totals}"
    assert kind in totals["failures"][0]["kinds"], _failures(totals)


@pytest.mark.soak
@pytest.mark.timeout(900)
def test_byte_channel_lifecycle_soak():
    from cywhip._testing import lifecycle_bytes
    runs = int(os.environ.get("CYWHIP_LIFECYCLE_RUNS", "6"))
    totals = lifecycle_bytes.fuzz(runs=runs, seconds=15, seed=SOAK_SEED, log=lambda *a: None)
    assert not totals["failures"], _failures(totals)
    assert totals["parked_kills"] > 0, totals


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fault, kind", [("torn", "torn message"), ("dup", "reordered or duplicated")])
def test_the_byte_channel_check_finds_a_receiver_that_misreports_a_delivery(fault, kind):
    from cywhip._testing import lifecycle_bytes
    totals = lifecycle_bytes.fuzz(runs=1, seconds=3, seed=5, log=lambda *a: None, fault=fault)
    assert totals["failures"], f"a receiver misreported ({fault}) and the check found nothing: {totals}"
    assert kind in totals["failures"][0]["kinds"], _failures(totals)


@pytest.mark.timeout(60)
def test_a_sender_whose_gate_was_opened_is_not_killed_as_parked(tmp_path):
    """The driver opened a parked sender's gate; before the sender ran again (a loaded machine)
    the driver killed it.  The sender may have left its reserve() block and sent the message:
    it must not be recorded as killed inside the block (that made the check call a delivered
    message "a killed reserve")."""
    import subprocess
    from cywhip._testing import lifecycle_bytes as lb
    run = lb.ByteRun(seed=1, seconds=1, log=lambda *a: None)
    try:
        for gate, killed_parked in ((1, None), (0, 42)):
            state = str(tmp_path / f"state-{gate}")
            lb._map(state).close()
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            p = lb._Proc("sender", dict(state=state, sid=7, mode="reserve"), child)
            p.put(lb.S_PARKED, 43)
            p.put(lb.S_GATE, gate)
            run.kill(p)
            assert child.returncode == -9
            assert p.killed_parked == killed_parked, (gate, p.killed_parked)
    finally:
        import shutil
        shutil.rmtree(run.workdir, ignore_errors=True)


# Receiver groups on byte channels (lifecycle.py with bytes_=True): one sender, messages of 12
# bytes to message_length in a small ring (padding at its end often), reserve() senders, every
# receive call, and the same schedule and checks as the slot channels' runs.
BYTE_GROUPS_SEED = 20261208


@pytest.mark.timeout(120)
def test_a_short_lifecycle_run_of_groups_on_a_byte_channel_delivers_every_message_whole():
    totals = lifecycle.fuzz(runs=2, seconds=5, seed=BYTE_GROUPS_SEED, features=SUITE_FEATURES,
                            log=lambda *a: None, bytes_=True)
    assert not totals["failures"], _failures(totals)
    assert totals["messages"] > 0, totals
    assert totals["joins"] > 0 and totals["kills"] > 0, totals


@pytest.mark.timeout(120)
def test_a_short_lifecycle_run_of_groups_on_a_byte_channel_of_many_senders_delivers_every_message_whole():
    """Three sender processes at once, each killed (also parked inside a reserve() block), stopped
    and killed, closed and replaced by a new one in the place it left; the groups' schedule and
    checks as with one sender, per sender incarnation."""
    totals = lifecycle.fuzz(runs=1, seconds=5, seed=BYTE_GROUPS_SEED, features=SUITE_FEATURES,
                            log=lambda *a: None, bytes_=True, senders=3)
    assert not totals["failures"], _failures(totals)
    assert totals["messages"] > 0, totals
    # Three senders from the start (a slow machine's 5 s schedule may replace none of them).
    assert totals["joins"] > 0 and totals["kills"] > 0 and totals["senders"] >= 3, totals


@pytest.mark.timeout(120)
def test_the_check_of_many_senders_finds_a_member_of_a_byte_channel_that_misreports_a_delivery():
    """A schedule of 0.1 s, as a slow machine's 2 s were (members that left before any saw 20
    messages, so none misreported): the run goes on until one has."""
    totals = lifecycle.fuzz(runs=1, seconds=0.1, seed=5, features=(), fault="torn", log=lambda *a: None,
                            bytes_=True, senders=2)
    assert totals["failures"], f"a member misreported (torn) and the check found nothing: {totals}"
    assert set(totals["failures"][0]["kinds"]) & EXPECTED["torn"], _failures(totals)


@pytest.mark.soak
@pytest.mark.timeout(900)
def test_lifecycle_soak_of_groups_on_a_byte_channel():
    runs = int(os.environ.get("CYWHIP_LIFECYCLE_RUNS", "6"))
    totals = lifecycle.fuzz(runs=runs, seconds=10, seed=SOAK_SEED, features=SUITE_FEATURES, log=lambda *a: None,
                            bytes_=True)
    assert not totals["failures"], _failures(totals)
    assert totals["messages"] > 0 and totals["kills"] > 0, totals


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fault", [
    "torn",
    *(pytest.param(f, marks=pytest.mark.soak) for f in lifecycle.FAULTS if f != "torn"),
])
def test_the_check_finds_a_member_of_a_byte_channel_that_misreports_a_delivery(fault):
    totals = lifecycle.fuzz(runs=1, seconds=2, seed=5, features=(), fault=fault, log=lambda *a: None, bytes_=True)
    assert totals["failures"], f"a member misreported ({fault}) and the check found nothing: {totals}"
    kinds = set(totals["failures"][0]["kinds"])
    assert kinds & EXPECTED[fault], _failures(totals)


def test_a_byte_channel_run_draws_a_small_ring_one_sender_and_messages_of_many_lengths():
    """The byte-channel runs' geometry: one sender whatever 'many' says, a ring of at most
    1000 bytes (padding at its end often), and message lengths from 12 bytes up to
    message_length, each message self-checking."""
    lengths = set()
    for seed in range(40):
        run = lifecycle.Run(seed, 1, bytes_=True, log=lambda *a: None)
        try:
            assert run.senders == 1 and run.ring in lifecycle.BYTE_RINGS, run.describe()
            assert 24 <= run.length <= run.ring // 2, run.describe()
            for seq in range(50):
                msg = lifecycle.payload(3, seq, run.length, run.ring)
                assert 12 <= len(msg) <= run.length
                assert lifecycle.parse(msg, run.length, run.ring) == (3, seq, True)
                torn = msg[:-1] + bytes([msg[-1] ^ 1])
                assert not lifecycle.parse(torn, run.length, run.ring)[2]
                lengths.add(len(msg) == run.length)
        finally:
            import shutil
            shutil.rmtree(run.workdir, ignore_errors=True)
    assert lengths == {True, False}

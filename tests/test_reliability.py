"""Crashes, hostile shared memory, stale channels, permissions, fork and spawn."""
import errno
import fcntl
import json
import multiprocessing
import os
import pickle
import re
import shutil
import signal
import stat
import struct
import subprocess
import textwrap
import time
import warnings

import pytest

import cywhip
from cywhip import ChannelBusyError, ChannelClosedError, Receiver, Sender, _admin, _region
from cywhip._region import channel_path, file_size_for
from cywhip._testing import crash, fuzz
from cywhip._testing.peer import spawn_receive


@pytest.mark.soak
@pytest.mark.timeout(240)
def test_a_hundred_and_twenty_random_sigkills_lose_tear_and_wedge_nothing(tmp_path):
    seed = int(time.time()) % 10_000
    report = crash.soak(kills=120, seed=seed, workdir=str(tmp_path), timeout=200)
    assert report["errors"] == [], (seed, report)
    assert report["ok"] and report["kills"] >= 120
    assert report["sender_kills"] > 0 and report["receiver_kills"] > 0
    assert report["torn"] == 0
    assert report["delivered"] == report["messages"] > 0


@pytest.mark.soak
@pytest.mark.timeout(240)
def test_ten_thousand_corruptions_of_shared_memory_never_crash_or_hang(peers):
    # Fresh, small processes fork the cases faster than the test process could: two of them,
    # 5,000 cases each from seeds of their own, side by side on a machine's cores.
    seed = int(time.time()) % 10_000
    seeds = (seed, seed + 1)
    procs = [peers.start(script="import sys; from cywhip._testing.fuzz import main; sys.exit(main(sys.argv[1:]))",
                         *("--cases", 5_000, "--seed", s)) for s in seeds]
    for s, proc in zip(seeds, procs):
        rc, out, err = peers.finish(proc, timeout=220)
        report = json.loads(out)
        assert report["cases"] == 5_000
        assert report["failures"] == [], _failures(f"--cases 5000 --seed {s}", report, err)
        assert rc == 0


@pytest.mark.fuzz
@pytest.mark.timeout(120)
def test_corrupting_shared_memory_while_ends_open_send_receive_and_close_never_crashes_or_hangs(peers):
    # Another process rewrites the header (geometry included), cursors, waiting
    # words and slot lengths while this one's ends are in the middle of their calls.
    seed = int(time.time()) % 10_000
    command = f"python -m cywhip._testing.fuzz --race --seconds 8 --seed {seed}"
    proc = peers.start(script="import sys; from cywhip._testing.fuzz import main; sys.exit(main(sys.argv[1:]))",
                       *command.split()[3:])
    rc, out, err = peers.finish(proc, timeout=100)
    report = json.loads(out)
    assert report["rounds"] > 0 and report["ends_opened"] > 0, (command, report, err[-2000:])
    assert report["failures"] == [], _failures(command, report, err)
    assert rc == 0


@pytest.mark.fuzz
@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["cases", "race"])
def test_corrupting_channels_with_receiver_groups_never_crashes_or_hangs(peers, mode):
    # Group entries, member places, groups_gen and cursors rewritten between calls (cases) or
    # while members join, claim, take, leave and remove groups (race, with stopped lock holders).
    args = ["--cases", 400] if mode == "cases" else ["--race", "--seconds", 6]
    _fuzz_clean(peers, args + ["--groups", "only"], "group", timeout=100)


def _fuzz_clean(peers, args, kind, timeout, seed=None):
    """Run the fuzzer (a fresh seed, unless one is given) in a process of its own; it must have
    played cases or rounds of this kind ("group", "byte") and found nothing."""
    seed = int(time.time()) % 10_000 if seed is None else seed
    command = f"python -m cywhip._testing.fuzz {' '.join(map(str, args))} --seed {seed}"
    proc = peers.start(script="import sys; from cywhip._testing.fuzz import main; sys.exit(main(sys.argv[1:]))",
                       *command.split()[3:])
    rc, out, err = peers.finish(proc, timeout=timeout)
    report = json.loads(out)
    assert report.get(f"{kind}_cases", report.get(f"{kind}_rounds")) > 0, (command, report, err[-2000:])
    assert report["failures"] == [], _failures(command, report, err)
    assert rc == 0


@pytest.mark.fuzz
@pytest.mark.timeout(150)
@pytest.mark.parametrize("mode", ["cases", "race"])
def test_corrupting_byte_channels_never_crashes_hangs_or_tears_a_message(peers, mode):
    # Record headers, cursors and the header's records/capacity/message_length rewritten between
    # calls, with directed checks that a fresh end refuses each naming the value (cases); or
    # cursors flipped by atomic XOR (strict rounds: every message checked whole) and headers,
    # payloads and cursors rewritten by plain stores (wild rounds) while the ends run (race).
    args = ["--cases", 600] if mode == "cases" else ["--race", "--seconds", 8]
    _fuzz_clean(peers, args + ["--bytes", "only"], "byte", timeout=130)


@pytest.mark.fuzz
@pytest.mark.timeout(150)
def test_corrupting_byte_channels_with_receiver_groups_while_the_ends_run_never_crashes_hangs_or_tears_a_message(
        peers):
    # A sender and the members of two groups (one shared by two members) at work on a byte
    # channel while another process rewrites record headers, group entries (group_next,
    # group_lock, members, flags), the places' hold_start and hold_end and the cursors: values no
    # sound channel holds, put back by compare-and-swap (strict rounds: every message delivered
    # whole), or any value by plain stores too (wild rounds).
    _fuzz_clean(peers, ["--race", "--seconds", 10, "--bytes", "only", "--groups", "only"], "byte_group",
                timeout=130)


# A member of a byte channel with groups that delivered a message with one byte changed (the
# fuzzer's own check is handed one): a strict round must report it, naming its round seed.
BYTE_GROUPS_FAILING = textwrap.dedent("""
    import json, sys
    from cywhip._testing import fuzz_bytes_groups, fuzz_race
    deliver = fuzz_bytes_groups.GroupStream.delivered_one

    def delivered_one(self, msg, how):
        if msg and self.delivered == 3:
            msg = msg[:-1] + bytes([msg[-1] ^ 1])
        return deliver(self, msg, how)
    fuzz_bytes_groups.GroupStream.delivered_one = delivered_one
    print(json.dumps(fuzz_race.race(6, seed=1, groups="only", bytes_="only")))
""")


@pytest.mark.fuzz
@pytest.mark.timeout(90)
def test_the_racing_fuzzer_of_byte_channels_with_groups_reports_a_torn_message(peers):
    proc = peers.start(script=BYTE_GROUPS_FAILING)
    rc, out, err = peers.finish(proc, timeout=80)
    assert rc == 0, err[-2000:]
    report = json.loads(out)
    assert report["byte_group_rounds"] == report["rounds"] > 0, report
    strict = [f for f in report["failures"] if f["geometry"]["strict"]]
    assert strict, report
    assert all(f["byte_groups"] for f in report["failures"]), report
    assert "torn or invented message" in strict[0]["detail"], fuzz.describe_failure(strict[0])
    # A wild round checks only lengths: a changed byte there is no failure.
    assert len(report["failures"]) == len(strict), report


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind, stale, stored", [
    # A record header of an earlier lap where the sender now writes a message's last word (only
    # its low bytes are the message's: the rest is what was there).
    ("record", 26, 0x0024795D),
    # A durable group in use (flags: in use | durable, under its name's length), then removed.
    ("flags", 1 << 32 | 3, 1 << 32),
])
def test_a_strict_flip_of_the_byte_groups_mutator_never_writes_over_a_value_it_did_not_read(
        monkeypatch, kind, stale, stored):
    # A strict round's mutator writes a value no sound channel holds, made from the word it read,
    # by compare-and-swap against that same read: an end that stores into the word after the read
    # makes the flip fail.  It read the word twice, made the value from the first read and swapped
    # against the second, so a store between the two reads was swapped out for the older word
    # flipped (a payload's last word became an earlier lap's header, the message torn; a removed
    # group came back in use).
    import mmap
    import random
    from cywhip._testing import fuzz_bytes_groups as fbg
    buf = mmap.mmap(-1, 64)
    struct.pack_into("<Q", buf, 8, stale)
    reads = []
    read = fbg._u64

    def read_then_an_end_stores(mm, off):
        value = read(mm, off)
        if not reads:
            struct.pack_into("<Q", mm, off, stored)    # the end's store, right after the read
        reads.append(value)
        return value
    swaps = []
    cas = fbg.atomic_cas_u64

    def recorded_cas(mm, off, expected, desired):
        done = cas(mm, off, expected, desired)
        if done:
            swaps.append((expected, desired))
        return done
    monkeypatch.setattr(fbg, "_u64", read_then_an_end_stores)
    monkeypatch.setattr(fbg, "atomic_cas_u64", recorded_cas)
    for seed in range(20):
        reads.clear()
        struct.pack_into("<Q", buf, 8, stale)
        if kind == "record":
            fbg._strict_record_flip(buf, 8, random.Random(seed), 0)
        else:
            fbg._strict_word_flip(buf, 8, kind, random.Random(seed), 2, 0)
        assert [s for s in swaps if s[0] == stored] == [], (seed, [(hex(e), hex(d)) for e, d in swaps])
        assert struct.unpack_from("<Q", buf, 8)[0] == stored


@pytest.mark.timeout(30)
@pytest.mark.parametrize("durable", [True, False])
def test_the_durable_flag_a_strict_byte_groups_round_flips_decides_where_the_group_comes_back(
        channel, mapped, durable):
    # fuzz_bytes_groups.py's strict rounds flip a group's durable flag, which is no hint: flipped
    # as the group's last member closes (X3), it decides whether the group is removed, and so
    # where it comes back.  A durable group removed so is made again at the oldest position
    # another group holds (J1) and delivers again what it had; a non-durable one kept so comes
    # back at its own position, not at the other group's.  The one-sender rounds' checker counts
    # no deliveries per group, so it takes either (fuzz_bytes_many_groups.py, which does, leaves
    # the flag alone).
    from cywhip._testing._model import layout
    from cywhip._testing.fuzz_bytes_groups import GroupStream
    lay = layout()
    kw = dict(max_queued_bytes=4096, max_receivers=3)
    stream = GroupStream(64, lambda why: pytest.fail(why))
    sent = [stream.new(24)[1] for _ in range(6)]
    with Sender(channel, **kw) as tx, Receiver(channel, group="b", durable=True, **kw):
        a = Receiver(channel, group="a", durable=durable, **kw)
        for m in sent:
            tx.send(m, timeout=1)
        for _ in sent:
            stream.delivered_one(a.recv(timeout=1), "recv")
        with mapped(channel) as mm:
            entries = [fuzz._group_offset(lay, 1, 3, g) for g in range(3)]
            flags = [struct.unpack_from("<II", mm, e + lay["group_flags"]) for e in entries]   # flags, name_len
            (entry, (was, _)), = [(e, f) for e, f in zip(entries, flags)
                                  if f[0] & 1 and bytes(mm[e + lay["group_name"]:][:f[1]]) == b"a"]
            off = entry + lay["group_flags"]
            struct.pack_into("<I", mm, off, was ^ 2)              # the flip
            a.close()                                             # the group's last member
            after = struct.unpack_from("<I", mm, off)[0]
            if after & 1:
                struct.pack_into("<I", mm, off, was)              # the flip put back
        assert after == (0 if durable else 3)                     # removed / kept
        with Receiver(channel, group="a", durable=durable, **kw) as again:
            tx.send(b"after", timeout=1)
            got = [again.recv(timeout=1) for _ in range(len(sent) + 1 if durable else 1)]
        assert got == (sent + [b"after"] if durable else [b"after"])
        for m in got[:-1]:
            stream.delivered_one(m, "recv")                       # delivered again: no failure


@pytest.mark.fuzz
@pytest.mark.timeout(120)
def test_corrupting_byte_channels_of_many_senders_while_they_send_never_crashes_hangs_or_tears_a_message(peers):
    # Senders (2 or 3, from threads or interleaved calls, opened, closed and opened again) and the
    # receiver at work on a byte channel of many senders while another process rewrites the claim
    # word, read_cursor, the sender places' intents, dead claims and generations and the record
    # headers (strict rounds: values no sound channel holds, put back by compare-and-swap, every
    # message whole and in its sender's order; wild rounds: any value), and stops as a sender in
    # its claim or leaves the claim bit to a dead owner.
    # (Seed 96: its first rounds are all of many senders.)
    _fuzz_clean(peers, ["--race", "--seconds", 5, "--bytes", "only", "--groups", "none"], "byte_many",
                timeout=100, seed=96)


# A receiver of a byte channel of many senders that delivered a message with one byte changed, or
# one message twice (out of its sender's order; the fuzzer's own check is handed them): a strict
# round must report it.  Round seeds 11 (senders in threads) and 12 (interleaved calls) are strict
# rounds of many senders.
BYTE_MANY_FAILING = textwrap.dedent("""
    import json, sys
    from cywhip._testing import fuzz_bytes_many, fuzz_race
    how, round_seed = sys.argv[1], int(sys.argv[2])
    deliver = fuzz_bytes_many.ManyStream.delivered_one

    def delivered_one(self, msg, what):
        if msg and self.delivered == 3:
            if how == "torn":
                msg = msg[:-1] + bytes([msg[-1] ^ 1])
            else:
                deliver(self, msg, what)
        return deliver(self, msg, what)
    fuzz_bytes_many.ManyStream.delivered_one = delivered_one
    print(json.dumps(fuzz_race.race(3, round_seed=round_seed, groups="none", bytes_="only")))
""")


@pytest.mark.fuzz
@pytest.mark.timeout(90)
@pytest.mark.parametrize("how, round_seed, needle", [("torn", 11, "torn or invented message"),
                                                      ("twice", 12, "after its message")])
def test_the_racing_fuzzer_of_byte_channels_of_many_senders_reports_a_torn_or_reordered_message(
        peers, how, round_seed, needle):
    failure = _first_failure_of_a_strict_many_round(peers, BYTE_MANY_FAILING, [how, str(round_seed)],
                                                    "byte_many_rounds")
    assert needle in failure["detail"], fuzz.describe_failure(failure)


def _first_failure_of_a_strict_many_round(peers, script, args, rounds):
    """The first failure the racing fuzzer reported, run by script (a check of its handed a bad
    message) with args: every round it ran counted under ``rounds``, and that failure a strict
    round's, of many senders."""
    proc = peers.start(*args, script=script)
    rc, out, err = peers.finish(proc, timeout=80)
    assert rc == 0, err[-2000:]
    report = json.loads(out)
    assert report[rounds] == report["rounds"] > 0, report
    assert report["failures"], report
    failure = report["failures"][0]
    assert failure["geometry"]["strict"] and failure["geometry"]["max_senders"] > 1, failure["geometry"]
    return failure


@pytest.mark.fuzz
@pytest.mark.timeout(120)
def test_corrupting_byte_channels_of_many_senders_with_receiver_groups_never_crashes_hangs_or_tears_a_message(
        peers):
    # Senders (2 or 3, opened, used and closed again) and the members of two groups at work on a
    # byte channel of many senders while another process rewrites the claim word, the sender
    # places' intents, dead claims and generations, the group entries, the member places' holds
    # and the record headers (strict rounds: values no sound channel holds, put back by
    # compare-and-swap, every message whole and delivered once to each group; wild rounds: any
    # value), and stops as a sender in its claim (its room counted from the groups' bound) or as
    # a group's creator.  (Seed 12: its first rounds are all of many senders.)
    _fuzz_clean(peers, ["--race", "--seconds", 5, "--bytes", "only", "--groups", "only"], "byte_many_group",
                timeout=100, seed=12)


# A member of a byte channel of many senders with groups that delivered a message with one byte
# changed, or one message twice (to the same group; the fuzzer's own check is handed them): a
# strict round must report it.  Round seed 8 is a strict round of many senders with groups.
BYTE_MANY_GROUPS_FAILING = textwrap.dedent("""
    import json, sys
    from cywhip._testing import fuzz_bytes_many_groups, fuzz_race
    how = sys.argv[1]
    deliver = fuzz_bytes_many_groups.GroupManyStream.delivered_in

    def delivered_in(self, msg, what, key):
        if msg and self.delivered == 3:
            if how == "torn":
                msg = msg[:-1] + bytes([msg[-1] ^ 1])
            else:
                deliver(self, msg, what, key)
        return deliver(self, msg, what, key)
    fuzz_bytes_many_groups.GroupManyStream.delivered_in = delivered_in
    print(json.dumps(fuzz_race.race(3, round_seed=8, groups="only", bytes_="only")))
""")


@pytest.mark.fuzz
@pytest.mark.timeout(90)
@pytest.mark.parametrize("how, needle", [("torn", "torn or invented message"), ("twice", "a second time")])
def test_the_racing_fuzzer_of_byte_channels_of_many_senders_with_groups_reports_a_torn_or_repeated_message(
        peers, how, needle):
    failure = _first_failure_of_a_strict_many_round(peers, BYTE_MANY_GROUPS_FAILING, [how],
                                                    "byte_many_group_rounds")
    assert needle in failure["detail"], fuzz.describe_failure(failure)


@pytest.mark.soak
@pytest.mark.timeout(600)
def test_a_minute_of_racing_on_byte_channels_with_receiver_groups(peers):
    _fuzz_clean(peers, ["--race", "--seconds", 60, "--bytes", "only", "--groups", "only"], "byte_group",
                timeout=580)


@pytest.mark.soak
@pytest.mark.timeout(600)
def test_ten_thousand_corruptions_of_byte_channels_and_a_minute_of_racing(peers):
    seed = int(time.time()) % 10_000
    runs = [["--cases", 10_000, "--bytes", "only", "--seed", seed],
            ["--race", "--seconds", 60, "--bytes", "only", "--seed", seed]]
    procs = [peers.start(script="import sys; from cywhip._testing.fuzz import main; sys.exit(main(sys.argv[1:]))",
                         *args) for args in runs]
    for args, proc in zip(runs, procs):
        rc, out, err = peers.finish(proc, timeout=580)
        report = json.loads(out)
        assert report["failures"] == [], _failures(" ".join(map(str, args)), report, err)
        assert rc == 0


# A byte channel that delivered a message with one byte changed (here, the fuzzer's own check is
# handed one), one whose receiver refused a corrupt record without naming its values, and a
# receive that allocated more than its messages' cap: the fuzzer must report each, with the case
# seed.
BYTES_FAILING = textwrap.dedent("""
    import json, sys
    from cywhip._testing import fuzz, fuzz_bytes
    how = sys.argv[1]
    if how == "torn":
        deliver = fuzz_bytes.Stream.delivered_one

        def delivered_one(self, msg, how):
            if msg and self.delivered == 3:
                msg = msg[:-1] + bytes([msg[-1] ^ 1])
            return deliver(self, msg, how)
        fuzz_bytes.Stream.delivered_one = delivered_one
    elif how == "alloc":
        start = fuzz_bytes.Allocations.start

        def start_and_hog(self):
            start(self)
            self.hog = bytearray(4 * self.cap + 2 * fuzz_bytes.ALLOCATION_SLACK)
        fuzz_bytes.Allocations.start = start_and_hog
    else:
        from cywhip import ChannelCorruptError
        expect = fuzz_bytes._expect_error

        def _expect_error(kind, needles, fn, what):
            def unnamed():
                try:
                    return fn()
                except ChannelCorruptError:
                    raise ChannelCorruptError("the channel is corrupt")
            return expect(kind, needles, unnamed, what)
        fuzz_bytes._expect_error = _expect_error
    print(json.dumps(fuzz.run(40, seed=3, bytes_="only")))
""")


@pytest.mark.fuzz
@pytest.mark.timeout(90)
@pytest.mark.parametrize("how, needle", [("torn", "torn or invented message"), ("unnamed", "does not name"),
                                         ("alloc", "allocated")])
def test_the_byte_fuzzer_reports_a_torn_message_an_error_that_names_nothing_and_a_large_allocation(
        peers, how, needle):
    proc = peers.start(how, script=BYTES_FAILING)
    rc, out, err = peers.finish(proc, timeout=80)
    assert rc == 0, err[-2000:]
    report = json.loads(out)
    assert report["failures"], report
    failure = report["failures"][0]
    assert failure["bytes"] is True and 3 * 1_000_003 <= failure["case_seed"] < 3 * 1_000_003 + 40
    assert needle in failure["report"], fuzz.describe_failure(failure)


def _failures(command, report, err, most=3):
    """The fuzzer's failures as text to read in the test's output: each names its case or round,
    the call under way, the child's report (faulthandler's tracebacks) and its last steps; then
    the end of the fuzzer's stderr."""
    failures = report["failures"]
    return "\n\n".join([f"{command} found {len(failures)} failures; the first {min(most, len(failures))}:"]
                       + [fuzz.describe_failure(f) for f in failures[:most]]
                       + [f"stderr (its end): {err[-2000:]}"])


# A case's child dies by a real SIGBUS in the call to channels(), or hangs in remove_group(),
# as a product bug would have it do; the runner's failure record must tell where and after what.
FUZZ_FAILING = textwrap.dedent("""
    import json, mmap, os, sys, tempfile, time
    from cywhip._testing import fuzz
    how, flag = sys.argv[1], sys.argv[2]

    def channels():
        # Touch a page of a file truncated under its mapping.
        with tempfile.TemporaryFile() as f:
            f.truncate(8192)
            mm = mmap.mmap(f.fileno(), 8192)
            f.truncate(0)
            return [mm[4096]]

    def remove_group(name, group):
        try:
            os.close(os.open(flag, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return
        time.sleep(60)               # the first call only: one case hangs

    if how == "sigbus":
        fuzz.channels = channels
    else:
        fuzz.remove_group = remove_group
    print(json.dumps(fuzz.run(30, seed=11, groups="only")))
""")


@pytest.mark.fuzz
@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["sigbus", "hang"])
def test_a_fuzz_failure_names_the_case_the_call_under_way_its_traceback_and_last_steps(peers, tmp_path, how):
    # Under AddressSanitizer (the debug build), the fatal signal is left to the process.
    asan = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS", ""), "handle_sigbus=0"]))
    proc = peers.start(how, tmp_path / "hung-once", script=FUZZ_FAILING, env={"ASAN_OPTIONS": asan})
    rc, out, err = peers.finish(proc, timeout=50)
    assert rc == 0, err[-2000:]
    report = json.loads(out)
    assert report["failures"], report
    failure = report["failures"][0]
    text = json.dumps(failure, indent=1)
    call = "channels()" if how == "sigbus" else "remove_group("
    assert failure["groups"] is True and 11 * 1_000_003 <= failure["case_seed"] < 11 * 1_000_003 + 30
    if how == "sigbus":
        assert failure["failure"] == "killed by signal 7 (SIGBUS)", text
        assert "Fatal Python error: Bus error" in failure["report"], text
        frames = [("<string>", "channels"), ("fuzz.py", "_check_listing"), ("fuzz.py", "_group_case"),
                  ("fuzz.py", "run")]
    else:
        assert failure["failure"] == f"hung (still running after {fuzz.CASE_HANG_SECONDS} s, killed by SIGALRM)"
        frames = [("<string>", "remove_group"), ("fuzz.py", "_remove_group"), ("fuzz.py", "_group_case"),
                  ("fuzz.py", "run")]
    # The call under way, and the Python stack it was in (faulthandler's, innermost first).
    assert call in failure["during"] and " -> " not in failure["during"], text
    report_lines = failure["report"].splitlines()
    at = [next((i for i, line in enumerate(report_lines)
                if re.fullmatch(rf'\s*File ".*{re.escape(where)}", line \d+ in {fn}', line)), None)
          for where, fn in frames]
    assert None not in at and at == sorted(at), text
    # The steps before it: the ends opened and their calls with their outcomes, and the
    # corruptions with the field, its offset and the old and new values.
    trail = failure["trail"]
    assert trail[-1] == failure["during"] and len(trail) <= fuzz.TRAIL_ENTRIES
    assert any(" = Receiver(" in step and "group=" in step and "-> returned <Receiver>" in step for step in trail), text
    assert any(re.search(r"corrupt \S.* @\d+: 0x[0-9a-f]+ -> 0x[0-9a-f]+$", step) for step in trail), text
    # As the tests print it: with the command that replays the case.
    text = fuzz.describe_failure(failure)
    assert f"--case-seed {failure['case_seed']} --groups only" in text and failure["during"] in text


HOLD = textwrap.dedent("""
    import sys, threading, cywhip
    kind = getattr(cywhip, sys.argv[2])
    end = kind(sys.argv[1], message_length=8, max_queued_messages=4)
    print("ready", flush=True)
    threading.Event().wait()
""")


@pytest.mark.parametrize("kind", ["Sender", "Receiver"])
def test_a_killed_end_is_released_by_the_kernel_and_replaced_at_once(channel, peers, kind):
    proc = peers.start(channel, kind, script=HOLD)
    assert proc.stdout.readline().strip() == "ready"
    cls = getattr(cywhip, kind)
    with pytest.raises(ChannelBusyError, match=rf"process {proc.pid} holds it") as info:
        cls(channel, message_length=8, max_queued_messages=4)
    assert info.value.pid == proc.pid
    info = {c.name: c for c in cywhip.channels()}[channel]
    assert getattr(info, f"{kind.lower()}_alive") and getattr(info, f"{kind.lower()}_pid") == proc.pid
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    cls(channel, message_length=8, max_queued_messages=4).close()


STALL_IN_CALLBACK = textwrap.dedent("""
    import sys, threading, cywhip
    def on_message(msg):
        print(msg.decode(), flush=True)
        if msg == b"stall":
            threading.Event().wait()
    r = cywhip.Receiver(sys.argv[1], message_length=8, max_queued_messages=8, on_message=on_message)
    threading.Event().wait()
""")


def test_a_message_whose_callback_was_running_when_the_receiver_died_is_delivered_again(channel, peers):
    with Sender(channel, message_length=8, max_queued_messages=8) as s:
        s.send_many([b"one", b"stall", b"three"])
        proc = peers.start(channel, script=STALL_IN_CALLBACK)
        assert [proc.stdout.readline().strip() for _ in range(2)] == ["one", "stall"]
        proc.kill()
        proc.wait(10)
        with Receiver(channel, message_length=8, max_queued_messages=8) as r:
            assert r.recv_many(10, timeout=5) == [b"stall", b"three"]


def test_channels_lists_state_and_remove_stale_removes_only_dead_channels(channel, monkeypatch):
    dead = channel + "-dead"
    real_channels = cywhip.channels
    try:
        with Sender(dead, message_length=8, max_queued_messages=4) as s:
            s.send(b"left")
        with Sender(channel, message_length=16, max_queued_messages=8) as s:
            s.send_many([b"a", b"b"])
            found = {c.name: c for c in cywhip.channels()}
            live, stale = found[channel], found[dead]
            assert (live.message_length, live.max_queued_messages, live.depth) == (16, 8, 2)
            assert live.sender_alive and not live.receiver_alive and live.sender_pid == os.getpid()
            assert live.problem is None and live.path == channel_path(channel)
            assert not stale.sender_alive and not stale.receiver_alive and stale.depth == 1
            with pytest.raises(ChannelBusyError, match=rf"has a live end \(process {os.getpid()} holds its "
                                                       r"sender place 0\); not removing it") as info:
                cywhip.remove_stale(channel)
            assert info.value.pid == os.getpid()
            # Every stale channel goes: of those in /dev/shm, this test's own only (other tests
            # may run beside this one, their channels stale for a moment).
            monkeypatch.setattr(_admin, "channels",
                                lambda: [c for c in real_channels() if c.name in (channel, dead)])
            removed = cywhip.remove_stale()
            monkeypatch.undo()
            assert sorted(removed) == [dead]
            assert not os.path.exists(channel_path(dead))
            assert os.path.exists(channel_path(channel))
        assert cywhip.remove_stale([channel]) == [channel]
        assert channel not in {c.name for c in cywhip.channels()}
    finally:
        cywhip.unlink(dead, missing_ok=True)


def test_channels_reports_a_file_that_is_not_a_channel(channel):
    with open(channel_path(channel), "wb") as f:
        f.write(b"junk")
    info = {c.name: c for c in cywhip.channels()}[channel]
    assert info.problem == "too small for a header" and info.message_length is None


# An LD_PRELOAD shim: after the Nth pread() of the file CYWHIP_TEST_TRUNCATE names
# ("path:size:N"), or with N = 0 just before the first, it truncates that file to size, as
# another process could at that moment.
TRUNCATE_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static char spec[4200];
static long count;

/* Around a pread() of fd: before it (after = 0), or after it (after = 1). */
static void at_read(int fd, int after)
{
    const char *env = getenv("CYWHIP_TEST_TRUNCATE");
    char want[4096], link[64], target[4096];
    long long size;
    long n;
    ssize_t len;
    if (env == NULL || strlen(env) >= sizeof spec) return;
    if (strcmp(env, spec) != 0) {          /* a new request: count afresh */
        strcpy(spec, env);
        count = 0;
    }
    if (sscanf(env, "%4095[^:]:%lld:%ld", want, &size, &n) != 3) return;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    len = readlink(link, target, sizeof target - 1);
    if (len < 0) return;
    target[len] = 0;
    if (strcmp(target, want) != 0) return;
    if (after ? ++count == n : count == 0 && n == 0) ftruncate(fd, size);
}

ssize_t pread(int fd, void *buf, size_t count, off_t offset)
{
    static ssize_t (*real)(int, void *, size_t, off_t);
    if (real == NULL) real = (ssize_t (*)(int, void *, size_t, off_t))dlsym(RTLD_NEXT, "pread");
    at_read(fd, 0);
    ssize_t got = real(fd, buf, count, offset);
    at_read(fd, 1);
    return got;
}

ssize_t pread64(int fd, void *buf, size_t count, off_t offset)
{
    static ssize_t (*real)(int, void *, size_t, off_t);
    if (real == NULL) real = (ssize_t (*)(int, void *, size_t, off_t))dlsym(RTLD_NEXT, "pread64");
    at_read(fd, 0);
    ssize_t got = real(fd, buf, count, offset);
    at_read(fd, 1);
    return got;
}
"""

# Lists one channel with its file truncated before its first pread() (N = 0: after the fstat()
# that found it big enough) and after the Nth, for N = 1..8: every moment at which channels()
# could be reading it.  The ends are closed first: an end whose own file shrinks under its
# mapping faults by design; channels() looks at files that are not its own.
LIST_TRUNCATED = textwrap.dedent("""
    import json, os, sys, cywhip
    from cywhip._region import channel_path
    name, groups, size = sys.argv[1], sys.argv[2] == "groups", int(sys.argv[3])
    path = channel_path(name)
    kw = dict(message_length=8, max_queued_messages=4, max_receivers=3 if groups else 1)
    results = []
    for after in range(0, 9):
        cywhip.unlink(name, missing_ok=True)
        with cywhip.Sender(name, **kw) as s:
            members = [cywhip.Receiver(name, group=g, **kw) for g in ("a", "b")] if groups else []
            s.send_many([b"m1", b"m2", b"m3"])
            if members:
                members[0].recv()
            for m in members:
                m.close()
        full = os.stat(path).st_size
        os.environ["CYWHIP_TEST_TRUNCATE"] = f"{path}:{size}:{after}"
        listed = [c for c in cywhip.channels() if c.name == name]
        del os.environ["CYWHIP_TEST_TRUNCATE"]
        results.append(dict(after=after, truncated=os.stat(path).st_size != full,
                            problem=listed[0].problem, depth=listed[0].depth))
    cywhip.unlink(name, missing_ok=True)
    print(json.dumps(results))
""")


@pytest.mark.parametrize("groups", ["groups", "one-to-one"])
@pytest.mark.parametrize("size", [0, 4096, 4096 + 256])
def test_channels_lists_a_file_truncated_while_it_reads_it_as_truncated_never_faults(
        channel, peers, tmp_path, groups, size):
    # channels() reads every channel in /dev/shm, also those of other processes, any of which
    # may shrink a file at any moment.  Through a mapping, its next look at a page past the
    # new end raised SIGBUS: the fuzzer's child died so while it listed the channels and
    # another fuzzer truncated its own channel's file.
    cc = next((c for c in os.environ.get("CC", "").split()[:1] + ["cc", "gcc", "clang"] if shutil.which(c)),
              None)
    if cc is None:
        pytest.skip("no C compiler (cc, gcc, clang) on PATH")
    (tmp_path / "shim.c").write_text(TRUNCATE_SHIM)
    shim = tmp_path / "shim.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(shim), str(tmp_path / "shim.c"), "-ldl"],
                   check=True, capture_output=True, timeout=60)
    # After a sanitizer's runtime if the tests run with one (it must come first).
    preload = " ".join(filter(None, [os.environ.get("LD_PRELOAD", ""), str(shim)]))
    proc = peers.start(channel, groups, size, script=LIST_TRUNCATED, env={"LD_PRELOAD": preload})
    rc, out, err = peers.finish(proc, timeout=60)
    assert rc == 0, f"the listing process ended with {rc} ({_signal_name(rc)}): {err[-2000:]}"
    results = json.loads(out)
    assert results[0]["truncated"] and not results[-1]["truncated"], results
    # Each listing is the channel as it was (read before the file shrank), or says it shrank.
    for row in results:
        if row["problem"] is None:
            assert row["depth"] == 3, row
        else:
            assert row["truncated"] and row["depth"] is None and row["problem"] == "shrank while it was read", row
    # 4352 bytes keep the places of a one-to-one channel (all channels() reads of it); the
    # other sizes cut what it reads.
    if size < 4352 or groups == "groups":
        assert any(row["problem"] for row in results), results


def _signal_name(rc):
    return signal.Signals(-rc).name if rc < 0 else "exit status"


def test_a_group_mode_shares_the_channel_with_the_group(channel):
    with Sender(channel, message_length=8, max_queued_messages=2, mode=0o660):
        assert stat.S_IMODE(os.stat(channel_path(channel)).st_mode) == 0o660
    with pytest.raises(ValueError, match="0o644"):
        Sender(channel + "x", message_length=8, mode=0o644)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a file owned by someone else")
def test_a_channel_file_owned_by_another_user_is_refused(channel):
    with Sender(channel, message_length=8, max_queued_messages=2):
        pass
    os.chown(channel_path(channel), 65534, 65534)
    with pytest.raises(PermissionError, match="owned by uid 65534"):
        Receiver(channel, message_length=8, max_queued_messages=2)


def test_an_end_inherited_across_fork_refuses_to_work_in_the_child(channel):
    s = Sender(channel, message_length=8, max_queued_messages=4)
    r = Receiver(channel, message_length=8, max_queued_messages=4)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            try:
                s.send(b"child")
            except ChannelClosedError as exc:
                if f"belongs to process {os.getppid()}" in str(exc) and s.closed:
                    code = 0
            s.close()
            r.close()
        finally:
            os.write(write_fd, bytes([code]))
            os._exit(code)
    os.close(write_fd)
    _, status = os.waitpid(pid, 0)
    assert os.read(read_fd, 1) == b"\x00" and os.WEXITSTATUS(status) == 0
    os.close(read_fd)
    # The parent's ends are untouched and still hold their claims.
    with s, r:
        s.send(b"parent")
        assert r.recv(timeout=1) == b"parent"
        with pytest.raises(ChannelBusyError):
            Sender(channel, message_length=8, max_queued_messages=4)


@pytest.mark.timeout(120)
def test_multiprocessing_with_the_spawn_start_method_works(channel):
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    child = ctx.Process(target=spawn_receive, args=(channel, 100, results))
    child.start()
    try:
        with Sender(channel, message_length=32, max_queued_messages=1024) as s:
            s.send_many([b"%d" % i for i in range(100)])
            assert results.get(timeout=60) == [b"%d" % i for i in range(100)]
        child.join(30)
        assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.kill()
            child.join()


def test_an_end_cannot_be_pickled(channel):
    with Sender(channel, message_length=8, max_queued_messages=2) as s:
        with pytest.raises(TypeError, match="open one there by the channel name"):
            pickle.dumps(s)


def test_a_serializer_that_raises_sends_nothing_and_the_sender_stays_usable(channel):
    def ser(msg, buf):
        buf.write(b"partial")
        if msg == "bad":
            raise RuntimeError("cannot serialize")

    with Sender(channel, message_serializer=ser, message_length=8, max_queued_messages=4) as s, \
            Receiver(channel, message_length=8, max_queued_messages=4) as r:
        with pytest.raises(RuntimeError, match="cannot serialize"):
            s.send("bad")
        with pytest.raises(RuntimeError, match="cannot serialize"):
            s.send_many(["ok", "bad", "never"])
        s.send("ok2")
        assert r.recv_many(10) == [b"partial", b"partial"]
        assert s.published == 2 and r.taken == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a file owned by someone else")
def test_a_group_shared_channel_of_another_user_opens_only_for_group_sharing_ends(channel):
    with Sender(channel, message_length=8, max_queued_messages=2, mode=0o660) as s:
        s.send(b"shared")
    os.chown(channel_path(channel), 65534, os.getegid())
    with pytest.raises(PermissionError, match="needs mode=0o660 on both ends"):
        Receiver(channel, message_length=8, max_queued_messages=2)
    with Receiver(channel, message_length=8, max_queued_messages=2, mode=0o660) as r:
        assert r.recv(timeout=1) == b"shared"


def test_a_fifo_in_place_of_a_channel_is_refused(channel):
    os.mkfifo(channel_path(channel), 0o600)
    with pytest.raises(PermissionError, match="not a regular file"):
        Receiver(channel, message_length=8, max_queued_messages=2)


@pytest.mark.parametrize("mode", [0o620, 0o640, 0o200, 0o400, 0o060])
def test_a_mode_no_other_end_could_use_is_refused_naming_it(channel, mode):
    # Only 0o600 (this user) and 0o660 (this user and the group, both read-write) can work:
    # an end needs to read and write the channel.
    with pytest.raises(ValueError, match=f"{mode:#o}"):
        Sender(channel, message_length=8, max_queued_messages=2, mode=mode)
    assert not os.path.exists(channel_path(channel))


def test_the_largest_geometry_raises_a_value_error_naming_the_sizes(channel):
    with pytest.raises(ValueError) as info:
        Sender(channel, message_length=0x7FFFFFF0, max_queued_messages=1 << 40)
    message = str(info.value)
    assert "message_length=2147483632" in message and "max_queued_messages=1099511627776" in message
    assert str(file_size_for(0x7FFFFFF0, 1 << 40)) in message.replace(",", "")
    assert "/dev/shm" in message and "free" in message
    assert not os.path.exists(channel_path(channel))


def _ofd_lock(fd, offset, command=fcntl.F_OFD_SETLK, kind=fcntl.F_WRLCK):
    """An open-file-description lock on one byte (struct flock of 64-bit Linux); returns l_type."""
    packed = struct.pack("hhxxxxqqixxxx", kind, os.SEEK_SET, offset, 1, 0)
    return struct.unpack("hhxxxxqqixxxx", fcntl.fcntl(fd, command, packed))[0]


LIFECYCLE_BYTE = 64     # creator_pid's offset: held while a file is built or removed


def test_remove_stale_judges_temporaries_by_their_creators_lock_not_by_the_pid_in_their_name(
        peers, monkeypatch):
    # The pid in a temporary's name means nothing across PID namespaces that share
    # /dev/shm: a live creator may carry a pid that is free here, a dead one a pid in use.
    proc = peers.start(script="pass")
    peers.finish(proc)
    building = f"/dev/shm/.cywhip.{proc.pid}.abcdef.tmp"      # its creator is alive elsewhere
    orphan = f"/dev/shm/.cywhip.{os.getpid()}.abcdef.tmp"     # its creator is gone
    for path in (building, orphan):
        open(path, "wb").close()
    fd = os.open(building, os.O_RDWR)
    monkeypatch.setattr(_admin, "channels", lambda: [])     # leave other channels in /dev/shm alone
    try:
        _ofd_lock(fd, LIFECYCLE_BYTE)
        cywhip.remove_stale()
        assert os.path.exists(building)
        assert not os.path.exists(orphan)
    finally:
        os.close(fd)
        for path in (building, orphan):
            if os.path.exists(path):
                os.unlink(path)


def test_a_creator_holds_the_lifecycle_lock_of_its_temporary_until_it_is_named(channel, monkeypatch):
    seen = []

    def hook(point, path):
        if point == "create":
            fd = os.open(path, os.O_RDWR)
            try:
                seen.append(_ofd_lock(fd, LIFECYCLE_BYTE, fcntl.F_OFD_GETLK))
            finally:
                os.close(fd)
            cywhip.remove_stale()
            seen.append(os.path.exists(path))

    monkeypatch.setattr(_admin, "channels", lambda: [])
    monkeypatch.setattr(_region, "_test_hook", hook)
    with Sender(channel, message_length=8, max_queued_messages=2) as s:
        s.send(b"made")
    assert seen == [fcntl.F_WRLCK, True]
    with Receiver(channel, message_length=8, max_queued_messages=2) as r:
        assert r.recv(timeout=1) == b"made"


def test_remove_stale_skips_a_channel_it_may_not_remove_warns_naming_it_and_goes_on(channel, monkeypatch):
    names = [channel + suffix for suffix in ("-a", "-b", "-c")]
    try:
        for name in names:
            Sender(name, message_length=8, max_queued_messages=2).close()
        refused = channel_path(names[1])
        real_unlink, real_channels = os.unlink, cywhip.channels

        def unlink(path, *args, **kwargs):
            if path == refused:
                raise PermissionError(errno.EPERM, "Operation not permitted", path)
            return real_unlink(path, *args, **kwargs)

        monkeypatch.setattr(os, "unlink", unlink)
        monkeypatch.setattr(_admin, "channels", lambda: [c for c in real_channels() if c.name in names])
        with pytest.warns(RuntimeWarning, match=rf"{refused}.*Operation not permitted"):
            removed = cywhip.remove_stale()
        assert sorted(removed) == [names[0], names[2]]
        assert os.path.exists(refused)
        monkeypatch.undo()
        with pytest.raises(PermissionError):     # named explicitly, the error is the caller's
            monkeypatch.setattr(os, "unlink", unlink)
            cywhip.remove_stale(names[1])
    finally:
        monkeypatch.undo()
        for name in names:
            cywhip.unlink(name, missing_ok=True)


def _as_another_user(uid, gid, fn):
    """Run fn() in a forked child that has switched to uid (in group gid); return what it returned."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([gid])
            os.setgid(gid)
            os.setuid(uid)
            result = fn()
            code = 0
        except BaseException as exc:
            result = f"{type(exc).__name__}: {exc}"
        finally:
            os.write(write_fd, json.dumps(result).encode())
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    return os.WEXITSTATUS(status), json.loads(data)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a process as another user")
def test_remove_stale_run_by_a_group_member_skips_what_the_sticky_dev_shm_keeps_it_from_removing(
        channel, peers):
    # A stale channel and an orphaned temporary, both shared with the group (0660)
    # and owned by this user: a member of the group may open and lock them, but
    # /dev/shm's sticky bit keeps it from unlinking them.
    with Sender(channel, message_length=8, max_queued_messages=2, mode=0o660):
        pass
    proc = peers.start(script="pass")
    peers.finish(proc)
    orphan = f"/dev/shm/.cywhip.{proc.pid}.fedcba.tmp"
    fd = os.open(orphan, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o660)
    os.fchmod(fd, 0o660)
    os.close(fd)

    def remove_stale():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            removed = cywhip.remove_stale()
        return {"uid": os.geteuid(), "removed": removed, "warnings": [str(w.message) for w in caught]}

    try:
        code, report = _as_another_user(65534, os.getegid(), remove_stale)
        assert code == 0, report
        assert report["uid"] == 65534 and channel not in report["removed"]
        text = "\n".join(report["warnings"])
        assert channel_path(channel) in text and orphan in text, report
        assert os.path.exists(channel_path(channel)) and os.path.exists(orphan)
    finally:
        os.unlink(orphan)


def test_the_listing_escapes_names_that_could_forge_or_hide_lines(channel, capsys):
    # Anyone who may create files in /dev/shm names them: a newline or an escape sequence
    # in a name must not print as one.
    from cywhip.__main__ import main
    evil = channel + "\n" + "fake: 0 of 4 queued\x1b[2K"
    try:
        with Sender(evil, message_length=8, max_queued_messages=4):
            main(["channels"])
        out = capsys.readouterr().out
        line = next(row for row in out.splitlines() if row.startswith(channel))
        assert line.startswith(channel + "\\nfake: 0 of 4 queued\\x1b[2K: 0/4 queued")
        assert "\x1b" not in out and not any(row.startswith("fake") for row in out.splitlines())
    finally:
        cywhip.unlink(evil, missing_ok=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a file owned by someone else")
def test_the_listing_reads_a_channel_another_user_shares_with_our_group_and_names_one_it_does_not(channel):
    with Sender(channel, message_length=8, max_queued_messages=2, mode=0o660) as tx:
        tx.send(b"1")
    path = channel_path(channel)
    os.chown(path, 65534, os.getegid())
    info = {c.name: c for c in cywhip.channels()}[channel]
    assert info.problem is None and info.depth == 1 and info.message_length == 8
    os.chmod(path, 0o600)
    info = {c.name: c for c in cywhip.channels()}[channel]
    assert info.problem == "owned by uid 65534, not shared with a group of ours"


SHRINK_WHILE_LISTED = textwrap.dedent("""
    import os, sys, cywhip
    from cywhip import _admin, _region
    name = sys.argv[1]
    path = _region.channel_path(name)

    def hook(point, where):
        if point == "inspect" and where == path:
            os.truncate(path, 4096)     # another process shrinks the file, header checked

    for kw in (dict(), dict(max_receivers=2)):
        with cywhip.Sender(name, message_length=8, max_queued_messages=4, **kw) as tx:
            tx.send(b"1")
        _admin._test_hook = hook
        [info] = [c for c in cywhip.channels() if c.name == name]
        _admin._test_hook = None
        print(info.problem, flush=True)
        cywhip.unlink(name)
""")


@pytest.mark.timeout(60)
def test_listing_a_channel_that_shrinks_meanwhile_names_it_broken_and_never_raises_sigbus(channel, peers):
    # channels() lists every channel file, including those of other processes, any of which
    # may shrink a file it can write: the listing reads files, it never touches a mapping.
    proc = peers.start(channel, script=SHRINK_WHILE_LISTED)
    rc, out, err = peers.finish(proc, timeout=30)
    assert rc == 0, (rc, err[-2000:])
    assert out.split("\n")[:2] == ["shrank while it was read"] * 2


QUIET_FUZZ_CHILD = textwrap.dedent("""
    import sys, threading, cywhip
    from cywhip._testing import fuzz
    fuzz.quiet_receive_threads()
    name = sys.argv[1]
    failed = threading.Event()

    def boom(msg):
        failed.set()
        raise ValueError("a callback that fails, as under a corrupted channel")

    with cywhip.Sender(name, message_length=8, max_queued_messages=4) as tx:
        rx = cywhip.Receiver(name, message_length=8, max_queued_messages=4, on_message=boom)
        tx.send(b"x")
        assert failed.wait(10)
        try:
            rx.close()
        except ValueError:
            pass
    cywhip.unlink(name)
""")


def test_the_fuzzer_keeps_failing_receive_threads_off_its_stderr(channel, peers):
    # Its cases fail receive threads all the time; cywhip logs each failure at once.  Through
    # a runner's stderr, a pipe read only at the end, 1,500 group cases wrote 68,589 bytes:
    # more than a pipe holds, and the children blocked in the write (a hung case).
    proc = peers.start(channel, script=QUIET_FUZZ_CHILD)
    rc, out, err = peers.finish(proc, timeout=30)
    assert rc == 0 and err == "", (rc, err[-2000:])


@pytest.mark.timeout(90)
def test_the_byte_fuzzer_puts_back_only_a_field_s_newest_saved_value(peers):
    """Case 7321027680: the fuzzer set read_cursor to 11352, the receiver stored 15456 over it,
    the fuzzer set 11352 again; a put-back of the first mutation (the field held what it had
    written, by chance) moved read_cursor back to 13832, and the messages after it came again:
    a failure of the fuzzer's bookkeeping, not of the channel."""
    proc = peers.start("--case-seed", "7321027680", "--groups", "none", "--bytes", "only",
                       script="import sys; from cywhip._testing.fuzz import main; sys.exit(main(sys.argv[1:]))")
    rc, out, err = peers.finish(proc, timeout=80)
    report = json.loads(out)
    assert (report["cases"], report["byte_cases"]) == (1, 1), report
    assert report["failures"] == [], fuzz.describe_failure(report["failures"][0])


# What the racing fuzzer of byte channels with groups led to: a group's claim cursor (group_next)
# beyond the write cursor, a value no sound channel holds.
def _group_next_offset(group_index, receivers):
    from cywhip._testing._model import layout
    lay = layout()
    return fuzz._group_offset(lay, 1, receivers, group_index) + lay["group_next"]


def test_a_group_member_names_its_groups_claim_cursor_and_the_write_cursor_when_they_are_impossible(
        channel, mapped):
    kw = dict(max_queued_bytes=256, message_length=40, max_receivers=2)
    with Sender(channel, **kw) as tx, Receiver(channel, group="a", **kw) as a:
        for i in range(3):
            tx.send(bytes([i]) * 40, timeout=1)
        with mapped(channel) as mm:
            w = struct.unpack_from("<Q", mm, fuzz.layout()["write_cursor"])[0]
            assert w == 3 * 48
            bad = w + (1 << 23)
            struct.pack_into("<Q", mm, _group_next_offset(0, 2), bad)
            with pytest.raises(cywhip.ChannelCorruptError) as exc:
                a.recv(timeout=0.1)
            struct.pack_into("<Q", mm, _group_next_offset(0, 2), 0)
    text = str(exc.value)
    # It names the impossible claim cursor as such, the write cursor as it is, and the
    # channel's size as the ends give it (max_queued_bytes).
    assert str(bad) in text and f"write cursor {bad}" not in text, text
    assert re.search(rf"write cursor {w}\b", text), text
    assert "max_queued_messages" not in text, text


def test_a_sender_refuses_a_groups_claim_cursor_beyond_its_write_cursor(channel, mapped):
    kw = dict(max_queued_bytes=256, message_length=40, max_receivers=2)
    msgs = [bytes([i]) * 40 for i in range(5)]          # 48-byte records: 240 of the 256 bytes
    with Sender(channel, **kw) as tx, Receiver(channel, group="a", **kw) as a, \
            Receiver(channel, group="b", **kw) as b:
        tx.send_many(msgs, timeout=1)
        assert b.recv_many(10, timeout=1) == msgs      # b has taken all: a holds the sender
        with mapped(channel) as mm:
            off = _group_next_offset(0, 2)
            assert struct.unpack_from("<Q", mm, off)[0] == 0
            bad = 1 << 40
            struct.pack_into("<Q", mm, off, bad)
            sent = 0
            try:
                for i in range(5, 10):
                    tx.send(bytes([i]) * 40, timeout=0.1)
                    sent += 1
            except cywhip.ChannelCorruptError as exc:
                refused = str(exc)
            else:
                refused = None
            struct.pack_into("<Q", mm, off, 0)
        assert refused is not None and str(bad) in refused, f"the sender sent {sent} messages over group a's"
        # Group a's messages are still there to take.
        assert a.recv_many(10, timeout=1) == msgs


def _held_claim(mm, receivers=2):
    """(offset, value) of the place_hold_start of the one member place holding a claim."""
    lay = fuzz.layout()
    holds = [lay["places"] + (1 + q) * lay["place_bytes"] + lay["place_hold_start"] for q in range(receivers)]
    off = [o for o in holds if struct.unpack_from("<Q", mm, o)[0]][0]
    return off, struct.unpack_from("<Q", mm, off)[0]


def test_a_sender_refuses_a_members_claim_beyond_its_write_cursor_and_never_writes_under_a_borrow(
        channel, mapped):
    kw = dict(max_queued_bytes=256, message_length=40, max_receivers=2)
    msgs = [bytes([i]) * 40 for i in range(5)]
    with Sender(channel, **kw) as tx, Receiver(channel, group="a", **kw) as a, mapped(channel) as mm:
        tx.send_many(msgs, timeout=1)
        with a.borrow(5, timeout=1) as lent:
            assert [bytes(m) for m in lent] == msgs
            off, h = _held_claim(mm)
            assert h == 1                               # the claim of bytes 0..240
            struct.pack_into("<Q", mm, off, h | (1 << 40))
            refused = None
            try:
                for i in range(5, 10):
                    tx.send(bytes([i]) * 40, timeout=0.1)
            except cywhip.ChannelCorruptError as exc:
                refused = str(exc)
            except cywhip.SendTimeout:
                refused = "held"
            still = [bytes(m) for m in lent]
            struct.pack_into("<Q", mm, off, h)
        assert still == msgs, f"the borrowed messages changed under the member: {[m[:2] for m in still]}"
        # The sender names the position the flipped hold starts at.
        assert refused is not None and str((h | (1 << 40)) - 1) in refused, refused


def _flip_until_told(path, off, value, flips, stop):
    """A process that flips the 8-byte word at off between value and value | (1 << 40) (a
    claim far beyond any write cursor) until stop is set, then puts value back."""
    import mmap
    from cywhip._testing._model import atomic_cas_u64
    fd = os.open(path, os.O_RDWR)
    mm = mmap.mmap(fd, os.fstat(fd).st_size)
    os.close(fd)
    bad = value | (1 << 40)
    while not stop.is_set():
        for _ in range(1000):
            atomic_cas_u64(mm, off, value, bad)
            atomic_cas_u64(mm, off, bad, value)
        flips.value += 1000
    atomic_cas_u64(mm, off, bad, value)
    mm.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["bytes", "slots"])
def test_a_claim_put_back_while_the_sender_looks_for_room_is_never_passed_over(channel, mapped, kind):
    # The racing fuzzer of byte channels with groups: a member's claim (its place's
    # hold_start) flipped far beyond the write cursor and put back.  The sender read each
    # hold twice, once for the least position (where the flipped value counts for nothing)
    # and once to find positions beyond its write cursor (put back by then: nothing beyond),
    # so it passed over the claim and wrote over the messages a borrow() was reading.
    if kind == "bytes":
        kw = dict(max_queued_bytes=256, message_length=40, max_receivers=2)
    else:
        kw = dict(max_queued_messages=5, message_length=40, max_receivers=2)
    msgs = [bytes([i]) * 40 for i in range(5)]        # bytes: 48-byte records, 240 of 256
    ctx = multiprocessing.get_context("fork")
    stop, flips = ctx.Event(), ctx.Value("Q", 0)
    with Sender(channel, **kw) as tx, Receiver(channel, group="a", **kw) as a, mapped(channel) as mm:
        tx.send_many(msgs, timeout=1)
        with a.borrow(5, timeout=1) as lent:
            assert [bytes(m) for m in lent] == msgs
            off, h = _held_claim(mm)
            assert h == 1                              # the claim of the 5 messages
            flipper = ctx.Process(target=_flip_until_told, args=(channel_path(channel), off, h, flips, stop))
            flipper.start()
            try:
                while flips.value == 0:
                    assert flipper.is_alive(), "the flipping process ended"
                    time.sleep(0.001)
                sent = refused = held = 0
                # Each try_send looks for room (the ring is full): 300,000 looks while the
                # claim flips, every one of which must find the claim or refuse it (before the
                # fix, one passed over it in 7 of 10 runs, 5 of each kind).
                for i in range(300_000):
                    try:
                        if tx.try_send(bytes([100 + i % 100]) * 40):
                            sent += 1
                            break
                        held += 1
                    except cywhip.ChannelCorruptError:
                        refused += 1
            finally:
                stop.set()
                flipper.join(10)
            still = [bytes(m) for m in lent]
        assert sent == 0 and still == msgs, (
            f"the sender passed over the member's claim after {held} looks held and {refused} refused "
            f"({flips.value} flips): the borrowed messages became {[m[:2] for m in still]}")
        assert held > 0 and refused > 0, (held, refused)

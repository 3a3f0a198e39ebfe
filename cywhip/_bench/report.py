"""Running the table, checking the speed targets, and printing the report."""
import json
import os
import sys
import time

from cywhip._bench.common import _available
from cywhip._bench.workloads import BIG, BRIDGE, BROADCAST, MIXED, OBJECTS, SHARING, SUBETHA, workloads


FANIN = "2 senders → 1 receiver, 32 B, one send per message (aggregate)"
GROUPS_BROADCAST = (BROADCAST, "cywhip", "2 groups of 1, send → recv_many")
GROUP_SHARING = (SHARING, "cywhip", "1 group of 2 members, send → recv_many")
CAPI = "Cython API, 32 B, nogil loops"

SINGLE, BATCHES = "single send/recv, 32 B", "batches, 32 B"
MIXED_BYTES = (MIXED, "cywhip", "byte channel")

# The speed cywhip is held to: (what is promised, cywhip's row, the row it is measured against,
# the test on cywhip's figure divided by that row's). A row is (group, system, part of its label),
# and optionally the key of a figure it shows beside its first (its "also"), to compare that one.
TARGETS = [
    ("single send/recv ≥ 3× cloudtoid try_send/receive", ("single send/recv, 32 B", "cywhip", "send/recv"),
     ("single send/recv, 32 B", "cloudtoid-interprocess", ""), lambda r: r >= 3),
    ("single send/recv ≥ 0.8× the Python call floor", ("single send/recv, 32 B", "cywhip", "send/recv"),
     ("single send/recv, 32 B", "Python calls (floor)", ""), lambda r: r >= 0.8),
    ("single send/recv ≥ 50× multiprocessing.Queue", ("single send/recv, 32 B", "cywhip", "send/recv"),
     ("single send/recv, 32 B", "multiprocessing.Queue", ""), lambda r: r >= 50),
    ("send_many/recv_many ≥ 10× cloudtoid try_send_batch", ("batches, 32 B", "cywhip", "send_many"),
     ("batches, 32 B", "cloudtoid-interprocess", ""), lambda r: r >= 10),
    ("send_array/recv_into ≥ ½ raw C ring", ("typed records, 32 B", "cywhip", ""),
     ("typed records, 32 B", "raw C ring (floor)", ""), lambda r: r >= 0.5),
    ("send_array/recv_into ≥ 2× SubEtha's packed push_buffer/pop_buffer", ("typed records, 32 B", "cywhip", ""),
     ("typed records, 32 B", SUBETHA, "push_buffer"), lambda r: r >= 2),
    ("round trip p50 ≤ ⅕ iceoryx2 busy-poll", ("round trip, 32 B", "cywhip", "default"),
     ("round trip, 32 B", "iceoryx2", ""), lambda r: r <= 0.2),
    ("one sender, max_senders=4 ≥ 0.8× one-to-one",
     ("single send/recv, 32 B", "cywhip", "max_senders=4"), ("single send/recv, 32 B", "cywhip", "send/recv"),
     lambda r: r >= 0.8),
    ("2 senders → 1 receiver ≥ 2× cykit MPSC", (FANIN, "cywhip", "recv_many"), (FANIN, "cykit 0.1.0", ""),
     lambda r: r >= 2),
    ("2 senders → 1 receiver ≥ 3× cloudtoid", (FANIN, "cywhip", "recv_many"),
     (FANIN, "cloudtoid-interprocess", ""), lambda r: r >= 3),
    ("broadcast to 2 groups, per group ≥ 3× cykit SPMC", GROUPS_BROADCAST, (BROADCAST, "cykit 0.1.0", ""),
     lambda r: r >= 3),
    ("broadcast to 2 groups, per group ≥ 5× pyzmq PUB/SUB", GROUPS_BROADCAST, (BROADCAST, "pyzmq ipc://", ""),
     lambda r: r >= 5),
    ("broadcast to 2 groups, per group ≥ 20× iceoryx2 publish-subscribe", GROUPS_BROADCAST,
     (BROADCAST, "iceoryx2", ""), lambda r: r >= 20),
    ("broadcast to 2 groups, per group ≥ ½ one-to-one", GROUPS_BROADCAST, (BROADCAST, "cywhip", "one-to-one"),
     lambda r: r >= 0.5),
    ("a group of 2 sharing work, aggregate ≥ 2× cloudtoid", GROUP_SHARING,
     (SHARING, "cloudtoid-interprocess", ""), lambda r: r >= 2),
    ("a group of 2 sharing work, aggregate ≥ 30× multiprocessing.Queue", GROUP_SHARING,
     (SHARING, "multiprocessing.Queue", ""), lambda r: r >= 30),
    ("blocking round trip p50 ≤ 1.2× futex floor", ("round trip, 32 B", "cywhip", "spin_time=0"),
     ("round trip, 32 B", "futex ping-pong (floor)", ""), lambda r: r <= 1.2),
    ("asyncio recv_many ≥ ½ plain recv_many", ("asyncio, 32 B", "cywhip", "asyncio recv_many"),
     ("batches, 32 B", "cywhip", "send_many/recv_many"), lambda r: r >= 0.5),
    ("asyncio recv with messages waiting ≥ ½ plain recv", ("asyncio, 32 B", "cywhip", "asyncio recv, messages"),
     ("asyncio, 32 B", "cywhip", "plain recv, messages"), lambda r: r >= 0.5),
    ("asyncio recv ≥ 5× zmq.asyncio PUSH/PULL", ("asyncio, 32 B", "cywhip", "asyncio recv, plain send"),
     ("asyncio, 32 B", "pyzmq ipc://", ""), lambda r: r >= 5),
    ("asyncio wake-up after 50 ms idle p50 ≤ 1.5× the plain receiver's",
     ("idle receiver", "cywhip", "asyncio wake-up after 50 ms idle (p50)"),
     ("idle receiver", "cywhip", "wake-up after 50 ms idle (p50)"), lambda r: r <= 1.5),
    ("asyncio wake-up after 50 ms idle p99 ≤ 3× the plain receiver's p99",
     ("idle receiver", "cywhip", "asyncio wake-up after 50 ms idle (p99)"),
     ("idle receiver", "cywhip", "wake-up after 50 ms idle (p50)", "p99_us"), lambda r: r <= 3),
    ("asyncio round trip p50 ≤ ⅓ zmq.asyncio", ("asyncio round trip, 32 B", "cywhip", ""),
     ("asyncio round trip, 32 B", "pyzmq ipc://", ""), lambda r: r <= 1 / 3),
    ("Cython API, one message per call ≥ 2× cykit's Cython API", (CAPI, "cywhip", "one message per call"),
     (CAPI, "cykit 0.1.0", ""), lambda r: r >= 2),
    ("message_type=object, a dict holding a 1 MiB array ≥ 5× multiprocessing.Queue", (OBJECTS, "cywhip", ""),
     (OBJECTS, "multiprocessing.Queue", ""), lambda r: r >= 5),
    ("bridge out → JetStream → in ≥ 0.8× nats-py alone", (BRIDGE, "cywhip", "bridge out"),
     (BRIDGE, "nats-py", "publish_async"), lambda r: r >= 0.8),
    ("bridge out → JetStream → in ≥ 0.8× nats-py with the bridge's message ids", (BRIDGE, "cywhip", "bridge out"),
     (BRIDGE, "nats-py", "Nats-Msg-Id"), lambda r: r >= 0.8),
    ("byte channel, single send/recv ≥ 0.9× the slot channel", (SINGLE, "cywhip", "byte channel"),
     (SINGLE, "cywhip", "send/recv"), lambda r: r >= 0.9),
    ("byte channel, send_many/recv_many ≥ 0.8× the slot channel", (BATCHES, "cywhip", "byte channel"),
     (BATCHES, "cywhip", "send_many"), lambda r: r >= 0.8),
    ("mixed sizes, byte channel ≥ 3× pyzmq PUSH/PULL in messages/s", MIXED_BYTES, (MIXED, "pyzmq ipc://", ""),
     lambda r: r >= 3),
    ("mixed sizes, byte channel ≥ 3× pyzmq PUSH/PULL in bytes/s", MIXED_BYTES + ("bytes_rate",),
     (MIXED, "pyzmq ipc://", "", "bytes_rate"), lambda r: r >= 3),
    ("mixed sizes, byte channel ≥ 2× cloudtoid in messages/s", MIXED_BYTES, (MIXED, "cloudtoid-interprocess", ""),
     lambda r: r >= 2),
    ("mixed sizes, byte channel ≥ 2× cloudtoid in bytes/s", MIXED_BYTES + ("bytes_rate",),
     (MIXED, "cloudtoid-interprocess", "", "bytes_rate"), lambda r: r >= 2),
    ("1 MiB messages, byte channel ≥ 0.9× the slot channel's GB/s", (BIG, "cywhip", "send/recv, byte channel"),
     (BIG, "cywhip", "send/recv"), lambda r: r >= 0.9),
    ("1 MiB messages made by NumPy: in reserve()'s buffer ≥ 1.3× in a buffer then send()",
     (BIG, "cywhip", "np.add of a preallocated array into reserve()"),
     (BIG, "cywhip", "np.add of a preallocated array into a buffer"), lambda r: r >= 1.3),
    ("1 MiB messages read from a file: into reserve()'s buffer ≥ 1.3× into a buffer then send()",
     (BIG, "cywhip", "os.preadv from a file into reserve()"),
     (BIG, "cywhip", "os.preadv from a file into a buffer"), lambda r: r >= 1.3),
]


# The patterns in which every cywhip row is held to PEER_FACTOR × the best peer that delivered
# every message (in each of its runs): a peer that lost messages is shown with what it lost, and
# is not the best of anything.
PATTERNS = ["single send/recv, 32 B", FANIN, BROADCAST, SHARING, "batches, 32 B"]
PEER_FACTOR = 2

# Peers whose packages install only on Python 3.11 or later: module → package.
NEEDS_311 = {"subetha": "subetha-ipc", "msgq": "msgq-ipc"}

# A figure whose first run took less than SHORT_SECONDS is run ROUNDS times in all, in rounds
# that take every such row of its group in turn, and its median is reported.  On this kind of
# machine noise goes both ways: besides slow runs, a pair of spinning processes sometimes runs
# several times faster than usual for a while.  A best-of-N figure would take that run for one
# row and not for the row it is compared with; interleaved rounds and medians compare rows
# measured side by side.
ROUNDS = 3
SHORT_SECONDS = 5.0
_clock = time.perf_counter


def run(quick=False, progress=None, only=None):
    """Run every workload (or those whose group contains `only`); return the rows with their
    figures (or why they were skipped): the median of the runs (`values`, in the order run)."""
    rows = [row for row in workloads(quick) if not only or only in row["group"]]
    recs = []
    for row in rows:
        rec = {k: v for k, v in row.items() if k != "run"}
        needs = row["needs"] if isinstance(row["needs"], tuple) else (row["needs"],) if row["needs"] else ()
        missing = [m for m in needs if not _available(m)]
        if missing:
            rec["needs"] = ", ".join(needs)
            rec["skipped"] = f"{', '.join(missing)} is not installed (pip install -e '.[bench]')"
            old = [m for m in missing if m in NEEDS_311] if sys.version_info < (3, 11) else []
            if old:
                rec["skipped"] = f"{', '.join(NEEDS_311[m] for m in old)} needs Python 3.11 or later"
        recs.append(rec)
    results = [[] for _ in rows]
    seconds = {}

    def once(i):
        """Run row i once; return how long it took."""
        if progress:
            progress(f"{rows[i]['group']}: {rows[i]['system']} {rows[i]['label']} ...")
        t0 = _clock()
        try:
            results[i].append(rows[i]["run"]())
        except Exception as exc:      # a peer that breaks must not sink the table
            recs[i]["skipped"] = f"failed: {exc}"
        took = _clock() - t0
        seconds[i] = seconds.get(i, 0.0) + took
        return took

    for group in dict.fromkeys(row["group"] for row in rows):
        members = [i for i, row in enumerate(rows) if row["group"] == group and "skipped" not in recs[i]]
        again = [i for i in members if once(i) < SHORT_SECONDS]
        for _ in range(0 if quick else ROUNDS - 1):
            for i in again:
                if "skipped" not in recs[i]:
                    once(i)

    for i, (row, rec) in enumerate(zip(rows, recs)):
        if i in seconds:
            rec["seconds"] = round(seconds[i], 1)
        if "skipped" in rec:
            continue
        key = row["key"]
        middle = sorted(results[i], key=lambda r: r[key])[(len(results[i]) - 1) // 2]
        rec["value"] = middle[key]
        rec["values"] = [r[key] for r in results[i]]
        rec["runs"] = len(results[i])
        # More figures of the same runs (the median run's), and the size of the channel's file.
        if row.get("also"):
            rec["also_values"] = {k: middle[k] for k, _ in row["also"]}
        if "file_bytes" in middle:
            rec["file_bytes"] = middle["file_bytes"]
        # A run that lost messages (or duplicated, reordered, or delivered one not sent) makes the
        # row lossy, whatever the median run did.
        rec["lossy"] = any(r.get("lost") or r.get("duplicated") or r.get("disordered") or r.get("wrong")
                           or r.get("exactly_once") is False for r in results[i])
        # What a run found beside its figure (a check on what arrived): the median run's,
        # and a failed check of any other run.
        notes = [middle.get("note")] + [r["note"] for r in results[i]
                                        if r is not middle and (r.get("note") or "").startswith("NOT")]
        if any(notes):
            rec["note"] = "; ".join(dict.fromkeys(n for n in notes if n))
    return recs


def _find(rows, group, system, label_part=""):
    for r in rows:
        if r["group"] == group and r["system"] == system and label_part in r["label"] and "value" in r:
            return r
    return None


def _figure(rows, spec):
    """The figure a target names: (group, system, label part) is the row's first figure,
    (group, system, label part, key) the one of that key beside it; None if not measured."""
    r = _find(rows, *spec[:3])
    if r is None:
        return None
    return r["value"] if len(spec) < 4 else r.get("also_values", {}).get(spec[3])


def _is_peer(row):
    return row["system"] != "cywhip" and "(floor)" not in row["system"]


def best_lossless_peer(rows, group):
    """The fastest peer row of a group that lost nothing in any run, or None."""
    peers = [r for r in rows if r["group"] == group and _is_peer(r) and "value" in r and not r.get("lossy")]
    if not peers:
        return None
    return (min if peers[0].get("unit") == "µs" else max)(peers, key=lambda r: r["value"])


def targets(rows):
    """Each target with the measured figure (a ratio, or GB/s, or % of a core) and whether it holds."""
    out = []
    for desc, mine, peer, ok in TARGETS:
        a, b = _figure(rows, mine), _figure(rows, peer)
        ratio = a / b if a is not None and b is not None else None
        out.append({"target": desc, "measured": ratio, "met": None if ratio is None else bool(ok(ratio))})
    for group in PATTERNS:
        best = best_lossless_peer(rows, group)
        for r in rows:
            if r["group"] != group or r["system"] != "cywhip" or "value" not in r:
                continue
            desc = f"{group}: cywhip {r['label']} ≥ {PEER_FACTOR}× the best lossless peer"
            if best is None:
                out.append({"target": desc, "measured": None, "met": None})
                continue
            ratio = r["value"] / best["value"]
            out.append({"target": f"{desc} ({best['system']} {best['label']})", "measured": ratio,
                        "met": bool(ratio >= PEER_FACTOR)})
    for desc, row, ok in (("1 MiB messages ≥ 5 GB/s", ("1 MiB messages", "cywhip", ""), lambda v: v >= 5),
                          ("idle receiver < 1% of a core", ("idle receiver", "cywhip", "CPU"), lambda v: v < 1)):
        r = _find(rows, *row)
        out.append({"target": desc, "measured": r and r["value"], "met": None if r is None else bool(ok(r["value"]))})
    return out


def _fmt(value, unit):
    if unit in ("msg/s", "rec/s"):
        if value < 100_000:
            # Large messages (a 1 MiB array a message): thousands a second, not millions.
            return f"{value:,.0f} {unit}"
        return f"{value / 1e6:,.2f} M {unit}"
    if unit == "GB/s":
        return f"{value:.2f} GB/s"
    if unit == "µs":
        return f"{value:.2f} µs"
    return f"{value:.2f} {unit}"


def table(rows):
    """The results as a Markdown table, with cywhip's ratio to each peer in its group (of the
    medians), the range of a figure run more than once, and how many processes shared the
    machine's cores for each figure."""
    lines = ["| workload | system | API | figure | cywhip ÷ this | processes |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        procs = r.get("processes", 2)
        if "value" not in r:
            lines.append(f"| {r['group']} | {r['system']} | {r['label']} | skipped: {r['skipped']} | | {procs} |")
            continue
        ratio = ""
        if r["system"] != "cywhip":
            mine = _find(rows, r["group"], "cywhip", r["versus"] or "")
            if mine is not None:
                ratio = f"{mine['value'] / r['value']:.2f}×" + (" (lossy)" if r.get("lossy") else "")
        figure = _fmt(r["value"], r["unit"])
        for key, unit in r.get("also") or ():
            if key in r.get("also_values", {}):
                figure += f", {_fmt(r['also_values'][key], unit)}"
        values = r.get("values", ())
        if len(values) > 1:
            figure += f" (median of {len(values)}: {_fmt(min(values), r['unit'])} to {_fmt(max(values), r['unit'])})"
        if "file_bytes" in r:
            figure += f"; channel file {_mib(r['file_bytes'])}"
        figure += f"; {r['note']}" if r.get("note") else ""
        lines.append(f"| {r['group']} | {r['system']} | {r['label']} | {figure} | {ratio} | {procs} |")
    return "\n".join(lines)


def _mib(n):
    return f"{n / (1 << 20):,.2f} MiB"


def memory(rows):
    """What each cywhip channel of the mixed-size rows took in shared memory (its file's size, as
    its receiver found it), one line each; empty if none ran."""
    return [f"- {r['label']}: {_mib(r['file_bytes'])} ({r['file_bytes']:,} bytes)"
            for r in rows if r["group"] == MIXED and r["system"] == "cywhip" and "file_bytes" in r]


def machine():
    import platform
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, "
            f"Python {platform.python_version()}")


def main(argv):
    import argparse
    parser = argparse.ArgumentParser(prog="python -m cywhip bench",
                                     description="cywhip against its peers and raw C floors, "
                                                 "each workload in processes of its own")
    parser.add_argument("--quick", action="store_true", help="fewer messages per figure (a smoke run)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    groups = []
    for row in workloads(True):
        if row["group"] not in groups:
            groups.append(row["group"])
    parser.add_argument("--only", metavar="TEXT", help="run only the workloads whose group contains TEXT "
                        "(and not the crash tables); the groups: " + "; ".join(groups))
    parser.add_argument("--check", action="store_true",
                        help="the newest peers (SubEtha, kickmsg, msgq, Zenoh) keep every message and check its "
                             "number, each once and in order (slower: a Python object kept per message; by "
                             "default they count what arrives, as cywhip's rows do)")
    parser.add_argument("--hangs", type=int, metavar="N",
                        help="instead of the table: N short streams through each Cython API (cywhip's, "
                             "cykit's), one message per call, counting those that never finish")
    parser.add_argument("--hang-count", type=int, default=1_000_000, metavar="M",
                        help="messages per stream for --hangs (default 1,000,000)")
    parser.add_argument("--hang-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="how long a stream of --hangs may take before it counts as hung (default 10)")
    parser.add_argument("--hang-systems", default="cywhip,cykit", metavar="LIST",
                        help="which of cywhip,cykit --hangs runs (default both)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if args.check:
        from cywhip._bench.workloads import CHECK
        os.environ[CHECK] = "1"
    progress = lambda msg: print(msg, file=sys.stderr, flush=True)
    if args.hangs:
        from cywhip._bench.capi import hang_markdown, hang_table
        hangs = hang_table(args.hangs, count=args.hang_count, timeout=args.hang_timeout,
                           systems=tuple(args.hang_systems.split(",")), progress=progress)
        if args.json:
            print(json.dumps({"machine": machine(), "hangs": hangs}, indent=1))
        else:
            print(f"\nMachine: {machine()}\n")
            print(hang_markdown(hangs))
        return 0
    rows = run(args.quick, progress=progress, only=args.only)
    checks = targets(rows)
    from cywhip._bench.kills import (
        CONSUMER_HANG_SECONDS, KILL_AFTER, RUN_AFTER_KILL, consumer_crash_markdown, consumer_crash_table,
        crash_markdown, crash_table,
    )
    crashes = [] if args.only else crash_table(runs=1 if args.quick else 3, progress=progress)
    # One run per system: most are a couple of seconds, a hang costs its timeout.
    consumer_crashes = [] if args.only else consumer_crash_table(runs=1, progress=progress)
    if args.json:
        print(json.dumps({"machine": machine(), "rows": rows, "targets": checks, "crash": crashes,
                          "consumer_crash": consumer_crashes}, indent=1))
        return 0
    print(f"\nMachine: {machine()}\n")
    print(table(rows))
    files = memory(rows)
    if files:
        print("\nShared memory taken by each cywhip channel of the mixed-size rows (its file, as its receiver "
              "found it):\n")
        print("\n".join(files))
    print("\n| target | measured | met |\n| --- | --- | --- |")
    for t in checks:
        measured = "n/a" if t["measured"] is None else f"{t['measured']:.2f}"
        met = "n/a" if t["met"] is None else ("yes" if t["met"] else "no")
        print(f"| {t['target']} | {measured} | {met} |")
    if crashes:
        print("\nKilling one of two producers (SIGKILL, one second into a stream of one send per message; "
              "three processes on this machine's cores):\n")
        print(crash_markdown(crashes))
    if consumer_crashes:
        print(f"\nKilling one of two consumers (SIGKILL {KILL_AFTER:g} s into a stream of one send per "
              f"message, the producer stopped {RUN_AFTER_KILL:g} s later; three processes on this machine's "
              f"cores). Broadcast: the survivor must get every confirmed message, in order. Work sharing: "
              f"every confirmed message must reach the survivor or have been recorded by the dead consumer; "
              f"one it got inside the receive call it was killed in may be counted lost. A hang: nothing for "
              f"the survivor, or the producer not stopping, for {CONSUMER_HANG_SECONDS:g} s.\n")
        print(consumer_crash_markdown(consumer_crashes))
    return 0

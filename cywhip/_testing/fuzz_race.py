"""The racing mode of the shared-memory fuzzer (``python -m cywhip._testing.fuzz --race``):
the corruption happens while the calls run.  Each round, one process maps the channel file and
rewrites its header, cursors, waiting words, pids, start fields and slot lengths continuously
(and, with groups, the group entries, the members' places and groups_gen, now and then holding
the groups lock or a member place's lock as a stopped process would), while another process
opens ends, sends and receives through every path and closes them, in a loop.  The case
fuzzer, the trail, the mutations and the command line are in fuzz.py (see its docstring).
"""
import mmap
import os
import random
import signal
import struct
import sys
import tempfile
import time

from cywhip import Receiver, Sender, channels, unlink
from cywhip._region import channel_path
from cywhip._testing._model import layout, slot_header_size
from cywhip._testing._model import slot_size as slot_size_of
from cywhip._testing.fuzz import (
    BAD_MESSAGE, EXPECTED_ERRORS, LATE, RACE_HANG_SECONDS, RACE_LATE_SECONDS, TRAIL_BYTES, UNEXPECTED_ERROR,
    _GROUP_NAME_SIZE, _U32_FIELDS, _check_listing, _child_report, _ended, _fail_case, _group_offset,
    _group_spec, _group_targets, _group_value, _grouped, _how, _intents, _note, _numpy, _ofd_lock,
    _offsets, _remove_group, _slot_words, _watch_child, _word, quiet_receive_threads, read_trail,
    _bytes_round,
)

# The mutator's stalls (a lock held with groups_gen odd, as a creator stopped midway) last
# this long: longer than RACE_LATE_SECONDS (fuzz.py).
RACE_STALL_SECONDS = 3.0
# The page a racing victim shares with the runner: four counters, the call under
# way (so a crash names it), and the detail of a failure.
_DURING, _DETAIL, _DETAIL_SIZE = 32, 96, 928
# Geometry fields a racing mutator flips; the first three are what the ring is built from.
_RACE_GEOMETRY = ("capacity", "message_length", "slot_size", "file_size", "header_size_field",
                  "version", "magic", "type_fingerprint", "type_size", "topology", "max_senders",
                  "max_receivers", "place_size")
_RACE_STATE = ("write_cursor", "read_cursor", "sender_waiting", "receiver_waiting",
               "sender_pid", "receiver_pid", "sender_starts", "receiver_starts")


def _race_mutator(path, rng, capacity, slot_size, description_length, senders=1, receivers=1):
    """Rewrite the channel's header and slot lengths without pause, until killed.

    Time goes in short phases.  A geometry phase flips one geometry field (or
    a byte of the type description) between a wrong value and the right one
    as fast as it can, so that opens pass their checks some of the time and
    race what follows them.  A state phase overwrites cursors, waiting words,
    pids, start counts and slot lengths, putting the old value back or leaving
    the wrong one for a while; a repair of the header every few steps lets the
    ring work again.  The round's mix of the two, and whether it rests between
    steps, is drawn from its seed.

    A channel with groups (receivers > 1) also has its group entries, the
    members' places and groups_gen rewritten in state phases; and now and then
    the mutator holds a lock as a live end would: the groups lock (half the
    time with groups_gen odd, as a group creator stopped midway) or a member
    place's (mostly with that place a member of a group in use whose claim
    lock names it, as a member stopped in its claim): briefly, and in some
    rounds once for RACE_STALL_SECONDS early on.
    """
    lay = _offsets(layout())
    fd = os.open(path, os.O_RDWR)
    mm = mmap.mmap(fd, os.fstat(fd).st_size)      # fd stays open: the locks the mutator holds are on it
    parent = os.getppid()
    size_of = {f: 4 for f in _U32_FIELDS}
    geometry = [(lay[f], size_of.get(f, 8)) for f in _RACE_GEOMETRY]
    # The fields the ring is built from come up three times as often as the others.
    geometry = geometry[:3] * 3 + geometry
    cursors = [(lay[f], 8) for f in _RACE_STATE[:2]]
    state = [(lay[f], size_of.get(f, 8)) for f in _RACE_STATE[2:]] + _intents(lay, senders)
    slots = _slot_words(lay, capacity, slot_size, senders, receivers)
    head = slot_header_size(senders)
    desc = lay["type_description"]
    group_words = _group_targets(senders, receivers) if receivers > 1 else []
    pristine = bytes(mm[:lay["write_cursor"]])
    pristine_desc = bytes(mm[desc:desc + 2048])
    w_off, r_off = lay["write_cursor"], lay["read_cursor"]

    def bad_values(size, current):
        top = (1 << (size * 8)) - 1
        return [v & top for v in (0, 1, top, top >> 1, current + 1, current - 1, current * 2,
                                  current // 2, current + capacity, 1 << 32, rng.randrange(top + 1))]

    def repair():
        mm[:len(pristine)] = pristine
        mm[desc:desc + 2048] = pristine_desc
        w, r = struct.unpack_from("<Q", mm, w_off)[0], struct.unpack_from("<Q", mm, r_off)[0]
        if (w - r) % (1 << 64) > capacity:
            struct.pack_into("<Q", mm, r_off, w)
        for off, size in slots:
            if size == 4 and struct.unpack_from("<I", mm, off)[0] > slot_size - head:
                struct.pack_into("<I", mm, off, slot_size - head)

    def group_word():
        """Rewrite one word of the groups' state for a while; put it back most of the time."""
        off, size, kind = rng.choice(group_words)
        if kind == "name":
            off, size = off + rng.randrange(_GROUP_NAME_SIZE), 1
        old = mm[off:off + size]
        for _ in range(rng.randint(1, 20)):
            if size == 1:
                mm[off] = rng.randrange(256)
            else:
                struct.pack_into("<Q" if size == 8 else "<I", mm, off,
                                 _group_value(rng, mm, off, size, kind, capacity, senders, receivers))
        if rng.random() < 0.7:
            mm[off:off + size] = old

    def stall(hold):
        """Hold the groups lock or a member place's lock for a while, as a live end stopped there."""
        restore = []
        if rng.random() < 0.5:
            byte = lay["groups_lock_byte"]
            if not _ofd_lock(fd, byte):
                return
            gen = struct.unpack_from("<Q", mm, lay["groups_gen"])[0]
            if rng.random() < 0.5:
                struct.pack_into("<Q", mm, lay["groups_gen"], gen | 1)
                restore.append((lay["groups_gen"], gen))
        else:
            # A place no end of the victim holds.
            for q in rng.sample(range(receivers), receivers):
                byte = lay["places"] + (senders + q) * lay["place_bytes"]
                if _ofd_lock(fd, byte):
                    break
            else:
                return
            if rng.random() < 0.75:
                # A member of a group in use, stopped in its claim: its place carries the
                # group's tag (so the group cannot be removed) and the claim lock names it.
                entries = [(g, _group_offset(lay, senders, receivers, g)) for g in range(receivers)]
                g, entry = rng.choice([e for e in entries if _word(mm, e[1] + lay["group_flags"], 4) & 1]
                                      or entries)
                tag = (_word(mm, entry + lay["group_epoch"], 8) << 32 | (g + 1)) & ((1 << 64) - 1)
                struct.pack_into("<Q", mm, byte + lay["place_group"], tag)
                lock_off = entry + lay["group_lock"]
                restore.append((lock_off, struct.unpack_from("<Q", mm, lock_off)[0]))
                struct.pack_into("<Q", mm, lock_off, q + 1)
        time.sleep(hold)
        for off, value in restore:
            struct.pack_into("<Q", mm, off, value)
        _ofd_lock(fd, byte, lock=False)

    geometry_share = rng.choice([0.2, 0.5, 0.8])
    if group_words:
        # Opens refused by a flipped geometry leave fewer members at work.
        geometry_share = rng.choice([0.1, 0.3, 0.5])
    rest = rng.choice([0, 0, 0, 0.0001, 0.001])
    if group_words:
        # Groups are a state the ends build up: corruption written too fast leaves nothing
        # sound enough to race (every open refused).
        rest = rng.choice([0, 0.0001, 0.001, 0.005])
        if rng.random() < 0.3:
            # A long stall early in the round, on a channel not yet corrupted, while the victim
            # is at work: then the rest of the round as any other.
            time.sleep(rng.uniform(0.01, 0.15))
            stall(RACE_STALL_SECONDS)
    while True:
        if os.getppid() != parent:
            os._exit(0)
        phase_end = time.monotonic() + rng.choice([0.001, 0.005, 0.02])
        if rng.random() < geometry_share:
            repair()
            if rng.random() < 0.9:
                off, size = rng.choice(geometry)
                good = pristine[off:off + size]
                fmt = "<Q" if size == 8 else "<I"
                # Zero half the time: the value a division or a modulo trips on.
                value = 0 if rng.random() < 0.5 else rng.choice(bad_values(size, struct.unpack(fmt, good)[0]))
                bad = struct.pack(fmt, value)
            else:
                # One byte of the type description, the NUL terminator included.
                off, size = desc + rng.randrange(description_length + 1), 1
                good = pristine_desc[off - desc:off - desc + 1]
                bad = bytes([rng.randrange(256)])
            hold = rng.choice([0, 0, 0.0001, 0.001])
            while time.monotonic() < phase_end:
                for _ in range(64):
                    mm[off:off + size] = bad
                    mm[off:off + size] = good
                if hold:
                    mm[off:off + size] = bad
                    time.sleep(hold)
                    mm[off:off + size] = good
        elif group_words and rng.random() < 0.05:
            stall(rng.choice([0.001, 0.01, 0.05]))
        else:
            while time.monotonic() < phase_end:
                if group_words and rng.random() < 0.5:
                    group_word()
                    if rest:
                        time.sleep(rest)
                    continue
                pick = rng.random()
                off, size = rng.choice(cursors if pick < 0.2 else state if pick < 0.6 else slots)
                fmt = "<Q" if size == 8 else "<I"
                old = mm[off:off + size]
                current = struct.unpack(fmt, old)[0]
                for _ in range(rng.randint(1, 20)):
                    struct.pack_into(fmt, mm, off, rng.choice(bad_values(size, current)))
                if rng.random() < 0.7:
                    mm[off:off + size] = old
                if rest:
                    time.sleep(rest)
                if rng.random() < 0.3:
                    repair()


def _race_victim(name, rng, length, capacity, dtype, seconds, counters, senders=1, groups=None, receivers=1):
    """Open, use and close ends in a loop for ``seconds``; exit with a failure code on an impossible result.

    ``groups``: a channel with receiver groups, [(name, durable, members)], of
    ``receivers`` member places; its members join, take, leave, and remove groups."""
    np = _numpy() if dtype is not None else None
    kw = dict(message_type=dtype) if dtype is not None else dict(message_length=length)
    kw["max_senders"] = senders
    if groups:
        kw["max_receivers"] = receivers
    limit = capacity + 1
    seen = [0, 0, 0, 0]        # iterations, calls, calls that raised an expected error, ends opened
    timed = [None]             # the timeout of the call under way, if it has one

    def fail(code, detail):
        # The runner reads the detail from the shared page after this process is gone.
        raw = detail.encode("utf-8", "replace")[:_DETAIL_SIZE]
        counters[_DETAIL:_DETAIL + _DETAIL_SIZE] = raw.ljust(_DETAIL_SIZE, b"\0")
        os._exit(code)

    def check(msg):
        if dtype is not None:
            if getattr(msg, "dtype", None) != dtype:
                fail(BAD_MESSAGE, f"expected a record of {dtype}, got {msg!r:.200}")
        elif type(msg) is not bytes or len(msg) > length:
            fail(BAD_MESSAGE, f"expected bytes of at most {length}, got {type(msg).__name__} "
                              f"of {len(msg) if hasattr(msg, '__len__') else '?'}: {msg!r:.200}")

    def check_array(arr, most):
        if getattr(arr, "dtype", None) != dtype or len(arr) > most:
            fail(BAD_MESSAGE, f"expected at most {most} records of {dtype}, got {arr!r:.200}")

    def on_message(msg):
        check(msg)

    def open_receiver(gname="", durable=True):
        how = rng.random()
        more = dict(group=gname, durable=durable) if groups else {}
        if how < 0.2:
            return Receiver(name, max_queued_messages=capacity, on_message=on_message, **kw, **more)
        return Receiver(name, max_queued_messages=capacity, **kw, **more)

    def open_member(gname, durable):
        def open_member():
            return open_receiver(gname, durable)
        return open_member

    def remove_a_group():
        _remove_group(name, rng.choice(groups)[0])

    def list_channels():
        _check_listing(name, lambda detail: fail(BAD_MESSAGE, detail))

    def open_sender():
        return Sender(name, max_queued_messages=capacity, **kw)

    step = [None]          # the trail's step of the call under way

    def doing(what, note=True):
        counters[_DURING:_DETAIL] = what.encode()[:_DETAIL - _DURING].ljust(_DETAIL - _DURING, b"\0")
        if what and note:
            step[0] = _note(what if timed[0] is None else f"{what}, timeout {timed[0]} s")

    def receive(end):
        if end.running:
            doing("on_message thread at work")
            time.sleep(rng.choice([0, 0.0005, 0.002]))
            return
        how = rng.random()
        timeout = rng.choice([0, 0, 0.0005, 0.002])
        timed[0] = timeout
        if dtype is not None and how < 0.45:
            if how < 0.15:
                doing("recv_array")
                check_array(end.recv_array(limit, timeout=timeout), limit)
            elif how < 0.3:
                doing("recv_into")
                out = np.zeros(limit, dtype)
                got = end.recv_into(out, timeout=timeout)
                if not 1 <= got <= limit:
                    fail(BAD_MESSAGE, f"recv_into() into {limit} records returned {got}")
            else:
                doing("borrow")
                with end.borrow(limit, timeout=timeout) as batch:
                    check_array(batch, min(limit, capacity))
                    int(batch["x"].sum())
        elif how < 0.6:
            doing("recv_many")
            for msg in end.recv_many(limit, timeout=timeout):
                check(msg)
        elif how < 0.8:
            doing("try_recv")
            msg = end.try_recv()
            if msg is not None:
                check(msg)
        else:
            doing("recv")
            check(end.recv(timeout=timeout))

    def send(end):
        how = rng.random()
        timeout = rng.choice([0, 0.0005, 0.002])
        timed[0] = timeout
        if dtype is not None:
            if how < 0.4:
                doing("send_array")
                end.send_array(np.zeros(rng.randint(1, 2 * capacity), dtype), timeout=timeout)
                return
            one = lambda: np.full(1, rng.randrange(256), dtype)[0]
        else:
            one = lambda: b"z" * rng.randint(0, length)
        if how < 0.6:
            doing("send_many")
            end.send_many([one() for _ in range(rng.randint(1, 2 * capacity))], timeout=timeout)
        elif how < 0.8:
            doing("try_send")
            end.try_send(one())
        else:
            doing("send")
            end.send(one(), timeout=timeout)

    def call(fn, *args):
        seen[1] += 1
        timed[0] = None
        # receive() and send() note the call they choose.
        doing(fn.__name__, note=fn is not receive and fn is not send)
        started = time.monotonic()
        try:
            result = fn(*args)
        except EXPECTED_ERRORS as exc:
            seen[2] += 1
            _ended(step[0], f"raised {type(exc).__name__}: {str(exc)[:80]}")
            return None
        except Exception:
            import traceback
            traceback.print_exc()
            fail(UNEXPECTED_ERROR, traceback.format_exc(limit=-3))
        else:
            _ended(step[0], "returned")
            return result
        finally:
            took = time.monotonic() - started
            if timed[0] is not None and took > timed[0] + RACE_LATE_SECONDS:
                during = counters[_DURING:_DETAIL].rstrip(b"\0").decode()
                fail(LATE, f"{during} with a timeout of {timed[0]} s returned after {took:.3f} s")

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        signal.alarm(RACE_HANG_SECONDS)
        if groups:
            makers = [open_member(gname, durable) for gname, durable, count in groups for _ in range(count)]
            makers.append(open_sender)
        else:
            makers = [open_receiver] + [open_sender] * senders
        rng.shuffle(makers)
        ends = [end for end in (call(make) for make in makers[:rng.randint(1, len(makers))]) if end is not None]
        seen[3] += len(ends)
        for _ in range(rng.choice([0, 0, 1, 2, 4, 8])):
            for end in ends:
                call(receive if isinstance(end, Receiver) else send, end)
        if groups and rng.random() < 0.1:
            call(remove_a_group)
        if rng.random() < 0.05:
            call(list_channels if groups else channels)
        for end in ends:
            call(end.close)
        seen[0] += 1
        struct.pack_into("<4Q", counters, 0, *seen)
        doing("")
    signal.alarm(0)


def _slot_round(rng, rs, name, path, np, groups, counters, seconds_left):
    """A round on a slot channel (with groups or not): its channel made and filled; returns its
    geometry, the mutator's and the victim's work (run each in a process of its own) and how
    long the victim runs."""
    length = rng.choice([1, 8, 13, 32, 100])
    capacity = rng.choice([1, 2, 3, 4, 7, 16])
    dtype = np.dtype([("x", "u1", (length,))]) if np is not None and rng.random() < 0.33 else None
    senders = rng.choice([1, 1, 2, 3])
    spec, receivers = None, 1
    if _grouped(rs, groups):
        # Receiver groups take one sender.
        senders = 1
        spec, receivers = _group_spec(rng)
    kw = dict(message_type=dtype) if dtype is not None else dict(message_length=length)
    kw["max_senders"] = senders
    if spec:
        kw["max_receivers"] = receivers
    unlink(name, missing_ok=True)
    with Sender(name, max_queued_messages=capacity, **kw) as s:
        for gname, durable, _ in spec or ():
            if rng.random() < 0.5:
                # The group exists from the start (a durable one stays without members).
                Receiver(name, max_queued_messages=capacity, group=gname, durable=durable, **kw).close()
        for i in range(rng.randint(0, capacity)):
            s.try_send(np.full(1, i, dtype)[0] if dtype is not None else bytes([i]) * (i % (length + 1)))
    with open(path, "rb") as f:
        f.seek(layout()["type_description"])
        description_length = len(f.read(2048).split(b"\0", 1)[0])
    slot_size = slot_size_of(length, senders)
    round_seconds = min(rng.uniform(0.2, 1.0), seconds_left)
    mutator_rng = random.Random(rs ^ 0x5A5A5A5A)
    geometry = {"message_length": length, "max_queued_messages": capacity, "max_senders": senders,
                "typed": dtype is not None, "groups": spec, "max_receivers": receivers}

    def run_mutator():
        _race_mutator(path, mutator_rng, capacity, slot_size, description_length, senders, receivers)

    def run_victim():
        _race_victim(name, rng, length, capacity, dtype, round_seconds, counters, senders, spec, receivers)
    return geometry, run_mutator, run_victim, round_seconds


def _byte_round_kind(round_seed, groups, bytes_):
    """(on a byte channel, with receiver groups) for a racing round of this seed.  A byte round
    (fuzz.py's _bytes_round(); every round when both groups and bytes_ are "only") has groups
    (fuzz_bytes_groups.py) by _grouped()'s draw, never with groups "none"."""
    if groups == "only" and bytes_ == "only":
        return True, True
    on_bytes = _bytes_round(round_seed, groups, bytes_)
    return on_bytes, on_bytes and groups != "none" and _grouped(round_seed, groups)


def race(seconds, seed=0, progress=None, round_seed=None, groups="mix", bytes_="mix"):
    """Race a mutating process against ends in use for ``seconds``; return a report.

    The report counts rounds (and those on channels with receiver groups:
    ``groups`` is "mix", "only" or "none"; and on byte channels, ``bytes_`` the same, their
    rounds in fuzz_bytes.py, and those on byte channels with groups, fuzz_bytes_groups.py: with
    both "only", or a share of the byte rounds with groups "mix"; and those on byte channels of many
    senders, fuzz_bytes_many.py: a share of the byte rounds without groups; and those on byte channels of
    many senders with groups, fuzz_bytes_many_groups.py: a share of the byte rounds with groups), iterations (ends opened, used and
    closed), calls, calls that raised an expected error and ends opened, and
    lists the failures with their round seed, the call under way and how long
    into the run each came.
    """
    quiet_receive_threads()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    np = _numpy()
    name = f"race-{os.getpid()}"
    path = channel_path(name)
    counters = mmap.mmap(-1, _DETAIL + _DETAIL_SIZE)     # shared with the forked victims
    page = mmap.mmap(-1, TRAIL_BYTES)                     # a victim's trail (see _watch_child())
    report = tempfile.TemporaryFile()
    failures = []
    totals = {"rounds": 0, "group_rounds": 0, "byte_rounds": 0, "byte_group_rounds": 0, "byte_many_rounds": 0,
              "byte_many_group_rounds": 0, "iterations": 0, "calls": 0, "calls_refused": 0, "ends_opened": 0}
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        rs = round_seed if round_seed is not None else seed * 1_000_003 + totals["rounds"]
        rng = random.Random(rs)
        on_bytes, byte_groups = _byte_round_kind(rs, groups, bytes_)
        if byte_groups:
            from cywhip._testing.fuzz_bytes_groups import race_round
            geometry, run_mutator, run_victim, round_seconds = race_round(
                rng, rs, name, counters, max(0.05, seconds - (time.monotonic() - t0)))
        elif on_bytes:
            from cywhip._testing.fuzz_bytes import race_round
            geometry, run_mutator, run_victim, round_seconds = race_round(
                rng, rs, name, counters, max(0.05, seconds - (time.monotonic() - t0)))
        else:
            geometry, run_mutator, run_victim, round_seconds = _slot_round(
                rng, rs, name, path, np, groups, counters, max(0.05, seconds - (time.monotonic() - t0)))
        counters[:] = bytes(len(counters))
        report.seek(0)
        report.truncate()
        children = []
        try:
            mutator = os.fork()
            if mutator == 0:
                try:
                    run_mutator()
                finally:
                    os._exit(0)
            children.append(mutator)
            victim = os.fork()
            if victim == 0:
                status = 0
                try:
                    _watch_child(page, report)
                    run_victim()
                except BaseException:
                    import traceback
                    _fail_case(UNEXPECTED_ERROR, traceback.format_exc())
                os._exit(status)
            children.append(victim)
            round_start = time.monotonic()
            _, status = os.waitpid(victim, 0)
            children.remove(victim)
            ended = time.monotonic()
        finally:
            for pid in children:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            unlink(name, missing_ok=True)
        iterations, calls, refused, opened = struct.unpack_from("<4Q", counters, 0)
        totals["rounds"] += 1
        totals["group_rounds"] += geometry.get("groups") is not None
        totals["byte_rounds"] += on_bytes
        totals["byte_group_rounds"] += byte_groups
        totals["byte_many_rounds"] += on_bytes and not byte_groups and geometry.get("max_senders", 1) > 1
        totals["byte_many_group_rounds"] += byte_groups and geometry.get("max_senders", 1) > 1
        totals["iterations"] += iterations
        totals["calls"] += calls
        totals["calls_refused"] += refused
        totals["ends_opened"] += opened
        if status != 0:
            during = counters[_DURING:_DETAIL].rstrip(b"\0").decode()
            detail = counters[_DETAIL:].rstrip(b"\0").decode("utf-8", "replace")
            failures.append({"round_seed": rs, "failure": _how(status),
                             "during": during or None, "detail": detail or None,
                             "after_seconds": round(ended - t0, 2),
                             "into_round_seconds": round(ended - round_start, 3),
                             "iterations_in_round": iterations,
                             "bytes": on_bytes, "byte_groups": byte_groups, "geometry": geometry,
                             "report": _child_report(report), "trail": read_trail(page)})
        if progress and totals["rounds"] % progress == 0:
            print(f"{totals['rounds']} rounds, {totals['iterations']} iterations, {len(failures)} failures, "
                  f"{time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    report.close()
    elapsed = time.monotonic() - t0
    return {"mode": "race", "seed": seed, **totals, "seconds": round(elapsed, 1),
            "iterations_per_second": round(totals["iterations"] / elapsed, 1) if elapsed else 0,
            "calls_per_second": round(totals["calls"] / elapsed, 1) if elapsed else 0,
            "first_failure_seconds": failures[0]["after_seconds"] if failures else None,
            "failures": failures}

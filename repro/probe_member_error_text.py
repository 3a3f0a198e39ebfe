"""Probe: the error a group member raises when its group's claim cursor (group_next) is beyond
the write cursor: which values does it name?  A byte channel and a slot channel."""
import mmap, os, struct
from cywhip import Receiver, Sender, unlink, ChannelCorruptError
from cywhip._region import channel_path
from cywhip._testing._model import layout
from cywhip._testing.fuzz import _group_offset

lay = layout()
for kind, kw in (("byte", dict(max_queued_bytes=256, message_length=40, max_receivers=2)),
                 ("slot", dict(max_queued_messages=8, message_length=40, max_receivers=2))):
    name = f"probe-error-{kind}"
    unlink(name, missing_ok=True)
    tx = Sender(name, **kw)
    a = Receiver(name, group="a", **kw)
    for i in range(3):
        tx.send(bytes([i]) * 40, timeout=1)
    fd = os.open(channel_path(name), os.O_RDWR)
    mm = mmap.mmap(fd, os.fstat(fd).st_size)
    w = struct.unpack_from("<Q", mm, lay["write_cursor"])[0]
    e = _group_offset(lay, 1, 2, 0)
    n = struct.unpack_from("<Q", mm, e + lay["group_next"])[0]
    struct.pack_into("<Q", mm, e + lay["group_next"], w + (1 << 20) * 8)
    try:
        a.recv(timeout=0.1)
        print(kind, "no error")
    except ChannelCorruptError as exc:
        print(f"{kind}: write cursor {w}, group next was {n}, set to {w + (1 << 20) * 8}:\n  {exc}")
    struct.pack_into("<Q", mm, e + lay["group_next"], n)
    for end in (tx, a):
        end.close()
    mm.close(); os.close(fd)
    unlink(name, missing_ok=True)

"""Probe: a byte channel with groups a and b; group a's claim cursor (group_next) set beyond the
write cursor (1 << 40 set: no sound channel holds it).  Does the sender refuse it, or overwrite
what group a has not taken?"""
import mmap, os, struct, sys
from cywhip import Receiver, Sender, unlink, ChannelCorruptError
from cywhip._region import channel_path
from cywhip._testing._model import layout
from cywhip._testing.fuzz import _group_offset

name = "probe-next-beyond"
unlink(name, missing_ok=True)
kw = dict(max_queued_bytes=256, message_length=40, max_receivers=2)
lay = layout()
tx = Sender(name, **kw)
a = Receiver(name, group="a", **kw)
b = Receiver(name, group="b", **kw)
msgs = [bytes([i]) * 40 for i in range(5)]          # 48-byte records: 240 of the 256 bytes
for m in msgs:
    tx.send(m, timeout=1)
for m in msgs:
    assert b.recv(timeout=1) == m
fd = os.open(channel_path(name), os.O_RDWR)
mm = mmap.mmap(fd, os.fstat(fd).st_size)
w = struct.unpack_from("<Q", mm, lay["write_cursor"])[0]
# Which entry is group a's: the one whose next is 0 (b has taken everything).
entries = [_group_offset(lay, 1, 2, g) for g in range(2)]
ea = [e for e in entries if struct.unpack_from("<Q", mm, e + lay["group_next"])[0] == 0][0]
print("write cursor", w, "group a next 0; set it to", (1 << 40))
struct.pack_into("<Q", mm, ea + lay["group_next"], 1 << 40)
try:
    for i in range(5, 10):
        tx.send(bytes([i]) * 40, timeout=0.1)
    print("the sender sent 5 more messages over group a's untaken ones; write cursor now",
          struct.unpack_from("<Q", mm, lay["write_cursor"])[0])
except ChannelCorruptError as exc:
    print("sender refused:", exc)
except Exception as exc:
    print("sender:", type(exc).__name__, exc)
struct.pack_into("<Q", mm, ea + lay["group_next"], 0)
try:
    print("member of a receives:", a.recv(timeout=0.1)[:4])
except Exception as exc:
    print("member of a:", type(exc).__name__, exc)
for e in (tx, a, b):
    try:
        e.close()
    except Exception:
        pass
mm.close(); os.close(fd)
unlink(name, missing_ok=True)

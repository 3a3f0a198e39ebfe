"""Probe: a member holds a claim (inside borrow()); its place's hold_start is set beyond its
group's claim cursor (1 << 40 set: no sound claim starts there).  Does the sender refuse it, or
ignore the hold and write over the records the member is reading?"""
import mmap, os, struct
from cywhip import Receiver, Sender, unlink, ChannelCorruptError, SendTimeout
from cywhip._region import channel_path
from cywhip._testing._model import layout

lay = layout()
name = "probe-hold-beyond"
unlink(name, missing_ok=True)
kw = dict(max_queued_bytes=256, message_length=40, max_receivers=2)
tx = Sender(name, **kw)
a = Receiver(name, group="a", **kw)
msgs = [bytes([i]) * 40 for i in range(5)]
tx.send_many(msgs, timeout=1)
fd = os.open(channel_path(name), os.O_RDWR)
mm = mmap.mmap(fd, os.fstat(fd).st_size)
with a.borrow(5, timeout=1) as lent:
    before = [bytes(m) for m in lent]
    holds = []
    for q in range(2):
        base = lay["places"] + (1 + q) * lay["place_bytes"]
        h = struct.unpack_from("<Q", mm, base + lay["place_hold_start"])[0]
        holds.append((base, h))
    base, h = [x for x in holds if x[1]][0]
    print("hold_start", h, "-> set to", h ^ (1 << 40))
    struct.pack_into("<Q", mm, base + lay["place_hold_start"], h ^ (1 << 40))
    try:
        for i in range(5, 10):
            tx.send(bytes([100 + i]) * 40, timeout=0.1)
        print("the sender sent 5 messages while the member holds its claim")
    except ChannelCorruptError as exc:
        print("sender refused:", exc)
    except SendTimeout as exc:
        print("sender held:", exc)
    after = [bytes(m) for m in lent]
    struct.pack_into("<Q", mm, base + lay["place_hold_start"], h)
    print("borrowed views changed under the member:", before != after,
          [m[:2] for m in after] if before != after else "")
tx.close(); a.close()
mm.close(); os.close(fd)
unlink(name, missing_ok=True)

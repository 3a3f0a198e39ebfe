# examples/numpy_consumer.py: reads numpy_producer.py's stream into a preallocated array
import numpy as np

import cywhip

tick = np.dtype([("time_ns", "<i8"), ("price", "<f8"), ("size", "<i4"), ("side", "u1")], align=True)
with cywhip.Receiver("ticks-numpy", message_type=tick, max_queued_messages=65536) as receiver:
    out = np.empty(4096, tick)
    seen = 0
    while seen < 10_000:
        n = receiver.recv_into(out, timeout=30)   # the GIL is free while it waits and copies
        print(f"{n} ticks, mean price {out['price'][:n].mean():.2f}")
        seen += n
cywhip.unlink("ticks-numpy")

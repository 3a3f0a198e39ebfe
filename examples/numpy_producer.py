# examples/numpy_producer.py: a NumPy record stream, sent as whole arrays (numpy_consumer.py reads it)
import numpy as np

import cywhip

tick = np.dtype([("time_ns", "<i8"), ("price", "<f8"), ("size", "<i4"), ("side", "u1")], align=True)
with cywhip.Sender("ticks-numpy", message_type=tick, max_queued_messages=65536) as sender:
    batch = np.zeros(10_000, tick)
    batch["time_ns"] = np.arange(10_000)
    batch["price"] = 100 + np.random.default_rng(0).standard_normal(10_000).cumsum()
    sender.send_array(batch)                  # copies with the GIL released
print("sent 10000 ticks")

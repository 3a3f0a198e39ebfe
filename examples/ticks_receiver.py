# examples/ticks_receiver.py: ctypes records through a deserializer, delivered to on_message
import ctypes
import threading

import cywhip


class Tick(ctypes.Structure):
    _fields_ = [("seq", ctypes.c_int64), ("price", ctypes.c_double), ("size", ctypes.c_int64)]


sizes, last_tick = [], threading.Event()


def on_message(tick):                         # in the receiver's own thread, in order
    sizes.append(tick.size)
    if tick.seq == 999:
        last_tick.set()


receiver = cywhip.Receiver("ticks-ctypes", lambda buffer: buffer.read(Tick), message_length=24,
                           max_queued_messages=256, on_message=on_message)
try:
    last_tick.wait(timeout=30)                # keep the process alive until the last tick
    print(len(sizes), "ticks, total size", sum(sizes))
finally:
    receiver.close()                          # raises here if on_message raised
    cywhip.unlink("ticks-ctypes")

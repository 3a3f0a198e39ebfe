# examples/ticks_sender.py: sends 1000 ticks to ticks_receiver.py
import ctypes

import cywhip


class Tick(ctypes.Structure):
    _fields_ = [("seq", ctypes.c_int64), ("price", ctypes.c_double), ("size", ctypes.c_int64)]


def serialize(tick, buffer):                  # buffer: a cywhip.WriteBuffer of message_length bytes
    buffer.write(tick)


with cywhip.Sender("ticks-ctypes", serialize, message_length=24, max_queued_messages=256) as sender:
    sender.send(Tick(0, 100.0, 1))
    sent = sender.send_many(Tick(i, 100.0 + i / 100, 1) for i in range(1, 1000))   # the fast way
print("sent", 1 + sent)

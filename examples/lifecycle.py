# examples/lifecycle.py: ends start and stop in any order; messages wait; the channel stays until removed
import cywhip

NAME = "lifecycle-demo"
with cywhip.Sender(NAME, message_length=32, max_queued_messages=4) as sender:
    for i in range(4):
        sender.send(b"message %d" % i)        # no receiver yet: they wait in the ring
    print("sent 4; room for more:", sender.try_send(b"one too many"))      # False: the ring is full
    try:
        sender.send(b"one too many", timeout=0.1)
    except cywhip.SendTimeout as exc:         # a queue.Full
        print("SendTimeout:", exc)

info = next(c for c in cywhip.channels() if c.name == NAME)
print(f"{info.name}: {info.depth} queued, sender alive: {info.sender_alive}")
with cywhip.Receiver(NAME, message_length=32, max_queued_messages=4) as receiver:
    print(receiver.recv_many(2))              # the first two
with cywhip.Receiver(NAME, message_length=32, max_queued_messages=4) as receiver:
    print(receiver.recv_many(10))             # a new receiver continues where the last one stopped
print("removed:", cywhip.remove_stale([NAME]))      # no live end: removed

# examples/quickstart_sender.py: sends to quickstart_receiver.py, started before or after it
import cywhip

with cywhip.Sender("quickstart", max_queued_bytes=1 << 20, message_type=object) as sender:
    for i in range(5):
        sender.send({"hello": i, "pad": "." * 10 ** i})     # any picklable object, any size
    sender.send("bye")
print("sent 6 messages")

# examples/quickstart_sender.py: sends to quickstart_receiver.py, started before or after it
import cywhip

with cywhip.Sender("quickstart", message_length=64) as sender:
    for i in range(5):
        sender.send(f"hello {i}".encode())
    sender.send(b"bye")
print("sent 6 messages")

# examples/quickstart_receiver.py: prints what quickstart_sender.py sends
import cywhip

with cywhip.Receiver("quickstart", message_length=64) as receiver:
    for message in receiver:                  # waits for each message, in order
        print("got", message.decode())
        if message == b"bye":
            break
cywhip.unlink("quickstart")                   # the channel outlives its ends until removed

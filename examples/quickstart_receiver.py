# examples/quickstart_receiver.py: prints what quickstart_sender.py sends
import cywhip

with cywhip.Receiver("quickstart", max_queued_bytes=1 << 20, message_type=object) as receiver:
    for message in receiver:                  # waits for each message, in order
        print("got", message)
        if message == "bye":
            break
cywhip.unlink("quickstart")                   # the channel outlives its ends until removed

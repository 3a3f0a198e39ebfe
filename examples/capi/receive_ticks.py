# examples/capi/receive_ticks.py: takes send_ticks.py's ticks in a nogil loop, checking each one
import consumer
import cywhip

with cywhip.Receiver("capi-ticks", message_length=16, max_queued_messages=4096) as rx:
    print("wrong:", consumer.consume(rx, 1_000_000))
cywhip.unlink("capi-ticks")

# examples/trio_pair.py: a trio task waits on a cywhip receiver's descriptor; a process sends
import sys

import trio

import cywhip


async def receive(rx, count):
    while count:
        msg = rx.try_recv()               # a look: takes a message, or arms the descriptor
        if msg is None:
            await trio.lowlevel.wait_readable(rx.fileno())   # readable: look again
            continue
        print("got", msg.decode())
        count -= 1


async def main():
    with cywhip.Receiver("trio-feed", message_length=64) as rx:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.run_process, [sys.executable, __file__, "send"])
            await receive(rx, 5)
    cywhip.unlink("trio-feed")


if sys.argv[1:] == ["send"]:
    with cywhip.Sender("trio-feed", message_length=64) as tx:
        for i in range(5):
            tx.send(b"tick %d" % i)
else:
    trio.run(main)

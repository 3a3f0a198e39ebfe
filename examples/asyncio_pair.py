# examples/asyncio_pair.py: an asyncio receiver and sender, each in its own task
import asyncio

import cywhip
import cywhip.asyncio


async def receive(count):
    async with cywhip.asyncio.Receiver("async-orders", message_length=64) as rx:
        async for msg in rx:                  # no CPU while it waits; the loop runs other tasks
            print("order", msg.decode())
            count -= 1
            if count == 0:
                break


async def main():
    receiver = asyncio.create_task(receive(5))
    async with cywhip.asyncio.Sender("async-orders", message_length=64) as tx:
        await tx.send(b"buy 1", timeout=1.0)  # SendTimeout (a queue.Full) after 1 s of a full ring
        sent = await tx.send_many([b"sell %d" % i for i in range(2, 6)])
    print("sent", 1 + sent)
    await asyncio.wait_for(receiver, timeout=30)
    cywhip.unlink("async-orders")


asyncio.run(main())

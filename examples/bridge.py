# examples/bridge.py: a channel carried through NATS JetStream and back, on one machine
# (pip install "cywhip[nats]"; a server started with `nats-server -js`, its URL in $CYWHIP_NATS_URL)
import asyncio
import os

import cywhip
import cywhip.asyncio
import cywhip.bridge

NATS = os.environ.get("CYWHIP_NATS_URL", "nats://127.0.0.1:4222")


async def main():
    with cywhip.Sender("bridge-demo", message_length=32) as tx:
        tx.send_many([b"tick %d" % i for i in range(5)])     # they wait in the ring for the bridge
    # On two machines: `python -m cywhip bridge out bridge-demo --nats URL` on this one and
    # `python -m cywhip bridge in bridge-demo --nats URL` on the other.  Here both sides run in
    # this loop, and the far channel is "far-bridge-demo".
    stop = asyncio.Event()
    sides = [asyncio.create_task(cywhip.bridge.bridge_out(["bridge-demo"], nats=NATS, stop=stop)),
             asyncio.create_task(cywhip.bridge.bridge_in(["bridge-demo"], nats=NATS, local_prefix="far-",
                                                         consumer="demo", stop=stop))]
    async with cywhip.asyncio.Receiver("far-bridge-demo", message_length=32) as rx:
        for _ in range(5):
            print("far side got", (await rx.recv(timeout=30)).decode())
    stop.set()                                # each side stops once what it holds is acknowledged
    await asyncio.gather(*sides)
    cywhip.unlink("bridge-demo")
    cywhip.unlink("far-bridge-demo")


asyncio.run(main())

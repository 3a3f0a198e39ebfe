"""Each side of the NATS JetStream bridge alone, beside nats-py doing the same side, from a full source.

    python asv_bench/bridge_sides.py [--count N] [--rounds R]

Needs nats-py and nats-server (the `bench` or `test` extra).  One nats-server -js on 127.0.0.1,
a store of its own.  In each round:
- out: N messages of 32 bytes already in a channel, `bridge_out` until JetStream has stored them
  all; nats-py: publish_async of N messages, acks awaited every 256 (the bench's batch), without
  and with a Nats-Msg-Id header on each (the bridge publishes one on each);
- in: `bridge_in` from the stream the out side filled into a channel that holds them all, until it
  has sent them all; nats-py: a pull consumer, fetch(256), each message acknowledged, from each of
  its two streams.
Prints each form's median rate (messages/s) over the rounds, with their range.  The bench's
row "bridge through NATS JetStream" runs both sides at once, with a sender and a receiver.
"""
import argparse
import asyncio
import statistics
import sys
import time
import uuid

BATCH = 256
GEOMETRY = dict(message_length=32, max_queued_messages=65536)


def _message(i):
    return i.to_bytes(8, "little").ljust(32, b"\0")


async def _rate(task, stop, stats, n, t0, what):
    """Messages/s of a bridge task from t0 until its stats count n messages; then stop it."""
    while stats.messages < n:
        if task.done():
            task.result()
            raise RuntimeError(f"{what} stopped after {stats.messages} of {n} messages")
        await asyncio.sleep(0.002)
    rate = n / (time.perf_counter() - t0)
    stop.set()
    await task
    return rate


async def _bridge_out(url, prefix, name, n):
    import cywhip
    import cywhip.bridge as cb
    with cywhip.Sender(name, **GEOMETRY) as tx:
        tx.send_many([_message(i) for i in range(n)])
        stop, stats = asyncio.Event(), cb.Stats()
        t0 = time.perf_counter()
        task = asyncio.ensure_future(cb.bridge_out([name], nats=url, subject_prefix=prefix, stop=stop,
                                                   stats=stats, batch=BATCH))
        return await _rate(task, stop, stats, n, t0, "bridge out")


async def _bridge_in(url, prefix, name, n):
    import cywhip
    import cywhip.bridge as cb
    stop, stats = asyncio.Event(), cb.Stats()
    t0 = time.perf_counter()
    task = asyncio.ensure_future(cb.bridge_in([name], nats=url, subject_prefix=prefix, stop=stop,
                                              local_prefix="far-", consumer="sides", stats=stats, batch=BATCH))
    try:
        return await _rate(task, stop, stats, n, t0, "bridge in")
    finally:
        cywhip.unlink("far-" + name, missing_ok=True)


async def _natspy_out(url, subject, stream, n, ids):
    import nats
    from nats.js import api
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(api.StreamConfig(name=stream, subjects=[subject], storage=api.StorageType.FILE))
        t0 = time.perf_counter()
        for start in range(0, n, BATCH):
            futures = [await js.publish_async(subject, _message(i),
                                              headers={"Nats-Msg-Id": f"{stream}-{i}"} if ids else None)
                       for i in range(start, min(n, start + BATCH))]
            await asyncio.gather(*futures)
        return n / (time.perf_counter() - t0)
    finally:
        await nc.close()


async def _natspy_in(url, subject, stream, n):
    import nats
    nc = await nats.connect(url)
    try:
        sub = await nc.jetstream().pull_subscribe(subject, durable="sides", stream=stream)
        got = 0
        t0 = time.perf_counter()
        while got < n:
            try:
                msgs = await sub.fetch(BATCH, timeout=1)
            except asyncio.TimeoutError:
                continue
            for m in msgs:
                await m.ack()
            got += len(msgs)
        return n / (time.perf_counter() - t0)
    finally:
        await nc.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    import cywhip
    from cywhip._bench.peers.natsjs import with_nats
    n = args.count

    def run(url):
        rates = {}
        for _ in range(args.rounds):
            prefix = f"sides{uuid.uuid4().hex[:8]}"
            name = f"sides-{prefix}"
            try:
                rates.setdefault("out: bridge out", []).append(asyncio.run(_bridge_out(url, prefix, name, n)))
                rates.setdefault("in: bridge in", []).append(asyncio.run(_bridge_in(url, prefix, name, n)))
            finally:
                cywhip.unlink(name, missing_ok=True)
            for ids in (False, True):
                what = "with a Nats-Msg-Id each" if ids else "no header"
                subject, stream = f"{prefix}.peer{int(ids)}", f"{prefix}_peer{int(ids)}"
                rates.setdefault(f"out: nats-py publish_async, {what}", []).append(
                    asyncio.run(_natspy_out(url, subject, stream, n, ids)))
                rates.setdefault(f"in: nats-py fetch and ack, {what}", []).append(
                    asyncio.run(_natspy_in(url, subject, stream, n)))
        return rates

    rates = with_nats(run)
    print("| side | messages/s, median | range |")
    print("| --- | --- | --- |")
    for form in sorted(rates):
        r = rates[form]
        print(f"| {form} | {statistics.median(r):,.0f} | {min(r):,.0f} to {max(r):,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

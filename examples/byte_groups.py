# examples/byte_groups.py: log lines of any length from two senders to two groups of a byte channel
import threading

import cywhip

SHAPE = dict(max_queued_bytes=64 * 1024, max_senders=2, max_receivers=3)
archive, alerts = [], []
lock = threading.Lock()


def keep(into):
    def on_message(line):
        with lock:
            into.append(bytes(line))
    return on_message


members = [cywhip.Receiver("app-logs", group="archive", on_message=keep(archive), **SHAPE),
           cywhip.Receiver("app-logs", group="alerts", on_message=keep(alerts), **SHAPE),
           cywhip.Receiver("app-logs", group="alerts", on_message=keep(alerts), **SHAPE)]


def service(name, count):
    with cywhip.Sender("app-logs", **SHAPE) as log:
        for i in range(count):
            log.send(f"{name} request {i} took {i % 7} ms".encode() + b" trace" * (i % 50))


senders = [threading.Thread(target=service, args=(name, 500)) for name in ("web", "api")]
for t in senders:
    t.start()
for t in senders:
    t.join()
while True:                                   # each group takes all 1,000 lines
    with lock:
        if len(archive) == len(alerts) == 1000:
            break
    threading.Event().wait(0.01)
for m in members:
    m.close()
cywhip.unlink("app-logs")
web = [line for line in archive if line.startswith(b"web ")]
print(len(archive), len(alerts), web[:2] == [b"web request 0 took 0 ms", b"web request 1 took 1 ms trace"])

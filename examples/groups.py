# examples/groups.py: every group gets every message; the members of a group share them
import threading
import time

import cywhip

got = {"recorder": [], "risk 1": [], "risk 2": []}
delivered = threading.Semaphore(0)


def member(group, who, work=0.0):
    def on_message(msg):
        got[who].append(int(msg))
        time.sleep(work)                      # while one worker is busy, the other takes the next
        delivered.release()
    return cywhip.Receiver("price-feed", message_length=16, max_receivers=4, group=group,
                           durable=False, on_message=on_message)


members = [member("recorder", "recorder"), member("risk", "risk 1", 0.01), member("risk", "risk 2", 0.01)]
with cywhip.Sender("price-feed", message_length=16, max_receivers=4) as feed:
    feed.send_many(b"%d" % i for i in range(20))
for _ in range(40):                           # 20 to the recorder, 20 shared by the two risk workers
    delivered.acquire(timeout=30)
for m in members:
    m.close()
cywhip.unlink("price-feed")
print(got)

"""Races between ends, channels() and remove_stale(), each made to happen."""
import os
import textwrap
import time

import pytest

import cywhip

# One process streams through two channels of four slots, as fast as it can: one
# stays nearly empty (each message is taken right after it is sent), the other
# nearly full (each free slot is filled right after it is freed).  Both cursors of
# each channel move millions of times a second while the test lists them.
STREAM = textwrap.dedent("""
    import sys, cywhip
    empty, full = sys.argv[1], sys.argv[2]
    kw = dict(message_length=8, max_queued_messages=4)
    with cywhip.Sender(empty, **kw) as s1, cywhip.Receiver(empty, **kw) as r1, \\
            cywhip.Sender(full, **kw) as s2, cywhip.Receiver(full, **kw) as r2:
        s2.send_many([b"x"] * 3)
        print("ready", flush=True)
        while True:
            s1.send(b"12345678")
            r1.recv()
            s2.send(b"12345678")
            r2.recv()
""")


@pytest.mark.timeout(60)
def test_channels_never_lists_a_busy_sound_channel_as_impossible(channel, peers):
    empty, full = channel + "-empty", channel + "-full"
    try:
        proc = peers.start(empty, full, script=STREAM)
        assert proc.stdout.readline().strip() == "ready"
        listings = 0
        wrong = []
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline and len(wrong) < 10:
            for info in cywhip.channels():
                if info.name in (empty, full):
                    listings += 1
                    if info.problem is not None or not 0 <= info.depth <= 4:
                        wrong.append((info.name, info.problem, info.depth))
        assert proc.poll() is None
        assert listings > 2000
        assert wrong == [], f"{len(wrong)} wrong listings of {listings}: {wrong}"
    finally:
        cywhip.unlink(empty, missing_ok=True)
        cywhip.unlink(full, missing_ok=True)

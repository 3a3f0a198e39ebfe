"""A sender of a byte channel of many senders stopped between any two steps of a send, in a
process of its own, for tests that SIGKILL it there (docs/protocol.md, "Many senders on a
byte ring": M1-M6, T0-T2).

    python -m cywhip._testing.bytes_steps ROLE NAME RING SENDERS TAG BEFORE STEP [hold]

SENDERS is max_senders, or "M:K" for max_senders M and max_receivers K (receiver groups).

ROLE "step": send BEFORE messages of 24 bytes (then more, until the next claim needs padding
of 16 bytes or more), then do the steps of the next message (the longest the ring takes) up
to STEP, print what was done as JSON and die (SIGKILL), or with "hold" wait to be killed.
ROLE "claim": commit a claim of TAG bytes (run_claim) and die.  ROLE "adopt": open a sender on
a dead sender's place and die between S0e and S0f (run_adopt).
ROLE "take": the claim bit is held by a dead sender: take it over (T0, T1), stop there
(STEP "took") or after T2 and the room (STEP "taken"), print and die the same way.

Message i of sender TAG is fanin.payload(TAG, i, length): its tag and number repeated, so a
torn or misplaced message shows whatever its length.
"""
import json
import os
import signal
import sys
import time

from cywhip import Sender
from cywhip._testing.fanin import payload

# The steps of one send, in order: a sender killed after step k has done steps 1..k.
STEPS = ("bit", "intent", "committed", "padded", "half", "written", "published", "cleared")
FILLER = 24


def _open(name, ring, senders):
    """senders: max_senders, or (max_senders, max_receivers) for a channel of receiver groups."""
    if isinstance(senders, tuple):
        return Sender(name, max_queued_bytes=ring, max_senders=senders[0], max_receivers=senders[1])
    return Sender(name, max_queued_bytes=ring, max_senders=senders)


def _shape(arg):
    """SENDERS as the command line gives it: "2", or "2:3" (max_senders 2, max_receivers 3)."""
    if ":" in arg:
        m, k = arg.split(":")
        return int(m), int(k)
    return int(arg)


def run_step(name, ring, senders, tag, before, step, hold=False):
    from cywhip._testing._steps import BytesSenderSteps
    sender = _open(name, ring, senders)
    i = 0
    # The filler records are 40 bytes; send them until the next claim of the longest message
    # starts at least 16 bytes and at most a record short of the ring's end (padding first).
    top = sender.message_length
    while i < before or not (16 <= ring - sender.published % ring <= 16 + top - 8):
        sender.send(payload(tag, i, FILLER), timeout=30)
        i += 1
    # The padded claim ends a record past the ring's end: the receiver takes the fillers first.
    deadline = time.monotonic() + 30
    while sender.depth and time.monotonic() < deadline:
        time.sleep(0.001)
    steps = BytesSenderSteps(sender)
    data = payload(tag, i, top)
    done = []

    def do(what, *args):
        out = getattr(steps, what)(*args)
        done.append(what)
        return out

    at, pad, size = do("take", top)
    order = STEPS.index(step)
    if order >= 1:
        do("intent")
    if order >= 2:
        do("commit")
    if order >= 3:
        do("pad")
    if order >= 4:
        do("write", data, top // 2)
    if order >= 5:
        do("write", data, top)
        do("header")
    if order >= 6:
        do("publish")
    if order >= 7:
        do("clear")
        do("wake")
    print(json.dumps({"done": done, "sent": i, "at": at, "pad": pad, "size": size}), flush=True)
    if hold:
        time.sleep(3600)
    os.kill(os.getpid(), signal.SIGKILL)


def run_take(name, ring, senders, step, hold=False):
    from cywhip._testing._steps import BytesSenderSteps
    sender = _open(name, ring, senders)
    steps = BytesSenderSteps(sender)
    at, _, _ = steps.take(16, step == "took")
    print(json.dumps({"done": [step], "at": at}), flush=True)
    if hold:
        time.sleep(3600)
    os.kill(os.getpid(), signal.SIGKILL)


def run_claim(name, ring, senders, n):
    """Commit a claim for a message of n bytes (M1-M3) at once, print it and die: a dead
    sender's committed claim, with nothing published."""
    from cywhip._testing._steps import BytesSenderSteps
    sender = _open(name, ring, senders)
    steps = BytesSenderSteps(sender)
    at, pad, size = steps.take(n)
    steps.intent()
    steps.commit()
    print(json.dumps({"at": at, "pad": pad, "size": size}), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def run_adopt(name, ring, senders):
    """Open a sender on a dead sender's place and die between its S0e (the predecessor's
    committed claim kept as the place's dead claim) and S0f (the intent withdrawn)."""
    from cywhip import _region

    def hook(what, path):
        if what == "adopt":
            print(json.dumps({"done": ["S0e"]}), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    _region._test_hook = hook
    _open(name, ring, senders)
    raise SystemExit("S0 did not reach S0f")


def lengths(tag, count, top):
    """The lengths of sender tag's count messages: from 12 bytes (its tag and number) to top,
    mixed, a few of each size class."""
    out = []
    for i in range(count):
        k = (i * 7919 + tag * 104729) % 97
        out.append(12 + (k * (top - 12)) // 96 if k % 3 else 12 + k % 29)
    return out


def run_stream(name, ring, senders, tag, count, mode):
    """A sender that sends count messages of mixed lengths with send, send_many, try_send or
    reserve, and exits; prints 'ready' once open and 'done' at the end."""
    with _open(name, ring, senders) as sender:
        print("ready", flush=True)
        sizes = lengths(tag, count, sender.message_length)
        send_by(sender, (payload(tag, i, n) for i, n in enumerate(sizes)), mode, 60)
    print("done", flush=True)


def send_by(sender, msgs, mode, timeout, stop=None):
    """Send msgs from sender by one call of send_many (mode "send_many") or by a call each of
    send ("send"), try_send ("try_send": again until it takes the message) or reserve
    ("reserve": room for the longest message, the message written, the rest given back).
    Every call gives up after timeout seconds (try_send by TimeoutError).  With stop (a
    threading.Event), no message is sent once it is set, and a try_send waiting for room
    gives up then."""
    if mode == "send_many":
        sender.send_many(msgs, timeout=timeout)
        return
    for m in msgs:
        if stop is not None and stop.is_set():
            return
        if mode == "try_send":
            deadline = time.monotonic() + timeout
            while not sender.try_send(m):
                if time.monotonic() > deadline or stop is not None and stop.is_set():
                    raise TimeoutError(f"try_send of message {bytes(m[:16])!r} found no room for {timeout} s")
                time.sleep(0)
        elif mode == "reserve":
            res = sender.reserve(sender.message_length, timeout=timeout)
            with res as buf:
                buf[:len(m)] = m
                res.truncate(len(m))
        else:
            sender.send(m, timeout=timeout)


def run_rewrite(path, seconds, seed, offsets, keep_back=0.9):
    """A racing rewriter: XOR random words of the channel file at the given offsets (the claim
    word, sender places' fields, the ring) with random masks, in one atomic step each, for
    seconds; a share keep_back of them flipped back after a moment (a moment's corruption)."""
    import mmap
    import random
    from cywhip._testing._model import atomic_xor_u64
    rng = random.Random(seed)
    fd = os.open(path, os.O_RDWR)
    try:
        mm = mmap.mmap(fd, 0)
    finally:
        os.close(fd)
    end = time.monotonic() + seconds
    flips = 0
    while time.monotonic() < end:
        off = rng.choice(offsets)
        mask = rng.choice((1, 8, 1 << 24, 1 << 33, 1 << 40, 1 << 63, rng.getrandbits(64)))
        atomic_xor_u64(mm, off, mask)
        if rng.random() < keep_back:
            # Flipped back after a moment: whatever an end stored meanwhile stays.
            time.sleep(rng.random() * 0.0002)
            atomic_xor_u64(mm, off, mask)
        flips += 1
        time.sleep(rng.random() * 0.001)
    print(json.dumps({"flips": flips}), flush=True)


def main(argv):
    role, name, ring, senders = argv[0], argv[1], int(argv[2]), _shape(argv[3])
    hold = argv[-1] == "hold"
    if role == "step":
        run_step(name, ring, senders, int(argv[4]), int(argv[5]), argv[6], hold)
    elif role == "take":
        run_take(name, ring, senders, argv[4], hold)
    elif role == "rewrite":
        run_rewrite(name, float(argv[2]), int(argv[3]), json.loads(argv[4]), float(argv[5]))
    elif role == "adopt":
        run_adopt(name, ring, senders)
    elif role == "claim":
        run_claim(name, ring, senders, int(argv[4]))
    elif role == "stream":
        run_stream(name, ring, senders, int(argv[4]), int(argv[5]), argv[6])
    else:
        raise SystemExit(f"unknown role {role!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

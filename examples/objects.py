# examples/objects.py: dicts holding NumPy arrays, from a worker process to this one
import multiprocessing

import numpy as np

import cywhip

CHANNEL = dict(message_length=1 << 20, max_queued_messages=8, message_type=object)


def worker():
    with cywhip.Sender("frames", **CHANNEL) as frames:
        for n in range(3):
            image = np.full((480, 640), n, dtype=np.uint8)
            frames.send({"frame": n, "image": image, "tags": ["gray"]})   # one copy, into the ring


if __name__ == "__main__":
    with cywhip.Receiver("frames", **CHANNEL) as frames:
        w = multiprocessing.Process(target=worker)
        w.start()
        for _ in range(3):
            msg = frames.recv(timeout=30)                                  # one copy, out of it
            image = msg["image"]
            print(msg["frame"], image.shape, image.dtype, int(image.sum()), msg["tags"])
        w.join()
    cywhip.unlink("frames")

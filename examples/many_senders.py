# examples/many_senders.py: four worker processes log into one channel, one collector reads it
import multiprocessing

import cywhip


def worker(n):
    with cywhip.Sender("worker-log", message_length=128, max_senders=4) as log:
        for step in range(3):
            log.send(f"worker {n} step {step}".encode())


if __name__ == "__main__":
    with cywhip.Receiver("worker-log", message_length=128, max_senders=4) as collector:
        workers = [multiprocessing.Process(target=worker, args=(n,)) for n in range(4)]
        for w in workers:
            w.start()
        for _ in range(4 * 3):                # each worker's lines arrive in its order
            print(collector.recv(timeout=30).decode())
        for w in workers:
            w.join()
    cywhip.unlink("worker-log")

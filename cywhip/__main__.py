"""Command line: python -m cywhip COMMAND.

    python -m cywhip demo [--count N]      two processes talk; the receiver reports
    python -m cywhip channels              list the channels in /dev/shm and their state
    python -m cywhip channels --remove-stale   also remove those whose ends are all dead
    python -m cywhip remove-group NAME GROUP   drop a receiver group that is not coming back
    python -m cywhip bench [--quick] [--only TEXT] [--json]   cywhip against its peers
"""
import argparse
import json
import os
import subprocess
import sys

from cywhip._testing.peer import expected_crc


def _peer(*args):
    return [sys.executable, "-m", "cywhip._testing.peer", *map(str, args)]


def demo(count, length):
    """Start a receiver and, separately, a sender; print what arrived and how fast."""
    import cywhip

    name = f"demo-{os.getpid()}"
    print(f"cywhip demo: {count:,} numbered messages of {length} bytes on channel {name!r}")
    print("The receiver and the sender are separate processes that meet only by the channel name.\n")
    rounds = [("send", "recv", "one send() / recv() per message"),
              ("send_many", "recv_many", "send_many() / recv_many() in batches"),
              ("send_many", "on_message", "send_many() / on_message callback")]
    want_crc = expected_crc(count, length)
    ok = True
    try:
        for send_mode, recv_mode, title in rounds:
            receiver = subprocess.Popen(_peer("recv", name, "--count", count, "--mode", recv_mode,
                                              "--length", length), stdout=subprocess.PIPE, text=True)
            sender = subprocess.Popen(_peer("send", name, "--count", count, "--mode", send_mode,
                                            "--length", length), stdout=subprocess.DEVNULL)
            out, _ = receiver.communicate(timeout=300)
            sender.wait(timeout=300)
            if receiver.returncode not in (0, 1) or not out.strip():
                print(f"  {title}: the receiver failed (exit status {receiver.returncode})")
                ok = False
                continue
            r = json.loads(out)
            intact = r["in_order"] and r["crc32"] == want_crc
            ok = ok and intact and sender.returncode == 0
            verdict = ("all in order, none lost, none duplicated, content checked (CRC-32)"
                       if intact else f"NOT INTACT: {r['bad'] or 'content checksum differs'}")
            rate = f"{r['rate'] / 1e6:.2f} million messages/s" if r["rate"] else "n/a"
            print(f"  {title}:")
            print(f"    receiver pid {receiver.pid} got {r['received']:,} of {count:,} "
                  f"(first #{r['first']}, last #{r['last']}): {verdict}")
            print(f"    {r['seconds']:.3f} s from first to last arrival: {rate}")
    finally:
        cywhip.unlink(name, missing_ok=True)
    print("\nChannel removed from /dev/shm." if ok else "\nThe demo found a problem.")
    return 0 if ok else 1


def _describe_places(kind, places):
    """'sender alive (pid 12)', or for several places 'senders 2/3 alive (pids 12, 13)' and
    any claim a sender left unfinished."""
    if len(places) == 1:
        place = places[0]
        return f"{kind} {'alive' if place.alive else 'dead'}" + (f" (pid {place.pid})" if place.alive else "")
    alive = [str(p.pid) for p in places if p.alive]
    text = f"{kind}s {len(alive)}/{len(places)} alive" + (f" (pids {', '.join(alive)})" if alive else "")
    stuck = [f"place {i} (pid {p.pid}) died filling message {p.claiming}"
             for i, p in enumerate(places) if p.claiming is not None and not p.alive]
    return text + "".join(f"; {s}" for s in stuck)


def _shown(text):
    """A name from /dev/shm or from shared memory as it may be printed: anyone who may create
    files there chooses it, so characters that could forge or hide lines (newlines, escape
    sequences, other controls) are shown escaped."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def list_channels(remove):
    import cywhip

    rows = cywhip.channels()
    if not rows:
        print("no channels in /dev/shm")
    for c in rows:
        if c.problem:
            print(f"{_shown(c.name)}: {c.problem} ({_shown(c.path)})")
            continue
        ends = ", ".join(_describe_places(kind, places) for kind, places in (("sender", c.senders),
                                                                               ("receiver", c.receivers)))
        queued = (f"{c.depth}/{c.max_queued_bytes} bytes" if c.max_queued_bytes is not None
                  else f"{c.depth}/{c.max_queued_messages}")
        print(f"{_shown(c.name)}: {queued} queued, message_length {c.message_length}, "
              f"{c.file_size:,} bytes; {ends}")
        for grp in c.groups:
            members = (f"members {' '.join(map(str, grp.members))}" if grp.members else "no live member")
            print(f"  group {grp.name!r}: position {grp.position}, depth {grp.depth}, "
                  f"{'durable' if grp.durable else 'not durable'}, {members}"
                  + ("; holding the senders back" if grp.holding_back else ""))
    if remove:
        removed = cywhip.remove_stale()
        print(f"removed {len(removed)} stale channel(s)" + (": " + ", ".join(map(_shown, removed)) if removed else ""))
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        from cywhip._bench import main as bench_main
        return bench_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m cywhip", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="two processes pass numbered messages; the receiver reports")
    p.add_argument("--count", type=int, default=1_000_000,
                   help="messages per round (default 1,000,000; three rounds)")
    p.add_argument("--length", type=int, default=32, help="message_length in bytes (a multiple of 8)")
    sub.add_parser("bench", help="cywhip against its peers and raw C floors (see bench --help)")
    p = sub.add_parser("channels", help="list channels in /dev/shm and their state")
    p.add_argument("--remove-stale", action="store_true", help="remove channels whose ends are all dead")
    p = sub.add_parser("remove-group", help="remove a receiver group that is not coming back")
    p.add_argument("name", help="the channel")
    p.add_argument("group", help="the group")
    if not argv:
        parser.print_help()
        return 2
    args = parser.parse_args(argv)
    if args.command == "channels":
        return list_channels(args.remove_stale)
    if args.command == "remove-group":
        import cywhip
        try:
            cywhip.remove_group(args.name, args.group)
        except (KeyError, ValueError, OSError, cywhip.CywhipError) as exc:
            print(f"cannot remove group {args.group!r} of channel {args.name!r}: "
                  f"{exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
            return 1
        print(f"removed group {args.group!r} of channel {args.name!r}")
        return 0
    if args.command == "demo":
        if args.count < 1 or args.length < 8 or args.length % 8:
            parser.error(f"--count must be >= 1 and --length a multiple of 8 >= 8, "
                         f"got {args.count} and {args.length}")
        return demo(args.count, args.length)
    return 2


if __name__ == "__main__":
    sys.exit(main())

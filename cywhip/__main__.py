"""Command line: python -m cywhip COMMAND.

    python -m cywhip demo [--count N]      two processes talk; the receiver reports
    python -m cywhip channels              list the channels in /dev/shm and their state
    python -m cywhip channels --remove-stale   also remove those whose ends are all dead
    python -m cywhip remove-group NAME GROUP   drop a receiver group that is not coming back
    python -m cywhip bench [--quick] [--only TEXT] [--json]   cywhip against its peers
    python -m cywhip bridge out CHANNEL... --nats URL   publish local channels to NATS JetStream
    python -m cywhip bridge in CHANNEL... --nats URL    send JetStream's messages into local channels
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
            unit = " bytes" if c.max_queued_bytes is not None else ""
            print(f"  group {grp.name!r}: position {grp.position}, depth {grp.depth}{unit}, "
                  f"{'durable' if grp.durable else 'not durable'}, {members}"
                  + ("; holding the senders back" if grp.holding_back else ""))
    if remove:
        removed = cywhip.remove_stale()
        print(f"removed {len(removed)} stale channel(s)" + (": " + ", ".join(map(_shown, removed)) if removed else ""))
    return 0


def bridge(args):
    """bridge out / bridge in: run until SIGTERM or Ctrl-C; a second one abandons the batch in hand
    (it stays in the channel, or in JetStream, for the next bridge)."""
    import asyncio
    import logging
    import signal

    logging.basicConfig(level=logging.INFO, format="%(asctime)s cywhip bridge %(levelname)s %(message)s",
                        stream=sys.stderr)
    try:
        import cywhip.bridge as cb
        import cywhip.bridge.jetstream  # noqa: F401  (nats-py present?)
    except ImportError as exc:
        print(f"cywhip bridge: {exc}", file=sys.stderr)
        return 2
    options = dict(credentials=args.creds, tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key,
                   user=args.user, password=os.environ.get("NATS_PASSWORD") if args.user else None,
                   token=os.environ.get("NATS_TOKEN"), timeout=args.timeout)
    if args.side == "out":
        options.update(duplicate_window=args.duplicate_window, replicas=args.replicas)
    else:
        options.update(ack_wait=args.ack_wait, replicas=args.replicas)

    async def run():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        signals = 0

        def on_signal(signum):
            nonlocal signals
            signals += 1
            if signals == 1:
                logging.getLogger("cywhip.bridge").info(
                    "%s: stopping once the batch in hand is acknowledged (again to abandon it)",
                    signal.Signals(signum).name)
                stop.set()
            else:
                logging.getLogger("cywhip.bridge").warning("%s again: stopping now",
                                                           signal.Signals(signum).name)
                # The batch in hand is neither taken nor acknowledged: the next bridge has it.
                os._exit(3)

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        common = dict(nats=args.nats, subject_prefix=args.subject_prefix, exclude=args.exclude,
                      batch=args.batch, stop=stop, stats_every=args.stats, **options)
        if args.side == "out":
            return await cb.bridge_out(args.channels, group=args.group, **common)
        return await cb.bridge_in(args.channels, consumer=args.consumer, local_prefix=args.local_prefix,
                                  **common)

    try:
        stats = asyncio.run(run())
    except (cb.RefusedError, cb.TransportError) as exc:
        print(f"cywhip bridge {args.side}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"side": args.side, **stats.as_dict()}))
    return 0


def _add_bridge(sub):
    p = sub.add_parser("bridge", help="bridge channels between machines through NATS JetStream",
                       description="Bridge channels between machines through NATS JetStream "
                                   "(pip install \"cywhip[nats]\"); docs/bridge.md")
    sides = p.add_subparsers(dest="side", required=True)
    for side, text in (("out", "publish local channels to JetStream (subject PREFIX.CHANNEL)"),
                       ("in", "send JetStream's messages into local channels of the same names")):
        q = sides.add_parser(side, help=text, description=text)
        q.add_argument("channels", nargs="+", metavar="CHANNEL",
                       help="channel names or shell-style patterns (quote them)")
        q.add_argument("--nats", required=True, action="append",
                       help="NATS server URL, e.g. nats://host:4222 (repeat for a cluster's servers)")
        q.add_argument("--subject-prefix", default="cywhip", help="first subject token (default cywhip)")
        q.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                       help="never bridge channels matching this pattern (repeatable)")
        q.add_argument("--batch", type=int, default=256, help="messages per batch (default 256)")
        q.add_argument("--stats", type=float, nargs="?", const=5.0, default=None, metavar="SECONDS",
                       help="log a line of rates, lag and pending acks every SECONDS (default 5)")
        q.add_argument("--creds", help="NATS credentials file")
        q.add_argument("--tls-ca", help="CA file for TLS")
        q.add_argument("--tls-cert", help="client certificate file for TLS")
        q.add_argument("--tls-key", help="client key file for TLS")
        q.add_argument("--user", help="NATS user (the password from $NATS_PASSWORD; a token from $NATS_TOKEN)")
        q.add_argument("--timeout", type=float, default=5.0, help="seconds for each request (default 5)")
        q.add_argument("--replicas", type=int, default=1,
                       help="replicas of the streams/consumers it creates, on a cluster (default 1)")
        if side == "out":
            q.add_argument("--group", default="bridge",
                           help="durable receiver group the bridge reads channels of many receivers as (default bridge)")
            q.add_argument("--duplicate-window", type=float, default=120.0,
                           help="seconds JetStream remembers message ids in the streams it creates (default 120)")
        else:
            q.add_argument("--consumer", help="durable consumer name (default: this host's name and the channel's)")
            q.add_argument("--local-prefix", default="",
                           help="put this before each local channel's name (default: the same names)")
            q.add_argument("--ack-wait", type=float, default=30.0,
                           help="seconds before JetStream redelivers to a silent consumer it creates (default 30)")


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
    _add_bridge(sub)
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
    if args.command == "bridge":
        if args.batch < 1:
            parser.error(f"--batch must be >= 1, got {args.batch}")
        return bridge(args)
    if args.command == "demo":
        if args.count < 1 or args.length < 8 or args.length % 8:
            parser.error(f"--count must be >= 1 and --length a multiple of 8 >= 8, "
                         f"got {args.count} and {args.length}")
        return demo(args.count, args.length)
    return 2


if __name__ == "__main__":
    sys.exit(main())

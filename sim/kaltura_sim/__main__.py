"""python -m kaltura_sim: run the simulator as a process until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import threading

from .server import Simulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kaltura_sim", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001, help="0 picks a free port (printed on start)")
    parser.add_argument("--entries", type=int, default=2000, help="entries to generate")
    parser.add_argument("--seed", type=int, default=1, help="the same seed gives the same partner")
    parser.add_argument(
        "--content-scale",
        type=float,
        default=0.001,
        help="multiplies the bytes served for generated flavors (sizes are reported to match)",
    )
    parser.add_argument(
        "--conversion-delay",
        type=float,
        default=5.0,
        help="seconds before a replacement or added content finishes converting",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="milliseconds added to every API call and download, like a remote service (default 0)",
    )
    parser.add_argument(
        "--download-bytes-per-second",
        type=float,
        default=None,
        help="speed cap of every download connection, bytes per second (default: none)",
    )
    parser.add_argument("--ks-expiry-cap", type=int, default=86400, help="the partner's longest KS, in seconds")
    parser.add_argument("--partner-id", type=int, default=1234567)
    parser.add_argument("--admin-secret", default="sim-admin-secret", help="the secret session.start accepts")
    parser.add_argument(
        "--no-archive-tags",
        dest="archive_tags",
        action="store_false",
        help="no entry carries the old tool's archive tags (a library nothing has archived yet)",
    )
    parser.add_argument("--log-requests", action="store_true", help="log request paths to stderr")
    parser.add_argument(
        "--stable-ties",
        action="store_true",
        help="return entries with equal sort keys in creation order (default: random per request)",
    )
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=None,
        help="API requests per second above which calls answer ACTION_BLOCKED (default: no limit)",
    )
    parser.add_argument(
        "--bursts",
        type=int,
        nargs="*",
        default=[],
        help="sizes of extra bulk uploads, each sharing one createdAt second",
    )
    args = parser.parse_args(argv)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    sim = Simulator(
        entries=args.entries,
        seed=args.seed,
        content_scale=args.content_scale,
        port=args.port,
        host=args.host,
        conversion_delay=args.conversion_delay,
        ks_expiry_cap=args.ks_expiry_cap,
        partner_id=args.partner_id,
        admin_secret=args.admin_secret,
        log_requests=args.log_requests,
        archive_tags=args.archive_tags,
        stable_ties=args.stable_ties,
        rate_limit=args.rate_limit,
        bursts=tuple(args.bursts),
        latency_ms=args.latency_ms,
        download_bytes_per_second=args.download_bytes_per_second,
    ).start()
    print(
        f"kaltura_sim serving {sim.url} partner id {sim.partner_id}, {args.entries} entries; "
        "admin secret: from --admin-secret (default sim-admin-secret)",
        flush=True,
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Preview of a 5,000-entry batch: POST /batches/new/ (create + live-state preview) and GET of the batch page.

    .venv/bin/python bench/bench_preview.py [--entries 6000] [--batch 5000] [--profile]

Starts the Kaltura simulator (`python -m kaltura_sim`, its own process, as Kaltura would be) and moto's S3 server as
subprocesses, runs Django in this process on a fresh SQLite file (/tmp/kaltura_archive_bench_preview.sqlite3),
migrates it, mirrors the simulator with sync_full, signs a librarian in with the test Client and times:

- POST /batches/new/ with a filter selecting --batch entries and action archive_replace: batch_create with its
  preview, which reads Kaltura (entries by 150 ids, flavors in bulk) and S3 (a listing) live, then inserts each
  item once with its plan;
- GET /batches/<id>/: the batch page with its totals and the first page of items.

It prints seconds, Kaltura HTTP requests (GET /sim/counters before and after; a multirequest counts once) and S3
calls by operation (counted by a botocore hook). --profile prints the top of a cProfile of the POST.

Target (the issue): "Preview of a 5,000-entry batch renders in under 10 s." Exits 1 if missed.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import json
import os
import pstats
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SQLITE_PATH = Path("/tmp/kaltura_archive_bench_preview.sqlite3")
BUCKET = "kaltura-archive-bench-preview"
TARGET_SECONDS = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sim_json(url: str, path: str):
    with urllib.request.urlopen(f"{url}{path}", timeout=30) as response:
        return json.loads(response.read())


def kaltura_requests(url: str) -> int:
    return sum(sim_json(url, "/sim/counters")["counters"].values())


def start_simulator(entries: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "kaltura_sim",
        "--port",
        str(port),
        "--entries",
        str(entries),
        "--content-scale",
        "0.001",
        "--conversion-delay",
        "0",
    ]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            sim_json(url, "/sim/health")
            return process, url
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise SystemExit("the simulator did not start") from None
            time.sleep(0.2)


def time_parts() -> dict[str, list]:
    """Wrap the parts of the preview and the page with wall-clock timers (cheap, unlike cProfile)."""
    from django.db.models.query import QuerySet

    from archive_app.archive import batches, workflow
    from archive_app.lib import kaltura, storage
    from archive_app.web import batch_views

    timings: dict[str, list] = collections.defaultdict(lambda: [0.0, 0])

    def wrap(owner, attribute: str, label: str | None = None) -> None:
        original = getattr(owner, attribute)

        def timed(*args, **kwargs):
            name = label or attribute
            if attribute in ("bulk_update", "bulk_create") and args and isinstance(args[0], QuerySet):
                name = f"{args[0].model.__name__}.{attribute}"
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                timings[name][0] += time.perf_counter() - started
                timings[name][1] += 1

        setattr(owner, attribute, timed)

    wrap(batches, "batch_create", "batches.batch_create (all of it)")
    wrap(batches, "_plan_entries", "  batches._plan_entries (live state, plans)")
    wrap(batches, "read_live_states", "    workflow.read_live_states")
    wrap(kaltura.Kaltura, "entries_by_ids", "      Kaltura.entries_by_ids")
    wrap(kaltura.Kaltura, "flavors_for_entries", "      Kaltura.flavors_for_entries")
    wrap(storage.ArchiveStore, "list_objects", "      ArchiveStore.list_objects")
    wrap(workflow, "plan_for", "    plan_for (pure)")
    wrap(batches, "plan_for", "    plan_for (pure)")
    wrap(QuerySet, "bulk_update")
    wrap(QuerySet, "bulk_create")
    wrap(batches, "preview_totals", "GET: batches.preview_totals")
    wrap(batch_views, "_progress", "GET: batch_views._progress")
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=6000, help="entries in the simulator (default 6000)")
    parser.add_argument("--batch", type=int, default=5000, help="entries in the batch (default 5000)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the POST")
    args = parser.parse_args()

    from tests.services import MotoServer

    sim, sim_url = start_simulator(args.entries)
    moto = MotoServer()
    try:
        return run(args, sim_url, moto)
    finally:
        moto.stop()
        sim.terminate()
        sim.wait(timeout=10)


def run(args, sim_url: str, moto) -> int:
    SQLITE_PATH.unlink(missing_ok=True)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="kaltura_archive.settings",
        DJANGO_SECRET_KEY="bench",
        DJANGO_DEBUG="1",
        DATABASE_URL=f"sqlite:///{SQLITE_PATH}",
        KALTURA_SERVICE_URL=sim_url,
        KALTURA_PARTNERID="1234567",
        KALTURA_SECRET="sim-admin-secret",
        KALTURA_USERID="bench",
        AWS_ENDPOINT_URL=moto.url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_BUCKET=BUCKET,
        ARCHIVE_MAX_BATCH_SIZE=str(args.batch),
    )
    import django

    django.setup()
    import boto3
    import botocore.client
    from django.conf import settings
    from django.core.management import call_command
    from django.test import Client

    from archive_app.lib.kaltura import Kaltura
    from archive_app.mirror import sync
    from archive_app.models import Batch, Entry
    from archive_app.roles import assign_role

    settings.ALLOWED_HOSTS = ["*"]
    call_command("migrate", verbosity=0)
    boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1").create_bucket(Bucket=BUCKET)

    started = time.perf_counter()
    sync.sync_full(Kaltura.from_settings())
    print(f"sync_full of {Entry.objects.count():,} entries: {time.perf_counter() - started:.1f} s")

    # A filter selecting the smallest --batch originals: the --batch-th smallest size as "original at most".
    sizes = sorted(Entry.objects.exclude(original_size_bytes=None).values_list("original_size_bytes", flat=True))
    if len(sizes) < args.batch:
        raise SystemExit(f"only {len(sizes)} entries have an original; lower --batch")
    filter_query = f"original_max={sizes[args.batch - 1]}+B"

    from django.contrib.auth.models import User

    user = User.objects.create_user("librarian", password="bench-password-1")
    assign_role(user, "librarian")
    client = Client()
    client.force_login(user)

    s3_calls: collections.Counter = collections.Counter()
    original_call = botocore.client.BaseClient._make_api_call

    def counting_call(self, operation_name, api_params):
        s3_calls[operation_name] += 1
        return original_call(self, operation_name, api_params)

    botocore.client.BaseClient._make_api_call = counting_call
    timings = time_parts()

    before = kaltura_requests(sim_url)
    profiler = cProfile.Profile() if args.profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    response = client.post("/batches/new/", {"action": Batch.Action.ARCHIVE_REPLACE, "filter_query": filter_query})
    if profiler:
        profiler.disable()
    post_seconds = time.perf_counter() - started
    if response.status_code != 302 or "/batches/" not in response["Location"]:
        messages = [str(m) for m in response.wsgi_request._messages] if hasattr(response, "wsgi_request") else []
        raise SystemExit(f"POST /batches/new/ answered {response.status_code} {response.get('Location')}: {messages}")
    page_started = time.perf_counter()
    page = client.get(response["Location"])
    get_seconds = time.perf_counter() - page_started
    total = post_seconds + get_seconds
    after = kaltura_requests(sim_url)
    assert page.status_code == 200, page.status_code

    batch = Batch.objects.latest("pk")
    items = batch.items.count()
    skipped = batch.items.exclude(skip_reason="").count()
    print(
        f"filter {filter_query!r}: batch {batch.pk} with {items:,} entries ({items - skipped:,} to process, "
        f"{skipped:,} skipped)"
    )
    print(f"POST /batches/new/ (create + preview): {post_seconds:.2f} s")
    print(f"GET  /batches/{batch.pk}/:                {get_seconds:.2f} s ({len(page.content):,} bytes)")
    print(f"total:                               {total:.2f} s (target < {TARGET_SECONDS:.0f} s)")
    print(f"Kaltura HTTP requests: {after - before}")
    print(f"S3 calls: {dict(s3_calls) or 'none'}")
    print("where the time went (wall seconds, calls):")
    for name, (seconds, calls) in sorted(timings.items(), key=lambda kv: -kv[1][0]):
        print(f"  {name:<48} {seconds:7.2f} s  x{calls}")
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    if total >= TARGET_SECONDS:
        print("TARGET MISSED")
        return 1
    print("target met")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Restoring one big original: moto's S3 -> the Kaltura simulator through uploadToken chunks, SHA-256 on the way.

    .venv/bin/python bench/bench_restore_stream.py [--size-mib 512]

Starts the simulator and moto's S3 server as subprocesses, runs Django in this process on a fresh SQLite file
(/tmp/kaltura_archive_bench_restore.sqlite3), and prepares one placeholder the way the product leaves one: the
original (exactly --size-mib) streamed to S3 (STANDARD, so no Glacier wait is timed) with ArchiveStore, its copy
recorded, then the placeholder uploaded and swapped in with media.updateContent and the tags set. It then runs
`restores.execute_restore` for that entry in a CHILD interpreter (so its peak RSS, from os.wait4, is its own):
read the S3 object, hash it, send it in 8 MiB chunks, updateContent, wait for the flavors, untag.

Prints seconds, MB/s, the child's CPU seconds and peak RSS, and checks the SHA-256 Kaltura then serves against the
one recorded. Target (same as archiving): peak RSS under 200 MB whatever the size (the video streams). Exits 1 if
missed or if the bytes differ. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SQLITE_PATH = Path("/tmp/kaltura_archive_bench_restore.sqlite3")
BUCKET = "kaltura-archive-bench-restore"
MiB = 1024 * 1024
RSS_TARGET_MB = 200


def sim_call(url: str, path: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{url}{path}", data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"null")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=512, help="size of the original (default 512 MiB)")
    args = parser.parse_args()

    from bench.bench_preview import start_simulator
    from tests.services import MotoServer

    sim, sim_url = start_simulator(10)
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
        ARCHIVE_STORAGE_CLASS="STANDARD",
        ARCHIVE_REPLACEMENT_WAIT_SECONDS="600",
        LOG_LEVEL="WARNING",
    )
    import django

    django.setup()
    import boto3
    import requests
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections
    from django.utils import timezone

    from archive_app.lib.kaltura import Kaltura
    from archive_app.lib.storage import ArchiveStore
    from archive_app.mirror import sync
    from archive_app.models import ArchiveCopy, Restore

    call_command("migrate", verbosity=0)
    boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    size = args.size_mib * MiB
    old = int((datetime.now(tz=UTC) - timedelta(days=5 * 365)).timestamp())
    entry_id = sim_call(sim_url, "/sim/entries", {"original_size_bytes": size, "createdAt": old, "name": "Big"})["id"]
    kaltura, store = Kaltura.from_settings(), ArchiveStore.from_settings()
    sync.sync_full(kaltura)

    started = time.perf_counter()
    original = next(f for f in kaltura.flavors(entry_id) if f.is_original)
    with requests.get(kaltura.flavor_download_url(original.id), stream=True, timeout=(10, 600)) as response:
        archived = store.upload_stream(entry_id, response.raw, flavor_id=original.id, expected_size=size)
    ArchiveCopy.objects.create(
        entry_id=entry_id,
        flavor_id=original.id,
        bucket=BUCKET,
        key=archived.key,
        storage_class=archived.storage_class,
        size_bytes=archived.size,
        sha256=archived.sha256,
        crc32=archived.crc32,
        verified_at=timezone.now(),
        replaced_at=timezone.now(),
    )
    placeholder = settings.PLACEHOLDER_VIDEO
    with open(placeholder, "rb") as video:
        token = kaltura.upload(video, file_name=placeholder.name, size=placeholder.stat().st_size)
    kaltura.replace_content(entry_id, token)
    sim_call(sim_url, "/sim/conversions/complete", {})
    kaltura.set_tags(entry_id, ["archived_to_s3", "flavors_deleted"])
    print(f"prepared a {args.size_mib} MiB placeholder entry {entry_id} in {time.perf_counter() - started:.1f} s")

    restore = Restore.objects.create(
        entry_id=entry_id, source="manual", tier="Standard", job_id="bench", size_bytes=size
    )
    connections.close_all()
    # A fresh interpreter, so that its peak RSS is the restore's own and not this process's set-up.
    child_code = (
        "import django, sys; django.setup(); from archive_app.archive import restores; "
        f"r = restores.execute_restore({restore.pk}, 'bench'); sys.exit(0 if r and r.status == 'done' else 3)"
    )
    wall = time.perf_counter()
    pid = subprocess.Popen([sys.executable, "-c", child_code], cwd=ROOT).pid
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - wall
    restore.refresh_from_db()
    served = sim_call(sim_url, f"/sim/entries/{entry_id}/original-sha256")
    served = served.get("sha256") if isinstance(served, dict) else served
    rss_mb = usage.ru_maxrss / 1024
    print(f"restore: {restore.status} {restore.error}".rstrip())
    print(f"  {size / 1e6:,.0f} MB in {seconds:.1f} s = {size / 1e6 / seconds:.1f} MB/s")
    print(f"  child CPU {usage.ru_utime + usage.ru_stime:.1f} s, peak RSS {rss_mb:.0f} MB (target < {RSS_TARGET_MB})")
    print(f"  parent peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    same = served == archived.sha256
    print(f"  SHA-256 Kaltura serves now {'==' if same else '!='} the one recorded ({archived.sha256[:16]}…)")
    ok = os.waitstatus_to_exitcode(status) == 0 and same and rss_mb < RSS_TARGET_MB
    print("target met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

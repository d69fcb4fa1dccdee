"""The fixity audit of many recorded copies against moto's S3 server: S3 requests per copy and wall time.

    .venv/bin/python bench/bench_fixity.py [--copies 100000] [--concurrency 8]

Starts moto's S3 server as a subprocess (a versioned bucket), runs Django in this process on a fresh SQLite file
(/tmp/kaltura_archive_bench_fixity.sqlite3), writes --copies small GLACIER objects with a CRC32 (from 16 threads;
not timed) and records one ArchiveCopy for each, as an archive run would. Then times `fixity.audit_fixity(
execute=True)`: one HEAD per copy, every check an audit event, every copy's result recorded. No restores.

Prints the copies, S3 requests (counted by ArchiveStore's own call counter), seconds, copies per second and the
load average before and after (the machine may be shared). Targets: at most 1 S3 request per copy and at most
600 s for 100,000 copies. Exits 1 if missed. Not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SQLITE_PATH = Path("/tmp/kaltura_archive_bench_fixity.sqlite3")
BUCKET = "kaltura-archive-bench-fixity"
TARGET_SECONDS = 600


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=8, help="FIXITY_CONCURRENCY (HEADs in flight)")
    args = parser.parse_args()
    from tests.services import MotoServer

    moto = MotoServer()
    try:
        return run(args, moto)
    finally:
        moto.stop()
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{SQLITE_PATH}{suffix}").unlink(missing_ok=True)


def run(args, moto) -> int:
    SQLITE_PATH.unlink(missing_ok=True)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="kaltura_archive.settings",
        DJANGO_SECRET_KEY="bench",
        DJANGO_DEBUG="1",
        DATABASE_URL=f"sqlite:///{SQLITE_PATH}",
        AWS_ENDPOINT_URL=moto.url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_BUCKET=BUCKET,
        FIXITY_CONCURRENCY=str(args.concurrency),
        LOG_LEVEL="WARNING",
    )
    import django

    django.setup()
    import boto3
    from botocore.config import Config
    from django.core.management import call_command

    from archive_app.archive import fixity
    from archive_app.lib.storage import ArchiveStore
    from archive_app.models import ArchiveCopy, AuditEvent, Entry

    call_command("migrate", verbosity=0)
    client = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1", config=Config(max_pool_connections=32))
    client.create_bucket(Bucket=BUCKET)
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})

    started = time.monotonic()
    now = datetime.now(UTC)
    entry_ids = [f"0_b{n:07d}" for n in range(args.copies)]

    def put(entry_id: str) -> tuple[str, str, str]:
        response = client.put_object(
            Bucket=BUCKET, Key=entry_id, Body=entry_id.encode() * 2, StorageClass="GLACIER", ChecksumAlgorithm="CRC32"
        )
        return entry_id, response["VersionId"], response["ChecksumCRC32"]

    with ThreadPoolExecutor(max_workers=16) as pool:
        written = list(pool.map(put, entry_ids))
    Entry.objects.bulk_create(
        [
            Entry(id=entry_id, name=entry_id, created_at=now, updated_at=now, status=2, synced_at=now)
            for entry_id in entry_ids
        ],
        batch_size=2000,
    )
    ArchiveCopy.objects.bulk_create(
        [
            ArchiveCopy(
                entry_id=entry_id,
                flavor_id=f"{entry_id}-f",
                flavor_version="1",
                bucket=BUCKET,
                key=entry_id,
                version_id=version_id,
                storage_class="GLACIER",
                size_bytes=len(entry_id) * 2,
                crc32=crc32,
                sha256="0" * 64,
                verified_at=now,
            )
            for entry_id, version_id, crc32 in written
        ],
        batch_size=2000,
    )
    print(f"prepared {args.copies} objects and copies in {time.monotonic() - started:.0f} s")

    store = ArchiveStore.from_settings()
    load_before = os.getloadavg()
    cpu_before = time.process_time()
    started = time.monotonic()
    summary = fixity.audit_fixity(execute=True, store=store)
    seconds = time.monotonic() - started
    cpu = time.process_time() - cpu_before
    load_after = os.getloadavg()

    requests = sum(store.calls.values())
    events = AuditEvent.objects.filter(action=fixity.AUDIT_ACTION).count()
    print(f"copies checked: {summary.checked} (passed {summary.passed}, failed {summary.failed})")
    print(f"S3 requests: {requests} ({dict(store.calls)}), {requests / max(1, summary.checked):.3f} per copy")
    print(f"audit events written: {events}")
    print(f"wall: {seconds:.1f} s, {summary.checked / seconds:.0f} copies/s; this process's CPU: {cpu:.1f} s")
    print(
        f"load average (1, 5, 15 min) before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
        f"after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}; CPUs: {os.cpu_count()}"
    )
    target = TARGET_SECONDS * args.copies / 100_000
    ok = requests <= summary.checked and seconds <= target and summary.failed == 0 and events == args.copies
    print(f"target: <= 1 request per copy, <= {target:.1f} s: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""The archive bucket: the only module that imports boto3 for archive objects.

A thin adapter in the style of healthchecks' hc/lib/s3.py: `ArchiveStore` builds its client lazily, offers a
few plain verbs, and turns every botocore error into `StorageError`. The key of an entry's first archived
original IS the Kaltura entry id (after ARCHIVE_KEY_PREFIX), as in the old Princeton tool, so its archives are
recognised; a copy of content that changed later goes under `<entry id>/<flavor id>-v<version>` (`key_for_content`).
Nothing here overwrites or deletes an archived object: every write is conditional on the key being free, and
the only delete is of a version this adapter has just written and found wrong.

What an archive object carries:
- metadata written at creation: entry-id, flavor-id, expected-size, archived-at, app;
- a full-object CRC32 that S3 validates when the upload completes (DOMAIN.md §4);
- the SHA-256 of the bytes and their count as object TAGS `sha256` and `bytes`. The SHA-256 is known only at the
  end of the stream, and metadata cannot change afterwards without a copy (impossible on a Glacier object
  without a restore), whereas tags can be written on archived objects. A single-put upload (small files) also
  carries both in its metadata.
Objects archived by the old tool have none of these: `sha256` is None for them.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import os
import re
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import urlencode

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from archive_app.lib.config import require_s3
from archive_app.lib.redaction import redact

log = logging.getLogger(__name__)

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * 1024 * MiB
MAX_PARTS = 10_000
MAX_OBJECT_SIZE = 5 * 1024 * 1024 * MiB
DEFAULT_PART_SIZE = 8 * MiB
READ_CHUNK = 1 * MiB
APP_NAME = "kaltura-archive"
# Classes whose objects must be restored before they can be read.
ARCHIVE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
RESTORE_TIERS = ("Expedited", "Standard", "Bulk")
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


class StorageError(Exception):
    """Anything that went wrong with the archive bucket; `code` is S3's error code or one of ours."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(redact(message))  # it may quote botocore or a download URL: never the keys
        self.code = code


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class ArchivedObject:
    """What `upload_stream` wrote; crc32 is S3's base64 form of the full-object CRC32."""

    bucket: str
    key: str
    version_id: str | None
    storage_class: str
    size: int
    sha256: str
    crc32: str
    etag: str


@dataclass(frozen=True)
class ObjectState:
    """One archive object as HEAD (and its tags) show it."""

    entry_id: str
    key: str
    size: int
    storage_class: str
    version_id: str | None
    etag: str
    last_modified: datetime | None
    metadata: dict[str, str]
    # None when not recorded (the old tool's archives) or when the server refused to show the tags.
    sha256: str | None
    crc32: str | None
    # None when the server refused to read them (moto does so for unrestored Glacier objects; S3 does not).
    tags: dict[str, str] | None
    restore_ongoing: bool = False
    restored_until: datetime | None = None

    @property
    def archived(self) -> bool:
        """In a class whose objects need a restore before they can be read (not GLACIER_IR, STANDARD_IA)."""
        return self.storage_class in ARCHIVE_CLASSES

    @property
    def needs_restore(self) -> bool:
        """Archived and no restored copy yet (true while a restore is still ongoing)."""
        return self.archived and self.restored_until is None

    @property
    def readable(self) -> bool:
        return not self.needs_restore


# Never written: the key the delete-permission probe names (bucket_safety).
PROBE_KEY = ".kaltura-archive-probe/never-written"


@dataclass(frozen=True)
class BucketSafety:
    versioning: str  # "Enabled", "Suspended" or "Off"
    object_lock: bool
    default_retention: str  # "COMPLIANCE 3650 days", or "" when none
    can_delete_versions: str  # "yes", "no" or "unknown"
    delete_detail: str

    def risks(self) -> list[str]:
        """In words, for the Health page, /healthz and check --deploy."""
        risks = []
        if self.versioning != "Enabled":
            risks.append(
                f"versioning is {self.versioning.lower()}: an object written over from outside the app would be lost"
            )
        if not self.object_lock:
            risks.append("no Object Lock: anyone with delete rights can destroy archived versions")
        if self.can_delete_versions == "yes" and not self.default_retention.startswith("COMPLIANCE"):
            risks.append(
                "the app's credentials may delete object versions (s3:DeleteObjectVersion): whoever holds "
                "them can destroy the archive; deny it in their policy or use COMPLIANCE retention"
            )
        elif self.can_delete_versions == "unknown":
            risks.append(
                f"could not tell whether the app's credentials may delete object versions ({self.delete_detail})"
            )
        return risks


@dataclass(frozen=True)
class VersionHead:
    """One version's size, class and full-object CRC32 as S3 reports them without reading the bytes."""

    key: str
    version_id: str | None
    size: int
    storage_class: str
    crc32: str | None


@dataclass(frozen=True)
class ObjectSummary:
    """One line of a bucket listing: enough for a dry-run preview."""

    entry_id: str
    key: str
    size: int
    storage_class: str
    etag: str
    last_modified: datetime | None


class HashingReader:
    """Pass `read(n)` through, keeping the SHA-256, CRC32 and count of the bytes read so far.

    Wrap a download (to archive it) or an S3 body (to restore it) and compare with the recorded hash at the end.
    """

    def __init__(self, stream: Readable) -> None:
        self.stream = stream
        self.bytes_read = 0
        self._sha256 = hashlib.sha256()
        self._crc32 = 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        if data:
            self._sha256.update(data)
            self._crc32 = zlib.crc32(data, self._crc32)
            self.bytes_read += len(data)
        return data

    def close(self) -> None:
        close = getattr(self.stream, "close", None)
        if close:
            close()

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    @property
    def crc32(self) -> str:
        """Base64 of the big-endian CRC32, the form S3 uses in ChecksumCRC32."""
        return crc32_base64(self._crc32)


def crc32_base64(value: int) -> str:
    return base64.b64encode(value.to_bytes(4, "big")).decode()


class ObjectReader:
    """An S3 body read in chunks; network and checksum failures while reading become StorageError."""

    def __init__(self, body: Any, where: str) -> None:
        self._body = body
        self._where = where

    def read(self, size: int = -1) -> bytes:
        try:
            return self._body.read(None if size is None or size < 0 else size)
        except (BotoCoreError, OSError) as exc:
            raise StorageError(f"reading {self._where} failed: {exc}", code=type(exc).__name__) from exc

    def close(self) -> None:
        self._body.close()

    def __enter__(self) -> ObjectReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# botocore's parsed service descriptions (JSON files: most of a new client's 0.1-0.3 s of CPU), shared by every
# session of the process. Loaded once in a worker before it forks (apps.warm_worker), every job inherits them.
_LOADER = botocore.loaders.create_loader()


def _botocore_session() -> botocore.session.Session:
    session = botocore.session.get_session()
    session.register_component("data_loader", _LOADER)
    return session


def warm_client_data() -> None:
    """Load what a new S3 client reads from disk, without credentials or a request."""
    boto3.session.Session(botocore_session=_botocore_session()).client(
        "s3", region_name="us-east-1", aws_access_key_id="warm", aws_secret_access_key="warm"
    )


class ArchiveStore:
    """Archive objects in one bucket, keyed by Kaltura entry id."""

    def __init__(
        self,
        bucket: str,
        *,
        key_prefix: str = "",
        storage_class: str = "GLACIER",
        endpoint_url: str | None = None,
        region_name: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        max_attempts: int = 5,
        lock_mode: str = "",
        lock_days: int = 0,
        legal_hold: bool = False,
    ) -> None:
        self.bucket = bucket
        # Object Lock for each new copy (the bucket must have Object Lock): a retention, a legal hold, or both.
        self.lock_mode, self.lock_days, self.legal_hold = lock_mode, lock_days, legal_hold
        self.key_prefix = key_prefix or ""
        self.storage_class = storage_class
        self._endpoint_url = endpoint_url or None
        self._region_name = region_name or None
        # Empty means "let boto3 find them" (instance role, ~/.aws, ...). Never logged, never in repr.
        self._credentials = (access_key_id or None, secret_access_key or None)
        self._max_attempts = max_attempts
        self._client = None
        self._client_lock = threading.Lock()
        # API calls made, by operation name ("ListObjectsV2": 3, ...): cheap to keep, and testable.
        self.calls: Counter[str] = Counter()

    @classmethod
    def from_settings(cls) -> ArchiveStore:
        require_s3()
        return cls(
            settings.AWS_BUCKET,
            key_prefix=getattr(settings, "ARCHIVE_KEY_PREFIX", ""),
            storage_class=getattr(settings, "ARCHIVE_STORAGE_CLASS", "GLACIER"),
            endpoint_url=getattr(settings, "AWS_ENDPOINT_URL", None),
            region_name=getattr(settings, "AWS_DEFAULT_REGION", None),
            access_key_id=getattr(settings, "AWS_ACCESS_KEY_ID", None),
            secret_access_key=getattr(settings, "AWS_SECRET_ACCESS_KEY", None),
            max_attempts=getattr(settings, "AWS_MAX_ATTEMPTS", 5),
            lock_mode=getattr(settings, "ARCHIVE_OBJECT_LOCK_MODE", ""),
            lock_days=getattr(settings, "ARCHIVE_OBJECT_LOCK_DAYS", 0),
            legal_hold=getattr(settings, "ARCHIVE_LEGAL_HOLD_NEW_COPIES", False),
        )

    def __repr__(self) -> str:
        return f"<ArchiveStore s3://{self.bucket}/{self.key_prefix}>"

    @property
    def client(self):
        with self._client_lock:
            if self._client is None:
                access_key_id, secret_access_key = self._credentials
                # A session of our own: boto3's default session is not safe to share between threads.
                client = boto3.session.Session(botocore_session=_botocore_session()).client(
                    "s3",
                    endpoint_url=self._endpoint_url,
                    region_name=self._region_name,
                    aws_access_key_id=access_key_id,
                    aws_secret_access_key=secret_access_key,
                    config=Config(
                        retries={"mode": "standard", "max_attempts": self._max_attempts},
                        connect_timeout=10,
                        read_timeout=120,
                        max_pool_connections=32,
                        # Over https botocore already leaves streamed bodies unsigned; over http (moto, local
                        # S3-compatible servers) it would SHA-256 every part a second time. The parts carry a
                        # CRC32 that S3 checks, so integrity does not depend on the signature.
                        s3={"payload_signing_enabled": False},
                    ),
                )
                client.meta.events.register("before-call.s3", self._count_call)
                self._client = client
            return self._client

    def _count_call(self, model: Any, **kwargs: Any) -> None:
        self.calls[model.name] += 1

    def key_for(self, entry_id: str) -> str:
        """The key of an entry's first copy: the entry id, as the old tool had it."""
        return f"{self.key_prefix}{entry_id}"

    def key_for_content(self, entry_id: str, flavor_id: str, version: str) -> str:
        """The key of a copy of content that changed after the first copy: named by the content's identity."""
        return f"{self.key_prefix}{entry_id}/{flavor_id}-v{version or 'unknown'}"

    def versioning_enabled(self) -> bool:
        """Whether the bucket keeps overwritten and deleted objects as versions (what protects against
        writes from outside the app)."""
        return self._call("get_bucket_versioning").get("Status") == "Enabled"

    def _lock_params(self) -> dict[str, Any]:
        """The Object Lock headers of a new copy. A copy written wrong cannot then be deleted by `_confirm` (it
        stays, unrecorded, until its retention ends): the price of copies nobody can delete."""
        params: dict[str, Any] = {}
        if self.lock_mode:
            params["ObjectLockMode"] = self.lock_mode
            params["ObjectLockRetainUntilDate"] = datetime.now(UTC) + timedelta(days=self.lock_days)
        if self.legal_hold:
            params["ObjectLockLegalHoldStatus"] = "ON"
        return params

    def bucket_safety(self) -> BucketSafety:
        """What protects the archive from its own bucket: versioning, Object Lock, and whether these credentials
        may delete object versions. Read-only but for one probe: a DeleteObject of the "null" version of a key
        nobody writes (`PROBE_KEY`), a no-op when allowed (S3 deletes nothing that is not there), AccessDenied when
        the policy denies s3:DeleteObjectVersion. S3 checks the permission before looking for the object."""
        versioning = self._call("get_bucket_versioning").get("Status") or "Off"
        lock_enabled, retention = False, ""
        try:
            config = self._call("get_object_lock_configuration").get("ObjectLockConfiguration") or {}
        except StorageError as exc:
            if exc.code not in ("ObjectLockConfigurationNotFoundError", "404"):
                raise
            config = {}
        if config.get("ObjectLockEnabled") == "Enabled":
            lock_enabled = True
            rule = (config.get("Rule") or {}).get("DefaultRetention") or {}
            if rule:
                span = f"{rule['Days']} days" if rule.get("Days") else f"{rule.get('Years')} years"
                retention = f"{rule.get('Mode')} {span}"
        try:
            self._call("delete_object", f"{self.key_prefix}{PROBE_KEY}", VersionId="null")
        except StorageError as exc:
            delete = "no" if exc.code in ("AccessDenied", "403") else "unknown"
            detail = f"{exc.code}" if delete == "no" else f"the probe failed: {exc}"
        else:
            delete, detail = "yes", "s3:DeleteObjectVersion is allowed"
        return BucketSafety(
            versioning=versioning,
            object_lock=lock_enabled,
            default_retention=retention,
            can_delete_versions=delete,
            delete_detail=detail,
        )

    def _url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _call(self, operation: str, key: str | None = None, **params: Any) -> dict[str, Any]:
        """Call one S3 operation; any botocore error becomes StorageError naming bucket, key and code."""
        where = self._url(key) if key is not None else f"s3://{self.bucket}"
        if key is not None:
            params["Key"] = key
        try:
            return getattr(self.client, operation)(Bucket=self.bucket, **params)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))
            message = error.get("Message") or ""
            raise StorageError(f"S3 {operation} on {where} failed: {code} {message}".rstrip(), code=code) from exc
        except BotoCoreError as exc:
            # EndpointConnectionError, timeouts, missing credentials: botocore's messages carry no secrets.
            code = type(exc).__name__
            raise StorageError(f"S3 {operation} on {where} failed: {code}: {exc}", code=code) from exc

    # --- archiving -----------------------------------------------------------------------------------

    def upload_stream(
        self,
        entry_id: str,
        stream: Readable,
        *,
        flavor_id: str,
        expected_size: int | None = None,
        storage_class: str | None = None,
        part_size: int = DEFAULT_PART_SIZE,
        concurrency: int = 4,
        key: str | None = None,
        flavor_version: str = "",
        size_ok: Callable[[int], bool] | None = None,
    ) -> ArchivedObject:
        """Copy a stream of unknown length into the archive object for `entry_id`.

        Before: nothing is assumed of `stream` but `read(n)`. Memory stays bounded: at most `concurrency` parts
        in flight plus the one being read. After success: one complete object with metadata, tags `sha256` and
        `bytes`, and a full-object CRC32 validated by S3. After any failure: StorageError, and no object and no
        multipart upload left behind; a partial copy never looks complete. An existing object is never replaced
        (a conditional write, so this also holds against a concurrent writer): PreconditionFailed instead.
        `key` defaults to the entry id's; `size_ok` may refuse the byte count before the object is completed.

        Why explicit multipart rather than boto3's transfer manager (upload_fileobj): S3 validates a full-object
        CRC32 only if the client sends it with CompleteMultipartUpload. s3transfer takes ChecksumType/ChecksumCRC32
        only as ExtraArgs, fixed before the first byte is read, and we know the CRC of a stream only at its end;
        left alone it asks S3 for a composite checksum of part checksums (like a multipart SHA-256). Driving the
        parts ourselves also lets us refuse a short or long stream BEFORE completing (abort: no object ever
        exists), and bounds memory with a semaphore instead of s3transfer's queue sizes.
        """
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum)")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if expected_size is not None and expected_size > MAX_OBJECT_SIZE:
            raise StorageError(f"{entry_id}: {expected_size} bytes exceeds S3's 5 TiB object limit", "EntityTooLarge")
        part_size = part_size_for(expected_size, part_size)
        key = key or self.key_for(entry_id)
        storage_class = storage_class or self.storage_class
        metadata = {
            "entry-id": entry_id,
            "flavor-id": flavor_id,
            "flavor-version": flavor_version,
            "archived-at": datetime.now(UTC).isoformat(timespec="seconds"),
            "app": APP_NAME,
        }
        if expected_size is not None:
            metadata["expected-size"] = str(expected_size)
        reader = HashingReader(stream)
        started = time.monotonic()

        # Held in a list so that the multipart path can let go of the first part once it is sent.
        first = [self._read_part(reader, part_size, key)]
        if len(first[0]) < part_size:
            # The whole stream fits in one part: one PUT, with the hash in metadata as well as tags.
            self._check_size(key, reader.bytes_read, expected_size, size_ok)
            archived = self._put_single(key, first.pop(), reader, storage_class, metadata)
        else:
            archived = self._put_multipart(
                key, first, reader, part_size, concurrency, storage_class, metadata, expected_size, size_ok
            )
        seconds = time.monotonic() - started
        log.info(
            "archived %s: %d bytes, %s, %.1f s (%.1f MB/s)",
            self._url(key),
            archived.size,
            archived.storage_class,
            seconds,
            archived.size / 1e6 / max(seconds, 1e-6),
        )
        return archived

    def _read_part(self, reader: HashingReader, part_size: int, key: str) -> bytearray:
        """Read up to part_size bytes (fewer only at the end of the stream).

        Filled into one buffer, so a part costs its size once (joining chunks would briefly cost it twice).
        """
        part = bytearray(part_size)
        filled = 0
        try:
            while filled < part_size:
                chunk = reader.read(min(READ_CHUNK, part_size - filled))
                if not chunk:
                    break
                part[filled : filled + len(chunk)] = chunk
                filled += len(chunk)
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(
                f"reading the source for {self._url(key)} failed after {reader.bytes_read} bytes: {exc!r}",
                code="SourceError",
            ) from exc
        if filled < part_size:
            del part[filled:]
        return part

    def _check_size(self, key: str, size: int, expected_size: int | None, size_ok=None) -> None:
        if (expected_size is not None and size != expected_size) or (size_ok is not None and not size_ok(size)):
            raise StorageError(
                f"{self._url(key)}: the source gave {size} bytes, {expected_size or 'another count'} were expected",
                code="SizeMismatch",
            )

    def _put_single(
        self,
        key: str,
        data: bytearray,
        reader: HashingReader,
        storage_class: str,
        metadata: dict[str, str],
    ) -> ArchivedObject:
        metadata = {**metadata, "sha256": reader.sha256, "bytes": str(reader.bytes_read)}
        response = self._call(
            "put_object",
            key,
            Body=data,
            StorageClass=storage_class,
            Metadata=metadata,
            Tagging=urlencode({"sha256": reader.sha256, "bytes": reader.bytes_read}),
            ChecksumAlgorithm="CRC32",
            ChecksumCRC32=reader.crc32,
            IfNoneMatch="*",
            **self._lock_params(),
        )
        if response.get("ChecksumCRC32") == reader.crc32:
            # S3 checked the bytes it stored against the CRC32 computed on our stream (a mismatch, or a body
            # shorter than its Content-Length, is refused, not stored): its answer is the check a HEAD would
            # repeat, one request fewer per small copy. Without that answer, a HEAD checks.
            return ArchivedObject(
                bucket=self.bucket,
                key=key,
                version_id=_version(response),
                storage_class=storage_class,
                size=reader.bytes_read,
                sha256=reader.sha256,
                crc32=reader.crc32,
                etag=response.get("ETag") or "",
            )
        return self._confirm(key, response, reader, tag=False)

    def _put_multipart(
        self,
        key: str,
        first: list[bytearray],
        reader: HashingReader,
        part_size: int,
        concurrency: int,
        storage_class: str,
        metadata: dict[str, str],
        expected_size: int | None,
        size_ok: Callable[[int], bool] | None,
    ) -> ArchivedObject:
        upload_id = self._call(
            "create_multipart_upload",
            key,
            StorageClass=storage_class,
            Metadata=metadata,
            ChecksumAlgorithm="CRC32",
            ChecksumType="FULL_OBJECT",
            **self._lock_params(),
        )["UploadId"]
        try:
            parts = self._send_parts(key, upload_id, first, reader, part_size, concurrency)
            # The whole stream has been read: refuse a short or long copy before it becomes an object.
            self._check_size(key, reader.bytes_read, expected_size, size_ok)
            response = self._call(
                "complete_multipart_upload",
                key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                ChecksumType="FULL_OBJECT",
                ChecksumCRC32=reader.crc32,
                IfNoneMatch="*",
            )
        except BaseException:
            self._abort(key, upload_id)
            raise
        return self._confirm(key, response, reader, tag=True)

    def _send_parts(
        self, key: str, upload_id: str, first: list[bytearray], reader: HashingReader, part_size: int, concurrency: int
    ) -> list[dict[str, Any]]:
        """Upload parts from the stream with at most `concurrency` in flight; return them for completion."""
        slots = threading.BoundedSemaphore(concurrency)
        pending: set = set()
        parts: list[dict[str, Any]] = []

        def send(number: int, data: bytearray) -> dict[str, Any]:
            try:
                response = self._call(
                    "upload_part", key, UploadId=upload_id, PartNumber=number, Body=data, ChecksumAlgorithm="CRC32"
                )
            finally:
                slots.release()
            part = {"PartNumber": number, "ETag": response["ETag"]}
            if response.get("ChecksumCRC32"):
                part["ChecksumCRC32"] = response["ChecksumCRC32"]
            return part

        def collect(block: bool) -> None:
            for future in [f for f in pending if block or f.done()]:
                pending.discard(future)
                parts.append(future.result())  # re-raises a failed part's StorageError

        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="s3-part")
        try:
            data, number = first.pop(), 1
            while data:
                if number > MAX_PARTS:
                    raise StorageError(
                        f"{self._url(key)}: the stream is longer than {MAX_PARTS} parts of {part_size} bytes; "
                        "pass expected_size so that the part size can grow",
                        code="TooManyParts",
                    )
                slots.acquire()  # wait until a part finishes if `concurrency` are in flight
                pending.add(pool.submit(send, number, data))
                data = bytearray()  # let the part go once it is sent
                collect(block=False)
                data = self._read_part(reader, part_size, key)
                number += 1
            collect(block=True)
        finally:
            # On failure: drop queued parts and wait for running ones, so the abort that follows is final.
            pool.shutdown(wait=True, cancel_futures=True)
        return sorted(parts, key=lambda part: part["PartNumber"])

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self._call("abort_multipart_upload", key, UploadId=upload_id)
        except StorageError as exc:
            # The original failure matters more; a lifecycle rule for incomplete uploads should catch leftovers.
            log.error("could not abort multipart upload %s of %s: %s", upload_id, self._url(key), exc)

    def _confirm(self, key: str, response: dict[str, Any], reader: HashingReader, *, tag: bool) -> ArchivedObject:
        """Check what S3 now holds against what was read; delete the new version if it differs or can't be tagged."""
        version_id = _version(response)
        try:
            if tag:
                self._call(
                    "put_object_tagging",
                    key,
                    **({"VersionId": version_id} if version_id else {}),
                    Tagging={
                        "TagSet": [
                            {"Key": "sha256", "Value": reader.sha256},
                            {"Key": "bytes", "Value": str(reader.bytes_read)},
                        ]
                    },
                )
            version = {"VersionId": version_id} if version_id else {}
            head = self._call("head_object", key, ChecksumMode="ENABLED", **version)
            if head["ContentLength"] != reader.bytes_read:
                raise StorageError(
                    f"{self._url(key)} holds {head['ContentLength']} bytes, {reader.bytes_read} were sent",
                    code="SizeMismatch",
                )
            if head.get("ChecksumCRC32") and head["ChecksumCRC32"] != reader.crc32:
                raise StorageError(
                    f"{self._url(key)} has CRC32 {head['ChecksumCRC32']}, the stream had {reader.crc32}",
                    code="ChecksumMismatch",
                )
        except StorageError:
            self._delete_quietly(key, version_id)
            raise
        return ArchivedObject(
            bucket=self.bucket,
            key=key,
            version_id=version_id,
            storage_class=head.get("StorageClass") or "STANDARD",
            size=reader.bytes_read,
            sha256=reader.sha256,
            crc32=reader.crc32,
            etag=head.get("ETag") or response.get("ETag") or "",
        )

    def _delete_quietly(self, key: str, version_id: str | None) -> None:
        try:
            self._call("delete_object", key, **({"VersionId": version_id} if version_id else {}))
        except StorageError as exc:
            log.error("could not delete the bad copy %s (version %s): %s", self._url(key), version_id, exc)

    # --- reading the state ---------------------------------------------------------------------------

    def head(self, entry_id: str, *, key: str | None = None, version_id: str | None = None) -> ObjectState | None:
        """The object's state (that exact version, if given), or None when there is none."""
        key = key or self.key_for(entry_id)
        try:
            head = self._call("head_object", key, ChecksumMode="ENABLED", **_version_param(version_id))
        except StorageError as exc:
            if exc.code in NOT_FOUND_CODES:
                return None
            raise
        metadata = head.get("Metadata") or {}
        # Our single-PUT copies carry the SHA-256 in their metadata, which no one can change on that version
        # (tags can be): the tags are read only where the metadata has none (multipart copies, other tools').
        tags = None if metadata.get("sha256") else self._tags(key, _version(head))
        restore = head.get("Restore") or ""
        expiry = re.search(r'expiry-date="([^"]+)"', restore)
        return ObjectState(
            entry_id=entry_id,
            key=key,
            size=head["ContentLength"],
            storage_class=head.get("StorageClass") or "STANDARD",
            version_id=_version(head),
            etag=head.get("ETag") or "",
            last_modified=head.get("LastModified"),
            metadata=metadata,
            sha256=(tags or {}).get("sha256") or metadata.get("sha256"),
            crc32=head.get("ChecksumCRC32"),
            tags=tags,
            restore_ongoing='ongoing-request="true"' in restore,
            restored_until=parsedate_to_datetime(expiry.group(1)) if expiry else None,
        )

    def put_new_small(self, key: str, body: bytes, *, content_type: str, metadata: dict[str, str]) -> str | None:
        """A small object (a sidecar) at a free key, never over an existing one (PreconditionFailed instead), in
        STANDARD so that it reads without a restore, with the copies' Object Lock. Returns its VersionId."""
        response = self._call(
            "put_object",
            key,
            Body=body,
            ContentType=content_type,
            Metadata=metadata,
            StorageClass="STANDARD",
            ChecksumAlgorithm="CRC32",
            IfNoneMatch="*",
            **self._lock_params(),
        )
        return _version(response)

    def read_small(self, key: str, version_id: str | None = None, limit: int = 16 * 1024 * 1024) -> bytes:
        """The bytes of a small object (a sidecar); refuses one larger than `limit`."""
        reader, size = self.open_stream(key, key=key, version_id=version_id)
        with reader:
            if size > limit:
                raise StorageError(f"{self._url(key)} has {size} bytes, more than {limit}", code="TooLarge")
            return reader.read()

    def head_checksum(self, key: str, version_id: str | None = None) -> VersionHead | None:
        """One HeadObject (with the checksum S3 stored at upload) of that version, or of the current one when
        None; None when there is none (deleted, or hidden by a delete marker). The fixity audit's only request."""
        try:
            head = self._call("head_object", key, ChecksumMode="ENABLED", **_version_param(version_id))
        except StorageError as exc:
            if exc.code in NOT_FOUND_CODES or exc.code in ("405", "MethodNotAllowed", "400", "InvalidArgument"):
                # 405: the version asked for is a delete marker; 400: no such version id.
                return None
            raise
        return VersionHead(
            key=key,
            version_id=_version(head),
            size=head["ContentLength"],
            storage_class=head.get("StorageClass") or "STANDARD",
            crc32=head.get("ChecksumCRC32"),
        )

    def set_legal_hold(self, key: str, version_id: str | None, on: bool) -> None:
        """An Object Lock legal hold on that version (StorageError where the bucket has no Object Lock)."""
        self._call(
            "put_object_legal_hold", key, LegalHold={"Status": "ON" if on else "OFF"}, **_version_param(version_id)
        )

    def _tags(self, key: str, version_id: str | None) -> dict[str, str] | None:
        try:
            response = self._call("get_object_tagging", key, **({"VersionId": version_id} if version_id else {}))
        except StorageError as exc:
            # S3 reads tags of archived objects; moto refuses with InvalidObjectState until they are restored.
            if exc.code == "InvalidObjectState":
                return None
            raise
        return {tag["Key"]: tag["Value"] for tag in response.get("TagSet", [])}

    def verify(
        self,
        entry_id: str,
        *,
        size: int,
        sha256: str,
        crc32: str | None = None,
        key: str | None = None,
        version_id: str | None = None,
    ) -> ObjectState:
        """The object exists with exactly `size` bytes and the recorded SHA-256; StorageError says what differs.

        `crc32` (S3's base64 form, as ArchivedObject has it) is the fallback only where the server will not show
        the tags of an archived object (moto); S3 always shows them.
        """
        state = self.head(entry_id, key=key, version_id=version_id)
        return self.check(state, key=key or self.key_for(entry_id), size=size, sha256=sha256, crc32=crc32)

    def check(self, state: ObjectState | None, *, key: str, size: int, sha256: str, crc32: str | None) -> ObjectState:
        """verify() on a head just read (`state`, of that key and version): StorageError says what differs."""
        url = self._url(key)
        if state is None:
            raise StorageError(f"{url} does not exist", code="NoSuchKey")
        problems = []
        if state.size != size:
            problems.append(f"size is {state.size} bytes, expected {size}")
        if state.sha256 is not None:
            if state.sha256.lower() != sha256.lower():
                problems.append(f"sha256 is {state.sha256}, expected {sha256}")
        elif state.tags is None and crc32 is not None and state.crc32 is not None:
            if state.crc32 != crc32:
                problems.append(f"CRC32 is {state.crc32}, expected {crc32} (tags unreadable, compared CRC32)")
        else:
            problems.append(f"no sha256 recorded (tags {'unreadable' if state.tags is None else 'absent'})")
        if problems:
            code = "SizeMismatch" if state.size != size else "ChecksumMismatch"
            raise StorageError(f"{url}: {'; '.join(problems)}", code=code)
        return state

    def list_objects(self, entry_ids: list[str] | set[str] | None = None) -> dict[str, ObjectSummary]:
        """Size and class of every archive object (or of those for `entry_ids`), by entry id.

        One ListObjectsV2 call per 1,000 keys. With entry_ids the listing covers only the key range from the
        first to the last of them (S3 lists in key order), so a batch of neighbouring ids costs few calls; for a
        handful of ids scattered over a large bucket, head() each instead.
        """
        wanted: dict[str, str] | None = None
        last_key = None
        # Entry ids never contain "/": the delimiter leaves other folders of the bucket out.
        params: dict[str, Any] = {"Prefix": self.key_prefix, "Delimiter": "/", "MaxKeys": 1000}
        if entry_ids is not None:
            wanted = {self.key_for(entry_id): entry_id for entry_id in entry_ids}
            if not wanted:
                return {}
            params["Prefix"] = os.path.commonprefix(list(wanted))
            first_key, last_key = min(wanted), max(wanted)
            if len(first_key) > len(params["Prefix"]):
                # A strict prefix of the first key sorts before it: listing starts at most a few keys early.
                params["StartAfter"] = first_key[:-1]
        found: dict[str, ObjectSummary] = {}
        while True:
            page = self._call("list_objects_v2", **params)
            for item in page.get("Contents", []):
                key = item["Key"]
                if wanted is not None and key not in wanted:
                    continue
                entry_id = wanted[key] if wanted is not None else key[len(self.key_prefix) :]
                found[entry_id] = ObjectSummary(
                    entry_id=entry_id,
                    key=key,
                    size=item["Size"],
                    storage_class=item.get("StorageClass") or "STANDARD",
                    etag=item.get("ETag") or "",
                    last_modified=item.get("LastModified"),
                )
            if not page.get("IsTruncated"):
                break
            if last_key is not None and page.get("Contents") and page["Contents"][-1]["Key"] >= last_key:
                break
            params["ContinuationToken"] = page["NextContinuationToken"]
        return found

    # --- restoring -----------------------------------------------------------------------------------

    def request_restore(
        self,
        entry_id: str,
        *,
        tier: str = "Standard",
        days: int = 7,
        key: str | None = None,
        version_id: str | None = None,
    ) -> str:
        """Ask S3 for a readable copy: "requested", "already-in-progress" or "not-needed".

        After "requested" the copy appears within hours (DOMAIN.md §4); `head().readable` says when.
        """
        if tier not in RESTORE_TIERS:
            raise ValueError(f"tier must be one of {', '.join(RESTORE_TIERS)}")
        state = self.head(entry_id, key=key, version_id=version_id)
        url = self._url(key or self.key_for(entry_id))
        if state is None:
            raise StorageError(f"{url} does not exist", code="NoSuchKey")
        if not state.needs_restore:
            return "not-needed"
        if state.restore_ongoing:
            return "already-in-progress"
        if tier == "Expedited" and state.storage_class == "DEEP_ARCHIVE":
            raise StorageError(f"{url} is in Deep Archive: no Expedited restore; use Standard or Bulk", "InvalidTier")
        try:
            self._call(
                "restore_object",
                state.key,
                RestoreRequest={"Days": days, "GlacierJobParameters": {"Tier": tier}},
                **_version_param(version_id),
            )
        except StorageError as exc:
            if exc.code == "RestoreAlreadyInProgress":
                return "already-in-progress"
            raise
        log.info("restore of %s requested (%s, %d days)", url, tier, days)
        return "requested"

    def open_stream(
        self, entry_id: str, *, key: str | None = None, version_id: str | None = None
    ) -> tuple[ObjectReader, int]:
        """A streaming body of the object, and its size. Archived objects must be restored first.

        With ChecksumMode enabled, botocore checks the full-object CRC32 as the body is read to its end.
        """
        key = key or self.key_for(entry_id)
        try:
            response = self._call("get_object", key, ChecksumMode="ENABLED", **_version_param(version_id))
        except StorageError as exc:
            if exc.code == "InvalidObjectState":
                raise StorageError(
                    f"{self._url(key)} is archived and needs a restore first (request_restore)",
                    code="InvalidObjectState",
                ) from exc
            raise
        return ObjectReader(response["Body"], self._url(key)), response["ContentLength"]


def _version_param(version_id: str | None) -> dict[str, str]:
    return {"VersionId": version_id} if version_id else {}


def _version(response: dict[str, Any]) -> str | None:
    """The version id, None when the bucket is not versioned (moto says "null", S3 sends nothing)."""
    version_id = response.get("VersionId")
    return None if version_id in (None, "", "null") else version_id


def part_size_for(expected_size: int | None, part_size: int = DEFAULT_PART_SIZE) -> int:
    """The part size to use: as asked, or larger (whole MiB) so that expected_size fits in 10,000 parts."""
    if expected_size is None or expected_size <= part_size * MAX_PARTS:
        return part_size
    needed = math.ceil(expected_size / MAX_PARTS / MiB) * MiB
    return min(max(part_size, needed), MAX_PART_SIZE)


__all__ = [
    "ArchiveStore",
    "ArchivedObject",
    "HashingReader",
    "ObjectReader",
    "ObjectState",
    "ObjectSummary",
    "StorageError",
    "VersionHead",
    "part_size_for",
]

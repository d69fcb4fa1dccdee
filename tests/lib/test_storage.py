"""archive_app.lib.storage against moto's S3 server: what lands in the bucket, and what never may."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import random
import tracemalloc
import urllib.parse
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
from botocore.stub import Stubber

from archive_app.lib.storage import ArchiveStore, HashingReader, StorageError
from tests.conftest import TEST_BUCKET
from tests.services import free_port

MiB = 1024 * 1024
PART = 5 * MiB  # S3's minimum part size: multipart with a few parts on streams of 12-20 MiB


class Source:
    """A non-seekable stream, like an HTTP response body: read(n) only, sometimes returning fewer bytes."""

    def __init__(self, size: int, *, seed: int = 1, fail_after: int | None = None) -> None:
        self.size = size
        self.position = 0
        self.fail_after = fail_after
        # An odd block length, so that parts are not copies of each other.
        self.block = random.Random(seed).randbytes(MiB + 4099)

    def read(self, n: int = -1) -> bytes:
        if self.fail_after is not None and self.position >= self.fail_after:
            raise ConnectionError("connection reset by peer")
        remaining = self.size - self.position
        n = remaining if n is None or n < 0 else min(n, remaining)
        start = self.position % len(self.block)
        data = self.block[start : start + n]
        self.position += len(data)
        return data


def content(size: int, seed: int = 1) -> bytes:
    source, chunks = Source(size, seed=seed), []
    while chunk := source.read(MiB):
        chunks.append(chunk)
    return b"".join(chunks)


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def restore_now(s3, key: str) -> None:
    """moto completes restores at once by default; S3 itself would take hours."""
    s3.restore_object(
        Bucket=TEST_BUCKET, Key=key, RestoreRequest={"Days": 1, "GlacierJobParameters": {"Tier": "Standard"}}
    )


def tags_of(s3, key: str) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in s3.get_object_tagging(Bucket=TEST_BUCKET, Key=key)["TagSet"]}


def assert_nothing_left(s3, key: str) -> None:
    assert s3.list_objects_v2(Bucket=TEST_BUCKET).get("KeyCount") == 0, f"{key} should not exist"
    assert s3.list_multipart_uploads(Bucket=TEST_BUCKET).get("Uploads", []) == []


def hold_restores_ongoing(moto_server, reads: int) -> None:
    body = {"model_name": "s3::keyrestore", "transition": {"progression": "manual", "times": reads}}
    request = urllib.request.Request(
        f"{moto_server.url}/moto-api/state-manager/set-transition", data=json.dumps(body).encode(), method="POST"
    )
    urllib.request.urlopen(request, timeout=10)


@pytest.fixture
def store(s3):
    return ArchiveStore.from_settings()


# --- upload_stream ----------------------------------------------------------------------------------------


def test_multipart_upload_from_a_stream_lands_complete_in_glacier(s3, store):
    size = 13 * MiB + 12345
    data = content(size)

    archived = store.upload_stream("0_multi", Source(size), flavor_id="0_flav", expected_size=size, part_size=PART)

    head = s3.head_object(Bucket=TEST_BUCKET, Key="0_multi", ChecksumMode="ENABLED")
    assert head["StorageClass"] == "GLACIER"  # ARCHIVE_STORAGE_CLASS's default
    assert head["ContentLength"] == size
    assert head["ETag"].endswith('-3"')  # three parts: multipart really happened
    # The full-object CRC32 of the bytes, not a checksum of part checksums.
    assert head["ChecksumCRC32"] == crc32_b64(data)
    assert head["ChecksumType"] == "FULL_OBJECT"
    assert head["Metadata"]["entry-id"] == "0_multi"
    assert head["Metadata"]["flavor-id"] == "0_flav"
    assert head["Metadata"]["expected-size"] == str(size)
    assert head["Metadata"]["app"] == "kaltura-archive"
    datetime.fromisoformat(head["Metadata"]["archived-at"])
    restore_now(s3, "0_multi")  # moto shows the tags of a Glacier object only once it is restored
    assert tags_of(s3, "0_multi") == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": str(size)}
    assert s3.get_object(Bucket=TEST_BUCKET, Key="0_multi")["Body"].read() == data

    assert archived.bucket == TEST_BUCKET
    assert archived.key == "0_multi"
    assert archived.size == size
    assert archived.sha256 == hashlib.sha256(data).hexdigest()
    assert archived.crc32 == crc32_b64(data)
    assert archived.storage_class == "GLACIER"
    assert archived.etag == head["ETag"]


@pytest.mark.parametrize("storage_class", ["DEEP_ARCHIVE", "STANDARD"])
def test_storage_class_from_the_argument(s3, store, storage_class):
    size = 11 * MiB
    archived = store.upload_stream(
        "0_class", Source(size), flavor_id="0_f", part_size=PART, storage_class=storage_class
    )
    head = s3.head_object(Bucket=TEST_BUCKET, Key="0_class")
    assert head.get("StorageClass", "STANDARD") == storage_class
    assert archived.storage_class == storage_class


def test_storage_class_from_settings(s3, settings):
    settings.ARCHIVE_STORAGE_CLASS = "GLACIER_IR"
    ArchiveStore.from_settings().upload_stream("0_ir", Source(100), flavor_id="0_f")
    assert s3.head_object(Bucket=TEST_BUCKET, Key="0_ir")["StorageClass"] == "GLACIER_IR"


def test_small_stream_is_one_put_with_the_hash_in_metadata_and_tags(s3, store):
    data = content(300_000)
    archived = store.upload_stream("0_small", Source(len(data)), flavor_id="0_f", storage_class="STANDARD")

    head = s3.head_object(Bucket=TEST_BUCKET, Key="0_small", ChecksumMode="ENABLED")
    assert not head["ETag"].endswith('-1"')  # a plain PUT, not a one-part multipart upload
    assert head["ChecksumCRC32"] == crc32_b64(data)
    assert head["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest() == archived.sha256
    assert "expected-size" not in head["Metadata"]
    assert tags_of(s3, "0_small") == {"sha256": archived.sha256, "bytes": str(len(data))}


def test_memory_stays_bounded_while_streaming_64_mib(s3, store):
    size = 64 * MiB
    assert store.head("0_big") is None  # builds the client first: its API model is ~12 MB of Python objects
    tracemalloc.start()
    try:
        archived = store.upload_stream(
            "0_big", Source(size), flavor_id="0_f", part_size=8 * MiB, concurrency=4, storage_class="STANDARD"
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert archived.size == size
    # 4 parts in flight + the one being read = 40 MiB at most; never the whole video.
    assert peak < 50_000_000, f"peak {peak / 1e6:.1f} MB"


def test_a_source_failing_mid_stream_leaves_no_object_and_no_parts(s3, store):
    with pytest.raises(StorageError) as failed:
        store.upload_stream("0_broken", Source(20 * MiB, fail_after=7 * MiB), flavor_id="0_f", part_size=PART)
    assert failed.value.code == "SourceError"
    assert "connection reset" in str(failed.value)
    assert_nothing_left(s3, "0_broken")


@pytest.mark.parametrize("delivered", [12 * MiB, 100_000], ids=["multipart", "single-put"])
def test_fewer_bytes_than_expected_leaves_no_object(s3, store, delivered):
    with pytest.raises(StorageError) as failed:
        store.upload_stream("0_short", Source(delivered), flavor_id="0_f", expected_size=20 * MiB, part_size=PART)
    assert failed.value.code == "SizeMismatch"
    assert f"{delivered} bytes, {20 * MiB} were expected" in str(failed.value)
    assert_nothing_left(s3, "0_short")


def test_a_copy_that_s3_reports_differently_is_deleted_with_its_version(s3, store, monkeypatch):
    s3.put_bucket_versioning(Bucket=TEST_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    real_call = store._call

    def lying_head(operation, key=None, **params):
        response = real_call(operation, key, **params)
        if operation == "head_object":
            response["ContentLength"] -= 1
        return response

    monkeypatch.setattr(store, "_call", lying_head)
    with pytest.raises(StorageError) as failed:
        store.upload_stream("0_odd", Source(11 * MiB), flavor_id="0_f", part_size=PART, storage_class="STANDARD")
    assert failed.value.code == "SizeMismatch"
    versions = s3.list_object_versions(Bucket=TEST_BUCKET)
    assert versions.get("Versions", []) == [] and versions.get("DeleteMarkers", []) == []


def test_an_existing_archive_is_never_overwritten(s3, store):
    s3.put_object(Bucket=TEST_BUCKET, Key="0_old", Body=b"the old tool's copy")
    with pytest.raises(StorageError) as refused:
        store.upload_stream("0_old", Source(11 * MiB), flavor_id="0_f", part_size=PART)
    assert refused.value.code == "PreconditionFailed"
    assert s3.get_object(Bucket=TEST_BUCKET, Key="0_old")["Body"].read() == b"the old tool's copy"
    assert s3.list_multipart_uploads(Bucket=TEST_BUCKET).get("Uploads", []) == []

    # There is no way to ask for an overwrite any more (custody: an archived object is never written over).
    with pytest.raises(TypeError):
        store.upload_stream("0_old", Source(11 * MiB), flavor_id="0_f", part_size=PART, overwrite=True)
    single = Source(100)
    with pytest.raises(StorageError) as refused:
        store.upload_stream("0_old", single, flavor_id="0_f", storage_class="STANDARD")
    assert refused.value.code == "PreconditionFailed"
    assert s3.get_object(Bucket=TEST_BUCKET, Key="0_old")["Body"].read() == b"the old tool's copy"
    # A copy of other content goes under its own key, next to the first.
    key = store.key_for_content("0_old", "0_f", "7")
    store.upload_stream("0_old", Source(100), key=key, flavor_id="0_f", flavor_version="7", storage_class="STANDARD")
    assert store.head("0_old", key=key).metadata["flavor-version"] == "7"
    assert s3.get_object(Bucket=TEST_BUCKET, Key="0_old")["Body"].read() == b"the old tool's copy"


def test_expected_size_enlarges_parts_to_fit_10000():
    from archive_app.lib.storage import part_size_for

    assert part_size_for(None) == 8 * MiB
    assert part_size_for(2 * 1024 * MiB) == 8 * MiB
    huge = 5 * 1024 * 1024 * MiB  # S3's 5 TiB limit
    assert part_size_for(huge) * 10_000 >= huge
    assert part_size_for(huge) % MiB == 0


# --- verify, head, list -------------------------------------------------------------------------------------


def test_verify_accepts_the_right_copy_and_names_what_differs(s3, store):
    data = content(11 * MiB)
    archived = store.upload_stream("0_v", Source(len(data)), flavor_id="0_f", part_size=PART, storage_class="STANDARD")

    state = store.verify("0_v", size=len(data), sha256=hashlib.sha256(data).hexdigest())
    assert state.sha256 == archived.sha256

    with pytest.raises(StorageError) as wrong_size:
        store.verify("0_v", size=len(data) + 1, sha256=archived.sha256)
    assert wrong_size.value.code == "SizeMismatch"
    assert f"size is {len(data)} bytes, expected {len(data) + 1}" in str(wrong_size.value)

    with pytest.raises(StorageError) as wrong_hash:
        store.verify("0_v", size=len(data), sha256="0" * 64)
    assert wrong_hash.value.code == "ChecksumMismatch"
    assert f"sha256 is {archived.sha256}, expected {'0' * 64}" in str(wrong_hash.value)

    with pytest.raises(StorageError) as absent:
        store.verify("0_none", size=1, sha256="0" * 64)
    assert absent.value.code == "NoSuchKey"


def test_verify_of_an_unrestored_glacier_copy_on_moto_falls_back_to_the_crc(s3, store):
    archived = store.upload_stream("0_g", Source(11 * MiB), flavor_id="0_f", part_size=PART)
    # moto hides the tags of unrestored Glacier objects (S3 does not): the S3-validated CRC32 stands in.
    assert store.verify("0_g", size=archived.size, sha256=archived.sha256, crc32=archived.crc32).tags is None
    with pytest.raises(StorageError, match="CRC32"):
        store.verify("0_g", size=archived.size, sha256=archived.sha256, crc32="AAAAAA==")
    with pytest.raises(StorageError, match="tags unreadable"):
        store.verify("0_g", size=archived.size, sha256=archived.sha256)


def test_head_of_an_absent_entry_is_none(s3, store):
    assert store.head("0_absent") is None


def test_the_old_tools_archives_are_recognised_without_a_hash(s3, store):
    s3.put_object(Bucket=TEST_BUCKET, Key="0_legacy", Body=b"x" * 1000, StorageClass="GLACIER")

    state = store.head("0_legacy")
    assert state.size == 1000
    assert state.storage_class == "GLACIER"
    assert state.sha256 is None
    assert state.needs_restore and not state.readable
    assert store.list_objects()["0_legacy"].size == 1000
    with pytest.raises(StorageError, match="no sha256 recorded"):
        store.verify("0_legacy", size=1000, sha256="0" * 64)

    restore_now(s3, "0_legacy")
    state = store.head("0_legacy")
    assert state.tags == {} and state.sha256 is None and state.readable


def put_many(moto_server, keys: list[str]) -> None:
    """Plain keep-alive PUTs from two threads: moto answers ~130 a second, boto3 would halve that."""

    def put(batch: list[str]) -> None:
        connection = http.client.HTTPConnection(urllib.parse.urlsplit(moto_server.url).netloc, timeout=10)
        for key in batch:
            body = b"v" * (len(key) % 7)
            connection.request("PUT", f"/{TEST_BUCKET}/{key}", body=body, headers={"x-amz-storage-class": "GLACIER"})
            response = connection.getresponse()
            response.read()
            assert response.status == 200, response.status
        connection.close()

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(put, [keys[0::2], keys[1::2]]))


@pytest.mark.slow  # moto stores ~130 objects a second: 2,001 of them take most of this file's time
def test_list_objects_makes_one_call_per_1000_keys(s3, store, moto_server):
    # 2,000 keys in 2 calls and 2,001 in 3 pins exactly 1,000 per call (2,500 in 3 would allow 834 to 1,249).
    entry_ids = [f"0_{n:08d}" for n in range(2001)]
    put_many(moto_server, entry_ids[:2000])
    assert len(store.list_objects()) == 2000
    assert store.calls["ListObjectsV2"] == 2

    put_many(moto_server, entry_ids[2000:])
    store.calls.clear()
    listed = store.list_objects()
    assert store.calls["ListObjectsV2"] == 3
    assert sorted(listed) == entry_ids
    assert listed["0_00000012"].size == len("0_00000012") % 7
    assert listed["0_00000012"].storage_class == "GLACIER"

    store.calls.clear()
    some = store.list_objects(["0_00001500", "0_00001998", "0_00001999x"])
    assert sorted(some) == ["0_00001500", "0_00001998"]
    assert store.calls["ListObjectsV2"] == 1  # starts at the first wanted key and stops after the last
    assert sorted(store.list_objects(["0_00000003", "0_00002000", "1_notthere"])) == ["0_00000003", "0_00002000"]
    store.calls.clear()
    assert store.list_objects([]) == {}
    assert store.calls["ListObjectsV2"] == 0


def test_key_prefix_is_honoured(s3, settings):
    settings.ARCHIVE_KEY_PREFIX = "kaltura/"
    store = ArchiveStore.from_settings()
    assert store.key_for("0_p") == "kaltura/0_p"
    store.upload_stream("0_p", Source(1000), flavor_id="0_f", storage_class="STANDARD")
    s3.put_object(Bucket=TEST_BUCKET, Key="0_q", Body=b"not ours")
    s3.put_object(Bucket=TEST_BUCKET, Key="kaltura/reports/r.csv", Body=b"not an entry")

    assert s3.head_object(Bucket=TEST_BUCKET, Key="kaltura/0_p")["ContentLength"] == 1000
    assert store.head("0_p").key == "kaltura/0_p"
    assert store.head("0_q") is None
    assert list(store.list_objects()) == ["0_p"]


# --- restore ----------------------------------------------------------------------------------------------


def test_restore_of_a_glacier_copy_goes_ongoing_then_readable(s3, store, moto_server):
    data = content(6 * MiB)
    archived = store.upload_stream("0_r", Source(len(data)), flavor_id="0_f", part_size=PART)
    with pytest.raises(StorageError) as unrestored:
        store.open_stream("0_r")
    assert unrestored.value.code == "InvalidObjectState"
    assert "needs a restore first" in str(unrestored.value)

    # moto counts every read of the object (HEAD, tagging) towards the transition.
    hold_restores_ongoing(moto_server, reads=6)
    assert store.request_restore("0_r", tier="Bulk", days=2) == "requested"
    state = store.head("0_r")
    assert state.restore_ongoing and state.needs_restore and not state.readable
    assert state.restored_until is None
    assert store.request_restore("0_r") == "already-in-progress"

    for _ in range(6):
        state = store.head("0_r")
        if state.readable:
            break
    assert not state.restore_ongoing
    assert isinstance(state.restored_until, datetime)
    assert state.sha256 == archived.sha256  # tags readable once restored, even on moto
    assert store.request_restore("0_r") == "not-needed"

    stream, size = store.open_stream("0_r")
    reader = HashingReader(stream)
    while reader.read(MiB):
        pass
    reader.close()
    assert size == reader.bytes_read == len(data)
    assert reader.sha256 == archived.sha256


def test_restore_is_not_needed_outside_glacier(s3, store):
    store.upload_stream("0_std", Source(100), flavor_id="0_f", storage_class="STANDARD")
    assert store.request_restore("0_std") == "not-needed"
    assert store.head("0_std").readable


def test_expedited_restore_of_deep_archive_is_refused(s3, store):
    store.upload_stream("0_deep", Source(100), flavor_id="0_f", storage_class="DEEP_ARCHIVE")
    with pytest.raises(StorageError, match="Deep Archive"):
        store.request_restore("0_deep", tier="Expedited")
    assert store.calls["RestoreObject"] == 0
    assert store.request_restore("0_deep", tier="Bulk") == "requested"


def test_restore_already_in_progress_from_s3_is_not_an_error(s3, store):
    # moto never answers 409 RestoreAlreadyInProgress (S3 does, e.g. when two workers ask at once).
    with Stubber(store.client) as stub:
        stub.add_response("head_object", {"ContentLength": 5, "StorageClass": "GLACIER", "ETag": '"e"', "Metadata": {}})
        stub.add_response("get_object_tagging", {"TagSet": []})
        stub.add_client_error("restore_object", "RestoreAlreadyInProgress", http_status_code=409)
        assert store.request_restore("0_race") == "already-in-progress"


def test_restore_of_an_absent_entry_is_an_error(s3, store):
    with pytest.raises(StorageError) as absent:
        store.request_restore("0_absent")
    assert absent.value.code == "NoSuchKey"


# --- helpers and failures ---------------------------------------------------------------------------------


def test_hashing_reader_passes_bytes_through_and_hashes_them():
    data = content(3 * MiB + 17)
    reader = HashingReader(Source(len(data)))
    read = b"".join(iter(lambda: reader.read(100_000), b""))
    assert read == data
    assert reader.bytes_read == len(data)
    assert reader.sha256 == hashlib.sha256(data).hexdigest()
    assert reader.crc32 == crc32_b64(data)


def test_a_copy_of_the_wrong_size_never_becomes_an_object(s3, store):
    with pytest.raises(StorageError) as refused:
        store.upload_stream("0_bad", Source(100), flavor_id="0_f", storage_class="STANDARD", size_ok=lambda n: n == 99)
    assert refused.value.code == "SizeMismatch"
    assert store.head("0_bad") is None
    assert not hasattr(store, "delete")  # nothing in the app can delete an archived object


def test_versioning_is_reported(s3, store):
    assert store.versioning_enabled() is False
    s3.put_bucket_versioning(Bucket=TEST_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    assert store.versioning_enabled() is True


def test_s3_down_is_a_storage_error(s3, settings):
    settings.AWS_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings.AWS_MAX_ATTEMPTS = 2
    store = ArchiveStore.from_settings()
    with pytest.raises(StorageError) as down:
        store.head("0_any")
    assert down.value.code == "EndpointConnectionError"
    assert TEST_BUCKET in str(down.value) and "0_any" in str(down.value)
    assert "testing" not in str(down.value)  # no credentials in messages
    with pytest.raises(StorageError):
        store.upload_stream("0_any", Source(11 * MiB), flavor_id="0_f", part_size=PART)

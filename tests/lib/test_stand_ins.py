"""The stand-ins behave like the real services where the project depends on it."""

from __future__ import annotations

import json
import urllib.request

import pytest
from botocore.exceptions import ClientError
from rq import SimpleWorker


def test_moto_keeps_glacier_objects_unreadable_until_restored(s3, moto_server):
    s3.put_object(Bucket="kaltura-archive-test", Key="0_abcdefgh", Body=b"video", StorageClass="GLACIER")
    with pytest.raises(ClientError) as refused:
        s3.get_object(Bucket="kaltura-archive-test", Key="0_abcdefgh")
    assert refused.value.response["Error"]["Code"] == "InvalidObjectState"

    # Hold the restore "ongoing" for two reads, as Glacier would for hours.
    body = {"model_name": "s3::keyrestore", "transition": {"progression": "manual", "times": 2}}
    request = urllib.request.Request(
        f"{moto_server.url}/moto-api/state-manager/set-transition",
        data=json.dumps(body).encode(),
        method="POST",
    )
    urllib.request.urlopen(request, timeout=10)
    s3.restore_object(
        Bucket="kaltura-archive-test",
        Key="0_abcdefgh",
        RestoreRequest={"Days": 1, "GlacierJobParameters": {"Tier": "Standard"}},
    )
    restore_headers = [
        s3.head_object(Bucket="kaltura-archive-test", Key="0_abcdefgh").get("Restore", "") for _ in range(3)
    ]
    assert 'ongoing-request="true"' in restore_headers[0]
    assert 'ongoing-request="false"' in restore_headers[-1]
    assert s3.get_object(Bucket="kaltura-archive-test", Key="0_abcdefgh")["Body"].read() == b"video"


def test_moto_reset_leaves_an_empty_bucket_per_test(s3):
    assert s3.list_objects_v2(Bucket="kaltura-archive-test")["KeyCount"] == 0


def test_rq_runs_a_job_through_real_redis(rq_queue):
    job = rq_queue.enqueue("os.path.join", "archive", "0_abcdefgh")
    assert rq_queue.count == 1
    SimpleWorker([rq_queue], connection=rq_queue.connection).work(burst=True)
    job.refresh()
    assert job.is_finished
    assert job.return_value() == "archive/0_abcdefgh"

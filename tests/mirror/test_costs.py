"""The savings arithmetic against figures worked out by hand."""

from __future__ import annotations

import os

import pytest

from archive_app.mirror import costs

TB = 1024**4
GB = 1024**3
KB = 1024


@pytest.fixture(autouse=True)
def list_prices(settings):
    """AWS list prices (us-east-1) and the documented Kaltura default, whatever the environment says."""
    settings.PRICE_S3_GB_MONTH = {
        "STANDARD": 0.023,
        "STANDARD_IA": 0.0125,
        "GLACIER_IR": 0.004,
        "GLACIER": 0.0036,
        "DEEP_ARCHIVE": 0.00099,
    }
    settings.PRICE_KALTURA_STORAGE_GB_MONTH = 0.10


def test_one_terabyte_in_glacier_by_hand():
    # 1 TB freed in Kaltura and kept as one object in Glacier Flexible Retrieval:
    #   Kaltura:   1024 GB * 0.10               = 102.40 per month
    #   Glacier:   1024 GB * 0.0036             =   3.6864
    #   overhead:  8 KB * 0.023 + 32 KB * 0.0036 per GB = (8 * 0.023 + 32 * 0.0036) / 1048576
    saving = costs.savings(freed_bytes=TB, archived_bytes=TB, objects=1, storage_class="GLACIER")
    overhead = (8 * 0.023 + 32 * 0.0036) / (1024 * 1024)
    assert saving.kaltura_monthly == pytest.approx(102.40)
    assert saving.s3_monthly == pytest.approx(3.6864 + overhead)
    assert saving.net_monthly == pytest.approx(98.7136 - overhead)
    assert saving.net_yearly == pytest.approx(12 * (98.7136 - overhead))
    # 90 days minimum: 90 / (365/12) months of the monthly S3 cost.
    assert saving.minimum_charge == pytest.approx((3.6864 + overhead) * 90 * 12 / 365)
    assert saving.first_year_net == pytest.approx(saving.net_yearly)


@pytest.mark.parametrize(
    ("storage_class", "price", "overhead_per_object", "min_days"),
    [
        ("STANDARD", 0.023, 0.0, 0),
        ("STANDARD_IA", 0.0125, 0.0, 30),
        ("GLACIER_IR", 0.004, 0.0, 90),
        ("GLACIER", 0.0036, 8 * KB / GB * 0.023 + 32 * KB / GB * 0.0036, 90),
        ("DEEP_ARCHIVE", 0.00099, 8 * KB / GB * 0.023 + 32 * KB / GB * 0.00099, 180),
    ],
)
def test_every_storage_class(storage_class, price, overhead_per_object, min_days):
    # 1,000 videos: 2.5 TB of flavors freed, 1.5 TB of originals kept.
    freed, archived, objects = int(2.5 * TB), int(1.5 * TB), 1000
    saving = costs.savings(freed_bytes=freed, archived_bytes=archived, objects=objects, storage_class=storage_class)
    kaltura = 2560 * 0.10
    s3 = 1536 * price + objects * overhead_per_object
    assert saving.kaltura_monthly == pytest.approx(kaltura)
    assert saving.s3_monthly == pytest.approx(s3)
    assert saving.net_monthly == pytest.approx(kaltura - s3)
    assert saving.min_storage_days == min_days
    assert saving.minimum_charge == pytest.approx(s3 * min_days / (365 / 12))
    assert saving.first_year_net == pytest.approx(12 * (kaltura - s3))


def test_deep_archive_overhead_dominates_tiny_objects():
    # 100,000 objects of 10 KB: 40 KB of overhead each costs more than the data.
    saving = costs.savings(
        freed_bytes=0, archived_bytes=100_000 * 10 * KB, objects=100_000, storage_class="DEEP_ARCHIVE"
    )
    data = 100_000 * 10 * KB / GB * 0.00099
    overhead = 100_000 * (8 * KB / GB * 0.023 + 32 * KB / GB * 0.00099)
    assert saving.s3_monthly == pytest.approx(data + overhead)
    assert overhead > 10 * data
    assert saving.net_monthly < 0


def test_a_minimum_longer_than_a_year_is_charged_in_the_first_year(monkeypatch):
    monkeypatch.setitem(costs.MIN_STORAGE_DAYS, "DEEP_ARCHIVE", 730)
    saving = costs.savings(freed_bytes=TB, archived_bytes=TB, objects=0, storage_class="DEEP_ARCHIVE")
    assert saving.first_year_net == pytest.approx(12 * 102.4 - 24 * 1024 * 0.00099)


def test_configured_class_and_prices_are_used(settings):
    settings.ARCHIVE_STORAGE_CLASS = "GLACIER_IR"
    settings.PRICE_KALTURA_STORAGE_GB_MONTH = 0.25
    settings.PRICE_S3_GB_MONTH = {**settings.PRICE_S3_GB_MONTH, "GLACIER_IR": 0.01}
    saving = costs.savings(freed_bytes=10 * GB, archived_bytes=4 * GB, objects=3)
    assert saving.storage_class == "GLACIER_IR"
    assert saving.net_monthly == pytest.approx(10 * 0.25 - 4 * 0.01)


def test_placeholders_are_subtracted_from_what_is_freed(settings, tmp_path):
    placeholder = tmp_path / "placeholder.mp4"
    placeholder.write_bytes(b"x" * 25_000)
    settings.PLACEHOLDER_VIDEO = placeholder
    assert costs.placeholder_entry_bytes() == 25_000 * costs.PLACEHOLDER_FLAVORS
    assert costs.kaltura_bytes_freed(flavor_bytes=10**9, entries=4) == 10**9 - 4 * 150_000
    assert costs.kaltura_bytes_freed(flavor_bytes=1000, entries=4) == 0  # never negative
    settings.PLACEHOLDER_VIDEO = tmp_path / "missing.mp4"
    assert costs.placeholder_entry_bytes() == costs.PLACEHOLDER_FALLBACK_BYTES * costs.PLACEHOLDER_FLAVORS


def test_default_prices_are_aws_list_prices(monkeypatch):
    import importlib

    from kaltura_archive import settings as project_settings

    for name in list(os.environ):
        if name.startswith("PRICE_"):
            monkeypatch.delenv(name)
    defaults = importlib.reload(project_settings)
    assert defaults.PRICE_S3_GB_MONTH == {
        "STANDARD": 0.023,
        "STANDARD_IA": 0.0125,
        "GLACIER_IR": 0.004,
        "GLACIER": 0.0036,
        "DEEP_ARCHIVE": 0.00099,
    }
    assert defaults.PRICE_KALTURA_STORAGE_GB_MONTH == 0.10
    assert set(defaults.PRICE_S3_GB_MONTH) == set(defaults.STORAGE_CLASSES) == set(costs.MIN_STORAGE_DAYS)

    monkeypatch.setenv("PRICE_S3_GLACIER_GB_MONTH", "0.005")
    assert importlib.reload(project_settings).PRICE_S3_GB_MONTH["GLACIER"] == 0.005
    monkeypatch.delenv("PRICE_S3_GLACIER_GB_MONTH")
    importlib.reload(project_settings)  # leave the module as the environment has it

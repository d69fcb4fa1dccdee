"""Settings that a command needs before it can talk to Kaltura or S3."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def require_settings(*names: str) -> None:
    """Refuse with one message naming every missing variable (never their values)."""
    missing = [name for name in names if not getattr(settings, name)]
    if missing:
        raise ImproperlyConfigured(
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set; see README.md"
        )


def require_kaltura() -> None:
    require_settings("KALTURA_SERVICE_URL", "KALTURA_PARTNERID", "KALTURA_SECRET")


def require_s3() -> None:
    require_settings("AWS_BUCKET")

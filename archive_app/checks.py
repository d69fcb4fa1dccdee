"""System checks for settings that are only needed by some commands.

Malformed values already stop settings.py with a message naming the variable;
these checks (run by `check --deploy`) warn about what is missing for talking to Kaltura and S3.
"""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Info, Warning, register
from django.core.exceptions import ImproperlyConfigured


@register("archive", deploy=True)
def check_service_settings(app_configs, **kwargs):
    warnings = []
    for name in ("KALTURA_PARTNERID", "KALTURA_SECRET", "AWS_BUCKET"):
        if not getattr(settings, name):
            warnings.append(
                Warning(
                    f"{name} is not set; syncing and archiving will refuse to run.",
                    hint="See the configuration table in README.md.",
                    id=f"archive.W00{len(warnings) + 1}",
                )
            )
    if settings.AWS_BUCKET:
        from archive_app.lib.storage import ArchiveStore, StorageError

        try:
            safety = ArchiveStore.from_settings().bucket_safety()
        except (StorageError, ImproperlyConfigured) as exc:
            # check --deploy is not a connectivity test: said, not warned.
            warnings.append(Info(f"Could not read the archive bucket's versioning: {exc}", id="archive.I006"))
        else:
            if safety.versioning != "Enabled":
                warnings.append(
                    Warning(
                        f"The archive bucket {settings.AWS_BUCKET} has no versioning: an object written over from "
                        "outside the app would be lost.",
                        hint="aws s3api put-bucket-versioning --versioning-configuration Status=Enabled",
                        id="archive.W005",
                    )
                )
            # Object Lock and delete rights: reported (many archives run without them), see the Health page.
            for risk in safety.risks():
                if not risk.startswith("versioning"):
                    warnings.append(Info(f"Archive bucket {settings.AWS_BUCKET}: {risk}.", id="archive.I007"))
            locking = settings.ARCHIVE_OBJECT_LOCK_MODE or settings.ARCHIVE_LEGAL_HOLD_NEW_COPIES
            if locking and not safety.object_lock:
                warnings.append(
                    Warning(
                        f"ARCHIVE_OBJECT_LOCK_MODE / ARCHIVE_LEGAL_HOLD_NEW_COPIES are set but the bucket "
                        f"{settings.AWS_BUCKET} has no Object Lock: every archive upload would be refused.",
                        id="archive.W006",
                    )
                )
    if not settings.PLACEHOLDER_VIDEO.is_file():
        warnings.append(
            Warning(
                f"PLACEHOLDER_VIDEO {settings.PLACEHOLDER_VIDEO} is not a file; replacing will refuse to run.",
                id="archive.W004",
            )
        )
    for name in ("PLACEHOLDER_AUDIO", "PLACEHOLDER_CAPTIONS"):
        if not getattr(settings, name).is_file():
            warnings.append(Warning(f"{name} {getattr(settings, name)} is not a file.", id="archive.W006"))
    return warnings


@register("archive", deploy=True)
def check_notice_settings(app_configs, **kwargs):
    """Owner notices carry links to ARCHIVE_SITE_URL and go through Django's e-mail backend."""
    warnings = []
    if any(host in settings.ARCHIVE_SITE_URL for host in ("//127.0.0.1", "//localhost")):
        warnings.append(
            Warning(
                f"ARCHIVE_SITE_URL is {settings.ARCHIVE_SITE_URL}; owners' keep links would not reach the dashboard.",
                hint="Set it to the dashboard's public address, e.g. https://archive.example.edu.",
                id="archive.W101",
            )
        )
    if settings.EMAIL_BACKEND.rsplit(".", 2)[-2] in ("console", "locmem", "dummy"):
        warnings.append(
            Warning(
                f"EMAIL_BACKEND is {settings.EMAIL_BACKEND}; owner notices would not reach anyone.",
                hint="Leave EMAIL_BACKEND unset for SMTP and set EMAIL_HOST (see README.md).",
                id="archive.W102",
            )
        )
    return warnings


@register("archive", deploy=True)
def check_sso_settings(app_configs, **kwargs):
    """University sign-in: what would let a forged or intercepted assertion in, or stop sign-in working."""
    from pathlib import Path

    from archive_app.sso import saml

    warnings = []
    if saml.enabled():
        if not settings.SAML_WANT_ASSERTIONS_SIGNED:
            warnings.append(
                Warning(
                    "SAML_WANT_ASSERTIONS_SIGNED is off: an unsigned assertion would sign anyone in.",
                    hint="Remove SAML_WANT_ASSERTIONS_SIGNED and have the IdP sign its assertions.",
                    id="archive.W201",
                )
            )
        missing = [
            name for name in ("SAML_SP_CERT_FILE", "SAML_SP_KEY_FILE") if not Path(getattr(settings, name)).is_file()
        ]
        if missing:
            warnings.append(
                Warning(
                    f"{' and '.join(missing)} not set or not a file: the SP metadata has no certificate, "
                    "so sign-in requests are unsigned and the IdP cannot encrypt assertions.",
                    hint="Make a key and a self-signed certificate (README, University sign-in).",
                    id="archive.W202",
                )
            )
        if not saml.acs_url().startswith("https://"):
            warnings.append(
                Warning(
                    f"The SAML assertion consumer URL {saml.acs_url()} is not HTTPS: assertions would cross the "
                    "network in the clear.",
                    hint="Set ARCHIVE_SITE_URL to the dashboard's https:// address.",
                    id="archive.W203",
                )
            )
    if settings.OIDC_ISSUER and not settings.OIDC_ISSUER.startswith("https://"):
        warnings.append(
            Warning(
                f"OIDC_ISSUER {settings.OIDC_ISSUER} is not HTTPS: its keys and tokens could be intercepted.",
                id="archive.W204",
            )
        )
    return warnings

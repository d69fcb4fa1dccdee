import sys

from django.apps import AppConfig


class ArchiveAppConfig(AppConfig):
    name = "archive_app"
    verbose_name = "Kaltura Archive"

    def ready(self) -> None:
        from archive_app import checks  # noqa: F401  (registers the system checks)
        from archive_app.lib.redaction import install_log_redaction
        from archive_app.sso import accounts  # noqa: F401  (audits sign-in and sign-out)
        from archive_app.web.security import install_forbidden_log_filter

        install_log_redaction()
        install_forbidden_log_filter()
        if "rqworker" in sys.argv[1:2]:
            warm_worker()


def warm_worker() -> None:
    """In an RQ worker, before it forks a work-horse per job: import the job modules (Kaltura's client is 0.3 s
    of imports), build one Kaltura client (its first loads the plugins: 0.15 s) and load the S3 client's data,
    so that no job pays for them again (CPU per entry)."""
    from KalturaClient import KalturaClient, KalturaConfiguration

    from archive_app import jobs  # noqa: F401
    from archive_app.lib.storage import warm_client_data

    KalturaClient(KalturaConfiguration(0))
    warm_client_data()

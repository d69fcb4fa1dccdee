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

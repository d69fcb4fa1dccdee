"""Settings for Kaltura Archive, all read from the environment (see README)."""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from kaltura_archive.env import envbool, envchoice, envfloat, envint, envlist, envsecret, envstr

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = envbool("DJANGO_DEBUG", False)
SECRET_KEY = envsecret("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is not set (or set DJANGO_DEBUG=1 for a development key)")
    SECRET_KEY = "insecure-development-key-only-used-when-DJANGO_DEBUG-is-on"
ALLOWED_HOSTS = envlist("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = envlist("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_filters",
    "django_htmx",
    "django_rq",
    "bootstrap",
    "archive_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "archive_app.web.security.ContentSecurityPolicyMiddleware",
    "archive_app.web.security.refuse_nul_bytes",
]

ROOT_URLCONF = "kaltura_archive.urls"
WSGI_APPLICATION = "kaltura_archive.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

try:
    DATABASES = {
        "default": dj_database_url.parse(
            envstr("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
            conn_max_age=envint("DATABASE_CONN_MAX_AGE", 0, minimum=0),
        )
    }
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Workers and the web process write at the same time; wait rather than fail.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = envstr("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

REDIS_URL = envstr("REDIS_URL", "redis://127.0.0.1:6379/0")
RQ_QUEUES = {
    "default": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 3600},
}

# --- Kaltura (the first names are the old Princeton tool's) -----------------------
KALTURA_SERVICE_URL = envstr("KALTURA_SERVICE_URL", "https://www.kaltura.com").rstrip("/")
KALTURA_PARTNERID = envint("KALTURA_PARTNERID")
KALTURA_SECRET = envsecret("KALTURA_SECRET")
KALTURA_USERID = envstr("KALTURA_USERID")
KALTURA_SESSION_EXPIRY = envint("KALTURA_SESSION_EXPIRY", 86400, minimum=60)
KALTURA_TIMEOUT = envint("KALTURA_TIMEOUT", 120, minimum=1)
# Hosts (or *.domain) flavor downloads may come from besides the service host and *.kaltura.com.
KALTURA_CDN_HOSTS = envlist("KALTURA_CDN_HOSTS")
# Requests per second to Kaltura across every process sharing REDIS_URL (0: no cap). Kaltura answers partners
# that call too fast with ACTION_BLOCKED; those calls are retried with backoff either way.
KALTURA_MAX_REQUESTS_PER_SECOND = envfloat("KALTURA_MAX_REQUESTS_PER_SECOND", 0.0)
# How often the scheduled job mirrors changed entries and recent plays.
SYNC_INTERVAL_MINUTES = envint("SYNC_INTERVAL_MINUTES", 15, minimum=1)

# --- S3 --------------------------------------------------------------------------
AWS_BUCKET = envstr("AWS_BUCKET")
AWS_ENDPOINT_URL = envstr("AWS_ENDPOINT_URL")
AWS_ACCESS_KEY_ID = envstr("AWS_ACCESS_KEY_ID")
AWS_SECRET_ACCESS_KEY = envsecret("AWS_SECRET_ACCESS_KEY")
AWS_DEFAULT_REGION = envstr("AWS_DEFAULT_REGION", "us-east-1")
STORAGE_CLASSES = ["GLACIER", "DEEP_ARCHIVE", "GLACIER_IR", "STANDARD_IA", "STANDARD"]
ARCHIVE_STORAGE_CLASS = envchoice("ARCHIVE_STORAGE_CLASS", STORAGE_CLASSES, "GLACIER")
ARCHIVE_KEY_PREFIX = envstr("ARCHIVE_KEY_PREFIX")
# botocore's own retries of throttled or failed S3 calls.
AWS_MAX_ATTEMPTS = envint("AWS_MAX_ATTEMPTS", 5, minimum=1)

# --- Archiving policy ---------------------------------------------------------------
# Entries created or played more recently than this are never archived.
ARCHIVE_MIN_AGE_DAYS = envint("ARCHIVE_MIN_AGE_DAYS", 365, minimum=0)
ARCHIVE_MIN_UNPLAYED_DAYS = envint("ARCHIVE_MIN_UNPLAYED_DAYS", 365, minimum=0)
try:
    ARCHIVE_EXEMPT_CATEGORY_IDS = [int(c) for c in envlist("ARCHIVE_EXEMPT_CATEGORY_IDS")]
except ValueError:
    raise ImproperlyConfigured("ARCHIVE_EXEMPT_CATEGORY_IDS must be category ids separated by commas") from None
# Kaltura's own bulk actions stop at 1,000 entries; so do batches unless told otherwise.
ARCHIVE_MAX_BATCH_SIZE = envint("ARCHIVE_MAX_BATCH_SIZE", 1000, minimum=1)
# A policy selecting more than this share of the library is saved only after an explicit confirmation.
ARCHIVE_POLICY_MAX_SHARE = envfloat("ARCHIVE_POLICY_MAX_SHARE", 0.25)
if not 0 < ARCHIVE_POLICY_MAX_SHARE <= 1:
    raise ImproperlyConfigured(f"ARCHIVE_POLICY_MAX_SHARE must be in (0, 1], not {ARCHIVE_POLICY_MAX_SHARE}")
ARCHIVE_REQUIRE_SECOND_APPROVAL = envbool("ARCHIVE_REQUIRE_SECOND_APPROVAL", False)
# How long a job waits for Kaltura to finish a replacement before checking back later.
ARCHIVE_REPLACEMENT_WAIT_SECONDS = envint("ARCHIVE_REPLACEMENT_WAIT_SECONDS", 120, minimum=1)

# Past this a replacement (ours, or a restore's) that Kaltura has not finished fails with a reason.
ARCHIVE_REPLACEMENT_DEADLINE_HOURS = envint("ARCHIVE_REPLACEMENT_DEADLINE_HOURS", 24, minimum=1)
# Replacing an entry that frees less than this is not worth a placeholder: skipped with a reason.
ARCHIVE_MIN_BYTES_FREED = envint("ARCHIVE_MIN_BYTES_FREED", 10 * 1024 * 1024, minimum=0)

PLACEHOLDER_VIDEO = Path(envstr("PLACEHOLDER_VIDEO") or BASE_DIR / "assets" / "placeholder.mp4")
# Audio entries get a spoken notice rather than a video; the video's captions say what it says.
PLACEHOLDER_AUDIO = Path(envstr("PLACEHOLDER_AUDIO") or BASE_DIR / "assets" / "placeholder.m4a")
PLACEHOLDER_CAPTIONS = Path(envstr("PLACEHOLDER_CAPTIONS") or BASE_DIR / "assets" / "placeholder.en.vtt")
# Byte counts of placeholders put in before (the old tool's, earlier PLACEHOLDER_VIDEO files): a restore
# recognises an entry showing one of them as a placeholder it may write over. 24853 is the silent
# assets/placeholder.mp4 this project shipped until December 2026, so its placeholders stay restorable.
try:
    PLACEHOLDER_PREVIOUS_SIZES = [int(size) for size in envlist("PLACEHOLDER_PREVIOUS_SIZES", "24853")]
except ValueError:
    raise ImproperlyConfigured("PLACEHOLDER_PREVIOUS_SIZES must be byte counts separated by commas") from None

# --- Restoring ----------------------------------------------------------------------
# Restore played placeholders (and ones replaced although recent) by themselves.
ARCHIVE_AUTO_RESTORE = envbool("ARCHIVE_AUTO_RESTORE", True)
# The Glacier retrieval tier automatic restores use (Expedited falls back to Standard on Deep Archive).
ARCHIVE_RESTORE_TIER = envchoice("ARCHIVE_RESTORE_TIER", ["BULK", "STANDARD", "EXPEDITED"], "STANDARD").capitalize()
# How long S3 keeps the temporary readable copy of a Glacier object.
ARCHIVE_RESTORE_DAYS = envint("ARCHIVE_RESTORE_DAYS", 7, minimum=1)
# How often the scheduled job checks restores waiting on Glacier (and looks for played placeholders).
ARCHIVE_RESTORE_POLL_MINUTES = envint("ARCHIVE_RESTORE_POLL_MINUTES", 10, minimum=1)

# --- Object Lock on each new copy (the bucket must be created with Object Lock) ----------
# GOVERNANCE or COMPLIANCE retention for ARCHIVE_OBJECT_LOCK_DAYS; COMPLIANCE cannot be shortened by anyone.
ARCHIVE_OBJECT_LOCK_MODE = envchoice("ARCHIVE_OBJECT_LOCK_MODE", ["", "GOVERNANCE", "COMPLIANCE"], "")
ARCHIVE_OBJECT_LOCK_DAYS = envint("ARCHIVE_OBJECT_LOCK_DAYS", 3650, minimum=1)
# A legal hold (no end date) on each new copy, released only by someone allowed s3:PutObjectLegalHold.
ARCHIVE_LEGAL_HOLD_NEW_COPIES = envbool("ARCHIVE_LEGAL_HOLD_NEW_COPIES", False)

# --- Fixity (archive_app/archive/fixity.py) ---------------------------------------------------
# How often the scheduled audit checks every copy's S3 version (one HEAD per copy, no restore).
FIXITY_AUDIT_INTERVAL_HOURS = envint("FIXITY_AUDIT_INTERVAL_HOURS", 24 * 7, minimum=1)
# HEAD requests in flight at once during an audit.
FIXITY_CONCURRENCY = envint("FIXITY_CONCURRENCY", 8, minimum=1)
# Bytes the sample re-hash may restore and read in one calendar month (restores cost money: see the command).
FIXITY_REHASH_BYTES_PER_MONTH = envint("FIXITY_REHASH_BYTES_PER_MONTH", 100 * 1024**3, minimum=0)
# Every copy is re-hashed in full once per this many years: Glacier classes, and classes read without a restore.
FIXITY_REHASH_YEARS_ARCHIVED = envint("FIXITY_REHASH_YEARS_ARCHIVED", 5, minimum=1)
FIXITY_REHASH_YEARS_INSTANT = envint("FIXITY_REHASH_YEARS_INSTANT", 1, minimum=1)
# The Glacier tier of the sample's restores: Bulk costs least and nobody is waiting.
FIXITY_REHASH_TIER = envchoice("FIXITY_REHASH_TIER", ["BULK", "STANDARD", "EXPEDITED"], "BULK").capitalize()


LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO").upper()},
    # Request bodies carry the Kaltura session; never let debug logging print them.
    "loggers": {
        # Through the root handler only: Django's own console handler (with DEBUG) printed every line twice.
        "django": {"handlers": [], "level": "INFO"},
        "urllib3": {"level": "WARNING"},
        "botocore": {"level": "WARNING"},
        "KalturaClient": {"level": "WARNING"},
    },
}

# --- Prices for the savings figures (USD per GB-month; see archive_app/mirror/costs.py) ----
# Defaults are AWS list prices for us-east-1; set them to what you actually pay.

PRICE_S3_GB_MONTH = {
    "STANDARD": envfloat("PRICE_S3_STANDARD_GB_MONTH", 0.023),
    "STANDARD_IA": envfloat("PRICE_S3_STANDARD_IA_GB_MONTH", 0.0125),
    "GLACIER_IR": envfloat("PRICE_S3_GLACIER_IR_GB_MONTH", 0.004),
    "GLACIER": envfloat("PRICE_S3_GLACIER_GB_MONTH", 0.0036),
    "DEEP_ARCHIVE": envfloat("PRICE_S3_DEEP_ARCHIVE_GB_MONTH", 0.00099),
}
# Kaltura does not publish one storage price: 0.10 is a placeholder, set to your contract.
PRICE_KALTURA_STORAGE_GB_MONTH = envfloat("PRICE_KALTURA_STORAGE_GB_MONTH", 0.10)
# Reading archived bytes back (USD per GB retrieved): by class, and by Glacier tier for the Glacier classes.
PRICE_RETRIEVAL_GB = {
    "STANDARD": 0.0,
    "STANDARD_IA": envfloat("PRICE_RETRIEVAL_STANDARD_IA_GB", 0.01),
    "GLACIER_IR": envfloat("PRICE_RETRIEVAL_GLACIER_IR_GB", 0.03),
    "GLACIER:Expedited": envfloat("PRICE_RETRIEVAL_GLACIER_EXPEDITED_GB", 0.03),
    "GLACIER:Standard": envfloat("PRICE_RETRIEVAL_GLACIER_STANDARD_GB", 0.01),
    "GLACIER:Bulk": envfloat("PRICE_RETRIEVAL_GLACIER_BULK_GB", 0.0),
    "DEEP_ARCHIVE:Standard": envfloat("PRICE_RETRIEVAL_DEEP_ARCHIVE_STANDARD_GB", 0.02),
    "DEEP_ARCHIVE:Bulk": envfloat("PRICE_RETRIEVAL_DEEP_ARCHIVE_BULK_GB", 0.0025),
}

# --- E-mail: owner notices before a policy's batch runs ------------------------------
# The console backend in development (the demo); SMTP in production.
EMAIL_BACKEND = envstr("EMAIL_BACKEND") or (
    "django.core.mail.backends.console.EmailBackend" if DEBUG else "django.core.mail.backends.smtp.EmailBackend"
)
EMAIL_HOST = envstr("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = envstr("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = envsecret("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = envbool("EMAIL_USE_SSL", False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("set EMAIL_USE_TLS or EMAIL_USE_SSL, not both")
EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", 30, minimum=1)
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "kaltura-archive@localhost")
# The dashboard's address as owners reach it: the keep links in notices start with it.
ARCHIVE_SITE_URL = envstr("ARCHIVE_SITE_URL", "http://127.0.0.1:8000").rstrip("/")
# A keep link expires when the notice period ends, and at the latest this many days after it was sent.
ARCHIVE_KEEP_LINK_MAX_DAYS = envint("ARCHIVE_KEEP_LINK_MAX_DAYS", 30, minimum=1)
# How often the scheduler makes due policies' batches and queues batches whose notice period ended.
POLICY_INTERVAL_MINUTES = envint("POLICY_INTERVAL_MINUTES", 60, minimum=1)

# --- Production hardening (see "Production settings" in the README) ----------------
# Secure by default whenever DEBUG is off; each can be turned off for a plain-HTTP trial.
SECURE_SSL_REDIRECT = envbool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
# Load balancers probe /healthz over plain HTTP inside the network; a redirect would read as "down".
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = envbool("DJANGO_SECURE_COOKIES", not DEBUG)
SECURE_HSTS_SECONDS = envint("DJANGO_SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
# The preload directive only matters once the domain is submitted to the browsers' preload list.
SECURE_HSTS_PRELOAD = envbool("DJANGO_SECURE_HSTS_PRELOAD", True)
# Behind an HTTPS proxy: the header it sets to "https", e.g. X-Forwarded-Proto (else redirects loop).
_proxy_ssl_header = envstr("DJANGO_SECURE_PROXY_SSL_HEADER")
if _proxy_ssl_header:
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https")
# Behind a proxy: the header carrying the client's address (its last entry), e.g. X-Forwarded-For.
CLIENT_IP_HEADER = envstr("DJANGO_CLIENT_IP_HEADER")
# More image sources for entry thumbnails, beyond Kaltura's service host (and *.kaltura.com).
CSP_IMG_SOURCES = envlist("CSP_IMG_SOURCES")

# Days the audit log keeps clients' IP addresses; a scheduled job blanks older ones.
ARCHIVE_AUDIT_IP_RETENTION_DAYS = envint("ARCHIVE_AUDIT_IP_RETENTION_DAYS", 90, minimum=1)

# Sign-in throttling: after this many failures in the window, sign-in is refused until it passes.
SIGN_IN_MAX_FAILURES = envint("SIGN_IN_MAX_FAILURES", 5, minimum=1)  # per username
SIGN_IN_MAX_FAILURES_PER_IP = envint("SIGN_IN_MAX_FAILURES_PER_IP", 20, minimum=1)
SIGN_IN_LOCKOUT_SECONDS = envint("SIGN_IN_LOCKOUT_SECONDS", 900, minimum=1)
# Shared by every gunicorn process and worker, so the counts are too.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "kaltura_archive",
    }
}

# --- University sign-in: SAML 2.0 and OpenID Connect (see "University sign-in" in the README) ----
# Local passwords: off refuses every local password except the named break-glass accounts.
SSO_LOCAL_SIGN_IN = envbool("SSO_LOCAL_SIGN_IN", True)
SSO_BREAK_GLASS_USERS = envlist("SSO_BREAK_GLASS_USERS")
# IdP values (group names, entitlements, claim values) that give each role, separated by ";"
# (group DNs contain commas). Admin wins over librarian; no mapped value: no role.
SSO_LIBRARIAN_VALUES = envlist("SSO_LIBRARIAN_VALUES", sep=";")
SSO_ADMIN_VALUES = envlist("SSO_ADMIN_VALUES", sep=";")
AUTHENTICATION_BACKENDS = [
    "archive_app.sso.accounts.LocalPasswordBackend",
    "archive_app.sso.saml.SamlBackend",
    "archive_app.sso.oidc.OidcBackend",
]
# SAML 2.0 (djangosaml2 over pysaml2; Debian's xmlsec1 checks the signatures).
SAML_IDP_METADATA = envstr("SAML_IDP_METADATA")  # a file, or an https:// URL
SAML_IDP_METADATA_CERT = envstr("SAML_IDP_METADATA_CERT")  # checks the signature of metadata from a URL
SAML_IDP_ENTITY_ID = envstr("SAML_IDP_ENTITY_ID")  # which IdP, when the metadata lists several (InCommon)
SAML_SP_ENTITY_ID = envstr("SAML_SP_ENTITY_ID")  # default: ARCHIVE_SITE_URL + /sso/saml/metadata/
SAML_SP_CERT_FILE = envstr("SAML_SP_CERT_FILE")
SAML_SP_KEY_FILE = envstr("SAML_SP_KEY_FILE")
SAML_WANT_ASSERTIONS_SIGNED = envbool("SAML_WANT_ASSERTIONS_SIGNED", True)
SAML_ATTRIBUTE_USERNAME = envstr("SAML_ATTRIBUTE_USERNAME", "eduPersonPrincipalName")
SAML_ATTRIBUTE_EMAIL = envstr("SAML_ATTRIBUTE_EMAIL", "mail")
SAML_ATTRIBUTE_NAME = envstr("SAML_ATTRIBUTE_NAME", "displayName")
SAML_ROLE_ATTRIBUTES = envlist("SAML_ROLE_ATTRIBUTES", "isMemberOf,eduPersonEntitlement")
SAML_LABEL = envstr("SAML_LABEL", "University sign-in")
SAML_CONFIG_LOADER = "archive_app.sso.saml.sp_config"
SAML_DEFAULT_BINDING = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"  # no inline script to post a form
# The IdP posts the assertion from its own site: over HTTPS the SAML session cookie must be SameSite=None
# (which browsers accept only with Secure); plain-HTTP trials keep Lax.
SAML_CSP_HANDLER = ""  # archive_app.web.security sends the Content-Security-Policy
SAML_SESSION_COOKIE_SAMESITE = "None" if SESSION_COOKIE_SECURE else "Lax"
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.contrib.sessions.middleware.SessionMiddleware") + 1,
    "djangosaml2.middleware.SamlSessionMiddleware",
)
# OpenID Connect (mozilla-django-oidc): endpoints come from the issuer's discovery document.
OIDC_ISSUER = envstr("OIDC_ISSUER").rstrip("/")
OIDC_CLIENT_ID = envstr("OIDC_CLIENT_ID")
OIDC_CLIENT_SECRET = envsecret("OIDC_CLIENT_SECRET")
OIDC_SCOPES = envstr("OIDC_SCOPES", "openid email profile")
OIDC_USERNAME_CLAIM = envstr("OIDC_USERNAME_CLAIM", "sub")
OIDC_ROLE_CLAIM = envstr("OIDC_ROLE_CLAIM", "groups")
OIDC_LABEL = envstr("OIDC_LABEL", "University sign-in (OpenID Connect)")
OIDC_TIMEOUT = envint("OIDC_TIMEOUT", 10, minimum=1)
# mozilla-django-oidc's own names.
OIDC_RP_CLIENT_ID, OIDC_RP_CLIENT_SECRET, OIDC_RP_SCOPES = OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_SCOPES
OIDC_RP_SIGN_ALGO = envstr("OIDC_SIGN_ALGORITHM", "RS256")
OIDC_USE_PKCE = True
OIDC_AUTHENTICATION_CALLBACK_URL = "oidc_callback"
# pysaml2 logs parts of assertions at INFO, and xmlschema a line at every start.
LOGGING["loggers"].update({"saml2": {"level": "WARNING"}, "xmlschema": {"level": "WARNING"}})

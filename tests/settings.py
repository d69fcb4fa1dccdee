"""Settings for the test suite: the project's own, plus a Redis the tests may use."""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-secret-key")
# Playwright's sync API runs an event loop in the test thread; Django would refuse ORM calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
# The test client and the browser tests speak plain HTTP to the live server.
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("DJANGO_SECURE_COOKIES", "0")
os.environ.setdefault("DJANGO_SECURE_HSTS_SECONDS", "0")

from tests.services import ensure_redis  # noqa: E402

os.environ["REDIS_URL"] = ensure_redis()

from kaltura_archive.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Serve static files from the apps without collectstatic, as in development.
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True
# The simulator's videos are scaled down to kilobytes: every replacement frees less than the default 10 MB.
ARCHIVE_MIN_BYTES_FREED = 0
# Tests count session.start per client; the shared session has a test of its own (test_kaltura_session).
KALTURA_SHARE_SESSION = False
# The tests drain queues with a burst SimpleWorker, which runs no scheduled job: a replacement is polled for in
# place (the simulator converts in a fraction of a second). test_throughput covers the check-back path.
ARCHIVE_REPLACEMENT_WAIT_SECONDS = 20

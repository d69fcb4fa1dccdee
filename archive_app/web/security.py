"""Hardening of the web side: the Content-Security-Policy header, sign-in throttling, one log line per 403.

(Secrets are kept out of logs and stored text by archive_app.lib.redaction.)
"""

from __future__ import annotations

import hashlib
import logging
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from redis.exceptions import RedisError

from archive_app.web.error_views import bad_request

log = logging.getLogger(__name__)


# --- Content-Security-Policy ----------------------------------------------------------


def thumbnail_sources() -> list[str]:
    """Where entry thumbnails come from: Kaltura's service host (its CDN for kaltura.com), and any others set."""
    parts = urlsplit(settings.KALTURA_SERVICE_URL)
    sources = [f"{parts.scheme}://{parts.netloc}"] if parts.scheme in ("http", "https") and parts.netloc else []
    if (parts.hostname or "").endswith("kaltura.com"):
        sources.append("https://*.kaltura.com")
    return sources + list(settings.CSP_IMG_SOURCES)


def content_security_policy() -> str:
    """No inline script or style anywhere: the pages' behaviour is in static/js/app.js."""
    directives = {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:", *thumbnail_sources()],  # data: for Bootstrap's SVG icons
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(values)}" for name, values in directives.items())


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # Built per response (a few string joins) so a changed Kaltura URL applies at once.
        response.headers.setdefault("Content-Security-Policy", content_security_policy())
        return response


def refuse_nul_bytes(get_response):
    """A NUL byte is in no valid address, and PostgreSQL refuses one in any query: answer 400 here
    rather than 500 from a view that does not check (the admin's, for one). Forms check their own."""

    def middleware(request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path or any("\x00" in key + "".join(values) for key, values in request.GET.lists()):
            return bad_request(request, "A NUL character is not allowed in a web address.")
        return get_response(request)

    return middleware


# --- Refusals in the log -----------------------------------------------------------------


class OneLineForbidden(logging.Filter):
    """Django logs a 403 as a warning with the PermissionDenied traceback, which says nothing a
    reader needs (every refusal has the same one). Make it one line: who, what, and why."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        if getattr(record, "status_code", None) != 403 or request is None:
            return True
        if record.name == "django.security.csrf":
            reason = f"CSRF check failed: {record.args[0]}" if record.args else "CSRF check failed"
        else:
            refusal = record.exc_info[1] if record.exc_info else None
            reason = str(refusal) if refusal is not None and str(refusal) else "permission denied"
            view = getattr(request.resolver_match, "view_name", "")
            reason += f" ({view})" if view else ""
        user = getattr(request, "user", None)
        username = user.get_username() if user is not None and user.is_authenticated else "anonymous"
        path = request.path.encode("unicode_escape").decode("ascii")  # as Django does: no forged log lines
        record.msg, record.args = "403 forbidden: user %s, %s %s: %s", (username, request.method, path, reason)
        record.exc_info = record.exc_text = None
        return True


def install_forbidden_log_filter() -> None:
    for name in ("django.request", "django.security.csrf"):
        logger = logging.getLogger(name)
        if not any(isinstance(existing, OneLineForbidden) for existing in logger.filters):
            logger.addFilter(OneLineForbidden())


# --- Sign-in throttling -----------------------------------------------------------------


def client_ip(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or behind a proxy the last address in CLIENT_IP_HEADER
    (the one the proxy itself added; earlier ones are whatever the client sent)."""
    if settings.CLIENT_IP_HEADER:
        forwarded = request.headers.get(settings.CLIENT_IP_HEADER, "").split(",")[-1].strip()
        if forwarded:
            return forwarded[:64]
    return request.META.get("REMOTE_ADDR", "")


def _failure_keys(username: str, ip: str) -> dict[str, int]:
    """Cache key -> failures allowed. Hashed, so any typed name makes a valid key."""
    user_hash = hashlib.sha256(username.strip().lower().encode()).hexdigest()
    ip_hash = hashlib.sha256(ip.encode()).hexdigest()
    return {
        f"sign-in-failures:user:{user_hash}": settings.SIGN_IN_MAX_FAILURES,
        f"sign-in-failures:ip:{ip_hash}": settings.SIGN_IN_MAX_FAILURES_PER_IP,
    }


def sign_in_locked(username: str, ip: str) -> bool:
    keys = _failure_keys(username, ip)
    try:
        counts = cache.get_many(list(keys))
    except RedisError:
        # Sign-in stays possible while Redis is down (the password is still checked); say so loudly.
        log.exception("sign-in throttle unavailable: cannot read failure counts")
        return False
    return any(counts.get(key, 0) >= limit for key, limit in keys.items())


def sign_in_failed(username: str, ip: str) -> list[str]:
    """Count a failure; returns what became locked by it ("username", "address"), usually nothing."""
    locked = []
    try:
        for (key, limit), what in zip(_failure_keys(username, ip).items(), ("username", "address"), strict=True):
            cache.add(key, 0, timeout=settings.SIGN_IN_LOCKOUT_SECONDS)  # the window starts at the first failure
            try:
                failures = cache.incr(key)
            except ValueError:  # expired between add and incr
                failures = 1
                cache.set(key, failures, timeout=settings.SIGN_IN_LOCKOUT_SECONDS)
            if failures == limit:
                locked.append(what)
    except RedisError:
        log.exception("sign-in throttle unavailable: cannot count a failure")
    return locked


def sign_in_succeeded(username: str, ip: str) -> None:
    user_key = next(iter(_failure_keys(username, ip)))
    try:
        cache.delete(user_key)
    except RedisError:
        log.exception("sign-in throttle unavailable: cannot reset the failure count")


class ThrottledSignIn:
    """For a Django sign-in form: refuse every attempt (even a right password) for a username or
    an address with too many recent failures."""

    locked_message = "Too many failed sign-ins. Try again in %(minutes)s minutes."
    locked = False

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        ip = client_ip(self.request) if self.request else ""
        if sign_in_locked(username, ip):
            self.locked = True
            log.warning("sign-in refused: too many failures for %r or from %s", username[:150], ip)
            raise ValidationError(
                self.locked_message,
                code="locked",
                params={"minutes": max(1, settings.SIGN_IN_LOCKOUT_SECONDS // 60)},
            )
        try:
            cleaned = super().clean()
        except ValidationError as error:
            if error.code == "invalid_login":
                self._count_failure(username, ip)
            raise
        sign_in_succeeded(username, ip)
        return cleaned

    def _count_failure(self, username: str, ip: str) -> None:
        from archive_app import audit
        from archive_app.models import AuditEvent

        for what in sign_in_failed(username, ip):
            log.warning(
                "sign-in locked for %s s: too many failures for this %s", settings.SIGN_IN_LOCKOUT_SECONDS, what
            )
            audit.record(
                "sign_in_locked",
                username=username[:150],
                dry_run=False,
                outcome=AuditEvent.Outcome.REFUSED,
                message=f"too many failed sign-ins for this {what}; locked for {settings.SIGN_IN_LOCKOUT_SECONDS} s",
                details={"address": ip, "locked": what},
            )


class SignInForm(ThrottledSignIn, AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "Your username and password didn't match. Please try again.",
    }


class AdminSignInForm(ThrottledSignIn, AdminAuthenticationForm):
    pass


class SignInView(LoginView):
    authentication_form = SignInForm
    http_method_names = ["get", "post", "head", "options"]  # Django's form views would take a PUT as a POST

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if form.locked:
            response.status_code = 429
        return response

"""OpenID Connect: mozilla-django-oidc's code flow with PKCE and a nonce, endpoints from the issuer's
discovery document, and the ID token's issuer, audience and expiry checked."""

from __future__ import annotations

import logging
import time

import jwt
import requests
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import SuspiciousOperation
from django.http import Http404
from django.utils.decorators import method_decorator
from mozilla_django_oidc import views as oidc_views
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings

from archive_app.sso.accounts import IdpIdentity, SignInRefused, refused_page, sign_in_from_idp

log = logging.getLogger(__name__)

DISCOVERY_MAX_AGE_SECONDS = 3600
_discovered: dict[str, tuple[float, dict]] = {}
# mozilla-django-oidc's setting -> the discovery document's field.
DISCOVERED_SETTINGS = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}


class DiscoveryError(Exception):
    pass


def enabled() -> bool:
    return bool(settings.OIDC_ISSUER and settings.OIDC_CLIENT_ID)


def provider_metadata() -> dict:
    """The issuer's /.well-known/openid-configuration, fetched when first needed and kept an hour."""
    issuer = settings.OIDC_ISSUER
    cached = _discovered.get(issuer)
    if cached and time.monotonic() - cached[0] < DISCOVERY_MAX_AGE_SECONDS:
        return cached[1]
    try:
        response = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=settings.OIDC_TIMEOUT)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise DiscoveryError(f"cannot read the discovery document of {issuer}: {exc}") from None
    if document.get("issuer", "").rstrip("/") != issuer:
        raise DiscoveryError(f"the discovery document at {issuer} names another issuer: {document.get('issuer')!r}")
    missing = [field for field in DISCOVERED_SETTINGS.values() if not document.get(field)]
    if missing:
        raise DiscoveryError(f"the discovery document of {issuer} lacks {', '.join(missing)}")
    _discovered[issuer] = (time.monotonic(), document)
    return document


def oidc_setting(name: str, *default):
    if name in DISCOVERED_SETTINGS:
        return provider_metadata()[DISCOVERED_SETTINGS[name]]
    return import_from_settings(name, *default)


class OidcBackend(OIDCAuthenticationBackend):
    """Inert until the callback calls it: authenticate() is asked for every sign-in, local ones too, and
    must neither read the discovery document then nor take a code from any other address."""

    get_settings = staticmethod(oidc_setting)

    def __init__(self, *args, **kwargs):
        from django.contrib.auth import get_user_model

        self.UserModel = get_user_model()

    def __getattr__(self, name):
        # The library reads its endpoints and client settings as attributes set in its __init__.
        if name.startswith("OIDC_"):
            return oidc_setting(name, None)
        raise AttributeError(name)

    def authenticate(self, request, nonce=None, code_verifier=None, **kwargs):
        if request is None or nonce is None or code_verifier is None or kwargs or not enabled():
            return None
        return super().authenticate(request, nonce=nonce, code_verifier=code_verifier)

    def retrieve_matching_jwk(self, token):
        """The provider's key for this token: by `kid` when the token names one, else its only key of the
        token's algorithm (the library insists on a `kid`, which a provider with one key may leave out)."""
        response = requests.get(self.OIDC_OP_JWKS_ENDPOINT, timeout=settings.OIDC_TIMEOUT)
        response.raise_for_status()
        header = jwt.get_unverified_header(token)
        keys = [
            key for key in response.json().get("keys", []) if key.get("alg", header.get("alg")) == header.get("alg")
        ]
        if header.get("kid"):
            keys = [key for key in keys if key.get("kid") == header["kid"]]
        if len(keys) != 1:
            raise SuspiciousOperation("the provider's keys do not name one key for this token")
        return jwt.PyJWK(keys[0])

    def _verify_jws(self, payload, key):
        """The library skips the audience and issuer; a token for another client or issuer is refused."""
        header = jwt.get_unverified_header(payload)
        if header.get("alg") != settings.OIDC_RP_SIGN_ALGO:
            raise SuspiciousOperation(
                f"the ID token is signed with {header.get('alg')!r}, not {settings.OIDC_RP_SIGN_ALGO}"
            )
        try:
            return jwt.decode(
                payload,
                key,
                algorithms=[settings.OIDC_RP_SIGN_ALGO],
                audience=settings.OIDC_CLIENT_ID,
                issuer=provider_metadata()["issuer"],
                options={"require": ["exp", "iat", "aud", "iss", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise SuspiciousOperation(f"the ID token is not valid: {exc}") from None

    def get_or_create_user(self, access_token, id_token, payload):
        claims = {**payload, **self.get_userinfo(access_token, id_token, payload)}
        if claims.get("sub") != payload.get("sub"):
            raise SuspiciousOperation("the userinfo answer is about another subject than the ID token")
        roles = claims.get(settings.OIDC_ROLE_CLAIM) or []
        identity = IdpIdentity(
            protocol="oidc",
            idp=settings.OIDC_ISSUER,
            subject=str(payload["sub"]),
            username=str(claims.get(settings.OIDC_USERNAME_CLAIM) or ""),
            email=str(claims.get("email") or ""),
            name=str(claims.get("name") or ""),
            role_values=[str(value) for value in ([roles] if isinstance(roles, str) else roles)],
        )
        self.request.sso_attempt = identity
        try:
            return sign_in_from_idp(self.request, identity)
        except SignInRefused as refusal:
            self.request.sso_refusal = str(refusal)
            return None


@method_decorator(login_not_required, name="dispatch")
class OidcLoginView(oidc_views.OIDCAuthenticationRequestView):
    get_settings = staticmethod(oidc_setting)

    def __init__(self, *args, **kwargs):
        super(oidc_views.OIDCAuthenticationRequestView, self).__init__(*args, **kwargs)

    def get(self, request):
        if not enabled():
            raise Http404("OpenID Connect sign-in is not configured")
        try:
            self.OIDC_OP_AUTH_ENDPOINT = oidc_setting("OIDC_OP_AUTHORIZATION_ENDPOINT")
        except DiscoveryError as exc:
            return refused_page(
                request,
                protocol="oidc",
                reason=f"The identity provider cannot be reached: {exc}",
                idp=settings.OIDC_ISSUER,
                status=502,
            )
        self.OIDC_RP_CLIENT_ID = settings.OIDC_CLIENT_ID
        return super().get(request)


@method_decorator(login_not_required, name="dispatch")
class OidcCallbackView(oidc_views.OIDCAuthenticationCallbackView):
    """The IdP sends the browser back here with a code; any failure is a refusal page and an audit event."""

    get_settings = staticmethod(oidc_setting)

    def get(self, request):
        if not enabled():
            raise Http404("OpenID Connect sign-in is not configured")
        if request.GET.get("error"):
            return self._refused(f"The identity provider did not sign you in: {request.GET['error'][:100]}")
        if "code" not in request.GET or request.GET.get("state") not in request.session.get("oidc_states", {}):
            return self._refused(
                "The answer matches no sign-in started in this browser (replayed, or started elsewhere)."
            )
        try:
            return super().get(request)
        except (SuspiciousOperation, DiscoveryError, requests.RequestException) as exc:
            log.warning("OpenID Connect sign-in failed", exc_info=True)
            return self._refused(f"The identity provider's answer could not be accepted: {str(exc)[:200]}")

    def login_failure(self):
        return self._refused(
            getattr(self.request, "sso_refusal", None) or "The identity provider's answer could not be accepted."
        )

    def _refused(self, reason: str):
        return refused_page(self.request, protocol="oidc", reason=reason, idp=settings.OIDC_ISSUER)

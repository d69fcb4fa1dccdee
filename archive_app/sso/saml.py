"""SAML 2.0 service provider: djangosaml2's views and pysaml2's checks, with our account rules.

pysaml2 verifies the signature (xmlsec1), the audience, the destination, the lifetime and that the
response answers a request made in this browser; a cache of assertion ids refuses a replay as well.
"""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.cache import cache
from django.http import Http404
from django.urls import reverse
from django.utils.decorators import method_decorator
from djangosaml2 import views as saml_views
from djangosaml2.backends import Saml2Backend
from saml2 import BINDING_HTTP_POST
from saml2.config import SPConfig
from saml2.response import IncorrectlySigned, SignatureError, StatusError, UnsolicitedResponse
from saml2.sigver import MissingKey
from saml2.validate import ResponseLifetimeExceed, ToEarly

from archive_app.sso.accounts import IdpIdentity, SignInRefused, refused_page, sign_in_from_idp

# Loading metadata (perhaps from a URL) on every request would be slow; an IdP's metadata changes rarely.
CONFIG_MAX_AGE_SECONDS = 3600
_config_cache: dict[tuple, tuple[float, SPConfig]] = {}


def enabled() -> bool:
    return bool(settings.SAML_IDP_METADATA)


def sp_entity_id() -> str:
    return settings.SAML_SP_ENTITY_ID or settings.ARCHIVE_SITE_URL + reverse("saml_metadata")


def acs_url() -> str:
    return settings.ARCHIVE_SITE_URL + reverse("saml_acs")


def _metadata_source() -> dict:
    source = settings.SAML_IDP_METADATA
    if source.startswith(("https://", "http://")):
        return {"remote": [{"url": source, "cert": settings.SAML_IDP_METADATA_CERT or None}]}
    return {"local": [source]}


def sp_config(request=None) -> SPConfig:
    """djangosaml2's SAML_CONFIG_LOADER: the SP's pysaml2 configuration, built from the settings."""
    if not enabled():
        raise Http404("SAML sign-in is not configured")
    key = (
        settings.SAML_IDP_METADATA,
        settings.SAML_IDP_METADATA_CERT,
        sp_entity_id(),
        acs_url(),
        settings.SAML_SP_CERT_FILE,
        settings.SAML_SP_KEY_FILE,
        settings.SAML_WANT_ASSERTIONS_SIGNED,
    )
    cached = _config_cache.get(key)
    if cached and time.monotonic() - cached[0] < CONFIG_MAX_AGE_SECONDS:
        return cached[1]
    signing = bool(settings.SAML_SP_CERT_FILE and settings.SAML_SP_KEY_FILE)
    config = {
        "entityid": sp_entity_id(),
        "xmlsec_binary": shutil.which("xmlsec1") or "/usr/bin/xmlsec1",
        "allow_unknown_attributes": True,
        "accepted_time_diff": 60,  # seconds of clock difference with the IdP
        "service": {
            "sp": {
                "name": "Kaltura Archive",
                "endpoints": {"assertion_consumer_service": [(acs_url(), BINDING_HTTP_POST)]},
                "allow_unsolicited": False,  # only answers to a request this browser started
                "want_assertions_signed": settings.SAML_WANT_ASSERTIONS_SIGNED,
                "want_response_signed": False,  # the signed assertion is what counts
                "only_use_keys_in_metadata": True,
                "authn_requests_signed": signing,
                "required_attributes": [settings.SAML_ATTRIBUTE_USERNAME],
                "optional_attributes": [
                    settings.SAML_ATTRIBUTE_EMAIL,
                    settings.SAML_ATTRIBUTE_NAME,
                    *settings.SAML_ROLE_ATTRIBUTES,
                ],
            }
        },
        "metadata": _metadata_source(),
    }
    if signing:
        config["key_file"], config["cert_file"] = settings.SAML_SP_KEY_FILE, settings.SAML_SP_CERT_FILE
        config["encryption_keypairs"] = [
            {"key_file": settings.SAML_SP_KEY_FILE, "cert_file": settings.SAML_SP_CERT_FILE}
        ]
    loaded = SPConfig().load(config)
    _config_cache[key] = (time.monotonic(), loaded)
    return loaded


def _first(attributes: dict, name: str) -> str:
    values = attributes.get(name) or [""]
    return str(values[0])


class SamlBackend(Saml2Backend):
    """Called by djangosaml2 with a verified assertion; the account rules are accounts.sign_in_from_idp's."""

    def authenticate(
        self,
        request,
        session_info=None,
        attribute_mapping=None,
        create_unknown_user=True,
        assertion_info=None,
        **kwargs,
    ):
        if session_info is None or request is None:
            return None
        attributes = session_info.get("ava", {})
        name_id = session_info.get("name_id")
        identity = IdpIdentity(
            protocol="saml",
            idp=session_info.get("issuer", ""),
            subject=getattr(name_id, "text", "") or "",
            username=_first(attributes, settings.SAML_ATTRIBUTE_USERNAME),
            email=_first(attributes, settings.SAML_ATTRIBUTE_EMAIL),
            name=_first(attributes, settings.SAML_ATTRIBUTE_NAME),
            role_values=[str(v) for name in settings.SAML_ROLE_ATTRIBUTES for v in attributes.get(name, [])],
        )
        request.sso_attempt = identity
        try:
            return sign_in_from_idp(request, identity)
        except SignInRefused as refusal:
            # Django's authenticate() would swallow an exception; the ACS view reads the reason here.
            request.sso_refusal = str(refusal)
            return None


class ReplayedAssertion(Exception):
    pass


class NotForUs(Exception):
    """pysaml2 answers a response whose Destination or InResponseTo is not ours with no assertion at all."""


def _reason(exception) -> str:
    """What a person (and the audit log) is told; pysaml2's own text, cut before any XML, follows."""
    if isinstance(exception, ReplayedAssertion):
        return "This sign-in answer was already used once (a replay)."
    if isinstance(exception, NotForUs):
        return "The answer is addressed to another service, or answers another sign-in request."
    if isinstance(exception, SignatureError | IncorrectlySigned | MissingKey):
        plain = "The identity provider's signature on the assertion is missing or does not verify."
    elif isinstance(exception, ResponseLifetimeExceed | ToEarly):
        plain = "The assertion has expired or is not valid yet (check the clocks of both servers)."
    elif isinstance(exception, UnsolicitedResponse):
        plain = "The answer matches no sign-in started in this browser (replayed, or started elsewhere)."
    elif isinstance(exception, StatusError):
        plain = "The identity provider did not sign you in."
    elif any(word in str(exception) for word in ("Audience", "audience", "destination", "Destination", "recipient")):
        plain = "The assertion is addressed to another service, not this one."
    else:
        plain = "The identity provider's answer could not be accepted."
    detail = str(exception).split("<", 1)[0].strip()[:200]
    return f"{plain} ({type(exception).__name__}: {detail})" if detail else plain


@method_decorator(login_not_required, name="dispatch")
class LoginView(saml_views.LoginView):
    http_method_names = ["get"]

    def get(self, request, *args, **kwargs):
        if not enabled():
            raise Http404("SAML sign-in is not configured")
        if settings.SAML_IDP_ENTITY_ID:
            request.GET = request.GET.copy()
            request.GET["idp"] = settings.SAML_IDP_ENTITY_ID
        return super().get(request, *args, **kwargs)


@method_decorator(login_not_required, name="dispatch")
class AcsView(saml_views.AssertionConsumerServiceView):
    """Where the IdP posts the assertion (CSRF-exempt: it comes from the IdP's page; its signature and
    InResponseTo are the proof)."""

    http_method_names = ["post"]

    def post(self, request, *args, **kwargs):
        if not enabled():
            raise Http404("SAML sign-in is not configured")
        return super().post(request, *args, **kwargs)

    def custom_validation(self, response):
        """Each assertion id is accepted once, in any process, until the assertion expires anyway."""
        assertion = response.assertion
        if assertion is None:
            self.refusal = NotForUs()
            raise self.refusal
        expires = [
            confirmation.subject_confirmation_data.not_on_or_after
            for confirmation in assertion.subject.subject_confirmation
            if confirmation.subject_confirmation_data is not None
        ]
        seconds = 3600
        if expires and expires[0]:
            ends = datetime.strptime(expires[0][:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
            seconds = max(60, int((ends - datetime.now(UTC)).total_seconds()) + 120)
        if not cache.add(f"saml-assertion:{assertion.id}", 1, timeout=seconds):
            self.refusal = ReplayedAssertion()
            raise self.refusal

    def handle_acs_failure(self, request, exception=None, status=403, **kwargs):
        reason = getattr(request, "sso_refusal", None) or _reason(getattr(self, "refusal", None) or exception)
        return refused_page(request, protocol="saml", reason=reason)


@method_decorator(login_not_required, name="dispatch")
class MetadataView(saml_views.MetadataView):
    """Our SP metadata, at a stable address, for the IdP's administrators to register."""

    http_method_names = ["get"]

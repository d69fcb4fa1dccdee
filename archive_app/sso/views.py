"""The sign-in page, with the university sign-in buttons and local sign-in's own refusal."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError

from archive_app.sso import oidc, saml
from archive_app.web.security import SignInView

LOCAL_SIGN_IN_OFF = "Sign-in with a local password is turned off here: use the university sign-in above."


class SsoSignInView(SignInView):
    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["sso_buttons"] = [
            (url_name, label)
            for url_name, label, on in (
                ("saml_login", settings.SAML_LABEL, saml.enabled()),
                ("oidc_login", settings.OIDC_LABEL, oidc.enabled()),
            )
            if on
        ]
        context["local_sign_in"] = settings.SSO_LOCAL_SIGN_IN
        return context

    def form_invalid(self, form):
        if getattr(self.request, "local_sign_in_refused", False):
            form.errors.clear()
            form.add_error(None, ValidationError(LOCAL_SIGN_IN_OFF, code="local_sign_in_off"))
        return super().form_invalid(form)

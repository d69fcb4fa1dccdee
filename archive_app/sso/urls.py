from django.urls import path

from archive_app.sso import oidc, saml

urlpatterns = [
    path("saml/metadata/", saml.MetadataView.as_view(), name="saml_metadata"),
    path("saml/login/", saml.LoginView.as_view(), name="saml_login"),
    path("saml/acs/", saml.AcsView.as_view(), name="saml_acs"),
    path("oidc/login/", oidc.OidcLoginView.as_view(), name="oidc_login"),
    path("oidc/callback/", oidc.OidcCallbackView.as_view(), name="oidc_callback"),
]

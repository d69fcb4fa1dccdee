"""University sign-in: SAML 2.0 (saml.py) and OpenID Connect (oidc.py) share one path into an account
(accounts.py): the IdP's identity makes or updates the user and sets the role, at every sign-in."""

"""A real SAML 2.0 identity provider for the tests: pysaml2's IdP server (saml2.server.Server) behind a
small WSGI app on loopback. It signs real assertions with a key made for the test run.

Endpoints: /metadata (its IdP metadata), /sso/redirect (the HTTP-Redirect binding: a sign-in form), /sso/login
(the form's POST: answers with an auto-posting form to the SP's ACS, the HTTP-POST binding) and /replay (the last
answer, posted again). `next_answer` bends the next answer the way an attacker or a broken IdP would.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import shutil
import threading
from pathlib import Path
from socketserver import ThreadingMixIn
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.metadata import entity_descriptor
from saml2.saml import NAME_FORMAT_URI, NAMEID_FORMAT_PERSISTENT, NAMEID_FORMAT_TRANSIENT
from saml2.server import Server

ASSERTION = "urn:oasis:names:tc:SAML:2.0:assertion:Assertion"


def make_key_pair(directory: Path, name: str) -> tuple[Path, Path]:
    """A fresh RSA key and self-signed certificate (test-only material, never committed)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_file, cert_file = directory / f"{name}.key", directory / f"{name}.pem"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_file, cert_file


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


class SamlIdp:
    def __init__(self, directory: Path, host: str = "127.0.0.1") -> None:
        """`host`: the name the browser uses; the SP's own, so that the SAML cookie counts as same-site."""
        self.server_http = make_server(
            "127.0.0.1", 0, self.app, server_class=_ThreadingServer, handler_class=_QuietHandler
        )
        self.url = f"http://{host}:{self.server_http.server_port}"
        self.key_file, self.cert_file = make_key_pair(directory, "test-idp")
        self.users: dict[str, dict[str, list[str]]] = {}
        self.next_answer = "valid"  # or: tampered, expired, unsigned, other-audience, other-destination, encrypted
        self.last_answer_page = self.last_answer_xml = ""
        self.server = Server(config=IdPConfig().load(self._config()))
        self._thread = threading.Thread(target=self.server_http.serve_forever, daemon=True)
        self._thread.start()

    def _config(self) -> dict:
        return {
            "entityid": f"{self.url}/metadata",
            "xmlsec_binary": shutil.which("xmlsec1"),
            "key_file": str(self.key_file),
            "cert_file": str(self.cert_file),
            "service": {
                "idp": {
                    "name": "Test University IdP",
                    "endpoints": {"single_sign_on_service": [(f"{self.url}/sso/redirect", BINDING_HTTP_REDIRECT)]},
                    "name_id_format": [NAMEID_FORMAT_PERSISTENT, NAMEID_FORMAT_TRANSIENT],
                    "policy": {"default": {"lifetime": {"minutes": 5}, "name_form": NAME_FORMAT_URI}},
                }
            },
            "metadata": {},
        }

    def trust_sp(self, sp_metadata_xml: str) -> None:
        """Register the SP, as a campus IdP admin does with our metadata."""
        self.server.metadata.load("inline", sp_metadata_xml)

    def metadata_xml(self) -> str:
        return str(entity_descriptor(self.server.config))

    def stop(self) -> None:
        self.server_http.shutdown()
        self.server_http.server_close()

    # --- HTTP ---------------------------------------------------------------------------

    def app(self, environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/metadata":
            return self._reply(start_response, self.metadata_xml(), "text/xml")
        if path == "/sso/redirect":
            query = {key: values[0] for key, values in parse_qs(environ.get("QUERY_STRING", "")).items()}
            return self._reply(start_response, self._sign_in_form(query))
        if path == "/sso/login" and environ["REQUEST_METHOD"] == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            form = {key: values[0] for key, values in parse_qs(environ["wsgi.input"].read(length).decode()).items()}
            self.last_answer_page = self._answer(form)
            return self._reply(start_response, self.last_answer_page)
        if path == "/replay":
            return self._reply(start_response, self.last_answer_page)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]

    @staticmethod
    def _reply(start_response, body: str, content_type: str = "text/html"):
        start_response("200 OK", [("Content-Type", f"{content_type}; charset=utf-8")])
        return [body.encode()]

    def _sign_in_form(self, query: dict) -> str:
        hidden = "".join(
            f'<input type="hidden" name="{name}" value="{html.escape(query.get(name, ""))}">'
            for name in ("SAMLRequest", "RelayState", "SigAlg", "Signature")
        )
        return (
            "<!doctype html><title>Test University</title><h1>Test University sign-in</h1>"
            f'<form method="post" action="/sso/login">{hidden}'
            '<label>User <input id="idp-user" name="user"></label>'
            '<button type="submit">Sign in at the IdP</button></form>'
        )

    def _answer(self, form: dict) -> str:
        request = self.server.parse_authn_request(
            form["SAMLRequest"],
            BINDING_HTTP_REDIRECT,
            relay_state=form.get("RelayState") or None,
            sigalg=form.get("SigAlg") or None,
            signature=form.get("Signature") or None,
        )
        args = self.server.response_args(request.message, [BINDING_HTTP_POST])
        destination = args["destination"]
        mode, self.next_answer = self.next_answer, "valid"
        if mode == "other-destination":
            args["destination"] = "https://other-service.example.edu/Shibboleth.sso/SAML2/POST"
        user = form["user"]
        response = self.server.create_authn_response(
            self.users[user],
            userid=user,
            authn={"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"},
            sign_assertion=mode != "unsigned",
            sign_response=False,
            encrypt_assertion=mode == "encrypted",  # to the SP's certificate in its metadata
            **args,
        )
        xml = str(response)
        if mode == "tampered":
            # A signed assertion changed afterwards: give oneself the admin group.
            xml = xml.replace(">staff@example.edu<", ">archive-admins@example.edu<")
        if mode == "expired":
            xml = self._resign(self._move_times(xml, dt.timedelta(hours=-2)))
        if mode == "other-audience":  # validly signed, for another SP of the same IdP
            xml = re.sub(r"(<(?:\w+:)?Audience>)[^<]+", r"\1https://other-service.example.edu/shibboleth", xml)
            xml = self._resign(xml)
        self.last_answer_xml = xml
        http = self.server.apply_binding(BINDING_HTTP_POST, xml, destination, form.get("RelayState", ""), response=True)
        return http["data"]

    @staticmethod
    def _move_times(xml: str, delta: dt.timedelta) -> str:
        """Every timestamp moved by delta."""

        def moved(match: re.Match) -> str:
            when = dt.datetime.strptime(match.group(2)[:19], "%Y-%m-%dT%H:%M:%S") + delta
            return f'{match.group(1)}="{when:%Y-%m-%dT%H:%M:%SZ}"'

        return re.sub(r'(IssueInstant|NotBefore|NotOnOrAfter|AuthnInstant)="([^"]+)"', moved, xml)

    def _resign(self, xml: str) -> str:
        """The changed assertion signed again with the IdP's key, as a real (misconfigured) IdP would."""
        assertion_id = re.search(r"<(?:\w+:)?Assertion[^>]* ID=\"([^\"]+)\"", xml).group(1)
        return self.server.sec.sign_statement(xml, ASSERTION, node_id=assertion_id)

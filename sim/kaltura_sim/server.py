"""The HTTP side: the API endpoint, flavor downloads, thumbnails, injected faults and the /sim control API."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import socket
import sys
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import api, content, wire
from .errors import KalturaError
from .generator import FLAVOR_READY
from .state import CAPTION_READY, SimState

_API_PATH = re.compile(r"^/api_v3(?:/index\.php)?(?:/service/([^/]+)(?:/action/([^/]+))?)?/?$")
_DOWNLOAD_PATH = re.compile(r"/(?:serveFlavor|playManifest)/")
_THUMBNAIL_PATH = re.compile(r"/thumbnail/entry_id/([^/]+)(?:/version/(\d+))?")
_CAPTION_PATH = re.compile(r"/serveCaption/captionAssetId/([^/]+)")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
HTML_500 = (
    b"<html><head><title>500 Internal Server Error</title></head><body><center><h1>500 Internal Server Error"
    b"</h1></center><hr><center>nginx</center></body></html>"
)


class Simulator:
    """The simulator: its state and, once started, an HTTP server in a background thread."""

    def __init__(
        self,
        entries: int = 2000,
        seed: int = 1,
        content_scale: float = 0.001,
        port: int = 0,
        conversion_delay: float = 0.0,
        ks_expiry_cap: int = 86400,
        partner_id: int = 1234567,
        admin_secret: str = "sim-admin-secret",
        host: str = "127.0.0.1",
        now: float | None = None,
        log_requests: bool = False,
        archive_tags: bool = True,
        stable_ties: bool = False,
        rate_limit: float | None = None,
        bursts: tuple[int, ...] = (),
        latency_ms: float = 0.0,
        download_bytes_per_second: float | None = None,
        metadata_plugin: bool = True,
    ) -> None:
        self.state = SimState(
            entries=entries,
            seed=seed,
            content_scale=content_scale,
            conversion_delay=conversion_delay,
            ks_expiry_cap=ks_expiry_cap,
            partner_id=partner_id,
            admin_secret=admin_secret,
            now=now,
            archive_tags=archive_tags,
            stable_ties=stable_ties,
            rate_limit=rate_limit,
            bursts=tuple(bursts),
            latency_ms=latency_ms,
            download_bytes_per_second=download_bytes_per_second,
            metadata_plugin=metadata_plugin,
        )
        self.host, self.port = host, port
        self.log_requests = log_requests
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def partner_id(self) -> int:
        return self.state.partner_id

    @property
    def admin_secret(self) -> str:
        return self.state.admin_secret

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> Simulator:
        httpd = _Server((self.host, self.port), _Handler)
        httpd.sim = self
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self.state.base_url = self.url
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, name=f"kaltura-sim-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.state.close()

    def __enter__(self) -> Simulator:
        return self if self._httpd else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(**options: Any) -> Simulator:
    """Start a simulator on a background thread; `port=0` picks a free port (see `.url`)."""
    return Simulator(**options).start()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    sim: Simulator


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kaltura-sim"
    sys_version = ""
    timeout = 300
    server: _Server

    @property
    def state(self) -> SimState:
        return self.server.sim.state

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        # The request line can carry a KS in a query string: log the path only, and only when asked to.
        if self.server.sim.log_requests:
            path = urllib.parse.urlsplit(self.path).path
            sys.stderr.write(f"kaltura_sim {self.command} {path} {args[1] if len(args) > 1 else ''}\n")

    def do_POST(self) -> None:
        self._route()

    def do_GET(self) -> None:
        self._route()

    def do_HEAD(self) -> None:
        self._route()

    def do_DELETE(self) -> None:
        self._route()

    def _route(self) -> None:
        self.state.tick()
        parts = urllib.parse.urlsplit(self.path)
        if self.state.latency_ms and not parts.path.startswith("/sim/"):
            # Each request waits on its own handler thread, so concurrent clients overlap as with a remote host.
            time.sleep(self.state.latency_ms / 1000)
        try:
            if _API_PATH.match(parts.path):
                self._api(parts)
            elif parts.path.startswith("/sim/"):
                self._control(parts.path)
            elif _DOWNLOAD_PATH.search(parts.path):
                self._download(parts.path)
            elif _THUMBNAIL_PATH.search(parts.path):
                self._thumbnail(_THUMBNAIL_PATH.search(parts.path))
            elif _CAPTION_PATH.search(parts.path):
                self._caption(_CAPTION_PATH.search(parts.path).group(1))
            else:
                self._discard_body()
                self._send(404, b"Not Found", "text/plain")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # --- plumbing ---------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _discard_body(self) -> None:
        reader = wire.body_reader(self.headers, self.rfile)
        while reader.read(content.BLOCK):
            pass

    def _drop(self) -> None:
        """Close the connection without an answer, as a dying proxy would."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # --- the API ----------------------------------------------------------------------------------

    def _api(self, parts: urllib.parse.SplitResult) -> None:
        started = time.perf_counter()
        state = self.state
        try:
            params, files = wire.read_params(self.headers, self.rfile, parts.query, lambda: state.workdir)
        except wire.BadRequest as error:
            self.close_connection = True
            self._send(400, str(error).encode(), "text/plain")
            return
        try:
            match = _API_PATH.match(parts.path)
            service = urllib.parse.unquote(match.group(1) or str(params.get("service", "")))
            action = urllib.parse.unquote(match.group(2) or str(params.get("action", "")))
            is_multi = service.lower() == "multirequest"
            subcalls = None
            if is_multi:
                subcalls = [(str(s.get("service", "")), str(s.get("action", ""))) for s in api.subrequests(params)]
                state.count("multirequest")
            else:
                state.count(api.counter_key(service, action))

            fault = state.take_request_fault(service, action, subcalls)
            if fault and fault["kind"] == "drop":
                self._drop()
                return
            if fault and fault["kind"] == "http500":
                self._send(500, HTML_500, "text/html")
                return
            if fault and fault["kind"] == "bad_gateway":
                self._send(502, b"Bad Gateway", "text/plain")
                return

            result: Any
            if not state.rate_limit.allow():
                # Blocked before anything runs: the whole request (every call of a multirequest) is refused.
                result = KalturaError("ACTION_BLOCKED", action, service)
            elif fault:
                result = KalturaError(fault["code"], message=fault["message"])
            elif is_multi:
                result = api.multirequest(state, params, files)
            else:
                try:
                    result = api.call_action(state, api.Call(service, action, params, files))
                except KalturaError as error:
                    result = error
        except Exception:  # a simulator bug: answer as Kaltura does, and say where
            traceback.print_exc()
            result = KalturaError("INTERNAL_SERVER_ERROR")
        finally:
            for upload in files.values():
                with contextlib.suppress(OSError):
                    os.unlink(upload.path)
        body = wire.encode_response(result, time.perf_counter() - started)
        headers = {"X-Me": "kaltura-sim", "Cache-Control": "no-cache"}
        if "gzip" in self.headers.get("Accept-Encoding", "") and len(body) > 1024:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        self._send(200, body, "text/xml; charset=utf-8", headers)

    # --- downloads --------------------------------------------------------------------------------

    def _thumbnail(self, match: re.Match) -> None:
        self._discard_body()
        entry = self.state.entries.get(match.group(1))
        if entry is None:
            self._send(404, b"Not Found", "text/plain")
            return
        version = int(match.group(2)) if match.group(2) else entry["_thumb_version"]
        self.state.count("thumbnail_download")  # a request to Kaltura like any other (its thumbnail API)
        self._send(200, *self.state.thumbnail_bytes(entry, version))

    def _caption(self, caption_id: str) -> None:
        self._discard_body()
        with self.state.lock:
            caption = self.state.captions.get(caption_id)
            ready = caption is not None and caption["status"] == CAPTION_READY
            data = caption["_content"] if ready else b""
        if not ready:
            self._send(404, b"Not Found", "text/plain")
            return
        self.state.count("caption_download")
        self._send(200, data, "text/plain; charset=utf-8")

    def _download(self, path: str) -> None:
        self._discard_body()
        state = self.state
        fields = dict(re.findall(r"/(entryId|flavorId|flavorParamsId)/([^/]+)", path))
        with state.lock:
            flavor = state.flavors.get(fields.get("flavorId", ""))
            if flavor is None and "entryId" in fields and fields["entryId"] in state.entries:
                # playManifest: the flavor of the given params, else the biggest web flavor, else the source.
                entry = state.entries[fields["entryId"]]
                ready = [f for f in state.entry_flavors(entry, live_only=True) if f["status"] == FLAVOR_READY]
                wanted = fields.get("flavorParamsId")
                if wanted is not None:
                    flavor = next((f for f in ready if str(f["flavorParamsId"]) == wanted), None)
                else:
                    web = sorted((f for f in ready if not f["isOriginal"]), key=lambda f: f["size"])
                    flavor = web[-1] if web else next(iter(ready), None)
            if flavor is None or flavor["status"] != FLAVOR_READY:
                self._send(404, b"Not Found", "text/plain")
                return
            source, extension = flavor["_content"], flavor["fileExt"]
        redirect = state.take_download_redirect(flavor["id"])
        if redirect is not None:
            self._send(redirect[0], b"", "text/plain", {"Location": redirect[1]})
            return
        size = content.size_of(source)
        start, end = 0, size
        status = 200
        headers = {"Accept-Ranges": "bytes"}
        requested = self.headers.get("Range")
        if requested:
            match = _RANGE.match(requested.strip())
            first = match and match.group(1)
            if not match or (not first and not match.group(2)):
                self._send(416, b"", "text/plain", {"Content-Range": f"bytes */{size}"})
                return
            if first:
                start = int(first)
                end = min(size, int(match.group(2)) + 1) if match.group(2) else size
            else:  # bytes=-N: the last N bytes
                start = max(0, size - int(match.group(2)))
            if start >= size or end <= start:
                self._send(416, b"", "text/plain", {"Content-Range": f"bytes */{size}"})
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        media_type = "audio/mpeg" if extension == "mp3" else "video/quicktime" if extension == "mov" else "video/mp4"
        self.send_response(status)
        self.send_header("Content-Type", media_type)
        self.send_header("Content-Length", str(end - start))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        state.count("download")
        truncate_at, rate = state.take_download_plan()
        self._stream(source, start, end, truncate_at, rate)

    def _stream(
        self, source: content.Content, start: int, end: int, truncate_at: float | None, rate: float | None
    ) -> None:
        limit = end if truncate_at is None else start + int((end - start) * truncate_at)
        chunk = content.BLOCK if not rate else max(1024, min(content.BLOCK, int(rate / 20)))
        sent, began = 0, time.monotonic()
        for piece in content.iter_bytes(source, start, chunk):
            piece = piece[: max(0, limit - start - sent)]
            if not piece:
                break
            self.wfile.write(piece)
            sent += len(piece)
            if rate:
                ahead = sent / rate - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)
        if truncate_at is not None:
            # Content-Length promised more: closing now is what a reset proxy or a dying server looks like.
            self._drop()

    # --- the control API --------------------------------------------------------------------------

    def _control(self, path: str) -> None:
        reader = wire.body_reader(self.headers, self.rfile)
        raw = wire.read_all(reader)
        try:
            body = json.loads(raw) if raw.strip() else {}
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            result = self._control_action(self.command, path.rstrip("/"), body)
        except KeyError as error:
            self._json(404, {"error": f"not found: {error}"})
            return
        except (TypeError, ValueError) as error:
            self._json(400, {"error": str(error)})
            return
        self._json(200, result)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def _control_action(self, method: str, path: str, body: dict[str, Any]) -> Any:
        state = self.state
        post = method == "POST"
        entry = re.fullmatch(r"/sim/entries/([^/]+)(/[a-z0-9-]+)?", path)
        if path == "/sim/health":
            return {"ok": True, "partnerId": state.partner_id, "entries": len(state.entries)}
        if path == "/sim/counters" and method == "GET":
            return {
                "counters": state.counters,
                "subrequestCounters": state.subrequest_counters,
                "blocked": state.rate_limit.blocked,
            }
        if path == "/sim/rate-limit" and post:
            state.rate_limit.per_second = body.get("per_second")
            return {"ok": True, "per_second": state.rate_limit.per_second}
        if path == "/sim/counters/reset" and post:
            state.reset_counters()
        elif path == "/sim/sessions/expire" and post:
            state.expire_sessions()
        elif path == "/sim/faults" and post:
            state.inject_fault(**body)
        elif path == "/sim/faults/clear" and post:
            state.clear_faults()
        elif path == "/sim/download-faults" and post:
            state.set_download_faults(**body)
        elif (redirect := re.fullmatch(r"/sim/flavors/([^/]+)/redirect", path)) and post:
            state.redirect_download(redirect.group(1), **body)
        elif path == "/sim/conversions/complete" and post:
            state.complete_conversions()
        elif path == "/sim/entries" and post:
            return {"id": state.add_entry(**body)}
        elif path == "/sim/users" and post:
            return state.add_user(**body)
        elif entry and method == "GET" and entry.group(2) is None:
            return state.get_entry(entry.group(1))
        elif entry and method == "GET" and entry.group(2) == "/flavors":
            return state.get_flavors(entry.group(1))
        elif entry and method == "GET" and entry.group(2) == "/original-sha256":
            return {"sha256": state.original_bytes_sha256(entry.group(1))}
        elif entry and post and entry.group(2) == "/play":
            return state.play(entry.group(1), body.get("when"))
        elif entry and post and entry.group(2) == "/tags":
            return state.set_tags(entry.group(1), body["tags"])
        elif entry and (post and entry.group(2) == "/delete" or method == "DELETE" and entry.group(2) is None):
            state.delete_entry(entry.group(1))
        else:
            raise KeyError(f"{method} {path}")
        return {"ok": True}

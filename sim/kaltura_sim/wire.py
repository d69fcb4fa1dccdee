"""The API's wire format: request parameters in, XML out.

Requests: the official client POSTs JSON (nested objects, every value a string, `<name>__null` for an explicit
null); uploads come as multipart/form-data with the parameters in a part named `json` and the file in
`fileData`. Form-encoded and query-string parameters with Kaltura's flattened names (`filter:statusIn`,
`filter[statusIn]`) are accepted too. File parts are streamed to disk, never held in memory.

Responses: `<xml><result>...</result><executionTime>...</executionTime></xml>`; objects start with
<objectType>, nulls are empty elements, booleans 1/0, arrays are <item> lists, errors are <error> elements.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from .content import BLOCK
from .errors import KalturaError

MAX_FIELD_BYTES = 64 << 20
_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class BadRequest(Exception):
    pass


@dataclass
class UploadedFile:
    path: str
    filename: str | None
    size: int


class MultiResult(list):
    """The results of a multirequest: each one becomes an <item>, errors included."""


# --- reading requests -----------------------------------------------------------------------------


class _LengthReader:
    def __init__(self, stream: BinaryIO, length: int) -> None:
        self.stream, self.remaining = stream, length

    def read(self, size: int) -> bytes:
        if self.remaining <= 0:
            return b""
        data = self.stream.read(min(size, self.remaining))
        if not data:
            raise BadRequest("the request body ended early")
        self.remaining -= len(data)
        return data


class _ChunkedReader:
    def __init__(self, stream: BinaryIO) -> None:
        self.stream, self.left, self.done = stream, 0, False

    def read(self, size: int) -> bytes:
        if self.done:
            return b""
        if self.left == 0:
            line = self.stream.readline(1024)
            try:
                self.left = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise BadRequest("bad chunked encoding") from None
            if self.left == 0:
                while self.stream.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                self.done = True
                return b""
        data = self.stream.read(min(size, self.left))
        if not data:
            raise BadRequest("the request body ended early")
        self.left -= len(data)
        if self.left == 0:
            self.stream.readline(16)
        return data


def body_reader(headers: Any, stream: BinaryIO) -> _LengthReader | _ChunkedReader:
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        return _ChunkedReader(stream)
    try:
        return _LengthReader(stream, int(headers.get("Content-Length") or 0))
    except ValueError:
        raise BadRequest("bad Content-Length") from None


def read_all(reader: Any) -> bytes:
    parts, total = [], 0
    while piece := reader.read(BLOCK):
        total += len(piece)
        if total > MAX_FIELD_BYTES:
            raise BadRequest("request body too large for a non-file request")
        parts.append(piece)
    return b"".join(parts)


def unflatten(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """`filter:statusIn=2` and `filter[statusIn]=2` both become {"filter": {"statusIn": "2"}}."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        path = [part for part in re.split(r"[:\[\]]+", key) if part]
        if not path:
            continue
        node = result
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = value
    return result


def _merge(target: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def read_params(
    headers: Any, stream: BinaryIO, query: str, spool_dir: Callable[[], str]
) -> tuple[dict, dict[str, UploadedFile]]:
    """Parameters and uploaded files of an API request; the whole body is consumed. `spool_dir` gives the
    directory for uploaded files (asked only when there is one)."""
    params = unflatten(urllib.parse.parse_qsl(query, keep_blank_values=True))
    files: dict[str, UploadedFile] = {}
    reader = body_reader(headers, stream)
    content_type = headers.get("Content-Type", "")
    if content_type.lower().startswith("multipart/form-data"):
        match = re.search(r'boundary="?([^";]+)"?', content_type)
        if not match:
            raise BadRequest("multipart without a boundary")
        fields, files = parse_multipart(reader, match.group(1).encode(), spool_dir())
        body = fields.pop("json", None)
        _merge(params, unflatten(list(fields.items())))
        if body:
            _merge(params, _json_object(body))
        return params, files
    body = read_all(reader)
    if not body.strip():
        return params, files
    if "json" in content_type.lower() or body.lstrip()[:1] == b"{":
        _merge(params, _json_object(body))
    else:
        _merge(params, unflatten(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)))
    return params, files


def _json_object(body: bytes | str) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        raise BadRequest("the body is not JSON") from None
    if not isinstance(value, dict):
        raise BadRequest("the JSON body is not an object")
    return value


def parse_multipart(reader: Any, boundary: bytes, spool_dir: str) -> tuple[dict[str, str], dict[str, UploadedFile]]:
    """A streaming multipart/form-data parser: file parts go to temporary files under `spool_dir` in blocks,
    so a chunk of any size costs one block of memory."""
    marker = b"\r\n--" + boundary
    # Start with CRLF so that the first boundary line looks like every later one.
    buffer = bytearray(b"\r\n")
    fields: dict[str, str] = {}
    files: dict[str, UploadedFile] = {}

    def fill() -> bool:
        data = reader.read(BLOCK)
        buffer.extend(data)
        return bool(data)

    def find(needle: bytes) -> int:
        while (index := buffer.find(needle)) < 0:
            if not fill():
                raise BadRequest("truncated multipart body")
        return index

    del buffer[: find(marker) + len(marker)]
    while True:
        while len(buffer) < 2 and fill():
            pass
        if buffer[:2] == b"--":
            break
        end = find(b"\r\n\r\n")
        head = buffer[:end].decode("utf-8", "replace")
        del buffer[: end + 4]
        name_match = re.search(r'\bname="([^"]*)"', head)
        file_match = re.search(r'\bfilename="([^"]*)"', head)
        name = name_match.group(1) if name_match else ""
        # Everything but the `json` field is treated as a file, with or without a filename.
        is_file = file_match is not None or name != "json"
        sink: Any
        if is_file:
            handle, path = tempfile.mkstemp(prefix="part-", dir=spool_dir)
            sink = os.fdopen(handle, "wb")
        else:
            sink, path = io.BytesIO(), ""
        size = 0
        keep = len(marker) - 1
        try:
            while True:
                index = buffer.find(marker)
                if index >= 0:
                    sink.write(buffer[:index])
                    size += index
                    del buffer[: index + len(marker)]
                    break
                if len(buffer) > keep:
                    flush = len(buffer) - keep
                    sink.write(buffer[:flush])
                    size += flush
                    del buffer[:flush]
                if not is_file and size > MAX_FIELD_BYTES:
                    raise BadRequest(f"form field {name} too large")
                if not fill():
                    raise BadRequest("truncated multipart body")
        finally:
            if is_file:
                sink.close()
        if is_file:
            files[name] = UploadedFile(path, file_match.group(1) if file_match else None, size)
        else:
            fields[name] = sink.getvalue().decode("utf-8", "replace")
    while reader.read(BLOCK):
        pass  # the epilogue
    return fields, files


# --- writing responses ----------------------------------------------------------------------------


def _text(value: str) -> str:
    if value.isalnum():
        return value
    if not (value.isascii() and value.isprintable()):
        # Printable ASCII holds none of the characters XML forbids: only other text needs the regex.
        value = _INVALID_XML_CHARS.sub("", value)
    if "&" in value:
        value = value.replace("&", "&amp;")
    if "<" in value:
        value = value.replace("<", "&lt;")
    if ">" in value:
        value = value.replace(">", "&gt;")
    return value


def _write(out: list[str], value: Any) -> None:
    if isinstance(value, str):
        out.append(_text(value))
    elif value is None:
        return
    elif isinstance(value, KalturaError):
        out.append("<error><objectType>KalturaAPIException</objectType>")
        out.append(f"<code>{_text(value.code)}</code><message>{_text(value.message)}</message><args>")
        for name, arg in value.args_map.items():
            out.append(f"<item><objectType>KalturaApiExceptionArg</objectType><name>{_text(name)}</name>")
            out.append(f"<value>{_text(arg)}</value></item>")
        out.append("</args></error>")
    elif isinstance(value, bool):
        out.append("1" if value else "0")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(str(int(value)) if value.is_integer() else repr(value))
    elif isinstance(value, dict):
        for key, item in value.items():
            if key[0] == "_":
                continue
            # Scalars in one piece: a page of 500 entries has 30,000 fields.
            kind = type(item)
            if kind is str:
                out.append(f"<{key}>{_text(item)}</{key}>")
            elif kind is int or item is None:
                out.append(f"<{key}>{'' if item is None else item}</{key}>")
            else:
                out.append(f"<{key}>")
                _write(out, item)
                out.append(f"</{key}>")
    elif isinstance(value, list | tuple):
        for item in value:
            out.append("<item>")
            _write(out, item)
            out.append("</item>")
    else:
        raise TypeError(f"cannot serialise {type(value).__name__}")


def encode_response(result: Any, execution_time: float) -> bytes:
    out = ['<?xml version="1.0" encoding="utf-8"?><xml><result>']
    _write(out, result)
    out.append(f"</result><executionTime>{execution_time:.4f}</executionTime></xml>")
    return "".join(out).encode("utf-8")

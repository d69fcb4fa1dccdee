"""Bytes the simulator serves: generated flavor content, uploaded files and a thumbnail image.

A flavor's content is described by a small tuple instead of being stored, so 10,000 entries with gigabytes of
"video" cost no memory: ("gen", key, size) is derived from `key`; ("file", path, size) is an uploaded file.
"""

from __future__ import annotations

import functools
import hashlib
import random
import struct
import zlib
from collections.abc import Iterator

BLOCK = 1 << 20

Content = tuple[str, str, int]


def generated(key: str, size: int) -> Content:
    return ("gen", key, int(size))


def from_file(path: str, size: int) -> Content:
    return ("file", path, int(size))


def size_of(content: Content) -> int:
    return content[2]


@functools.lru_cache(maxsize=8)
def _base_block(key: str) -> bytes:
    # Seeded from the key alone, so the same flavor serves the same bytes in every run and process.
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:16], "big")
    return random.Random(seed).randbytes(BLOCK)


def iter_bytes(content: Content, start: int = 0, chunk: int = BLOCK) -> Iterator[memoryview]:
    """Yield the content from `start` to its end, in pieces of at most `chunk` bytes.

    Generated content is block i = the key's block with its first 8 bytes replaced by i, so blocks differ (a
    truncated or shuffled download cannot match the checksum) without generating more than one block. The
    yielded views share one buffer: use each before asking for the next.
    """
    kind, ref, size = content
    if kind == "file":
        yield from _iter_file(ref, size, start, chunk)
        return
    buffer = bytearray(_base_block(ref))
    view = memoryview(buffer)
    position = start
    while position < size:
        index, offset = divmod(position, BLOCK)
        buffer[0:8] = index.to_bytes(8, "big")
        block_end = min(BLOCK, size - index * BLOCK)
        while offset < block_end:
            end = min(block_end, offset + chunk)
            yield view[offset:end]
            position += end - offset
            offset = end


def _iter_file(path: str, size: int, start: int, chunk: int) -> Iterator[memoryview]:
    buffer = bytearray(min(chunk, BLOCK))
    view = memoryview(buffer)
    with open(path, "rb") as handle:
        handle.seek(start)
        remaining = size - start
        while remaining > 0:
            read = handle.readinto(view[: min(len(buffer), remaining)])
            if not read:
                raise OSError(f"{path} is shorter than {size} bytes")
            yield view[:read]
            remaining -= read


def sha256(content: Content) -> str:
    if content[0] == "gen":
        return _generated_sha256(content)
    return _sha256(content)


@functools.lru_cache(maxsize=256)
def _generated_sha256(content: Content) -> str:
    # Generated content never changes and hashing runs at ~200 MB/s on small machines: remember it.
    return _sha256(content)


def _sha256(content: Content) -> str:
    digest = hashlib.sha256()
    for piece in iter_bytes(content):
        digest.update(piece)
    return digest.hexdigest()


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


@functools.lru_cache(maxsize=4096)
def thumbnail_png(entry_id: str, version: int) -> bytes:
    """The entry's default thumbnail: its own colour for each entry and thumbnail version, so a copy of one
    entry's thumbnail can be told from another's."""
    digest = hashlib.sha256(f"{entry_id}/{version}".encode()).digest()
    return _png(16, 9, (digest[0], digest[1], digest[2]))


def caption_text(title: str, extension: str) -> bytes:
    """A short caption file in SRT or WebVTT (the cue times differ only in the decimal separator)."""
    cues = [f"This is {title}.", "Captions kept beside the archived original.", "— the end —"]
    lines = ["WEBVTT", ""] if extension == "vtt" else []
    separator = "." if extension == "vtt" else ","
    for number, text in enumerate(cues, 1):
        start, end = (number - 1) * 4, number * 4 - 1
        if extension != "vtt":
            lines.append(str(number))
        lines += [f"00:00:{start:02d}{separator}000 --> 00:00:{end:02d}{separator}500", text, ""]
    return "\n".join(lines).encode()


def mp4_duration_ms(path: str) -> int | None:
    """The movie duration from an MP4/MOV file's mvhd box, or None if the file is not one.

    Kaltura re-probes replaced content, so an entry that gets a 10-second placeholder lasts 10 seconds. Only the
    top-level boxes are walked (by their sizes), so this reads a few hundred bytes even from a large file.
    """
    try:
        with open(path, "rb") as handle:
            file_size = handle.seek(0, 2)
            position = 0
            while position + 8 <= file_size:
                handle.seek(position)
                size, kind = struct.unpack(">I4s", handle.read(8))
                header = 8
                if size == 1:
                    size, header = struct.unpack(">Q", handle.read(8))[0], 16
                elif size == 0:
                    size = file_size - position
                if size < header:
                    return None
                if kind == b"moov":
                    moov = handle.read(min(size - header, 64 << 20))
                    at = moov.find(b"mvhd")
                    if at < 4:
                        return None
                    body = moov[at + 4 :]
                    if body[0] == 1:
                        timescale, duration = struct.unpack(">IQ", body[20:32])
                    else:
                        timescale, duration = struct.unpack(">II", body[12:20])
                    return int(duration * 1000 / timescale) if timescale else None
                position += size
    except (OSError, struct.error, IndexError):
        return None
    return None

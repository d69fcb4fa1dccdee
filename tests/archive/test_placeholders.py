"""The placeholders that stand in for archived originals: a spoken, captioned video and a spoken audio notice."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from kaltura_sim.content import mp4_duration_ms

ROOT = Path(__file__).resolve().parents[2]
CUE = re.compile(r"(\d\d):(\d\d):(\d\d\.\d{3}) --> (\d\d):(\d\d):(\d\d\.\d{3})\n(.+)")


def seconds(hours: str, minutes: str, rest: str) -> float:
    return int(hours) * 3600 + int(minutes) * 60 + float(rest)


def cues(path: Path) -> list[tuple[float, float, str]]:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("WEBVTT\n")
    return [(seconds(*m.groups()[:3]), seconds(*m.groups()[3:6]), m.group(7)) for m in CUE.finditer(text)]


def handlers(path: Path) -> set[bytes]:
    """The MP4's track kinds (hdlr boxes: 'vide', 'soun', ...)."""
    return set(re.findall(rb"hdlr.{8}(vide|soun)", path.read_bytes(), re.DOTALL))


def test_the_settings_name_the_shipped_files():
    assert settings.PLACEHOLDER_VIDEO == ROOT / "assets" / "placeholder.mp4"
    assert settings.PLACEHOLDER_AUDIO == ROOT / "assets" / "placeholder.m4a"
    assert settings.PLACEHOLDER_CAPTIONS == ROOT / "assets" / "placeholder.en.vtt"


def test_video_and_audio_say_the_same_short_notice_and_stay_small():
    video, audio = settings.PLACEHOLDER_VIDEO, settings.PLACEHOLDER_AUDIO
    assert handlers(video) == {b"vide", b"soun"}  # spoken, so the captions have something to caption
    assert handlers(audio) == {b"soun"}  # an audio entry stays audio
    video_ms, audio_ms = mp4_duration_ms(str(video)), mp4_duration_ms(str(audio))
    assert 5_000 <= video_ms <= 30_000 and abs(video_ms - audio_ms) <= 100
    assert video.stat().st_size < 100_000 and audio.stat().st_size < 50_000


def test_the_captions_cover_the_speech_in_plain_words():
    found = cues(settings.PLACEHOLDER_CAPTIONS)
    assert len(found) >= 2
    duration = mp4_duration_ms(str(settings.PLACEHOLDER_VIDEO)) / 1000
    ends = 0.0
    for start, end, _ in found:
        assert ends <= start < end <= duration
        ends = end
    words = " ".join(text for _, _, text in found).lower()
    assert "archived" in words and "tomorrow" in words and "within a day" in words


@pytest.mark.skipif(not (shutil.which("ffmpeg") and shutil.which("espeak-ng")), reason="needs ffmpeg and espeak-ng")
def test_the_script_makes_what_is_committed(tmp_path):
    subprocess.run([str(ROOT / "scripts" / "make_placeholder.sh"), str(tmp_path)], check=True, capture_output=True)
    # Encoders differ between versions: the captions (the speech's timing) must agree, the media in length.
    assert (tmp_path / "placeholder.en.vtt").read_text() == settings.PLACEHOLDER_CAPTIONS.read_text()
    for name in ("placeholder.mp4", "placeholder.m4a"):
        assert abs(mp4_duration_ms(str(tmp_path / name)) - mp4_duration_ms(str(ROOT / "assets" / name))) <= 100

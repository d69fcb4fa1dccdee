#!/usr/bin/env bash
# Regenerates the placeholders that stand in for an archived original, and the video's captions:
#   assets/placeholder.mp4     video: the notice on screen, spoken (PLACEHOLDER_VIDEO)
#   assets/placeholder.m4a     audio: the same notice, spoken, for audio entries (PLACEHOLDER_AUDIO)
#   assets/placeholder.en.vtt  the video's captions, timed to the speech (PLACEHOLDER_CAPTIONS)
# Needs ffmpeg, espeak-ng and the DejaVu fonts (apt-get install ffmpeg espeak-ng fonts-dejavu-core).
# The same tools' versions give the same files (bit-exact encoders, no dates in the metadata).
# Usage: scripts/make_placeholder.sh [DIRECTORY]   (default: assets)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-assets}"
font=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# What a student hears and reads. One sentence a caption; the screen shows the short version.
sentences=(
  "This recording has been archived."
  "Because you tried to play it, it is now being brought back."
  "Please try again tomorrow: within a day it will play as before."
)
line1="This recording has been archived."
line2="Because you tried to play it, it is coming back."
line3="Please try again tomorrow:"
line4="within a day it will play as before."

# Speak each sentence, with a short pause after it; the captions follow the measured lengths.
pause=0.6
vtt="$work/captions.vtt"
printf 'WEBVTT\n\n' >"$vtt"
start=0.5
: >"$work/parts.txt"
ffmpeg -hide_banner -loglevel error -f lavfi -i "anullsrc=channel_layout=mono:sample_rate=22050" -t "$start" \
  "$work/lead.wav"
echo "file '$work/lead.wav'" >>"$work/parts.txt"
stamp() { awk -v t="$1" 'BEGIN { printf "%02d:%02d:%06.3f", int(t / 3600), int(t / 60) % 60, t - int(t / 60) * 60 }'; }
for index in "${!sentences[@]}"; do
  espeak-ng -v en-us -s 150 -w "$work/raw$index.wav" "${sentences[$index]}"
  ffmpeg -hide_banner -loglevel error -i "$work/raw$index.wav" -af "apad=pad_dur=$pause" -ar 22050 -ac 1 \
    "$work/part$index.wav"
  echo "file '$work/part$index.wav'" >>"$work/parts.txt"
  length="$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$work/raw$index.wav")"
  end="$(awk -v s="$start" -v l="$length" 'BEGIN { print s + l }')"
  printf '%s\n%s --> %s\n%s\n\n' "$((index + 1))" "$(stamp "$start")" "$(stamp "$end")" "${sentences[$index]}" >>"$vtt"
  start="$(awk -v e="$end" -v p="$pause" 'BEGIN { print e + p }')"
done
ffmpeg -hide_banner -loglevel error -f concat -safe 0 -i "$work/parts.txt" -c pcm_s16le "$work/speech.wav"
duration="$(awk -v s="$start" 'BEGIN { printf "%.2f", s + 0.4 }')"
bitexact=(-fflags +bitexact -flags:v +bitexact -flags:a +bitexact -map_metadata -1)

# The lines go through files: drawtext would read their colons and commas as its own syntax.
draw=""
for index in 1 2 3 4; do
  name="line$index"
  printf '%s' "${!name}" >"$work/$name.txt"
  size=38 y="h/2+$((index * 60 - 150))"
  [ "$index" = 1 ] && size=56 y="h/2-150"
  draw+="${draw:+,}drawtext=fontfile=$font:textfile=$work/$name.txt:fontcolor=white:fontsize=$size:x=(w-text_w)/2:y=$y"
done
ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "color=c=0x1f2a44:s=1280x720:d=$duration:r=10" -i "$work/speech.wav" -vf "$draw" \
  -af "apad" -t "$duration" \
  -c:v libx264 -preset veryslow -tune stillimage -crf 30 -g 300 -pix_fmt yuv420p \
  -c:a aac -b:a 16k -ac 1 "${bitexact[@]}" -movflags +faststart -metadata title="Archived recording" \
  "$out/placeholder.mp4"

ffmpeg -hide_banner -loglevel error -y -i "$work/speech.wav" -af "apad" -t "$duration" \
  -c:a aac -b:a 16k -ac 1 "${bitexact[@]}" -movflags +faststart -metadata title="Archived recording" \
  "$out/placeholder.m4a"

cp "$vtt" "$out/placeholder.en.vtt"
ls -l "$out/placeholder.mp4" "$out/placeholder.m4a" "$out/placeholder.en.vtt"

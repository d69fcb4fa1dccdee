#!/usr/bin/env bash
# Regenerates assets/placeholder.mp4, the short video that stands in for an
# archived original. Needs ffmpeg and the DejaVu fonts (apt-get install ffmpeg fonts-dejavu-core).
set -euo pipefail
cd "$(dirname "$0")/.."
font=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
line1="This video has been archived."
line2="It will be back within a day -"
line3="please try again later."
ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "color=c=0x1f2a44:s=1280x720:d=6:r=25" \
  -f lavfi -i "anullsrc=channel_layout=stereo:sample_rate=44100" \
  -vf "drawtext=fontfile=$font:text='$line1':fontcolor=white:fontsize=52:x=(w-text_w)/2:y=h/2-110,\
drawtext=fontfile=$font:text='$line2':fontcolor=white:fontsize=40:x=(w-text_w)/2:y=h/2,\
drawtext=fontfile=$font:text='$line3':fontcolor=white:fontsize=40:x=(w-text_w)/2:y=h/2+60" \
  -c:v libx264 -preset veryslow -tune stillimage -crf 30 -pix_fmt yuv420p \
  -c:a aac -b:a 32k -shortest -movflags +faststart -metadata title="Archived video" \
  assets/placeholder.mp4
ls -l assets/placeholder.mp4

#!/bin/sh
# Stylize a video frame by frame through ffmpeg's image pipes. Each frame starts from the previous
# result (-temporal), which keeps the frames coherent and needs fewer iterations per frame.
#   sh examples/video.sh [in.mp4 [style.ppm [out.mp4]]]
# Without in.mp4, a two-second clip panning over the example photo is made first.
# PAMSTYLE names the pamstyle to run, PAMSTYLE_OPTIONS adds options.
set -eu
here=$(dirname "$0")
style=${2:-$here/images/scream.ppm}
out=${3:-$here/out/chelsea-scream.mp4}
mkdir -p "$(dirname "$out")"
in=${1:-}
if [ -z "$in" ]; then
    in=$here/out/chelsea-pan.mp4
    ffmpeg -loglevel error -y -loop 1 -i "$here/images/chelsea.ppm" -t 2 -r 12 \
        -vf "crop=300:200:x='t*60':y=50,format=yuv420p" "$in"
fi

ffmpeg -loglevel error -i "$in" -f image2pipe -c:v ppm - |
    ${PAMSTYLE:-pamstyle} -temporal -size 256 -iterations 40 -scales 1 ${PAMSTYLE_OPTIONS:-} "$style" |
    ffmpeg -loglevel error -y -f image2pipe -c:v ppm -framerate 12 -i - -pix_fmt yuv420p "$out"
echo "wrote $out" >&2

#!/bin/sh
# Stylize a photo in a pipeline of netpbm programs: scale it, repaint it, frame it, save it as PNG.
#   sh examples/netpbm-pipeline.sh [content.ppm [style.ppm [out.png]]]
# PAMSTYLE names the pamstyle to run, PAMSTYLE_OPTIONS adds options (e.g. "-iterations 50").
set -eu
here=$(dirname "$0")
content=${1:-$here/images/chelsea.ppm}
style=${2:-$here/images/scream.ppm}
out=${3:-$here/out/chelsea-scream-framed.png}
mkdir -p "$(dirname "$out")"

pamscale -xyfit 384 384 "$content" |
    ${PAMSTYLE:-pamstyle} ${PAMSTYLE_OPTIONS:-} "$style" |
    pnmmargin -white 8 |
    pnmtopng > "$out"
echo "wrote $out" >&2

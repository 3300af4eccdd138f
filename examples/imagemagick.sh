#!/bin/sh
# Stylize an image of any format ImageMagick reads and write any format it writes:
#   sh examples/imagemagick.sh [in.jpg [style.ppm [out.png]]]
# PAMSTYLE names the pamstyle to run, PAMSTYLE_OPTIONS adds options (e.g. "-iterations 50").
set -eu
here=$(dirname "$0")
in=${1:-$here/images/chelsea.ppm}
style=${2:-$here/images/scream.ppm}
out=${3:-$here/out/chelsea-scream-magick.png}
mkdir -p "$(dirname "$out")"

convert "$in" -auto-orient -resize '384x384>' ppm:- |
    ${PAMSTYLE:-pamstyle} -style-weight 10 ${PAMSTYLE_OPTIONS:-} "$style" |
    convert - -unsharp 0x1 "$out"
echo "wrote $out" >&2

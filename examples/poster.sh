#!/bin/sh
# A print at the photo's own resolution: the whole photo optimized at its own size (-size native), within a time
# budget planned across the coarse-to-fine scales, written as a PNG that carries the print's resolution.
#   sh examples/poster.sh photo.jpg [style.ppm [poster.png [seconds [dpi]]]]
# The photo may be any format ImageMagick reads (a phone's 4032x3024 JPEG makes a 34x25 cm print at 300 dpi).
# PAMSTYLE names the pamstyle to run; PAMSTYLE_OPTIONS adds options (-memory, for one: a 12-megapixel photo at its
# own size runs within the default 1900 MiB, and faster with more; a 24-megapixel one needs at least about 3200).
set -eu
here=$(dirname "$0")
photo=${1:?usage: sh examples/poster.sh photo.jpg [style.ppm [poster.png [seconds [dpi]]]]}
style=${2:-$here/images/scream.ppm}
out=${3:-$here/out/poster.png}
seconds=${4:-1800}
dpi=${5:-300}
mkdir -p "$(dirname "$out")"

# -auto-orient: phone photos are often stored on their side with an EXIF orientation.
convert "$photo" -auto-orient ppm:- |
    ${PAMSTYLE:-pamstyle} -size native -time-limit "$seconds" ${PAMSTYLE_OPTIONS:-} "$style" |
    convert - -units PixelsPerInch -density "$dpi" "$out"
echo "wrote $out" >&2

#!/bin/sh
# Makes the pictures of docs/ from the bundled example images (make figures): the Gram and the Wasserstein-2 style
# losses side by side, the photo and its result without and with the layout loss, the picture's border without and
# with the mirrored margin (its top-left corner, enlarged),
# two styles each in its own region of one photo, and a panning clip with and without -temporal. Needs pamstyle built
# in release mode, the netpbm tools and ImageMagick's convert.
set -eu

PAMSTYLE=${PAMSTYLE:-.build/release/pamstyle}
IMAGES=examples/images
OUT=${OUT:-examples/out/figures}
DOCS=${DOCS:-docs}
CONTENT=$IMAGES/chelsea.ppm
STYLE=$IMAGES/scream.ppm
mkdir -p "$OUT"

# An image with a caption under it, in pbmtext's built-in font, centred on white as wide as the image.
captioned() {  # image caption output
    width=$(pamfile -size "$1" | cut -d' ' -f1)
    pbmtext -builtin fixed -- "$2" | pnmpad -white -width "$width" -halign 0.5 > "$OUT/caption.pbm"
    pnmcat -white -topbottom -jcenter "$1" "$OUT/caption.pbm" > "$3"
}

stylize() {  # output options...
    output=$1
    shift
    echo "figures: pamstyle $* < $CONTENT"
    "$PAMSTYLE" -quiet "$@" < "$CONTENT" > "$output.tmp"
    mv "$output.tmp" "$output"
}

# The two style losses.
stylize "$OUT/gram.ppm" "$STYLE"
stylize "$OUT/w2.ppm" -style-loss w2 "$STYLE"
captioned "$OUT/gram.ppm" "-style-loss gram (default)" "$OUT/gram-captioned.ppm"
captioned "$OUT/w2.ppm" "-style-loss w2" "$OUT/w2-captioned.ppm"
pnmcat -white -leftright -jtop "$OUT/gram-captioned.ppm" "$OUT/w2-captioned.ppm" | pnmtopng > "$DOCS/style-loss.png"

# The layout loss: the photo, the result without it, and the default.
stylize "$OUT/no-layout.ppm" -layout-weight 0 "$STYLE"
captioned "$CONTENT" "photo" "$OUT/photo-captioned.ppm"
captioned "$OUT/no-layout.ppm" "-layout-weight 0" "$OUT/no-layout-captioned.ppm"
captioned "$OUT/gram.ppm" "-layout-weight 3000 (default)" "$OUT/layout-captioned.ppm"
pnmcat -white -leftright -jtop "$OUT/photo-captioned.ppm" "$OUT/no-layout-captioned.ppm" "$OUT/layout-captioned.ppm" \
    | pnmtopng > "$DOCS/layout.png"

# The border: the top-left corner of a result without the mirrored margin and of the default one (a margin of 16
# pixels), enlarged 3 times.
stylize "$OUT/no-margin.ppm" -margin 0 "$STYLE"
for name in no-margin gram; do
    pamcut -left 0 -top 0 -width 150 -height 100 "$OUT/$name.ppm" | pnmenlarge 3 > "$OUT/$name-corner.ppm"
done
captioned "$OUT/no-margin-corner.ppm" "-margin 0" "$OUT/corner-0.ppm"
captioned "$OUT/gram-corner.ppm" "-margin 16 (default)" "$OUT/corner-16.ppm"
pnmcat -white -leftright -jtop "$OUT/corner-0.ppm" "$OUT/corner-16.ppm" | pnmtopng > "$DOCS/borders.png"

# Two styles, each in its own region: The Scream on the left, a camouflage pattern (ppmpat) on the right, with a
# soft edge between them.
ppmpat -camo -randomseed 7 352 448 > "$OUT/camo.ppm"
width=$(pamfile -size "$CONTENT" | cut -d' ' -f1)
height=$(pamfile -size "$CONTENT" | cut -d' ' -f2)
pgmramp -lr "$width" "$height" | pamfunc -subtractor=110 | pamfunc -multiplier=8 > "$OUT/right.pgm"
pnminvert "$OUT/right.pgm" > "$OUT/left.pgm"
echo "figures: pamstyle -style-masks left.pgm,right.pgm $STYLE camo.ppm < $CONTENT"
"$PAMSTYLE" -quiet -style-masks "$OUT/left.pgm,$OUT/right.pgm" "$STYLE" "$OUT/camo.ppm" < "$CONTENT" > "$OUT/masks.ppm"
pnmscale -height "$height" "$OUT/camo.ppm" > "$OUT/camo-small.ppm"
pnmscale -height "$height" "$STYLE" > "$OUT/scream-small.ppm"
captioned "$OUT/scream-small.ppm" "style 1 (left)" "$OUT/style-1.ppm"
captioned "$OUT/left.pgm" "-style-masks left.pgm," "$OUT/mask-1.ppm"
captioned "$OUT/masks.ppm" "result" "$OUT/result.ppm"
captioned "$OUT/right.pgm" "right.pgm" "$OUT/mask-2.ppm"
captioned "$OUT/camo-small.ppm" "style 2 (right)" "$OUT/style-2.ppm"
pnmcat -white -leftright -jtop "$OUT/style-1.ppm" "$OUT/mask-1.ppm" "$OUT/result.ppm" "$OUT/mask-2.ppm" "$OUT/style-2.ppm" \
    | pnmtopng > "$DOCS/masks.png"

# Video: ten frames of a view panning 4 pixels a frame across the photo, stylized each alone, with -temporal and no
# temporal loss (each frame starts from the last result moved along the optical flow), and with -temporal at its
# defaults. Per row, two consecutive frames and their difference once the second is aligned with the first (the
# pan is known: frame t at x is frame t-1 at x + 4), 4 times brighter: a steady clip's difference is dark.
rm -f "$OUT/clip.ppm"
for frame in 0 1 2 3 4 5 6 7 8 9; do
    pamcut -left $((frame * 4)) -top 60 -width 256 -height 176 "$CONTENT" >> "$OUT/clip.ppm"
done
video() {  # name options...
    name=$1
    shift
    echo "figures: pamstyle -iterations 60 $* $STYLE < clip.ppm"
    "$PAMSTYLE" -quiet -iterations 60 "$@" "$STYLE" < "$OUT/clip.ppm" > "$OUT/$name.ppm.tmp"
    mv "$OUT/$name.ppm.tmp" "$OUT/$name.ppm"
    pamsplit -quiet "$OUT/$name.ppm" "$OUT/$name-%d.ppm"
    pamcut -right -5 "$OUT/$name-6.ppm" > "$OUT/$name-a.ppm"
    pamcut -left 4 "$OUT/$name-5.ppm" > "$OUT/$name-b.ppm"
    pamarith -difference "$OUT/$name-a.ppm" "$OUT/$name-b.ppm" | pamfunc -multiplier=4 | pnmpad -black -right 4 \
        > "$OUT/$name-difference.ppm"
}
row() {  # name caption
    pnmcat -white -leftright -jtop "$OUT/$1-5.ppm" "$OUT/$1-6.ppm" "$OUT/$1-difference.ppm" > "$OUT/$1-row.ppm"
    captioned "$OUT/$1-row.ppm" "$2" "$OUT/$1-captioned.ppm"
}
video alone
video warped -temporal -temporal-weight 0
video temporal -temporal
row alone "each frame alone: frames 6 and 7, their difference aligned"
row warped "-temporal -temporal-weight 0: the start moved along the flow"
row temporal "-temporal (default weight): the start and the temporal loss"
pnmcat -white -topbottom -jleft "$OUT/alone-captioned.ppm" "$OUT/warped-captioned.ppm" "$OUT/temporal-captioned.ppm" \
    | pnmtopng > "$DOCS/video.png"
# The clip itself, each frame alone beside -temporal, as an animated GIF at 6 frames a second.
for frame in 0 1 2 3 4 5 6 7 8 9; do
    pnmcat -white -leftright "$OUT/alone-$frame.ppm" "$OUT/temporal-$frame.ppm" > "$OUT/pair-$frame.ppm"
done
convert -delay 17 -loop 0 $(for frame in 0 1 2 3 4 5 6 7 8 9; do echo "$OUT/pair-$frame.ppm"; done) \
    -layers optimize "$DOCS/video.gif"
echo "figures: wrote $DOCS/style-loss.png, $DOCS/layout.png, $DOCS/borders.png, $DOCS/masks.png, $DOCS/video.png and $DOCS/video.gif"

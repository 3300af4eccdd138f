#!/bin/sh
# Stylize a long video on several machines at once with GNU parallel: the frames are cut into segments,
# each segment is stylized with -temporal on one of the hosts, and the results are joined again.
#   sh examples/video-hosts.sh style.ppm [style.ppm...] < frames.pnm > stylized.pnm
#   ffmpeg -i in.mp4 -f image2pipe -c:v ppm - | sh examples/video-hosts.sh style.ppm |
#       ffmpeg -f image2pipe -c:v ppm -framerate 24 -i - out.mp4
# SEGMENT (48) is the frames of each segment. Each segment but the first also starts from the OVERLAP (4)
# frames before it, so that its chain of frames has run in when its own frames come; those frames are
# crossfaded from the earlier segment's results into the later one's.
# HOSTS is parallel's --sshlogin list: ':' (the default) is this machine; HOSTS=2/:,4/alice@host1,4/host2
# runs two segments at a time here and four on each of two hosts, which need ssh without a password,
# rsync, and pamstyle with its weights. The frames and style files are sent to them and the results back.
# PAMSTYLE names the pamstyle to run here, PAMSTYLE_REMOTE the command on the other hosts (pamstyle on
# their PATH), PAMSTYLE_OPTIONS adds options (files they name must exist on every host).
set -eu
me=video-hosts.sh
fail() {
    echo "$me: $*" >&2
    exit 1
}
quote() {
    printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}

segment=${SEGMENT:-48}
overlap=${OVERLAP:-4}
hosts=${HOSTS:-:}
case $segment in
'' | *[!0-9]* | 0*) fail "SEGMENT must be a number of frames, 1 or more; it is '$segment'" ;;
esac
case $overlap in
'' | *[!0-9]* | 0?*) fail "OVERLAP must be a number of frames, 0 or more; it is '$overlap'" ;;
esac
[ "$overlap" -lt "$segment" ] || fail "OVERLAP ($overlap) must be less than SEGMENT ($segment)"
[ $# -ge 1 ] || fail "usage: sh $me style.ppm [style.ppm...] < frames.pnm > stylized.pnm"
for style; do
    [ -f "$style" ] && [ -r "$style" ] || fail "cannot read the style file '$style'"
done
# The jobs run in another directory: a relative PAMSTYLE is made absolute first.
pamstyle=${PAMSTYLE:-pamstyle}
case $pamstyle in
/*) ;;
*/*) pamstyle=$PWD/$pamstyle ;;
esac
command -v "$pamstyle" > /dev/null || fail "PAMSTYLE: no program '$pamstyle'"

# Everything lives in one directory, named relative to its parent: parallel runs there, and on the other
# hosts the same relative names lie in the login directory.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/video-hosts.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
tmp=$(cd "$tmp" && pwd)
name=${tmp##*/}

# The frames, numbered from 0.
mkdir "$tmp/in" "$tmp/out"
if ! pamsplit -quiet - "$tmp/in/%d.pnm" 2> "$tmp/error"; then
    [ -s "$tmp/in/0.pnm" ] || fail "standard input: no frames (the input is empty)"
    cat "$tmp/error" >&2
    exit 1
fi
frames=0
while [ -e "$tmp/in/$frames.pnm" ]; do
    frames=$((frames + 1))
done

# Segment k stylizes the frames from k*segment to (k+1)*segment, after the overlap frames before them:
# its first frame is $(first k).
first() {
    if [ "$1" -eq 0 ]; then echo 0; else echo $(($1 * segment - overlap)); fi
}
segments=$(((frames + segment - 1) / segment))
k=0
while [ $k -lt $segments ]; do
    f=$(first $k)
    end=$(((k + 1) * segment))
    [ $end -le $frames ] || end=$frames
    while [ $f -lt $end ]; do
        cat "$tmp/in/$f.pnm"
        f=$((f + 1))
    done > "$tmp/segment-$k.pnm"
    echo "$name/segment-$k.pnm"
    k=$((k + 1))
done > "$tmp/segments"
rm -r "$tmp/in"

# The style files, under names without spaces, sent to each remote host once.
i=0
styles=
for style; do
    i=$((i + 1))
    cp -- "$style" "$tmp/style-$i.pnm"
    styles="$styles $name/style-$i.pnm"
done
set --
remote=no
old_ifs=$IFS
IFS=,
for login in $hosts; do
    [ "${login##*/}" = : ] || remote=yes
done
IFS=$old_ifs
if [ $remote = yes ]; then
    for style in $styles; do
        set -- "$@" --basefile "$style"
    done
    set -- "$@" --transferfile {} --return {.}.out.pnm --cleanup
fi

# One job per segment; $PARALLEL_SSHHOST is ':' when the job runs here. PARALLEL_SHELL makes the
# remote hosts run the line with sh, whatever their login shell.
here=$(quote "$pamstyle")
there=${PAMSTYLE_REMOTE:-pamstyle}
job="run() { if [ \"\$PARALLEL_SSHHOST\" = : ]; then $here \"\$@\"; else $there \"\$@\"; fi; }"
job="$job; run -temporal ${PAMSTYLE_OPTIONS:-}$styles < {} > {.}.out.pnm"
(cd "$tmp/.." && PARALLEL_SHELL=/bin/sh parallel --sshlogin "$hosts" --halt now,fail=1 "$@" \
    --arg-file "$tmp/segments" "$job" < /dev/null >&2)

# The results, one frame per input frame: frame f from segment f/segment, except that the last overlap
# frames of a segment are crossfaded with the next segment's first ones, the i-th with a weight of
# i/(overlap+1) for the next segment. pamcomp -linear mixes the samples as they are, as video crossfades do.
k=0
while [ $k -lt $segments ]; do
    pamsplit -quiet "$tmp/segment-$k.out.pnm" "$tmp/out/$k-%d.pnm"
    k=$((k + 1))
done
f=0
while [ $f -lt $frames ]; do
    k=$((f / segment))
    own=$tmp/out/$k-$((f - $(first $k))).pnm
    i=$((f - (k + 1) * segment + overlap + 1))
    if [ $i -ge 1 ] && [ $((k + 1)) -lt $segments ]; then
        next=$tmp/out/$((k + 1))-$((i - 1)).pnm
        pamcomp -linear -opacity="$(printf '0.%06d' $((i * 1000000 / (overlap + 1))))" "$next" "$own"
    else
        cat "$own"
    fi
    f=$((f + 1))
done

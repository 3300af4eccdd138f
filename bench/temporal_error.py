#!/usr/bin/python3
"""How steady a stylized clip is: the warping error between consecutive output frames.

    /usr/bin/python3 bench/temporal_error.py [--frames DIR] --content CLIP.ppm RESULT.ppm...

CLIP.ppm is the content clip as one Netpbm stream (P6 or P5 frames, as `ffmpeg -f image2pipe -c:v ppm` writes
them); each RESULT.ppm is a stylized clip as one stream of as many frames, each the size of its content frame.

The flow between consecutive content frames comes from OpenCV's DIS (Debian's python3-opencv, preset MEDIUM, on
the luminance), independent of pamstyle's own flow: b from frame t to frame t-1 and f from t-1 to t. A pixel of
frame t counts where b holds by the two tests of Ruder, Dosovitskiy and Brox ("Artistic style transfer for
videos", 2016): forward-backward consistency, |b + f(p + b)|^2 <= 0.01 (|b|^2 + |f(p + b)|^2) + 0.5, and no
motion boundary, |grad b_x|^2 + |grad b_y|^2 <= 0.01 |b|^2 + 0.002; and p + b must lie inside frame t-1 (what
enters the view is new). For each RESULT and each t >= 1:

    warping error   the mean over the counted pixels and the three channels of (O_t - W(O_{t-1}))^2, with O in
                    0-255 and W the bilinear warp of frame t-1's output along b to frame t;

and "warping_error", the mean over t. "content" is the same measure for the content clip itself: how much of
the error the flow leaves unexplained. "reliable" is the mean share of counted pixels. One JSON line per clip.
--frames DIR also writes each RESULT's middle frame there as PPM (for bench/style_distance.py).
"""
import argparse
import json
import os
import sys

import cv2
import numpy as np


def read_stream(path):
    """The frames of a Netpbm stream of P6/P5 images, as (height, width, 3) float64 arrays in 0-255."""
    data = open(path, "rb").read()
    frames, at = [], 0
    while at < len(data):
        while at < len(data) and data[at:at + 1].isspace():
            at += 1
        if at >= len(data):
            break
        magic = data[at:at + 2]
        if magic not in (b"P6", b"P5"):
            sys.exit(f"{path}: frame {len(frames)} is not raw PPM or PGM ({magic!r})")
        at += 2
        fields = []
        while len(fields) < 3:
            while data[at:at + 1].isspace():
                at += 1
            if data[at:at + 1] == b"#":
                at = data.index(b"\n", at) + 1
                continue
            end = at
            while not data[end:end + 1].isspace():
                end += 1
            fields.append(int(data[at:end]))
            at = end
        at += 1
        width, height, maxval = fields
        channels = 3 if magic == b"P6" else 1
        size = 2 if maxval > 255 else 1
        count = width * height * channels
        raw = np.frombuffer(data, dtype=">u2" if size == 2 else np.uint8, count=count, offset=at)
        at += count * size
        image = raw.reshape(height, width, channels).astype(np.float64) * (255.0 / maxval)
        frames.append(np.repeat(image, 3, axis=2) if channels == 1 else image)
    return frames


def gray(rgb):
    return np.clip(0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2], 0, 255).astype(np.uint8)


DIS = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)


def flow(reference, target):
    """(height, width, 2): reference(p) ~ target(p + flow(p))."""
    return DIS.calc(gray(reference), gray(target), None).astype(np.float64)


def warp(image, field):
    """image(p + field(p)), bilinear, coordinates clamped to the image."""
    height, width = field.shape[:2]
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    map_x = np.clip(xs + field[..., 0], 0, width - 1).astype(np.float32)
    map_y = np.clip(ys + field[..., 1], 0, height - 1).astype(np.float32)
    return cv2.remap(image.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR).astype(np.float64)


def reliable(backward, forward):
    """Where backward (t to t-1) holds, by forward (t-1 to t): Ruder et al. 2016's two tests."""
    forward_there = warp(forward, backward)
    sum_ = backward + forward_there
    consistent = (sum_ ** 2).sum(-1) <= 0.01 * ((backward ** 2).sum(-1) + (forward_there ** 2).sum(-1)) + 0.5
    gradient = sum(np.square(np.gradient(backward[..., k])).sum(0) for k in range(2))
    steady = gradient <= 0.01 * (backward ** 2).sum(-1) + 0.002
    height, width = backward.shape[:2]
    xs, ys = np.meshgrid(np.arange(width), np.arange(height))
    x, y = xs + backward[..., 0], ys + backward[..., 1]
    inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    return consistent & steady & inside


def warping_errors(frames, fields, masks):
    errors = []
    for t in range(1, len(frames)):
        difference = frames[t] - warp(frames[t - 1], fields[t])
        mask = masks[t]
        errors.append(float((difference[mask] ** 2).mean()) if mask.any() else 0.0)
    return errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--content", required=True)
    parser.add_argument("--frames")
    parser.add_argument("results", nargs="+")
    arguments = parser.parse_args()
    content = read_stream(arguments.content)
    fields, masks = [None], [None]
    for t in range(1, len(content)):
        backward = flow(content[t], content[t - 1])
        forward = flow(content[t - 1], content[t])
        fields.append(backward)
        masks.append(reliable(backward, forward))
    share = float(np.mean([m.mean() for m in masks[1:]])) if len(content) > 1 else 1.0
    for path in [arguments.content] + arguments.results:
        frames = read_stream(path)
        if len(frames) != len(content) or any(a.shape != b.shape for a, b in zip(frames, content)):
            sys.exit(f"{path}: {len(frames)} frames that do not match the content's {len(content)}")
        errors = warping_errors(frames, fields, masks)
        if arguments.frames and path != arguments.content:
            middle = frames[len(frames) // 2]
            name = os.path.join(arguments.frames, os.path.basename(path).rsplit(".", 1)[0] + "-middle.ppm")
            height, width = middle.shape[:2]
            with open(name, "wb") as out:
                out.write(b"P6\n%d %d\n255\n" % (width, height))
                out.write(np.clip(np.rint(middle), 0, 255).astype(np.uint8).tobytes())
        print(json.dumps({"clip": "content" if path == arguments.content else path,
                          "frames": len(frames), "reliable": round(share, 4),
                          "warping_error": round(float(np.mean(errors)), 3) if errors else 0.0,
                          "per_frame": [round(e, 2) for e in errors]}))


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""pamstyle's optical flow on real photographs with a known answer: a stereo pair with its true disparity.

    /usr/bin/python3 bench/stereo_flow.py [--bench PATH] [--data DIR] [--scales 0.5,1] [--repeats 3]

The pair is "motorcycle" from the Middlebury 2014 stereo data set (D. Scharstein et al., "High-Resolution Stereo
Datasets with Subpixel-Accurate Ground Truth", GCPR 2014), as scikit-image ships it (Debian's python3-skimage,
skimage/data: motorcycle_left.png, motorcycle_right.png, motorcycle_disp.npz; 741x500, disparities 7 to 60
pixels; --data names the folder). Read with Pillow, shrunk by each of --scales with Pillow's BOX filter (the
disparity with it, and scaled), written as PPM, and given to `pamstyle-bench --flow --pair LEFT RIGHT --flo`
(--bench, default .build/release/pamstyle-bench). A pixel x of the left image is x - d(x) in the right one, so the
true flow from left to right is (-d, 0). For each scale, one JSON line:

    epe           the mean endpoint error |w - (-d, 0)| in pixels over the pixels with a known disparity;
    epe_visible   the same over those also seen in the right image (the disparity of the right-image pixel it
                  lands on, by the left-right check of the data set's convention, within 1 pixel);
    bad_1, bad_3  the shares of those visible pixels whose endpoint error exceeds 1 and 3 pixels;
    seconds_per_call  the bench's median.

The images are for measurement only and are not part of the project.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

DEFAULT_DATA = "/usr/lib/python3/dist-packages/skimage/data"


def read_flo(path):
    data = open(path, "rb").read()
    tag = np.frombuffer(data, "<f4", 1, 0)[0]
    if tag != np.float32(202021.25):
        sys.exit(f"{path}: not a .flo file")
    width, height = np.frombuffer(data, "<i4", 2, 4)
    return np.frombuffer(data, "<f4", width * height * 2, 12).reshape(height, width, 2).astype(np.float64)


def shrunk(image, scale):
    if scale == 1:
        return image
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.BOX)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench", default=".build/release/pamstyle-bench")
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--scales", default="0.5,1")
    parser.add_argument("--repeats", default="3")
    arguments = parser.parse_args()
    left = Image.open(os.path.join(arguments.data, "motorcycle_left.png")).convert("RGB")
    right = Image.open(os.path.join(arguments.data, "motorcycle_right.png")).convert("RGB")
    disparity = np.load(os.path.join(arguments.data, "motorcycle_disp.npz"))["arr_0"].astype(np.float64)
    with tempfile.TemporaryDirectory() as folder:
        for scale in (float(s) for s in arguments.scales.split(",")):
            a, b = shrunk(left, scale), shrunk(right, scale)
            known = np.isfinite(disparity)
            d = np.where(known, disparity, 0)
            if scale != 1:
                size = (a.width, a.height)
                d = np.asarray(Image.fromarray(d.astype(np.float32)).resize(size, Image.BOX), np.float64) * scale
                known = np.asarray(Image.fromarray(known.astype(np.float32)).resize(size, Image.BOX)) == 1
            paths = [os.path.join(folder, name) for name in ("left.ppm", "right.ppm", "flow.flo")]
            a.save(paths[0])
            b.save(paths[1])
            run = subprocess.run([arguments.bench, "--flow", "--pair", paths[0], paths[1], "--flo", paths[2],
                                  "--repeats", arguments.repeats], capture_output=True, text=True)
            if run.returncode != 0:
                sys.exit(run.stderr.strip())
            timing = json.loads(run.stdout.splitlines()[-1])
            flow = read_flo(paths[2])
            error = np.hypot(flow[..., 0] + d, flow[..., 1])
            # Seen in the right image: the pixel x - d lands on in the same row, by the left disparities.
            height, width = d.shape
            xs = np.arange(width)[None, :] - d
            inside = (xs >= 0) & (xs <= width - 1)
            landed = np.clip(np.rint(xs), 0, width - 1).astype(int)
            # A left pixel is hidden in the right image when a nearer surface (a larger disparity) lands there too.
            nearest = np.full((height, width), -np.inf)
            rows = np.repeat(np.arange(height)[:, None], width, 1)
            np.maximum.at(nearest, (rows[known & inside], landed[known & inside]), d[known & inside])
            visible = known & inside & (d >= nearest[rows, landed] - 1)
            print(json.dumps({"scale": scale, "size": f"{a.width}x{a.height}",
                              "disparity": [round(float(d[known].min()), 1), round(float(d[known].max()), 1)],
                              "epe": round(float(error[known].mean()), 3),
                              "epe_visible": round(float(error[visible].mean()), 3),
                              "bad_1": round(float((error[visible] > 1).mean()), 4),
                              "bad_3": round(float((error[visible] > 3).mean()), 4),
                              "visible": round(float(visible.mean()), 3),
                              "seconds_per_call": timing["seconds_per_call"]}))


if __name__ == "__main__":
    main()

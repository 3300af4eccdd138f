#!/usr/bin/python3
"""Sanity checks of bench/style_distance.py on small images made from examples/images.

    /usr/bin/python3 bench/test_style_distance.py

Skips (exit 0, with a message) when torch, Pillow or numpy is missing. Runs the script on one thread.
"""

import json
import math
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch  # noqa: F401  (the script needs it)
    from PIL import Image
except ImportError as error:
    print(f"test_style_distance: skipped: {error} (install python3-torch, python3-pil, python3-numpy)")
    sys.exit(0)

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
SCRIPT = os.path.join(BENCH, "style_distance.py")
sys.path.insert(0, BENCH)
sys.dont_write_bytecode = True  # no __pycache__ left in bench/
import style_distance as sd  # noqa: E402

STYLE_KEYS = ["style", "relative", "style_mean", "style_pastiche", "style_relative",
              "w2", "w2_mean", "sliced_wasserstein", "sw_mean"]


def close(a, b, tolerance=1e-9):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], tolerance) for k in a)
    return math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance)


def check_formulas():
    # One dimension: W2² = (m1 − m2)² + (σ1 − σ2)².
    w2 = sd.gaussian_w2(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[9.0]]))
    assert close(w2, 4 + 1), w2
    # Diagonal covariances: the same per axis, then per dimension.
    w2 = sd.gaussian_w2(np.zeros(2), np.diag([1.0, 16.0]), np.zeros(2), np.diag([4.0, 1.0]))
    assert close(w2, (1 + 9) / 2), w2
    # Symmetric in its two Gaussians, 0 for the same one.
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((5, 40)), rng.standard_normal((5, 40))
    s1, s2 = a @ a.T / 40, b @ b.T / 40
    m1, m2 = rng.standard_normal(5), rng.standard_normal(5)
    assert close(sd.gaussian_w2(m1, s1, m2, s2), sd.gaussian_w2(m2, s2, m1, s1), 1e-8)
    assert sd.gaussian_w2(m1, s1, m1, s1) < 1e-12
    # SSIM: 1 for the same picture, less for another.
    x = rng.uniform(0, 255, (20, 30))
    assert sd.ssim(x, x) == 1.0
    assert sd.ssim(x, 255 - x) < 0
    assert sd.ssim(x[:6], x[:6]) is None
    # Border: a uniform picture's frame is like its inside.
    assert sd.border_difference(np.full((30, 40, 3), 77, np.float32)) == 0
    assert sd.border_difference(np.zeros((16, 40, 3), np.float32)) is None
    assert sd.edge_distance(5, 6)[2].tolist() == [0, 1, 2, 2, 1, 0]


def run(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, SCRIPT, *args], env=env, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def main():
    torch.set_num_threads(1)
    check_formulas()
    with tempfile.TemporaryDirectory() as tmp:
        path = lambda name: os.path.join(tmp, name)  # noqa: E731
        images = os.path.join(ROOT, "examples", "images")
        content = Image.open(os.path.join(images, "chelsea.ppm")).convert("RGB").resize((96, 64), Image.BILINEAR)
        style = Image.open(os.path.join(images, "scream.ppm")).convert("RGB").resize((75, 96), Image.BILINEAR)
        content.save(path("content.ppm"))
        style.save(path("style.ppm"))
        photo = np.asarray(content).copy()
        h, w = photo.shape[:2]

        framed = photo.copy()  # a black frame 4 pixels wide
        framed[:4], framed[-4:], framed[:, :4], framed[:, -4:] = 0, 0, 0, 0
        Image.fromarray(framed).save(path("framed.ppm"))
        half = photo.copy()  # the style on the left half, the photo on the right
        half[:, :w // 2] = np.asarray(style.resize((w, h), Image.BILINEAR))[:, :w // 2]
        Image.fromarray(half).save(path("half.ppm"))
        left = np.zeros((h, w), np.uint8)
        left[:, :w // 2] = 255
        Image.fromarray(left).save(path("left.pgm"))
        Image.fromarray(255 - left).save(path("right.pgm"))
        Image.fromarray(np.full((h, w), 255, np.uint8)).save(path("white.pgm"))

        common = ["--content", path("content.ppm"), "--style", path("style.ppm")]
        results = [path("content.ppm"), path("framed.ppm"), path("style.ppm")]
        plain, framed_row, _ = rows = run(*common, *results)
        for row in rows:
            for key in ["w2", "w2_mean", "sliced_wasserstein", "sw_mean", "structure",
                        "border", "border_raw", "border_photo", "border_style", "mask"]:
                assert key in row, key

        # The photo as its own result: its layout kept exactly, its frame no different from the photo's.
        assert abs(plain["structure"] - 1) < 1e-12, plain["structure"]
        assert plain["border"] == 0, plain["border"]
        assert plain["border_raw"] == plain["border_photo"] > 0

        # A black frame: the border scores rise clearly, the structure falls.
        assert framed_row["border"] > 50, framed_row["border"]
        assert framed_row["border_style"] > 10 * plain["border_style"], (framed_row, plain)
        assert framed_row["structure"] < plain["structure"]

        # The painting as given against itself: no distance.
        (itself,) = run("--style-as-given", *common, path("style.ppm"))
        for name in sd.STYLE_LAYERS:
            assert itself["w2"][name] < 1e-6 * plain["w2"][name], itself["w2"]
            assert itself["sliced_wasserstein"][name] < 1e-6 * plain["sliced_wasserstein"][name], itself
        assert itself["w2_mean"] < 1e-9 and itself["sw_mean"] < 1e-9, itself
        assert plain["w2_mean"] > 0.1 and plain["sw_mean"] > 0.05, plain

        # A mask of all white: the same style numbers as none.
        for a, b in zip(rows, run("--mask", path("white.pgm"), *common, *results)):
            for key in STYLE_KEYS:
                assert close(a[key], b[key]), (key, a[key], b[key])
            assert b["mask"] == path("white.pgm")
            assert a["structure"] == b["structure"] and a["border"] == b["border"]

        # The half painted with the style is closer to it than the half left as the photo.
        (in_style,) = run("--mask", path("left.pgm"), *common, path("half.ppm"))
        (in_photo,) = run("--mask", path("right.pgm"), *common, path("half.ppm"))
        for key in ["w2_mean", "sw_mean", "style_relative"]:
            assert in_style[key] < 0.7 * in_photo[key], (key, in_style[key], in_photo[key])
        assert in_style["structure"] == in_photo["structure"]

    print("test_style_distance: ok")


if __name__ == "__main__":
    main()

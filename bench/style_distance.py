#!/usr/bin/python3
"""How stylized a result is: its content and style distances through the project's VGG-19, in PyTorch.

    /usr/bin/python3 bench/style_distance.py [--style-as-given] [--mask PGM]
                                             --content PHOTO --style PAINTING RESULT...

Images are PPM/PGM/PNG/JPEG (read with Pillow). Each RESULT is compared with the content image resized to the
result's size and with the style image resized to the result's pixel count, its aspect ratio kept (as pastiche
and pamstyle size their styles; --style-as-given: not resized), resizing with Pillow's BILINEAR filter, all in
the network's Caffe input (BGR, 0-255, mean removed):
    content distance   mean squared difference of relu4_2 between RESULT and the content image;
    style distance     per layer l of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1, the mean squared difference of
                       the Gram matrices F Fᵀ / (H W) of RESULT and of the style image;
and three summaries of the style distances: "style_mean" (the layers weighted alike), "style_pastiche" (layer l
weighted 10 / C_l², as pastiche 1.6's default loss does, with its content term 0.01 · content distance as
"content_pastiche"; against relu1_1, pamstyle's default Gram loss weighs relu2_1, relu3_1, relu4_1 and relu5_1
16, 16, 47 and 4 times less than this) and "style_relative" (the
mean over layers of the root mean square of the Gram difference relative to that of the style's Gram matrix:
every layer counts alike whatever its scale). Lower is closer. One JSON line per RESULT.

The Gram matrices see fine texture, so the style distances depend much on how the style image was resampled:
a painting against itself shrunk by 3 % is farther than most results. Compare results measured the same way,
with the same style pixels: pastiche enlarges a style smaller than the result to the result's pixel count (as
this script does, which then favours it), pamstyle never enlarges one, so a warning is printed when the style
would be enlarged; give a style already at most the result's size.

Two more distances per style layer compare the distributions of the features, every pixel a sample in R^C
(a Gram matrix mixes the features' mean with their spread; these separate them):
    "w2"                  the squared Wasserstein-2 distance between the Gaussians fitted to RESULT's and the
                          style's features, |μ₁ − μ₂|² + tr S₁ + tr S₂ − 2 tr (S₂^½ S₁ S₂^½)^½ with
                          S = F_c F_cᵀ / N (F_c: the features centred over the N pixels), the square roots by
                          symmetric eigendecomposition in float64 (negative eigenvalues taken as 0), divided by
                          C: per channel;
    "sliced_wasserstein"  the squared sliced Wasserstein-2 distance: both sets of pixels projected on 64 random
                          unit directions (numpy default_rng(0), drawn layer by layer: the same in every run),
                          each projection's quantiles at the 256 levels (i + ½) / 256 (linearly interpolated,
                          since the two have different pixel counts), the mean over levels and directions of
                          their squared difference.
Their summaries, each layer counting alike: "w2_mean", the mean over layers of w2 / (tr S_style / C), and
"sw_mean", the mean over layers of sliced_wasserstein / the style's projections' mean variance. 0 is the style's
own distribution; about 1 is as far as an image whose features all sit at the style's mean.

How much of the layout is kept and how the frame differs, with the content image at RESULT's size:
    "structure"     SSIM of the luminance (0.299 R + 0.587 G + 0.114 B, 0-255) of RESULT and of the content
                    image, both shrunk 8 times by averaging 8x8 blocks (the remainder cropped), over the 7x7
                    windows that fit, uniformly weighted (population variances; K1 = 0.01, K2 = 0.03, L = 255),
                    averaged: 1 when RESULT keeps the photo's layout exactly; null when RESULT is under 56
                    pixels a side. The shrinking leaves out the texture the style paints, keeping the layout.
    "border_raw"    d(RESULT), where for an image d is the mean over R, G, B of |mean_B − mean_R| + |std_B − std_R|
                    (0-255, population standard deviations), B the frame of pixels less than 4 pixels from an
                    edge and R the ring 8 to 11 pixels from the nearest edge: how much the frame differs from
                    just inside it; null when the image has no such ring (under 17 pixels a side);
    "border_photo"  d(content image), the frame a photo has of itself (vignetting, a sky, a floor);
    "border"        border_raw − border_photo: how much more RESULT's frame stands out than the photo's does
                    (0 when RESULT is the photo; may be negative). A dark or washed-out frame, an artefact
                    of zero padding, raises it;
    "border_style"  the Gram style distance (as above, mean squared difference of F Fᵀ / N) between RESULT's
                    frame and its interior, on RESULT's own features: at relu1_1 (full size) the pixels less
                    than 8 from an edge against the rest, plus at relu2_1 (half size) those less than 4 from an
                    edge against the rest. Not relative to the photo: a photo's frame scores above 0 too (its
                    edge pixels see the network's zero padding).

--mask PGM: a grayscale image (any Pillow reads; 8-bit values over 255, 16-bit over 65535) stretched to each
style layer's size with BILINEAR; the style measures of RESULT (style, relative, w2, sliced_wasserstein and
their summaries) are then taken over the pixels where it is above 0.5 only (their Gram matrices, means,
covariances and projections), so a result painted with style A in region A can be measured there. The style
image is always taken whole; content, structure and border measures are unaffected. "mask" names the mask
(null without one).

Needs torch and Pillow (Debian's python3-torch and python3-pil); reads weights/vgg19-conv-q8.pstw through
bench/torch_eval.py's reader.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_eval import WEIGHTS, forward, read_weights  # noqa: E402

STYLE_LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
CONTENT_LAYER = "relu4_2"
CAFFE_MEAN = np.array([103.939, 116.779, 123.68], dtype=np.float32)  # B, G, R

DIRECTIONS = 64  # sliced Wasserstein: random projections per layer
QUANTILE_LEVELS = (np.arange(256) + 0.5) / 256  # compared quantiles; midpoints avoid the extremes
STRUCTURE_SHRINK = 8  # box filter before SSIM: layout, not texture
SSIM_WINDOW = 7
BORDER_FRAME = 4  # pixels less than this from an edge form the frame
BORDER_RING = (8, 12)  # the ring it is compared with, distances from the nearest edge
BORDER_STYLE_FRAMES = {"relu1_1": 8, "relu2_1": 4}  # 8 image pixels at both layers


def read_rgb(path, size=None):
    """((H, W, 3) float32 RGB 0-255 of the image at `path`, resized (bilinear) to size = (W, H) if given, size)."""
    image = Image.open(path).convert("RGB")
    if size is not None and image.size != size:
        image = image.resize(size, Image.BILINEAR)
    return np.asarray(image, dtype=np.float32), image.size


def caffe(rgb):
    """(1, 3, H, W) float32 Caffe input (BGR, mean removed) of an (H, W, 3) RGB array."""
    bgr = rgb[:, :, ::-1] - CAFFE_MEAN
    return torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1)))[None]


def load(path, size=None):
    """(1, 3, H, W) float32 Caffe input of the image at `path`, resized (bilinear) to size = (W, H) if given."""
    rgb, size = read_rgb(path, size)
    return caffe(rgb), size


def gram(activation):
    _, c, h, w = activation.shape
    f = activation.reshape(c, h * w)
    return f @ f.t() / (h * w)


def read_mask(path):
    """(H, W) float32 mask in 0..1 from a grayscale image of 8 or 16 bits (or floats, taken as 0..1)."""
    image = Image.open(path)
    if image.mode == "F":
        return np.asarray(image, dtype=np.float32)
    if image.mode in ("I", "I;16", "I;16B", "I;16L"):  # Pillow opens 16-bit PGM and PNG as these
        return np.asarray(image, dtype=np.float32) / 65535
    return np.asarray(image.convert("L"), dtype=np.float32) / 255


def mask_at(mask, height, width):
    """The boolean (height, width) selection of a feature map: the mask stretched there (BILINEAR) above 0.5."""
    resized = Image.fromarray(mask, "F").resize((width, height), Image.BILINEAR)
    return np.asarray(resized) > 0.5


def pixels(activation, keep=None):
    """(C, N) features of a (1, C, H, W) activation: all its pixels, or those where the (H, W) `keep` is true."""
    _, c, h, w = activation.shape
    f = activation.reshape(c, h * w)
    return f if keep is None else f[:, torch.from_numpy(keep.reshape(-1))]


def unit_directions(channels):
    """{layer: (DIRECTIONS, C) float64 random unit vectors}, the same in every run."""
    rng = np.random.default_rng(0)
    directions = {}
    for name in STYLE_LAYERS:
        d = rng.standard_normal((DIRECTIONS, channels[name]))
        directions[name] = d / np.linalg.norm(d, axis=1, keepdims=True)
    return directions


def distribution(f, directions):
    """What the distribution distances need of (C, N) features: mean, covariance, projections' quantiles."""
    f64 = f.double()
    n = f64.shape[1]
    mean = f64.mean(dim=1)
    centred = f64 - mean[:, None]
    covariance = (centred @ centred.t() / n).numpy()
    del centred
    projected = (torch.from_numpy(directions) @ f64).numpy()  # (DIRECTIONS, N)
    return {
        "mean": mean.numpy(),
        "covariance": covariance,
        "quantiles": np.quantile(projected, QUANTILE_LEVELS, axis=1),  # (levels, DIRECTIONS)
        "projected_variance": float(projected.var(axis=1).mean()),
    }


def psd_sqrt(matrix):
    """Symmetric square root of a symmetric positive semi-definite matrix; rounding's negative eigenvalues as 0."""
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def gaussian_w2(mean1, cov1, mean2, cov2, cov2_sqrt=None):
    """Squared W2 distance between N(mean1, cov1) and N(mean2, cov2), per dimension."""
    if cov2_sqrt is None:
        cov2_sqrt = psd_sqrt(cov2)
    middle = cov2_sqrt @ cov1 @ cov2_sqrt
    middle = (middle + middle.T) / 2  # symmetric up to rounding; eigh wants it exactly
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(middle), 0, None)).sum()
    distance = np.sum((mean1 - mean2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * cross
    return max(float(distance), 0.0) / len(mean1)  # a true 0 can round slightly below


def box_means(x, n):
    """Means of every n x n window that fits in the 2-D array x (integral image)."""
    s = np.pad(x.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    return (s[n:, n:] - s[:-n, n:] - s[n:, :-n] + s[:-n, :-n]) / (n * n)


def ssim(x, y, window=SSIM_WINDOW, dynamic_range=255.0):
    """Mean SSIM of two same-size 2-D arrays over the uniform window x window windows that fit; None if none."""
    if min(x.shape) < window:
        return None
    x, y = x.astype(np.float64), y.astype(np.float64)
    c1, c2 = (0.01 * dynamic_range) ** 2, (0.03 * dynamic_range) ** 2
    mx, my = box_means(x, window), box_means(y, window)
    vx = box_means(x * x, window) - mx * mx
    vy = box_means(y * y, window) - my * my
    cxy = box_means(x * y, window) - mx * my
    index = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(index.mean())


def luminance(rgb):
    return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def shrink(image, factor=STRUCTURE_SHRINK):
    """Average of factor x factor blocks of a 2-D array, the rows and columns left over cropped."""
    h, w = image.shape[0] // factor, image.shape[1] // factor
    return image[:h * factor, :w * factor].reshape(h, factor, w, factor).mean(axis=(1, 3))


def structure(rgb, photo_rgb):
    return ssim(shrink(luminance(rgb)), shrink(luminance(photo_rgb)))


def edge_distance(height, width):
    """(height, width) distance of each pixel to the nearest edge: 0 on the outermost rows and columns."""
    y = np.arange(height)[:, None]
    x = np.arange(width)[None, :]
    return np.minimum(np.minimum(y, height - 1 - y), np.minimum(x, width - 1 - x))


def border_difference(rgb):
    """d(I): the mean over channels of |mean_B − mean_R| + |std_B − std_R|, frame B against ring R; or None."""
    distance = edge_distance(*rgb.shape[:2])
    frame = rgb[distance < BORDER_FRAME].astype(np.float64)  # (pixels, 3)
    ring = rgb[(distance >= BORDER_RING[0]) & (distance < BORDER_RING[1])].astype(np.float64)
    if len(ring) == 0:
        return None
    difference = np.abs(frame.mean(0) - ring.mean(0)) + np.abs(frame.std(0) - ring.std(0))
    return float(difference.mean())


def frame_style(activations):
    """Σ over BORDER_STYLE_FRAMES of the Gram distance between a layer's frame and interior; None if too small."""
    total = 0.0
    for name, width in BORDER_STYLE_FRAMES.items():
        activation = activations[name]
        _, c, h, w = activation.shape
        outer = edge_distance(h, w) < width
        if outer.all():
            return None
        f_outer, f_inner = pixels(activation, outer), pixels(activation, ~outer)
        g_outer = f_outer @ f_outer.t() / f_outer.shape[1]
        g_inner = f_inner @ f_inner.t() / f_inner.shape[1]
        total += torch.mean((g_outer - g_inner) ** 2).item()
    return total


def optional_difference(a, b):
    return None if a is None or b is None else a - b


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--content", required=True)
    parser.add_argument("--style", required=True)
    parser.add_argument("--style-as-given", action="store_true")
    parser.add_argument("--mask", help="grayscale image: take RESULT's style measures where it is above 0.5 only")
    parser.add_argument("results", nargs="+")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    convs = {name: (torch.from_numpy(k), torch.from_numpy(b)) for name, (k, b) in read_weights(WEIGHTS).items()}
    channels = {name: convs["conv" + name[4:]][0].shape[0] for name in STYLE_LAYERS}
    directions = unit_directions(channels)
    mask = read_mask(args.mask) if args.mask else None
    styles = {}  # style size -> per layer: Gram matrix and feature distribution
    for path in args.results:
        rgb, size = read_rgb(path)
        result = caffe(rgb)
        if args.style_as_given:
            key = None
        else:
            width, height = Image.open(args.style).size
            scale = (size[0] * size[1] / (width * height)) ** 0.5
            key = (max(1, round(width * scale)), max(1, round(height * scale)))
            if scale > 1 and key not in styles:
                # An enlarged style is a different target: a painting scored against itself enlarged by 7 to 34 %
                # is as far as most results. pastiche enlarges its style this way, pamstyle never does.
                print(f"style_distance.py: warning: {args.style} ({width}x{height}) is enlarged to {key[0]}x{key[1]} "
                      f"for {path}, which favours a tool that enlarged it the same way; give a style at most the "
                      f"result's size, or --style-as-given", file=sys.stderr)
        if key not in styles:
            style, _ = load(args.style, key)
            layers = {}
            for name, a in forward(style, convs, set(STYLE_LAYERS)).items():
                layers[name] = distribution(pixels(a), directions[name])
                layers[name]["gram"] = gram(a)
                layers[name]["covariance_sqrt"] = psd_sqrt(layers[name]["covariance"])
            styles[key] = layers
        targets = styles[key]
        photo_rgb, _ = read_rgb(args.content, size)
        wanted = set(STYLE_LAYERS) | {CONTENT_LAYER}
        ours = forward(result, convs, wanted)
        target = forward(caffe(photo_rgb), convs, {CONTENT_LAYER})[CONTENT_LAYER]
        content_distance = torch.mean((ours[CONTENT_LAYER] - target) ** 2).item()

        style, w2, sliced = {}, {}, {}
        w2_relative, sliced_relative = [], []
        for name in STYLE_LAYERS:
            t = targets[name]
            if mask is None:
                ours_gram, f = gram(ours[name]), pixels(ours[name])
            else:
                _, _, h, w = ours[name].shape
                f = pixels(ours[name], mask_at(mask, h, w))
                if f.shape[1] == 0:
                    sys.exit(f"style_distance: {args.mask}: no pixel of {name} ({w}x{h}) is above 0.5 in the mask")
                ours_gram = f @ f.t() / f.shape[1]
            style[name] = torch.mean((ours_gram - t["gram"]) ** 2).item()
            d = distribution(f, directions[name])
            w2[name] = gaussian_w2(d["mean"], d["covariance"], t["mean"], t["covariance"], t["covariance_sqrt"])
            w2_relative.append(w2[name] / (np.trace(t["covariance"]) / channels[name]))
            sliced[name] = float(np.mean((d["quantiles"] - t["quantiles"]) ** 2))
            sliced_relative.append(sliced[name] / t["projected_variance"])
        relative = {name: (style[name] / torch.mean(targets[name]["gram"] ** 2).item()) ** 0.5
                    for name in STYLE_LAYERS}

        border_raw, border_photo = border_difference(rgb), border_difference(photo_rgb)
        print(json.dumps({
            "result": path, "width": size[0], "height": size[1],
            "content": content_distance,
            "style": style,
            "style_mean": sum(style.values()) / len(style),
            "content_pastiche": 0.01 * content_distance,
            "style_pastiche": sum(10 / channels[n] ** 2 * style[n] for n in STYLE_LAYERS),
            "style_relative": sum(relative.values()) / len(relative),
            "relative": relative,
            "w2": w2,
            "w2_mean": sum(w2_relative) / len(w2_relative),
            "sliced_wasserstein": sliced,
            "sw_mean": sum(sliced_relative) / len(sliced_relative),
            "structure": structure(rgb, photo_rgb),
            "border": optional_difference(border_raw, border_photo),
            "border_raw": border_raw,
            "border_photo": border_photo,
            "border_style": frame_style(ours),
            "mask": args.mask,
        }), flush=True)


if __name__ == "__main__":
    main()

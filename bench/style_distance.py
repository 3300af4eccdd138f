#!/usr/bin/python3
"""How stylized a result is: its content and style distances through the project's VGG-19, in PyTorch.

    /usr/bin/python3 bench/style_distance.py [--style-as-given] --content PHOTO --style PAINTING RESULT...

Images are PPM/PGM/PNG/JPEG (read with Pillow). Each RESULT is compared with the content image resized to the
result's size and with the style image resized to the result's pixel count, its aspect ratio kept (as pastiche
and pamstyle size their styles; --style-as-given: not resized), resizing with Pillow's BILINEAR filter, all in
the network's Caffe input (BGR, 0-255, mean removed):
    content distance   mean squared difference of relu4_2 between RESULT and the content image;
    style distance     per layer l of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1, the mean squared difference of
                       the Gram matrices F Fᵀ / (H W) of RESULT and of the style image;
and three summaries of the style distances: "style_mean" (the layers weighted alike), "style_pastiche" (layer l
weighted 10 / C_l², as pastiche 1.6's default loss does, with its content term 0.01 · content distance as
"content_pastiche"; pamstyle's default loss weighs the layers in the same proportions) and "style_relative" (the
mean over layers of the root mean square of the Gram difference relative to that of the style's Gram matrix:
every layer counts alike whatever its scale). Lower is closer. One JSON line per RESULT.

The Gram matrices see fine texture, so the style distances depend much on how the style image was resampled:
a painting against itself shrunk by 3 % is farther than most results. Compare results measured the same way.

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


def load(path, size=None):
    """(1, 3, H, W) float32 Caffe input of the image at `path`, resized (bilinear) to size = (W, H) if given."""
    image = Image.open(path).convert("RGB")
    if size is not None and image.size != size:
        image = image.resize(size, Image.BILINEAR)
    rgb = np.asarray(image, dtype=np.float32)  # (H, W, 3)
    bgr = rgb[:, :, ::-1] - CAFFE_MEAN
    return torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1)))[None], image.size


def gram(activation):
    _, c, h, w = activation.shape
    f = activation.reshape(c, h * w)
    return f @ f.t() / (h * w)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--content", required=True)
    parser.add_argument("--style", required=True)
    parser.add_argument("--style-as-given", action="store_true")
    parser.add_argument("results", nargs="+")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    convs = {name: (torch.from_numpy(k), torch.from_numpy(b)) for name, (k, b) in read_weights(WEIGHTS).items()}
    style_grams = {}
    for path in args.results:
        result, size = load(path)
        if args.style_as_given:
            key = None
        else:
            width, height = Image.open(args.style).size
            scale = (size[0] * size[1] / (width * height)) ** 0.5
            key = (max(1, round(width * scale)), max(1, round(height * scale)))
        if key not in style_grams:
            style, _ = load(args.style, key)
            style_grams[key] = {name: gram(a) for name, a in forward(style, convs, set(STYLE_LAYERS)).items()}
        grams = style_grams[key]
        content, _ = load(args.content, size)
        wanted = set(STYLE_LAYERS) | {CONTENT_LAYER}
        ours = forward(result, convs, wanted)
        target = forward(content, convs, {CONTENT_LAYER})[CONTENT_LAYER]
        content_distance = torch.mean((ours[CONTENT_LAYER] - target) ** 2).item()
        style = {name: torch.mean((gram(ours[name]) - grams[name]) ** 2).item() for name in STYLE_LAYERS}
        channels = {name: ours[name].shape[1] for name in STYLE_LAYERS}
        relative = {name: (style[name] / torch.mean(grams[name] ** 2).item()) ** 0.5 for name in STYLE_LAYERS}
        print(json.dumps({
            "result": path, "width": size[0], "height": size[1],
            "content": content_distance,
            "style": style,
            "style_mean": sum(style.values()) / len(style),
            "content_pastiche": 0.01 * content_distance,
            "style_pastiche": sum(10 / channels[n] ** 2 * style[n] for n in STYLE_LAYERS),
            "style_relative": sum(relative.values()) / len(relative),
            "relative": relative,
        }), flush=True)


if __name__ == "__main__":
    main()

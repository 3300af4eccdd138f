#!/usr/bin/python3
"""Write the PyTorch reference that pamstyle's VGG-19 is tested against.

    /usr/bin/python3 tools/make_vgg_fixture.py

Needs torch (Debian's python3-torch 1.13) and numpy; run by hand, never by the tests. Reads
weights/vgg19-conv-q8.pstw (parsed here with numpy, checksum checked) and
Tests/StyleTransferTests/Fixtures/chelsea-128.ppm, and writes into Tests/StyleTransferTests/Fixtures/:

    chelsea-64x48.ppm   the input: the 64x48 region at x 36..<100, y 22..<70 of chelsea-128.ppm (eyes and
                        nose), binary P6, maxval 255, cut exactly (no resampling)
    vgg19-reference.json  activations and image gradients, computed in float64

The network: VGG-19's 16 convolutions (3x3, stride 1, zero padding 1, weights = codebook[indices] as
float32 values widened to float64, bias added), ReLU after each, 2x2 stride-2 pooling after relu1_2,
relu2_2, relu3_4, relu4_4 (and relu5_4); "max" uses max pooling, "avg" average pooling. No batch
dimension appears in the fixture: every tensor is (channels, height, width).

Preprocessing (the network input x, shape (3, 48, 64)):
    x[c][y][x] = float64(pixel[y][x][2 - c]) - mean[c],  mean = (103.939, 116.779, 123.68)
i.e. channels B, G, R in that order, pixel values 0...255, the per-channel mean subtracted.

Gradient loss, for each pooling kind, over loss_layers = (relu1_1, relu2_1, relu3_1, relu4_2, relu5_1):
    L = sum over l of w_l * sum over (c, y, x) of act_l[c][y][x] * R_l[c][y][x],   w_l = 1
    R_l[c][y][x] = sin(0.37*c + 0.61*y + 1.13*x + l)
where l is the layer's 0-based position in loss_layers, c, y, x are 0-based indices into act_l, the
argument is evaluated in float64 left to right, ((0.37*c + 0.61*y) + 1.13*x) + l, and sin is the C
library's (Python's math.sin; Swift's Foundation sin is the same function). The stored gradient is
dL/dx with respect to the preprocessed input x above (channel 0 is B). Since preprocessing only
reorders channels and shifts, dL/d(pixel value 0...255 of channel R, G, B) = gradient[2, 1, 0].

JSON schema of vgg19-reference.json:
{
  "generator": "tools/make_vgg_fixture.py",
  "dtype": "float64",
  "weights": {"file": "weights/vgg19-conv-q8.pstw", "sha256": hex of the whole file},
  "input": {"file": "chelsea-64x48.ppm", "sha256": hex, "source": "chelsea-128.ppm",
            "crop": {"x": 36, "y": 22, "width": 64, "height": 48},
            "channel_order": "BGR", "mean_bgr": [103.939, 116.779, 123.68], "shape": [3, 48, 64]},
  "sample_seed": integer (numpy.random.default_rng seed used to choose the sample points),
  "activations": {
    "max": {LAYER: STATS, ...}  for relu1_1 relu2_1 relu3_1 relu4_1 relu4_2 relu5_1 pool1 pool2 pool3 pool4
    "avg": {LAYER: STATS, ...}  for pool1 pool2 relu3_1 pool4 relu5_1
  },
  "gradient": {
    "loss_layers": ["relu1_1", "relu2_1", "relu3_1", "relu4_2", "relu5_1"],
    "layer_weights": [1, 1, 1, 1, 1],
    "r_formula": the formula above as text,
    "max": {"loss": L, plus STATS of dL/dx},
    "avg": {"loss": L, plus STATS of dL/dx}
  }
}
STATS = {"shape": [C, H, W], "sum": float64 sum of all elements, "sum_squares": float64 sum of squares,
         "samples": [[c, y, x, value], ...] 200 distinct points sorted by (c, y, x): 150 drawn uniformly
                    from the nonzero elements, then 50 uniformly from all the others}
"""

import hashlib
import json
import math
import os
import re
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHTS = os.path.join(ROOT, "weights", "vgg19-conv-q8.pstw")
FIXTURES = os.path.join(ROOT, "Tests", "StyleTransferTests", "Fixtures")
SOURCE_IMAGE = "chelsea-128.ppm"
INPUT_IMAGE = "chelsea-64x48.ppm"
OUTPUT = "vgg19-reference.json"

CROP_X, CROP_Y, WIDTH, HEIGHT = 36, 22, 64, 48
MEAN_BGR = (103.939, 116.779, 123.68)
SAMPLE_SEED = 20240611
SAMPLES = 200
NONZERO_SAMPLES = 150

MAX_LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1", "pool1", "pool2", "pool3", "pool4"]
AVG_LAYERS = ["pool1", "pool2", "relu3_1", "pool4", "relu5_1"]
LOSS_LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_2", "relu5_1"]
R_FORMULA = ("R_l[c][y][x] = sin(((0.37*c + 0.61*y) + 1.13*x) + l) in float64 with the C library sin; "
             "l = 0-based position of the layer in loss_layers; c, y, x = 0-based indices into the layer's "
             "(C, H, W) activation; L = sum_l layer_weights[l] * sum(act_l * R_l); gradient = dL/dx for the "
             "preprocessed BGR input x")


def read_weights(path):
    """{name: (weight float64 (out, in, 3, 3), bias float64 (out))} in network order, from pamstyle's format."""
    with open(path, "rb") as f:
        data = f.read()
    magic, version, count, size, header = struct.unpack_from("<8s2I2Q", data, 0)
    if magic != b"PSTW\r\n\x1a\n" or version != 1 or size != len(data) or header != 64:
        raise SystemExit(f"{path}: not a version 1 pamstyle weights file of the right size")
    if hashlib.sha256(data[64:]).digest() != data[32:64]:
        raise SystemExit(f"{path}: checksum mismatch")
    layers = {}
    for index in range(count):
        entry = struct.unpack_from("<16s4I6Q", data, 64 + 80 * index)
        name = entry[0].rstrip(b"\0").decode("ascii")
        cin, cout, kh, kw = entry[1:5]
        codebook_offset, _, indices_offset, indices_size, bias_offset, _ = entry[5:]
        codebook = np.frombuffer(data, "<f4", 256, codebook_offset)
        indices = np.frombuffer(data, "u1", indices_size, indices_offset).reshape(cout, cin, kh, kw)
        bias = np.frombuffer(data, "<f4", cout, bias_offset)
        layers[name] = (codebook[indices].astype(np.float64), bias.astype(np.float64))
    return layers, hashlib.sha256(data).hexdigest()


def read_ppm(path):
    """(height, width, 3) uint8 from a binary P6 file with maxval 255 and no comments."""
    with open(path, "rb") as f:
        data = f.read()
    fields = data.split(maxsplit=4)
    if fields[0] != b"P6" or fields[3] != b"255":
        raise SystemExit(f"{path}: expected a P6 file with maxval 255")
    width, height = int(fields[1]), int(fields[2])
    raster = fields[4]
    if len(raster) != width * height * 3:
        raise SystemExit(f"{path}: raster is {len(raster)} bytes, expected {width * height * 3}")
    return np.frombuffer(raster, np.uint8).reshape(height, width, 3)


def write_ppm(path, pixels):
    height, width, _ = pixels.shape
    with open(path, "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (width, height) + np.ascontiguousarray(pixels, np.uint8).tobytes())


def preprocess(pixels):
    """(3, H, W) float64: BGR, 0...255, mean subtracted."""
    bgr = pixels[:, :, ::-1].astype(np.float64).transpose(2, 0, 1)
    return bgr - np.array(MEAN_BGR, np.float64).reshape(3, 1, 1)


def forward(x, weights, pooling, wanted):
    """The activations named in `wanted`, each (C, H, W), stopping at the deepest one. x is (3, H, W)."""
    pool = F.max_pool2d if pooling == "max" else F.avg_pool2d
    outputs, h = {}, x.unsqueeze(0)
    remaining = set(wanted)
    for block, convs in enumerate([2, 2, 4, 4, 4], start=1):
        for conv in range(1, convs + 1):
            weight, bias = weights[f"conv{block}_{conv}"]
            h = F.relu(F.conv2d(h, weight, bias, stride=1, padding=1))
            name = f"relu{block}_{conv}"
            if name in remaining:
                outputs[name] = h[0]
                remaining.discard(name)
            if not remaining:
                return outputs
        h = pool(h, kernel_size=2, stride=2)
        if f"pool{block}" in remaining:
            outputs[f"pool{block}"] = h[0]
            remaining.discard(f"pool{block}")
        if not remaining:
            return outputs
    return outputs


def r_tensor(shape, layer_index):
    channels, height, width = shape
    values = [math.sin(0.37 * c + 0.61 * y + 1.13 * x + layer_index)
              for c in range(channels) for y in range(height) for x in range(width)]
    return torch.tensor(values, dtype=torch.float64).reshape(channels, height, width)


def stats(tensor, rng):
    array = tensor.detach().numpy()
    nonzero = np.flatnonzero(array)
    chosen = rng.choice(nonzero, size=min(NONZERO_SAMPLES, nonzero.size), replace=False)
    rest = np.setdiff1d(np.arange(array.size), chosen)
    flat = np.sort(np.concatenate([chosen, rng.choice(rest, size=min(SAMPLES - chosen.size, rest.size), replace=False)]))
    points = [[int(c), int(y), int(x), float(array[c, y, x])] for c, y, x in zip(*np.unravel_index(flat, array.shape))]
    return {"shape": list(array.shape), "sum": float(array.sum(dtype=np.float64)),
            "sum_squares": float(np.square(array).sum(dtype=np.float64)), "samples": points}


def main():
    torch.set_grad_enabled(True)
    weights_np, weights_sha = read_weights(WEIGHTS)
    weights = {name: (torch.from_numpy(w), torch.from_numpy(b)) for name, (w, b) in weights_np.items()}

    source = read_ppm(os.path.join(FIXTURES, SOURCE_IMAGE))
    crop = source[CROP_Y:CROP_Y + HEIGHT, CROP_X:CROP_X + WIDTH]
    assert crop.shape == (HEIGHT, WIDTH, 3)
    input_path = os.path.join(FIXTURES, INPUT_IMAGE)
    write_ppm(input_path, crop)
    with open(input_path, "rb") as f:
        input_sha = hashlib.sha256(f.read()).hexdigest()
    x0 = torch.from_numpy(preprocess(read_ppm(input_path)).copy())

    rng = np.random.default_rng(SAMPLE_SEED)
    activations, gradients = {}, {}
    for pooling, layers in (("max", MAX_LAYERS), ("avg", AVG_LAYERS)):
        with torch.no_grad():
            outputs = forward(x0, weights, pooling, layers)
        activations[pooling] = {name: stats(outputs[name], rng) for name in layers}

    for pooling in ("max", "avg"):
        x = x0.clone().requires_grad_(True)
        outputs = forward(x, weights, pooling, LOSS_LAYERS)
        loss = sum(1.0 * (outputs[name] * r_tensor(outputs[name].shape, index)).sum()
                   for index, name in enumerate(LOSS_LAYERS))
        loss.backward()
        gradients[pooling] = {"loss": float(loss.item()), **stats(x.grad, rng)}

    fixture = {
        "generator": "tools/make_vgg_fixture.py",
        "dtype": "float64",
        "weights": {"file": "weights/vgg19-conv-q8.pstw", "sha256": weights_sha},
        "input": {"file": INPUT_IMAGE, "sha256": input_sha, "source": SOURCE_IMAGE,
                  "crop": {"x": CROP_X, "y": CROP_Y, "width": WIDTH, "height": HEIGHT},
                  "channel_order": "BGR", "mean_bgr": list(MEAN_BGR), "shape": [3, HEIGHT, WIDTH]},
        "sample_seed": SAMPLE_SEED,
        "activations": activations,
        "gradient": {"loss_layers": LOSS_LAYERS, "layer_weights": [1] * len(LOSS_LAYERS), "r_formula": R_FORMULA,
                     **gradients},
    }
    output_path = os.path.join(FIXTURES, OUTPUT)
    text = json.dumps(fixture, indent=1)
    # One line per innermost array (a sample point, a shape) keeps the file small and readable.
    text = re.sub(r"\[[^\[\]{}\"]*\]", lambda match: re.sub(r"\s+", "", match.group(0)), text)
    with open(output_path, "w") as f:
        f.write(text + "\n")
    print(f"{output_path}: {os.path.getsize(output_path)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Time one pamstyle-style evaluation of VGG-19 in PyTorch, for the side-by-side comparison.

    /usr/bin/python3 bench/torch_eval.py --size 512 [--threads 2] [--repeats 5] [--warmup 1]

Needs torch (Debian's python3-torch) and numpy; the product never does. Reads the project's weights,
weights/vgg19-conv-q8.pstw (parsed here with numpy, checksum checked, kernels = codebook[indices]), and
builds VGG-19 truncated at relu5_1: 13 convolutions (3x3, stride 1, zero padding 1, with bias), ReLU after
each, 2x2 stride-2 max pooling after relu1_2, relu2_2, relu3_4 and relu4_4. Weights never require grad.

One evaluation, as pamstyle does once per optimizer step:
    forward   a (1, 3, S, S) float32 input that requires grad, through relu5_1, keeping relu1_1, relu2_1,
              relu3_1, relu4_1, relu4_2 and relu5_1, and a scalar loss from them:
                  L = sum over those layers l of sum over (c, y, x) of act_l[c, y, x] * a_l[c] * b_l[y] * d_l[x]
              with a_l, b_l, d_l fixed standard-normal vectors (seeded). The weight tensor is rank one and
              the sum is taken as matrix-vector products over views of the activations, so the loss
              stores and allocates nothing of an activation's size and costs one multiply-add per
              activation element: negligible beside the network, and it adds nothing to peak memory.
              (Its gradient, full size, is what backward has to start from anyway.)
    backward  dL/dinput (autograd; no weight gradients are computed).
`forward_seconds` is the forward part, timed on its own inside the same evaluation (grad tracking on),
so that it is comparable with pamstyle's forward; `seconds_per_eval` is forward plus backward.

Prints one JSON line on stdout:
    {"size": S, "seconds_per_eval": median, "forward_seconds": median, "backward_seconds": median,
     "peak_rss_mb": VmHWM in MiB, "baseline_rss_mb": VmRSS in MiB once torch and the weights are loaded,
     "threads": T, "repeats": N, "warmup": W, "torch": version, "onednn_available": bool,
     "conv_kernels": {aten op: calls} of the convolution implementations in the first warm-up
                     evaluation: aten::mkldnn_convolution is oneDNN (its backward is not a separate op),
                     aten::_slow_conv2d_forward/_backward is im2col + BLAS (OpenBLAS here)}
Run one size per process: peak RSS is the process's high-water mark, so it covers only that size.
"""

import argparse
import hashlib
import json
import os
import statistics
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHTS = os.path.join(ROOT, "weights", "vgg19-conv-q8.pstw")
BLOCKS = [2, 2, 4, 4, 4]  # convolutions per block
LOSS_LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]
MAGIC = b"PSTW\r\n\x1a\n"
SEED = 20240611


def read_weights(path):
    """{name: (kernel float32 (out, in, 3, 3), bias float32 (out))} in network order."""
    with open(path, "rb") as f:
        data = f.read()
    magic, version, count, size, header = struct.unpack_from("<8s2I2Q", data, 0)
    if magic != MAGIC or version != 1 or size != len(data) or header != 64:
        sys.exit(f"torch_eval: {path}: not a version 1 pamstyle weights file of the size its header gives")
    if hashlib.sha256(data[64:]).digest() != data[32:64]:
        sys.exit(f"torch_eval: {path}: SHA-256 does not match the one in its header")
    layers = {}
    for index in range(count):
        name, cin, cout, kh, kw, book_at, _, idx_at, idx_size, bias_at, _ = \
            struct.unpack_from("<16s4I6Q", data, 64 + 80 * index)
        codebook = np.frombuffer(data, "<f4", 256, book_at)  # (256)
        indices = np.frombuffer(data, "u1", idx_size, idx_at).reshape(cout, cin, kh, kw)
        bias = np.frombuffer(data, "<f4", cout, bias_at)  # (out)
        layers[name.rstrip(b"\0").decode("ascii")] = (codebook[indices].astype(np.float32), bias.copy())
    return layers


def forward(x, convs, wanted):
    """{name: activation (1, C, H, W)} for the ReLU outputs in `wanted`, stopping at the deepest."""
    outputs, h = {}, x
    for block, count in enumerate(BLOCKS, start=1):
        for conv in range(1, count + 1):
            weight, bias = convs[f"conv{block}_{conv}"]
            h = F.relu(F.conv2d(h, weight, bias, stride=1, padding=1))
            name = f"relu{block}_{conv}"
            if name in wanted:
                outputs[name] = h
                if len(outputs) == len(wanted):
                    return outputs
        h = F.max_pool2d(h, kernel_size=2, stride=2)
    return outputs


def loss_vectors(size, channels_at, generator):
    """Per loss layer, the rank-one loss weights (a (C), b (H, 1), d (W, 1))."""
    vectors = {}
    for name in LOSS_LAYERS:
        height = width = size >> (int(name[4]) - 1)  # halved by each pooling before block B
        vectors[name] = (torch.randn(channels_at[name], generator=generator),
                         torch.randn(height, 1, generator=generator),
                         torch.randn(width, 1, generator=generator))
    return vectors


def loss_of(outputs, vectors):
    """Σ over layers of Σ act[c, y, x] a[c] b[y] d[x], as matrix products that make no copy of act."""
    total = 0.0
    for name in LOSS_LAYERS:
        a, b, d = vectors[name]
        rows = outputs[name].matmul(d).squeeze(3)  # (1, C, H): act viewed as (C·H, W) times d
        total = total + torch.dot(rows.matmul(b).view(-1), a)
    return total


def evaluate(x, convs, vectors):
    """(forward seconds, total seconds) of one evaluation; leaves dL/dx in x.grad."""
    x.grad = None
    start = time.perf_counter()
    loss = loss_of(forward(x, convs, set(LOSS_LAYERS)), vectors)
    middle = time.perf_counter()
    loss.backward()
    end = time.perf_counter()
    if not torch.isfinite(x.grad).all() or not x.grad.abs().sum() > 0:
        sys.exit("torch_eval: the input gradient is not finite and nonzero")
    return middle - start, end - start


def status_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # the kernel reports kB = KiB
    sys.exit(f"torch_eval: /proc/self/status has no {field}")


def positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def main():
    parser = argparse.ArgumentParser(description="Seconds per VGG-19 evaluation (to relu5_1, input gradient) in PyTorch.")
    parser.add_argument("--size", type=positive, required=True, help="input side S: the input is (1, 3, S, S)")
    parser.add_argument("--threads", type=positive, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--repeats", type=positive, default=5, help="timed evaluations; the median is printed (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed evaluations first (default 1)")
    parser.add_argument("--weights", default=WEIGHTS, help="pamstyle weights file (default: weights/vgg19-conv-q8.pstw)")
    args = parser.parse_args()
    if args.size < 16:
        parser.error(f"--size must be at least 16 (relu5_1 is S/16 wide), not {args.size}")
    if args.warmup < 0:
        parser.error(f"--warmup must not be negative, not {args.warmup}")

    torch.set_num_threads(args.threads)
    convs = {name: (torch.from_numpy(w), torch.from_numpy(b)) for name, (w, b) in read_weights(args.weights).items()}
    channels_at = {f"relu{name[4:]}": w.shape[0] for name, (w, _) in convs.items()}
    generator = torch.Generator().manual_seed(SEED)
    vectors = loss_vectors(args.size, channels_at, generator)
    x = (torch.rand(1, 3, args.size, args.size, generator=generator) * 255 - 120).requires_grad_(True)
    baseline = status_mib("VmRSS")

    kernels = {}  # implementation op name -> calls, from the first warm-up evaluation
    for index in range(args.warmup):
        if index == 0:
            with torch.autograd.profiler.profile() as profile:
                evaluate(x, convs, vectors)
            for event in profile.function_events:
                if "mkldnn_conv" in event.name or "slow_conv" in event.name:
                    kernels[event.name] = kernels.get(event.name, 0) + 1
        else:
            evaluate(x, convs, vectors)

    forwards, totals = [], []
    for _ in range(args.repeats):
        forward_seconds, total_seconds = evaluate(x, convs, vectors)
        forwards.append(forward_seconds)
        totals.append(total_seconds)
    backwards = [total - fwd for fwd, total in zip(forwards, totals)]

    print(json.dumps({
        "size": args.size,
        "seconds_per_eval": round(statistics.median(totals), 4),
        "forward_seconds": round(statistics.median(forwards), 4),
        "backward_seconds": round(statistics.median(backwards), 4),
        "peak_rss_mb": round(status_mib("VmHWM"), 1),
        "baseline_rss_mb": round(baseline, 1),
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "warmup": args.warmup,
        "torch": torch.__version__,
        "onednn_available": torch.backends.mkldnn.is_available(),
        "conv_kernels": dict(sorted(kernels.items())),
    }), flush=True)


if __name__ == "__main__":
    main()

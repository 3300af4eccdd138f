#!/usr/bin/env bash
# Builds the two libFuzzer harnesses into fuzz/build/: fuzz-netpbm and fuzz-weights.
#
# Both are Swift, built with the Swift toolchain's own swiftc and clang (whose compiler-rt has libFuzzer,
# ASan and UBSan), so the project's Swift code is what is fuzzed, not a C model of it:
#   fuzz-netpbm   Sources/Netpbm/*.swift + fuzz/netpbm/FuzzNetpbm.swift (swiftc -sanitize=fuzzer,address),
#                 Sources/CNetpbm/cnetpbm.c (clang -fsanitize=fuzzer-no-link,address,undefined), -lnetpbm
#   fuzz-weights  Sources/StyleTransfer/Weights.swift + fuzz/weights/FuzzWeights.swift
# The Swift code is built with -O, not the -Ounchecked StyleTransfer uses in the package: an
# out-of-bounds index or an overflow then traps, where -Ounchecked would go on with a wrong value.
# libnetpbm itself is Debian's uninstrumented shared library (ASan still sees its mallocs and frees).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/fuzz/build"
swiftc="${SWIFTC:-$(command -v swiftc)}"
toolchain="$(dirname "$(readlink -f "$swiftc")")"
clang="${FUZZ_CC:-$toolchain/clang}"
mkdir -p "$out/include"

# The shim's header as a Clang module, as SwiftPM presents it to the Netpbm target.
cat > "$out/include/module.modulemap" <<MAP
module CNetpbm {
    header "$root/Sources/CNetpbm/include/cnetpbm.h"
    export *
}
MAP

"$clang" -c -g -O1 -fno-omit-frame-pointer \
    -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all \
    -I "$root/Sources/CNetpbm/include" -o "$out/cnetpbm.o" "$root/Sources/CNetpbm/cnetpbm.c"

"$swiftc" -swift-version 6 -parse-as-library -O -g -sanitize=fuzzer,address -use-ld=lld \
    -module-name FuzzNetpbm -I "$out/include" \
    "$root"/Sources/Netpbm/*.swift "$root/fuzz/netpbm/FuzzNetpbm.swift" \
    "$out/cnetpbm.o" -lnetpbm -o "$out/fuzz-netpbm"

"$swiftc" -swift-version 6 -parse-as-library -O -g -sanitize=fuzzer,address -use-ld=lld \
    -module-name FuzzWeights \
    "$root/Sources/StyleTransfer/Weights.swift" "$root/fuzz/weights/FuzzWeights.swift" \
    -o "$out/fuzz-weights"
echo "built $out/fuzz-netpbm and $out/fuzz-weights"

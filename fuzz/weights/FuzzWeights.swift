// libFuzzer target "weights": the fuzz input is a weights file. fuzz/build.sh compiles this file together
// with Sources/StyleTransfer/Weights.swift (which needs nothing else from StyleTransfer) into one module,
// so the harness reaches VGGWeights.decode(_:path:), the in-memory half of VGGWeights.load(from:)
// (load only adds the file-system checks and one read of the whole file).
//
// Each input is decoded twice:
//   1. as it is: every check in the loader's order (magic, version, size against the header, header
//      size, SHA-256, layer table), as for a damaged or foreign file;
//   2. re-signed: the input with the magic, the version, the file size and the SHA-256 of bytes [64, end)
//      written into its header (inputs of 64 bytes and more). A random input almost never passes the
//      checksum, so without this step nothing after it, i.e. the layer table checks, would be reached.
//      The header size (bytes 24..<32) and the layer count (12..<16) stay as the fuzzer made them. Only
//      .badLayerTable can come out of this decode, or success.
// A valid table needs sections of exactly VGG-19's sizes inside the file (20058624 bytes), so from a
// small input the loader fails at the first layer whose sections do not fit; the dequantization after
// the table is reached only by the real file, which fuzz/run.sh runs through this harness once.
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWeights(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    decodeAndCheck(bytes, resigned: false)
    if bytes.count >= WeightsFormat.headerSize {
        decodeAndCheck(resign(bytes), resigned: true)
    }
    return 0
}

/// `bytes` with magic, version, file size and SHA-256 made to agree with its length and content.
private func resign(_ input: [UInt8]) -> [UInt8] {
    var bytes = input
    bytes.replaceSubrange(0..<8, with: WeightsFormat.magic)
    for i in 0..<4 { bytes[8 + i] = UInt8(truncatingIfNeeded: WeightsFormat.version >> UInt32(8 * i)) }
    let count = UInt64(bytes.count)
    for i in 0..<8 { bytes[16 + i] = UInt8(truncatingIfNeeded: count >> UInt64(8 * i)) }
    bytes.replaceSubrange(32..<64, with: SHA256.digest(bytes, range: WeightsFormat.headerSize..<bytes.count))
    return bytes
}

private func decodeAndCheck(_ bytes: [UInt8], resigned: Bool) {
    let path = "fuzz.pstw"
    do {
        let weights = try VGGWeights.decode(bytes, path: path)
        // Only a complete VGG-19 file can get here.
        require(weights.layers.count == VGGWeights.architecture.count, "\(weights.layers.count) layers")
        for (layer, expected) in zip(weights.layers, VGGWeights.architecture) {
            require(layer.name == expected.name && layer.inChannels == expected.inChannels
                         && layer.outChannels == expected.outChannels, "layer \(layer.name) is not \(expected.name)")
            require(layer.kernel.count == expected.outChannels * expected.inChannels * 9, "\(layer.kernel.count) kernel weights in \(layer.name)")
            require(layer.bias.count == expected.outChannels, "\(layer.bias.count) biases in \(layer.name)")
        }
    } catch let error as WeightsError {
        let message = error.errorDescription ?? ""
        require(!message.isEmpty, "an error without a description: \(error)")
        require(!message.contains(where: \.isNewline), "an error description of more than one line: \(message)")
        require(message.contains(path), "an error that does not name the file: \(message)")
        switch error {
        case .badLayerTable:
            break
        case .notFound, .unreadable:
            fatalError("decode threw a file-system error: \(message)")
        default:
            require(!resigned, "a re-signed input failed a header check: \(message)")
        }
    } catch {
        fatalError("decode threw something that is not a WeightsError: \(error)")
    }
}

/// precondition that keeps its message in an -O build (the harness reports why it stopped).
func require(_ condition: Bool, _ message: @autoclosure () -> String = "") {
    if !condition {
        fatalError("fuzz-weights: property violated: \(message())")
    }
}

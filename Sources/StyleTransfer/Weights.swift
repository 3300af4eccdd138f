import Foundation
import Kernels

/// The 16 convolution layers of VGG-19, in network order (`conv1_1` … `conv5_4`).
public struct VGGWeights: Sendable {
    public let layers: [ConvLayerWeights]

    public init(layers: [ConvLayerWeights]) {
        self.layers = layers
    }

    /// The bytes of the kernels and biases.
    public var bytes: Int { layers.reduce(0) { $0 + ($1.kernel.count + $1.bias.count) * MemoryLayout<Float>.stride } }

    /// The layer called `name` (`conv1_1` … `conv5_4`), or nil.
    public func layer(named name: String) -> ConvLayerWeights? {
        layers.first { $0.name == name }
    }
}

// MARK: - The architecture the file must hold

extension VGGWeights {
    /// VGG-19's convolutions as published, in network order: 2, 2, 4, 4, 4 convs in five blocks of widths
    /// 64, 128, 256, 512, 512. A weights file is accepted only if its layer table is exactly this.
    public static var architecture: [(name: String, inChannels: Int, outChannels: Int)] { VGG19Architecture.convolutions }

    /// Checks that the layers are VGG-19's convolutions in order, as `VGG19Architecture` has them.
    /// - Throws: `NetworkError` naming the first layer that differs.
    public func checkArchitecture() throws {
        let table = VGG19Architecture.convolutions
        guard layers.count == table.count else { throw NetworkError.layerCount(found: layers.count) }
        for (index, (layer, row)) in zip(layers, table).enumerated()
        where layer.name != row.name || layer.inChannels != row.inChannels || layer.outChannels != row.outChannels {
            throw NetworkError.layerMismatch(index: index,
                                             expected: "\(row.name) (\(row.inChannels) → \(row.outChannels) channels)",
                                             found: "\(layer.name) (\(layer.inChannels) → \(layer.outChannels) channels)")
        }
    }

    /// The weights file's name, in every directory `locate` searches.
    public static let fileName = "vgg19-conv-q8.pstw"
}

// MARK: - Errors

/// Why the VGG-19 weights could not be found or loaded. Each description is the sentence the user reads.
public enum WeightsError: Error, LocalizedError, Equatable {
    /// No regular file at any of the paths, in search order.
    case notFound(searched: [String])
    /// The path exists but could not be read; `reason` completes "cannot read weights file PATH: ".
    case unreadable(path: String, reason: String)
    /// The file is shorter than the fixed header (`actual` bytes), so not even its size is known.
    case truncatedHeader(path: String, actual: Int)
    /// The file is shorter than the size its header records.
    case truncated(path: String, expected: Int, actual: Int)
    /// The file is longer than the size its header records.
    case trailingBytes(path: String, expected: Int, actual: Int)
    /// The first eight bytes are not the format's magic.
    case wrongMagic(path: String)
    case unsupportedVersion(path: String, version: UInt32)
    /// The header's layer table does not describe VGG-19's 16 convolutions laid out inside the file.
    case badLayerTable(path: String, reason: String)
    /// The SHA-256 of the bytes after the header differs from the one recorded in the header.
    case checksumMismatch(path: String)

    public var errorDescription: String? {
        switch self {
        case .notFound(let searched) where searched.count == 1:
            return "weights file \(searched[0]) does not exist"
        case .notFound(let searched):
            return "cannot find the VGG-19 weights file; looked for \(searched.joined(separator: ", "))"
        case .unreadable(let path, let reason):
            return "cannot read weights file \(path): \(reason)"
        case .truncatedHeader(let path, let actual):
            return "weights file \(path) is truncated: it has \(actual) bytes, less than its \(WeightsFormat.headerSize)-byte header"
        case .truncated(let path, let expected, let actual):
            return "weights file \(path) is truncated: expected \(expected) bytes, found \(actual)"
        case .trailingBytes(let path, let expected, let actual):
            return "weights file \(path) is longer than its header says: expected \(expected) bytes, found \(actual)"
        case .wrongMagic(let path):
            return "\(path) is not a pamstyle weights file"
        case .unsupportedVersion(let path, let version):
            return "weights file \(path) has format version \(version); this pamstyle reads version \(WeightsFormat.version)"
        case .badLayerTable(let path, let reason):
            return "weights file \(path) has a bad layer table: \(reason)"
        case .checksumMismatch(let path):
            return "weights file \(path) is corrupt: its SHA-256 does not match the one in its header"
        }
    }
}

// MARK: - Finding the file

extension VGGWeights {
    /// The path of the weights file to use.
    ///
    /// - `explicit` (the `-weights` option), when given, is the only place looked at.
    /// - Otherwise, in order: `$PAMSTYLE_WEIGHTS` (a file path; skipped when unset or empty),
    ///   `<directory of executablePath>/../share/pamstyle/vgg19-conv-q8.pstw` (an installed copy), and
    ///   the source tree's `weights/vgg19-conv-q8.pstw` (the package root this file was compiled in).
    ///   The first regular file found wins.
    ///
    /// `executablePath` should be the running program's resolved path (see `runningExecutablePath`).
    /// Nothing is read here; `load(from:)` validates the file. Throws `WeightsError.notFound` listing
    /// every path tried.
    public static func locate(explicit: String?, environment: [String: String], executablePath: String) throws -> String {
        try locate(explicit: explicit, environment: environment, executablePath: executablePath,
                   sourceTreeFile: sourceTreeFile)
    }

    /// `locate` with the source tree's candidate passed in, so tests can point it elsewhere.
    static func locate(explicit: String?, environment: [String: String], executablePath: String,
                       sourceTreeFile: String) throws -> String {
        if let explicit {
            // Taken as given when it exists at all, so that `load` names what is wrong with it.
            guard FileManager.default.fileExists(atPath: explicit) else { throw WeightsError.notFound(searched: [explicit]) }
            return explicit
        }
        var candidates: [String] = []
        if let fromEnvironment = environment["PAMSTYLE_WEIGHTS"], !fromEnvironment.isEmpty {
            candidates.append(fromEnvironment)
        }
        let installed = URL(fileURLWithPath: executablePath).deletingLastPathComponent()
            .appendingPathComponent("../share/pamstyle/\(fileName)").standardizedFileURL.path
        candidates.append(installed)
        candidates.append(sourceTreeFile)
        guard let found = candidates.first(where: isRegularFile) else {
            throw WeightsError.notFound(searched: candidates)
        }
        return found
    }

    /// The running program's path with symbolic links resolved (Linux `/proc/self/exe`), falling back to
    /// `argv[0]` made absolute.
    public static var runningExecutablePath: String {
        if let resolved = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            return resolved
        }
        return URL(fileURLWithPath: CommandLine.arguments.first ?? "").standardizedFileURL.path
    }

    /// `<package root>/weights/vgg19-conv-q8.pstw`, from where this source file was compiled
    /// (`<package root>/Sources/StyleTransfer/Weights.swift`).
    static let sourceTreeFile: String = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("weights").appendingPathComponent(fileName).path

    private static func isRegularFile(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && !isDirectory.boolValue
    }
}

// MARK: - Loading

/// The layout of a weights file, version 1 (weights/README.md has it byte by byte). Little-endian.
///
///     header (64 bytes)  magic[8] "PSTW\r\n\u{1A}\n", u32 version, u32 layer count, u64 file size,
///                        u64 header size (64), sha256[32] of bytes [64, file size)
///     layer table        layer count entries of 80 bytes, from byte 64:
///                        name[16] (ASCII, NUL-padded), u32 in channels, u32 out channels,
///                        u32 kernel height, u32 kernel width, then (u64 offset, u64 size) for the
///                        codebook, the indices and the bias
///     sections           per layer: codebook float32 (256), indices uint8 (out, in, 3, 3), bias float32 (out),
///                        each starting at a multiple of 64, zero padding between them
enum WeightsFormat {
    static let magic: [UInt8] = Array("PSTW\r\n".utf8) + [0x1A, 0x0A]
    static let version: UInt32 = 1
    static let headerSize = 64
    static let entrySize = 80
    static let nameSize = 16
    static let alignment = 64
    static let codebookEntries = 256
    static let kernelSize = 3
}

extension VGGWeights {
    /// Reads, validates and dequantizes a weights file (`kernel[i] = codebook[indices[i]]` per layer).
    ///
    /// Checks, in order: the magic, the version, the file size against the header's, the SHA-256 of
    /// everything after the header, then that the layer table is exactly `architecture` with every section
    /// of the right size, aligned, in order and inside the file. Throws the matching `WeightsError`.
    public static func load(from path: String) throws -> VGGWeights {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw WeightsError.notFound(searched: [path])
        }
        guard !isDirectory.boolValue else { throw WeightsError.unreadable(path: path, reason: "it is a directory") }
        guard let data = FileManager.default.contents(atPath: path) else {
            let reason = FileManager.default.isReadableFile(atPath: path) ? "the read failed" : "permission denied"
            throw WeightsError.unreadable(path: path, reason: reason)
        }
        return try decode([UInt8](data), path: path)
    }

    /// `load(from:)` on bytes already in memory; `path` only names the file in errors.
    static func decode(_ bytes: [UInt8], path: String) throws -> VGGWeights {
        let reader = ByteReader(bytes: bytes)
        let magic = WeightsFormat.magic
        let count = bytes.count
        guard Array(bytes.prefix(magic.count)) == Array(magic.prefix(min(count, magic.count))) else {
            throw WeightsError.wrongMagic(path: path)
        }
        guard count >= 12 else { throw WeightsError.truncatedHeader(path: path, actual: count) }
        let version = reader.uint32(at: 8)
        guard version == WeightsFormat.version else { throw WeightsError.unsupportedVersion(path: path, version: version) }
        guard count >= 24 else { throw WeightsError.truncatedHeader(path: path, actual: count) }
        let declaredSize = reader.uint64(at: 16)
        guard declaredSize <= UInt64(count) else {
            throw WeightsError.truncated(path: path, expected: Int(clamping: declaredSize), actual: count)
        }
        guard declaredSize == UInt64(count) else {
            throw WeightsError.trailingBytes(path: path, expected: Int(declaredSize), actual: count)
        }
        guard count >= WeightsFormat.headerSize else { throw WeightsError.truncatedHeader(path: path, actual: count) }
        let headerSize = reader.uint64(at: 24)
        guard headerSize == UInt64(WeightsFormat.headerSize) else {
            throw WeightsError.badLayerTable(path: path, reason: "the header says it is \(headerSize) bytes, not \(WeightsFormat.headerSize)")
        }
        let recorded = Array(bytes[32..<64])
        guard SHA256.digest(bytes, range: WeightsFormat.headerSize..<count) == recorded else {
            throw WeightsError.checksumMismatch(path: path)
        }

        let entries = try readLayerTable(reader, path: path)
        let layers = entries.map { entry in
            // (256)
            let codebook = (0..<WeightsFormat.codebookEntries).map { reader.float(at: entry.codebook.lowerBound + 4 * $0) }
            // (outChannels, inChannels, 3, 3)
            let kernel = bytes[entry.indices].map { codebook[Int($0)] }
            // (outChannels)
            let bias = (0..<entry.outChannels).map { reader.float(at: entry.bias.lowerBound + 4 * $0) }
            return ConvLayerWeights(name: entry.name, inChannels: entry.inChannels, outChannels: entry.outChannels,
                                    kernel: kernel, bias: bias)
        }
        return VGGWeights(layers: layers)
    }

    private struct TableEntry {
        let name: String
        let inChannels: Int
        let outChannels: Int
        let codebook: Range<Int>
        let indices: Range<Int>
        let bias: Range<Int>
    }

    /// The layer table, checked against `architecture` and against the file's extent.
    private static func readLayerTable(_ reader: ByteReader, path: String) throws -> [TableEntry] {
        func bad(_ reason: String) -> WeightsError { .badLayerTable(path: path, reason: reason) }
        let fileSize = reader.bytes.count
        let layerCount = Int(reader.uint32(at: 12))
        guard layerCount == architecture.count else {
            throw bad("it lists \(layerCount) layers, VGG-19 has \(architecture.count)")
        }
        let tableEnd = WeightsFormat.headerSize + layerCount * WeightsFormat.entrySize
        guard tableEnd <= fileSize else { throw bad("the table runs past the end of the file") }

        var entries: [TableEntry] = []
        var previousEnd = tableEnd
        for (index, expected) in architecture.enumerated() {
            let base = WeightsFormat.headerSize + index * WeightsFormat.entrySize
            let nameBytes = reader.bytes[base..<(base + WeightsFormat.nameSize)]
            let nameLength = nameBytes.firstIndex(of: 0).map { $0 - base } ?? WeightsFormat.nameSize
            let name = String(nameBytes.prefix(nameLength).map { (0x20...0x7E).contains($0) ? Character(UnicodeScalar($0)) : "?" })
            guard name == expected.name, nameBytes.dropFirst(nameLength).allSatisfy({ $0 == 0 }) else {
                throw bad("entry \(index + 1) is named \"\(name)\", expected \(expected.name)")
            }
            let inChannels = Int(reader.uint32(at: base + 16))
            let outChannels = Int(reader.uint32(at: base + 20))
            let kernelHeight = Int(reader.uint32(at: base + 24))
            let kernelWidth = Int(reader.uint32(at: base + 28))
            let k = WeightsFormat.kernelSize
            guard inChannels == expected.inChannels, outChannels == expected.outChannels,
                  kernelHeight == k, kernelWidth == k else {
                throw bad("\(name) is \(inChannels)→\(outChannels) channels with \(kernelHeight)x\(kernelWidth) kernels, "
                          + "expected \(expected.inChannels)→\(expected.outChannels) with \(k)x\(k)")
            }
            let sizes = [(what: "codebook", size: 4 * WeightsFormat.codebookEntries),
                         (what: "indices", size: outChannels * inChannels * k * k),
                         (what: "bias", size: 4 * outChannels)]
            var ranges: [Range<Int>] = []
            for (slot, section) in sizes.enumerated() {
                let offset = reader.uint64(at: base + 32 + 16 * slot)
                let size = reader.uint64(at: base + 40 + 16 * slot)
                guard size == UInt64(section.size) else {
                    throw bad("the \(section.what) of \(name) is \(size) bytes, expected \(section.size)")
                }
                guard offset % UInt64(WeightsFormat.alignment) == 0 else {
                    throw bad("the \(section.what) of \(name) starts at byte \(offset), not a multiple of \(WeightsFormat.alignment)")
                }
                guard offset >= UInt64(previousEnd), offset <= UInt64(fileSize), size <= UInt64(fileSize) - offset else {
                    throw bad("the \(section.what) of \(name), \(size) bytes at byte \(offset), overlaps "
                              + "the previous section or lies outside the file's \(fileSize) bytes")
                }
                let range = Int(offset)..<(Int(offset) + section.size)
                ranges.append(range)
                previousEnd = range.upperBound
            }
            entries.append(TableEntry(name: name, inChannels: inChannels, outChannels: outChannels,
                                      codebook: ranges[0], indices: ranges[1], bias: ranges[2]))
        }
        return entries
    }
}

/// Little-endian fields of a byte array. Callers check bounds before reading.
private struct ByteReader {
    let bytes: [UInt8]

    func uint32(at offset: Int) -> UInt32 {
        UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16 | UInt32(bytes[offset + 3]) << 24
    }

    func uint64(at offset: Int) -> UInt64 {
        UInt64(uint32(at: offset)) | UInt64(uint32(at: offset + 4)) << 32
    }

    func float(at offset: Int) -> Float {
        Float(bitPattern: uint32(at: offset))
    }
}

// MARK: - SHA-256

/// SHA-256 (FIPS 180-4). Foundation on Linux has no CryptoKit, and the weights need only this.
enum SHA256 {
    /// The 32-byte digest of `bytes[range]`.
    static func digest(_ bytes: [UInt8], range: Range<Int>) -> [UInt8] {
        var state: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
        var schedule = [UInt32](repeating: 0, count: 64)  // (64) message schedule of one block
        let fullBlocks = range.count / 64
        for block in 0..<fullBlocks {
            compress(bytes, at: range.lowerBound + 64 * block, state: &state, schedule: &schedule)
        }
        // The rest of the message, the 0x80 marker, zeros, and the bit length: one or two final blocks.
        var tail = Array(bytes[(range.lowerBound + 64 * fullBlocks)..<range.upperBound])
        tail.append(0x80)
        while tail.count % 64 != 56 { tail.append(0) }
        let bitLength = UInt64(range.count) &* 8
        for shift in stride(from: 56, through: 0, by: -8) { tail.append(UInt8(truncatingIfNeeded: bitLength >> UInt64(shift))) }
        for block in 0..<(tail.count / 64) {
            compress(tail, at: 64 * block, state: &state, schedule: &schedule)
        }
        return state.flatMap { word in [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: word >> UInt32($0)) } }
    }

    private static let roundConstants: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    @inline(__always)
    private static func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 &- n)) }

    /// Folds the 64-byte block at `bytes[offset...]` into `state` (8 words).
    @inline(__always)
    private static func compress(_ bytes: [UInt8], at offset: Int, state: inout [UInt32], schedule w: inout [UInt32]) {
        for i in 0..<16 {
            let p = offset &+ 4 &* i
            w[i] = UInt32(bytes[p]) << 24 | UInt32(bytes[p &+ 1]) << 16 | UInt32(bytes[p &+ 2]) << 8 | UInt32(bytes[p &+ 3])
        }
        for i in 16..<64 {
            let s0 = rotr(w[i &- 15], 7) ^ rotr(w[i &- 15], 18) ^ (w[i &- 15] >> 3)
            let s1 = rotr(w[i &- 2], 17) ^ rotr(w[i &- 2], 19) ^ (w[i &- 2] >> 10)
            w[i] = w[i &- 16] &+ s0 &+ w[i &- 7] &+ s1
        }
        var a = state[0], b = state[1], c = state[2], d = state[3]
        var e = state[4], f = state[5], g = state[6], h = state[7]
        let k = roundConstants
        for i in 0..<64 {
            let t1 = h &+ (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) &+ ((e & f) ^ (~e & g)) &+ k[i] &+ w[i]
            let t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) &+ ((a & b) ^ (a & c) ^ (b & c))
            h = g; g = f; f = e; e = d &+ t1
            d = c; c = b; b = a; a = t1 &+ t2
        }
        state[0] &+= a; state[1] &+= b; state[2] &+= c; state[3] &+= d
        state[4] &+= e; state[5] &+= f; state[6] &+= g; state[7] &+= h
    }
}

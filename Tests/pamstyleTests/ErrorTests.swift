import Foundation
import XCTest

/// Every way a run can go wrong ends with one line "pamstyle: ..." on standard error, exit status 1, and
/// nothing on standard output for the image that failed.
final class ErrorTests: XCTestCase {
    let quick = ["-size", "48", "-scales", "1", "-iterations", "2", "-quiet"]
    var directory: URL!
    var style: String!

    override func setUpWithError() throws {
        directory = try scratchDirectory(self)
        style = try file("style.ppm", in: directory, patternPPM(width: 40, height: 36, phase: 2))
    }

    /// Runs pamstyle and checks the failure: status 1, one line naming what went wrong, and the expected
    /// output (nothing, by default).
    @discardableResult
    func expectFailure(_ arguments: [String], input: [UInt8] = [], saying fragments: [String],
                       stdout expected: [UInt8] = [], file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let result = try pamstyle(arguments, input: input, timeout: 120)
        XCTAssertEqual(result.status, 1, result.stderr, file: file, line: line)
        XCTAssertEqual(result.stderrLines.count, 1, "one line: \(result.stderr)", file: file, line: line)
        XCTAssertTrue(result.stderr.hasPrefix("pamstyle: "), result.stderr, file: file, line: line)
        for fragment in fragments {
            XCTAssertTrue(result.stderr.contains(fragment), "'\(fragment)' in: \(result.stderr)", file: file, line: line)
        }
        XCTAssertTrue(result.stdout == expected, "standard output: \(result.stdout.count) bytes, expected \(expected.count)",
                      file: file, line: line)
        return result.stderr
    }

    // MARK: Malformed input on standard input

    func testMalformedInputs() throws {
        let cases: [(name: String, bytes: [UInt8], says: String)] = [
            ("truncated raster", Array("P6\n128 96\n255\n".utf8) + Array(repeating: 7, count: 18000), "cannot read row"),
            ("truncated header", Array("P6\n128 96\n".utf8), "bad header"),
            ("non-numeric size", Array("P6\nabc def\n255\n".utf8), "bad header"),
            ("zero width", Array("P6\n0 96\n255\n".utf8), "bad header"),
            ("maxval 0", Array("P6\n4 4\n0\n".utf8) + Array(repeating: 0, count: 48), "maxval"),
            ("PAM without ENDHDR", Array("P7\nWIDTH 4\nHEIGHT 4\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\n".utf8) + [0xFF, 0, 1],
             "ENDHDR"),
            ("JPEG", [0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10] + Array("JFIF".utf8) + Array(repeating: 0, count: 100), "JPEG"),
            ("huge header", Array("P6\n100000 100000\n255\n".utf8) + Array(repeating: 0, count: 12), "100000x100000"),
            ("empty input", [], "no image"),
        ]
        for (name, bytes, says) in cases {
            let message = try expectFailure(quick + [style], input: bytes, saying: ["standard input", says])
            XCTAssertFalse(message.isEmpty, name)
        }
    }

    func testAGoodImageStaysWrittenBeforeABadOne() throws {
        let good = patternPPM(width: 48, height: 36)
        let single = try pamstyle(quick + [style], input: good)
        XCTAssertEqual(single.status, 0, single.stderr)
        try expectFailure(quick + [style], input: good + Array("P6\n48 36\n255\n".utf8) + [1, 2, 3],
                          saying: ["standard input: image 2", "cannot read row"], stdout: single.stdout)
    }

    func testPixelLimitIsCheckedBeforeTheRaster() throws {
        try expectFailure(quick + ["-max-pixels", "1500", style], input: patternPPM(width: 48, height: 36),
                          saying: ["standard input", "48x36", "1500", "-max-pixels"])
    }

    func testPixelLimitHasAnUpperBound() throws {
        let input = patternPPM(width: 48, height: 36)
        let message = try expectFailure(quick + ["-max-pixels", "268435457", style], input: input,
                                        saying: ["-max-pixels", "268435457"])
        XCTAssertEqual(message, "pamstyle: -max-pixels must be from 1 to 268435456; you specified 268435457\n")
        try expectFailure(quick + ["-max-pixels=\(Int.max)", style], input: input, saying: ["-max-pixels", "\(Int.max)"])
        let largest = try pamstyle(quick + ["-max-pixels", "268435456", style], input: input)
        XCTAssertEqual(largest.status, 0, largest.stderr)
        XCTAssertEqual(try images(largest.stdout).count, 1)
    }

    // MARK: Style, init and weights files

    func testBadStyleFilesNameTheFile() throws {
        let input = patternPPM(width: 48, height: 36)
        let missing = directory.appendingPathComponent("missing.ppm").path
        try expectFailure(quick + [missing], input: input, saying: [missing, "No such file"])
        let truncated = try file("truncated.ppm", in: directory, Array("P6\n40 40\n255\n".utf8) + [1, 2, 3])
        try expectFailure(quick + [truncated], input: input, saying: [truncated, "cannot read row"])
        let jpeg = try file("photo.ppm", in: directory, [0xFF, 0xD8, 0xFF, 0xE1] + Array(repeating: 0, count: 64))
        try expectFailure(quick + [jpeg], input: input, saying: [jpeg, "JPEG"])
        let empty = try file("empty.ppm", in: directory, [])
        try expectFailure(quick + [empty], input: input, saying: [empty, "no image"])
        let flipped = try file("flipped.ppm", in: directory, [0x50, 0x39] + patternPPM(width: 8, height: 8).dropFirst(2))
        try expectFailure(quick + [flipped], input: input, saying: [flipped])
        let initFile = directory.appendingPathComponent("nothing.ppm").path
        try expectFailure(quick + ["-init", initFile, style], input: input, saying: [initFile])
    }

    func testBadWeightsFilesNameTheFile() throws {
        let input = patternPPM(width: 48, height: 36)
        let real = packageRoot.appendingPathComponent("weights/vgg19-conv-q8.pstw")
        let bytes = [UInt8](try Data(contentsOf: real))

        let missing = directory.appendingPathComponent("none.pstw").path
        try expectFailure(quick + ["-weights", missing, style], input: input, saying: [missing])
        let truncated = try file("truncated.pstw", in: directory, Array(bytes.prefix(5_000_000)))
        try expectFailure(quick + ["-weights", truncated, style], input: input, saying: [truncated, "truncated"])
        let short = try file("short.pstw", in: directory, Array(bytes.prefix(40)))
        try expectFailure(quick + ["-weights", short, style], input: input, saying: [short])
        var magic = bytes
        magic[0] = UInt8(ascii: "X")
        let wrongMagic = try file("magic.pstw", in: directory, magic)
        try expectFailure(quick + ["-weights", wrongMagic, style], input: input,
                          saying: [wrongMagic, "not a pamstyle weights file"])
        var flipped = bytes
        flipped[bytes.count / 2] ^= 0x10
        let corrupt = try file("flipped.pstw", in: directory, flipped)
        try expectFailure(quick + ["-weights", corrupt, style], input: input, saying: [corrupt])
        let longer = try file("longer.pstw", in: directory, bytes + [0])
        try expectFailure(quick + ["-weights", longer, style], input: input, saying: [longer])
        let image = try file("image.pstw", in: directory, patternPPM(width: 8, height: 8))
        try expectFailure(quick + ["-weights", image, style], input: input, saying: [image, "not a pamstyle weights file"])

        let environment = try pamstyle(quick + [style], input: input, environment: ["PAMSTYLE_WEIGHTS": wrongMagic])
        XCTAssertEqual(environment.status, 1)
        XCTAssertTrue(environment.stderr.contains(wrongMagic), environment.stderr)
    }

    // MARK: Usage errors

    /// An image whose optimization cannot fit in -memory, even with the network in stripes and a half-precision
    /// history, is refused with the memory it needs; a smaller -size fits. (At 1400×1000 it needs about 460 MiB with
    /// bf16 products and 530 in single precision, whose larger F(6×6) kernels also make 100×71 need about 280.)
    func testAnImageTooLargeForTheMemoryIsRefused() throws {
        let input = patternPPM(width: 1400, height: 1000)
        let says = try expectFailure(["-size", "native", "-memory", "320", "-scales", "1", "-iterations", "1", style],
                                     input: input, saying: ["1400x1000", "-memory allows 320 MiB", "MiB"])
        XCTAssertFalse(says.contains("diverged"))
        let fits = try pamstyle(["-size", "100", "-memory", "320", "-scales", "1", "-iterations", "1", "-quiet", style],
                                input: input, timeout: 120)
        XCTAssertEqual(fits.status, 0, fits.stderr)
    }

    /// -precision bf16 runs where the processor has AVX512_BF16, and -verbose says so; elsewhere it is refused in one
    /// line. -precision single never runs bf16.
    func testPrecisionBF16RunsOnlyWhereTheProcessorHasIt() throws {
        try checkPrecision("bf16", flag: "avx512_bf16", feature: "AVX512_BF16",
                           says: "Winograd F(4×4, 3×3) with products in bf16")
    }

    /// -precision half runs where the processor has AVX512_FP16, and -verbose says so; elsewhere it is refused in one
    /// line. -precision single never runs half precision.
    func testPrecisionHalfRunsOnlyWhereTheProcessorHasIt() throws {
        try checkPrecision("half", flag: "avx512_fp16", feature: "AVX512_FP16",
                           says: "Winograd F(6×6, 3×3) with products in half precision")
    }

    /// -precision `name` runs where /proc/cpuinfo lists `flag` (and avx512f), its -verbose line `says`, and writes
    /// another picture than -precision single, whose -verbose line names neither; elsewhere it is refused in one line
    /// naming `feature`.
    private func checkPrecision(_ name: String, flag: String, feature: String, says: String,
                                file: StaticString = #filePath, line: UInt = #line) throws {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let flags = cpuinfo.split(separator: "\n").first { $0.hasPrefix("flags") }?.split(separator: " ") ?? []
        let input = patternPPM(width: 48, height: 36)
        let verbose = ["-size", "48", "-scales", "1", "-iterations", "1", "-verbose"]
        guard flags.contains(Substring(flag)) && flags.contains("avx512f") else {
            try expectFailure(["-precision", name, style], input: input, saying: ["-precision \(name)", feature],
                              file: file, line: line)
            return
        }
        let reduced = try pamstyle(verbose + ["-precision", name, style], input: input, timeout: 120)
        XCTAssertEqual(reduced.status, 0, reduced.stderr, file: file, line: line)
        XCTAssertTrue(reduced.stderr.contains(says), reduced.stderr, file: file, line: line)
        let single = try pamstyle(verbose + ["-precision", "single", style], input: input, timeout: 120)
        XCTAssertEqual(single.status, 0, single.stderr, file: file, line: line)
        XCTAssertFalse(single.stderr.contains("with products in"), single.stderr, file: file, line: line)
        XCTAssertTrue(single.stderr.contains("Winograd F(6×6, 3×3)"), single.stderr, file: file, line: line)
        XCTAssertNotEqual(reduced.stdout, single.stdout, file: file, line: line)
    }

    func testUsageErrorsNameTheOptionAndValue() throws {
        let input = patternPPM(width: 48, height: 36)
        let cases: [(arguments: [String], says: [String])] = [
            ([], ["no style image"]),
            (["-iterations", "many", style], ["-iterations", "many"]),
            (["-scales", "0", style], ["-scales", "0"]),
            (["-size", "8", style], ["-size", "8"]),
            (["-size", "huge", style], ["-size", "huge"]),
            (["-memory", "10", style], ["-memory", "10"]),
            (["-style-weight=-1", style], ["-style-weight", "-1"]),
            (["-optimizer", "sgd", style], ["-optimizer", "sgd"]),
            (["-pooling", "min", style], ["-pooling", "min"]),
            (["-style-layers", "relu9_9", style], ["-style-layers", "relu9_9"]),
            (["-content-layers", "relu4_2:x", style], ["-content-layers", "x"]),
            (["-style-blend", "1,2", style], ["-style-blend", "1,2"]),
            (["-learning-rate", "0", style], ["-learning-rate", "0"]),
            (["-time-limit", "0", style], ["-time-limit", "0"]),
            (["-history", "0", style], ["-history", "0"]),
            (["-max-pixels", "0", style], ["-max-pixels", "0"]),
            (["-checkpoint-every", "0", style], ["-checkpoint-every", "0"]),
            (["-init", "", style], ["-init", "''"]),
            (["-weights=", style], ["-weights", "''"]),
            (["-checkpoint", "", style], ["-checkpoint", "''"]),
            ([style, ""], ["style image", "empty"]),
            (["-bogus", style], ["-bogus"]),
            (["-nosuchoption", style], ["-nosuchoption"]),
            (["-precision", "quarter", style], ["-precision", "quarter"]),
            (["-style-loss", "sliced", style], ["-style-loss", "sliced"]),
            (["-colors", "content", style], ["-colors", "content"]),
            (["-padding", "replicate", style], ["-padding", "replicate"]),
            (["-style-masks", "a.pgm,b.pgm", style], ["-style-masks", "a.pgm,b.pgm"]),
            (["-style-masks", "no-such-mask.pgm", style], ["no-such-mask.pgm"]),
            (["-change-mask", "", style], ["-change-mask", "''"]),
            (["-change-mask", "no-such-mask.pgm", style], ["no-such-mask.pgm"]),
            (["-colors", "match", "-preserve-colors", style], ["-preserve-colors", "-colors match"]),
            (["-temporal-weight", "2", style], ["-temporal-weight", "-temporal"]),
            (["-temporal", "-temporal-weight=-1", style], ["-temporal-weight", "-1"]),
            (["-quiet", "-verbose", style], ["-quiet", "-verbose"]),
        ]
        for (arguments, says) in cases {
            try expectFailure(arguments, input: input, saying: says)
        }
    }
}

import Foundation
import Netpbm
import XCTest

/// Malformed input: every error names the stream and says what is wrong.
final class ReaderErrorTests: XCTestCase {
    /// Asserts the error's sentence contains every fragment.
    private func assertDescription(_ error: NetpbmError?, contains fragments: [String],
                                   file: StaticString = #filePath, line: UInt = #line) {
        let text = error?.errorDescription ?? "(no error)"
        for fragment in fragments {
            XCTAssertTrue(text.contains(fragment), "\"\(text)\" lacks \"\(fragment)\"", file: file, line: line)
        }
        XCTAssertFalse(text.contains("\n"), "one line: \(text)", file: file, line: line)
    }

    func testEmptyInputIsNoImage() {
        let (error, images) = readError([])
        XCTAssertEqual(error, .noImage(source: "test"))
        XCTAssertEqual(error?.errorDescription, "test: no image (the input is empty)")
        XCTAssertTrue(images.isEmpty)
    }

    func testTruncatedRaster() {
        // 4x3 RGB needs 36 bytes: row 1 is complete, row 2 is cut.
        let (error, images) = readError(netpbm("P6\n4 3\n255\n", [UInt8](repeating: 7, count: 20)))
        XCTAssertTrue(images.isEmpty, "a failed read yields no image")
        guard case let .badRaster(source, image, row, height, _)? = error else {
            return XCTFail("\(String(describing: error))")
        }
        XCTAssertEqual([source, "\(image)", "\(row)", "\(height)"], ["test", "1", "1", "3"])
        assertDescription(error, contains: ["test: cannot read row 2 of 3: ", "End of file"])
    }

    func testTruncatedPlainRaster() {
        let (error, _) = readError(netpbm("P3\n2 1\n255\n1 2 3 4"))
        assertDescription(error, contains: ["cannot read row 1 of 1", "EOF"])
    }

    func testTruncatedHeader() {
        assertDescription(readError(netpbm("P6\n128 96\n")).error, contains: ["test: bad header: ", "EOF"])
        assertDescription(readError(netpbm("P")).error, contains: ["bad header", "magic number"])
    }

    func testNonNumericSize() {
        assertDescription(readError(netpbm("P6\nwidth height\n255\n", [1, 2, 3])).error,
                          contains: ["bad header", "where an unsigned integer should be"])
    }

    func testZeroWidthAndHeight() {
        XCTAssertEqual(readError(netpbm("P6\n0 96\n255\n")).error?.errorDescription,
                       "test: bad header: Width is zero. Image must be at least one pixel wide")
        assertDescription(readError(netpbm("P5\n3 0\n255\n")).error, contains: ["bad header", "Height is zero"])
    }

    func testBadMaxval() {
        assertDescription(readError(netpbm("P6\n2 2\n0\n", [UInt8](repeating: 0, count: 12))).error,
                          contains: ["bad header", "maxval of input image is zero"])
        assertDescription(readError(netpbm("P5\n1 1\n65536\n", [0, 0])).error, contains: ["65536", "too large"])
    }

    func testSampleAboveMaxval() {
        assertDescription(readError(netpbm("P2\n1 1\n10\n11\n")).error,
                          contains: ["cannot read row 1 of 1", "11 exceeds", "maxval of 10"])
    }

    func testPAMWithoutENDHDR() {
        let header = "P7\nWIDTH 2\nHEIGHT 2\nDEPTH 4\nMAXVAL 255\nTUPLTYPE RGB_ALPHA\n"
        // libnetpbm quotes the raster's first word; its bytes reach the message escaped, never raw.
        assertDescription(readError(netpbm(header, [0xFF, 0x10, 0x20, 0x30])).error,
                          contains: ["bad header", "'\\xff\\x10'", "ENDHDR"])
        assertDescription(readError(netpbm(header)).error, contains: ["bad header", "EOF", "PAM header"])
    }

    func testPAMWithoutWidthOrDepth() {
        assertDescription(readError(netpbm("P7\nHEIGHT 2\nDEPTH 3\nMAXVAL 255\nENDHDR\n")).error,
                          contains: ["No WIDTH"])
        assertDescription(readError(netpbm("P7\nWIDTH 1\nHEIGHT 1\nDEPTH 0\nMAXVAL 255\nENDHDR\n")).error,
                          contains: ["DEPTH", "zero"])
    }

    func testPAMTupleTypeThatIsNotAnImage() {
        let (error, _) = readError(netpbm("P7\nWIDTH 1\nHEIGHT 1\nDEPTH 4\nMAXVAL 255\nTUPLTYPE CMYK\nENDHDR\n", [1, 2, 3, 4]))
        XCTAssertEqual(error, .unsupportedTupleType(source: "test", image: 1, tupleType: "CMYK", depth: 4))
        assertDescription(error, contains: ["test: PAM tuple type \"CMYK\" with depth 4", "RGB"])
    }

    func testBadMagicNumber() {
        assertDescription(readError(netpbm("P9\n1 1\n255\n")).error, contains: ["bad header", "bad magic number"])
    }

    func testJPEGSaysItIsNotNetpbm() {
        let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10] + Array("JFIF".utf8) + [0x00, 0x01, 0x01, 0x01, 0x00, 0x48]
        let (error, _) = readError(jpeg, name: "photo.ppm")
        XCTAssertEqual(error, .notNetpbm(source: "photo.ppm", image: 1, firstBytes: Array(jpeg.prefix(16))))
        XCTAssertEqual(error?.errorDescription, "photo.ppm: not a Netpbm image (it starts like a JPEG file)")
    }

    func testOtherFormatsAndJunk() {
        let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13]
        assertDescription(readError(png).error, contains: ["not a Netpbm image (it starts like a PNG file)"])
        assertDescription(readError(netpbm("GIF89a....")).error, contains: ["like a GIF file"])
        XCTAssertEqual(readError(netpbm("hello, world")).error?.errorDescription,
                       "test: not a Netpbm image (it starts with the bytes 68 65 6c 6c 6f 2c 20 77, "
                           + "not with a magic number P1 to P7)")
    }

    func testMissingFile() {
        XCTAssertThrowsError(try ImageReader(path: "/nonexistent/in.ppm", maxPixels: 100)) { error in
            XCTAssertEqual(error as? NetpbmError, .cannotOpen(path: "/nonexistent/in.ppm", reason: "No such file or directory"))
            XCTAssertEqual((error as? NetpbmError)?.errorDescription, "/nonexistent/in.ppm: cannot open: No such file or directory")
        }
    }

    func testNothingIsPrintedByLibnetpbm() throws {
        let inputs: [[UInt8]] = [
            [], netpbm("P6\n4 3\n255\n", [1, 2, 3]), netpbm("P6\n128 96\n"), netpbm("P6\nw h\n255\n"),
            netpbm("P6\n0 3\n255\n"), netpbm("P6\n2 2\n0\n"), netpbm("P7\nWIDTH 2\nHEIGHT 2\nDEPTH 4\nMAXVAL 255\n"),
            [0xFF, 0xD8, 0xFF, 0xE0], netpbm("P9\n"), netpbm("P2\n1 1\n10\n11\n"),
            netpbm("P6\n100000 100000\n255\n", [1, 2, 3]), netpbm("P1\n1 1\n1\n") + netpbm("junk"),
        ]
        let captured = try capturingStandardError {
            for input in inputs {
                _ = readError(input)
            }
        }
        XCTAssertEqual(captured, "", "libnetpbm printed on its own")
    }

    /// What `body` writes to file descriptor 2.
    private func capturingStandardError(_ body: () -> Void) throws -> String {
        let url = try scratchDirectory(self).appendingPathComponent("stderr")
        let capture = open(url.path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        XCTAssertGreaterThanOrEqual(capture, 0)
        let saved = dup(2)
        dup2(capture, 2)
        body()
        dup2(saved, 2)
        close(saved)
        close(capture)
        return String(decoding: try Data(contentsOf: url), as: UTF8.self)
    }
}

/// The pixel limit is applied to the header, before any memory is taken for the raster.
final class ReaderLimitTests: XCTestCase {
    func testHugeHeaderIsRefusedByName() {
        let (error, _) = readError(netpbm("P6\n100000 100000\n255\n", [UInt8](repeating: 9, count: 12)),
                                   name: "standard input", maxPixels: 16_777_216)
        XCTAssertEqual(error, .tooLarge(source: "standard input", image: 1, width: 100_000, height: 100_000, limit: 16_777_216))
        XCTAssertEqual(error?.errorDescription,
                       "standard input: 100000x100000 pixels exceeds the limit of 16777216 (-max-pixels)")
    }

    func testHugePAMIsRefused() {
        let header = "P7\nWIDTH 100000\nHEIGHT 100000\nDEPTH 4\nMAXVAL 65535\nTUPLTYPE RGB_ALPHA\nENDHDR\n"
        XCTAssertEqual(readError(netpbm(header, [1, 2, 3])).error,
                       .tooLarge(source: "test", image: 1, width: 100_000, height: 100_000, limit: 1 << 24))
    }

    func testLimitIsInclusive() throws {
        let image = netpbm("P5\n4 4\n255\n", [UInt8](repeating: 1, count: 16))
        XCTAssertEqual(try readAll(image, maxPixels: 16).count, 1)
        XCTAssertEqual(readError(image, maxPixels: 15).error,
                       .tooLarge(source: "test", image: 1, width: 4, height: 4, limit: 15))
    }

    /// A header for 4000x4000 (192 MB as float planes) refused at a limit of one megapixel leaves the
    /// peak resident memory where it was.
    func testRefusalAllocatesNothing() throws {
        let statusBefore = try memoryStatus()
        let peakWasReset = resetPeakResidentMemory()
        for header in ["P6\n4000 4000\n255\n", "P6\n100000 100000\n255\n",
                       "P7\nWIDTH 4000\nHEIGHT 4000\nDEPTH 4\nMAXVAL 255\nTUPLTYPE RGB_ALPHA\nENDHDR\n"] {
            guard case .tooLarge? = readError(netpbm(header, [UInt8](repeating: 3, count: 64)), maxPixels: 1_000_000).error else {
                return XCTFail("\(header) was not refused")
            }
        }
        let statusAfter = try memoryStatus()
        let growth = peakWasReset ? statusAfter.peak - statusBefore.resident : statusAfter.resident - statusBefore.resident
        XCTAssertLessThan(growth, 32 << 20, "resident memory grew by \(growth) bytes (peak measured: \(peakWasReset))")
    }

    /// VmRSS and VmHWM of this process, in bytes.
    private func memoryStatus() throws -> (resident: Int, peak: Int) {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        func field(_ name: String) -> Int {
            let line = status.split(separator: "\n").first { $0.hasPrefix(name + ":") } ?? ""
            return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
        }
        return (field("VmRSS"), field("VmHWM"))
    }

    /// Resets VmHWM to the current resident size (Linux: "5" into clear_refs); false if not permitted.
    private func resetPeakResidentMemory() -> Bool {
        guard let handle = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else {
            return false
        }
        defer { try? handle.close() }
        return (try? handle.write(contentsOf: Data("5".utf8))) != nil
    }
}

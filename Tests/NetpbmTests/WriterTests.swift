import Foundation
import Netpbm
import XCTest

/// ImageWriter: exact bytes, rounding and clamping, round trips, and a closed pipe.
final class WriterTests: XCTestCase {
    func testPPMBytes() throws {
        // (3, 1, 2): red [1, 0], green [0, 0.5], blue [0.2, 1]; 0.5 * 255 = 127.5 rounds up.
        let image = Image(width: 2, height: 1, pixels: [1, 0, 0, 0.5, 0.2, 1])
        XCTAssertEqual(try written([image], in: self), netpbm("P6\n2 1\n255\n", [255, 0, 51, 0, 128, 255]))
        XCTAssertEqual(image.source, SourceFormat.written(withAlpha: false))
    }

    func testPAMBytesWithAlpha() throws {
        // (3, 2, 1) and alpha (2, 1).
        let image = Image(width: 1, height: 2, pixels: [1, 0, 0.4, 0.6, 0, 1], alpha: [0.5, 1])
        let expected = netpbm("P7\nWIDTH 1\nHEIGHT 2\nDEPTH 4\nMAXVAL 255\nTUPLTYPE RGB_ALPHA\nENDHDR\n",
                              [255, 102, 0, 128, 0, 153, 255, 255])
        XCTAssertEqual(try written([image], in: self), expected)
    }

    func testRoundingAndClamping() throws {
        let values: [Float] = [-0.1, 1.2, .nan, -.infinity, .infinity, 0,
                               0.499 / 255, 0.501 / 255, 1.499 / 255, 254.499 / 255, 254.501 / 255, 1.0 / 255]
        let expected: [UInt8] = [0, 255, 0, 0, 255, 0, 0, 1, 1, 254, 255, 1]
        let gray = Image(width: values.count, height: 1, pixels: values + values + values)
        let bytes = try written([gray], in: self)
        let header = netpbm("P6\n\(values.count) 1\n255\n")
        XCTAssertEqual(Array(bytes.prefix(header.count)), header)
        let red = stride(from: header.count, to: bytes.count, by: 3).map { bytes[$0] }
        XCTAssertEqual(red, expected)
    }

    func testEveryByteValueSurvivesARoundTrip() throws {
        // Each k / 255 is written as k and read back as the same float.
        let levels = (0..<256).map { scaled($0, 255) }
        let rgb = Image(width: 16, height: 16, pixels: levels + levels.reversed() + levels.shuffledDeterministically())
        let rgba = Image(width: 16, height: 16, pixels: rgb.pixels, alpha: levels.reversed())
        let back = try readAll(try written([rgb, rgba], in: self))
        XCTAssertEqual(back.count, 2)
        XCTAssertEqual(back[0].pixels, rgb.pixels)
        XCTAssertNil(back[0].alpha)
        XCTAssertEqual(back[0].source, SourceFormat(kind: .ppm, plain: false, maxval: 255, tupleType: "RGB", depth: 3))
        XCTAssertEqual(back[1].pixels, rgba.pixels)
        XCTAssertEqual(back[1].alpha, rgba.alpha)
        XCTAssertEqual(back[1].source, SourceFormat.written(withAlpha: true))
    }

    func testWritingToAClosedPipeIsAnError() throws {
        ImageWriter.ignoreBrokenPipeSignal()
        var ends: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&ends), 0)
        close(ends[0])
        let file = try XCTUnwrap(fdopen(ends[1], "w"))
        defer { fclose(file) }
        let writer = ImageWriter(file: file, name: "standard output")
        let image = Image(width: 3, height: 2, pixels: [Float](repeating: 0.5, count: 18))
        XCTAssertThrowsError(try writer.write(image)) { error in
            XCTAssertEqual(error as? NetpbmError, .brokenPipe(destination: "standard output"))
            XCTAssertEqual((error as? NetpbmError)?.errorDescription,
                           "standard output: broken pipe (the reading end was closed)")
        }
        XCTAssertThrowsError(try writer.write(image), "a second write fails too")
    }

    func testWritingAFileThatCannotBeCreated() {
        XCTAssertThrowsError(try ImageWriter(path: "/nonexistent/out.ppm")) { error in
            XCTAssertEqual(error as? NetpbmError, .cannotOpen(path: "/nonexistent/out.ppm", reason: "No such file or directory"))
        }
    }

    func testWriteErrorOtherThanAPipe() throws {
        // /dev/full accepts the open and fails every write with ENOSPC.
        let writer = try ImageWriter(path: "/dev/full")
        XCTAssertThrowsError(try writer.write(Image(width: 1, height: 1, pixels: [0, 0, 0]))) { error in
            guard case .writeFailed(destination: "/dev/full", let message)? = error as? NetpbmError else {
                return XCTFail("\(error)")
            }
            XCTAssertTrue(message.contains("No space left on device"), message)
        }
    }
}

extension Array {
    /// A fixed permutation (a stride coprime with 256 over the indices), so tests stay deterministic.
    func shuffledDeterministically() -> [Element] {
        indices.map { self[($0 &* 97 &+ 13) % count] }
    }
}

import Foundation
import Netpbm
import XCTest

/// Streams of several images: each read whole, in order, and the end told apart from an error.
final class ReaderStreamTests: XCTestCase {
    private let pbm = netpbm("P1\n3 2\n0 1 0\n1 1 1\n")
    private let pgm16 = netpbm("P5\n2 2\n65535\n", [0, 0, 0xFF, 0xFF, 0x80, 0x00, 0x00, 0x01])
    private let rgba = netpbm("P7\nWIDTH 1\nHEIGHT 3\nDEPTH 4\nMAXVAL 255\nTUPLTYPE RGB_ALPHA\nENDHDR\n",
                              [255, 0, 0, 255, 0, 255, 0, 128, 0, 0, 255, 0])

    func testThreeImagesOfDifferentKindsInOrder() throws {
        let reader = try ImageReader(bytes: pbm + pgm16 + netpbm("\n\n") + rgba + netpbm(" \n"), name: "stream",
                                     maxPixels: 100)
        let first = try XCTUnwrap(try reader.next())
        let second = try XCTUnwrap(try reader.next())
        let third = try XCTUnwrap(try reader.next())
        XCTAssertNil(try reader.next())
        XCTAssertNil(try reader.next(), "the end stays the end")
        XCTAssertEqual(reader.imagesRead, 3)

        XCTAssertEqual([first.width, first.height, second.width, second.height, third.width, third.height],
                       [3, 2, 2, 2, 1, 3])
        XCTAssertEqual(first.source.kind, .pbm)
        XCTAssertEqual(plane(first, 0), [1, 0, 1, 0, 0, 0])
        XCTAssertEqual(second.source.maxval, 65535)
        XCTAssertEqual(plane(second, 1), [0, 1, scaled(0x8000, 65535), scaled(1, 65535)])
        XCTAssertEqual(third.source.tupleType, "RGB_ALPHA")
        XCTAssertEqual(third.pixels, [1, 0, 0, 0, 1, 0, 0, 0, 1])
        XCTAssertEqual(third.alpha, [1, scaled(128, 255), 0])
    }

    func testGoodImageThenJunk() {
        let (error, images) = readError(pbm + netpbm("\njunk after the image\n"))
        XCTAssertEqual(images.count, 1)
        XCTAssertEqual(images.first?.width, 3)
        guard case .notNetpbm(source: "test", image: 2, _)? = error else {
            return XCTFail("\(String(describing: error))")
        }
        XCTAssertEqual(error?.errorDescription,
                       "test: image 2: not a Netpbm image (it starts with the bytes 6a 75 6e 6b 20 61 66 74, "
                           + "not with a magic number P1 to P7)")
    }

    func testGoodImageThenTruncatedImage() {
        let (error, images) = readError(pgm16 + netpbm("P6\n2 2\n255\n", [1, 2, 3, 4, 5, 6, 7]))
        XCTAssertEqual(images.count, 1)
        guard case .badRaster(source: "test", image: 2, row: 1, height: 2, _)? = error else {
            return XCTFail("\(String(describing: error))")
        }
        XCTAssertTrue(error?.errorDescription?.hasPrefix("test: image 2: cannot read row 2 of 2: ") ?? false)
    }

    func testSecondImageTooLargeNamesIt() {
        let (error, images) = readError(pbm + netpbm("P6\n100000 100000\n255\n"), name: "standard input", maxPixels: 1 << 24)
        XCTAssertEqual(images.count, 1)
        XCTAssertEqual(error?.errorDescription,
                       "standard input: image 2: 100000x100000 pixels exceeds the limit of 16777216 (-max-pixels)")
    }

    func testAnErrorIsFinal() throws {
        let reader = try ImageReader(bytes: pbm + netpbm("P6\nx y\n255\n") + pbm, name: "test", maxPixels: 100)
        XCTAssertNotNil(try reader.next())
        var errors: [NetpbmError] = []
        for _ in 0..<2 {
            XCTAssertThrowsError(try reader.next()) { errors.append($0 as! NetpbmError) }
        }
        XCTAssertEqual(errors.count, 2)
        XCTAssertEqual(errors.first, errors.last)
        XCTAssertEqual(reader.imagesRead, 1)
    }

    func testEmptyStreamStaysNoImage() throws {
        let reader = try ImageReader(bytes: [], name: "empty.ppm", maxPixels: 100)
        XCTAssertThrowsError(try reader.next()) { XCTAssertEqual($0 as? NetpbmError, .noImage(source: "empty.ppm")) }
        XCTAssertThrowsError(try reader.next()) { XCTAssertEqual($0 as? NetpbmError, .noImage(source: "empty.ppm")) }
    }

    func testStandardInputIsNamed() {
        XCTAssertEqual(ImageReader.standardInput(maxPixels: 1).name, "standard input")
        XCTAssertEqual(ImageWriter.standardOutput().name, "standard output")
    }

    /// An image is returned as soon as its last byte has arrived: the reader does not wait for the next
    /// image (were it to, this test would block on the pipe).
    func testImagesFromAPipeAreReturnedWithoutWaitingForMore() throws {
        var ends: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&ends), 0)
        let input = try XCTUnwrap(fdopen(ends[0], "r"))
        defer { fclose(input) }
        let output = FileHandle(fileDescriptor: ends[1], closeOnDealloc: true)
        let reader = ImageReader(file: input, name: "pipe", maxPixels: 100)

        try output.write(contentsOf: pgm16)
        XCTAssertEqual(try reader.next()?.width, 2)
        try output.write(contentsOf: rgba)
        XCTAssertEqual(try reader.next()?.height, 3)
        try output.close()
        XCTAssertNil(try reader.next())
    }
}

import Netpbm
import XCTest

/// Every Netpbm variant read from bytes built here, with exact sample values.
final class ReaderFormatTests: XCTestCase {
    func testPlainPBMWithComments() throws {
        // PBM: 1 is black. Plain PBM digits need no separators.
        let image = try readOne(netpbm("P1\n# a comment\n3 # width\n2\n0 1 0\n110\n"))
        XCTAssertEqual(image.width, 3)
        XCTAssertEqual(image.height, 2)
        for index in 0..<3 {
            XCTAssertEqual(plane(image, index), [1, 0, 1, 0, 0, 1])
        }
        XCTAssertNil(image.alpha)
        XCTAssertEqual(image.source, SourceFormat(kind: .pbm, plain: true, maxval: 1, tupleType: "BLACKANDWHITE", depth: 1))
    }

    func testRawPBM() throws {
        // Rows are padded to whole bytes: 0100 0000, 1010 0000 for 3 columns.
        let image = try readOne(netpbm("P4\n3 2\n", [0b0100_0000, 0b1010_0000]))
        XCTAssertEqual(plane(image, 1), [1, 0, 1, 0, 1, 0])
        XCTAssertEqual(image.source, SourceFormat(kind: .pbm, plain: false, maxval: 1, tupleType: "BLACKANDWHITE", depth: 1))
    }

    func testPlainPGMMaxval100IsRescaled() throws {
        let image = try readOne(netpbm("P2\n2 2\n100\n0 50\n100 25\n"))
        for index in 0..<3 {
            XCTAssertEqual(plane(image, index), [0, 0.5, 1, 0.25], "gray is replicated into every plane")
        }
        XCTAssertEqual(image.source, SourceFormat(kind: .pgm, plain: true, maxval: 100, tupleType: "GRAYSCALE", depth: 1))
    }

    func testRawPGM8Bit() throws {
        let image = try readOne(netpbm("P5\n4 1\n255\n", [0, 51, 255, 128]))
        XCTAssertEqual(plane(image, 2), [0, 0.2, 1, scaled(128, 255)])
        XCTAssertEqual(image.source.kind, .pgm)
        XCTAssertFalse(image.source.plain)
    }

    func testRawPGM16BitIsBigEndian() throws {
        let image = try readOne(netpbm("P5\n4 1\n65535\n", [0x00, 0x00, 0x80, 0x00, 0xFF, 0xFF, 0x01, 0x02]))
        XCTAssertEqual(plane(image, 0), [0, scaled(32768, 65535), 1, scaled(0x0102, 65535)])
        XCTAssertEqual(image.source.maxval, 65535)
    }

    func testPlainPPMWithCommentsInTheHeader() throws {
        let image = try readOne(netpbm("P3\n# first\n2 # the width\n# between\n1\n# before maxval\n255\n255 0 0  0 128 255\n"))
        XCTAssertEqual(image.width, 2)
        XCTAssertEqual(image.height, 1)
        XCTAssertEqual(plane(image, 0), [1, 0])
        XCTAssertEqual(plane(image, 1), [0, scaled(128, 255)])
        XCTAssertEqual(plane(image, 2), [0, 1])
        XCTAssertEqual(image.source, SourceFormat(kind: .ppm, plain: true, maxval: 255, tupleType: "RGB", depth: 3))
    }

    func testRawPPMMaxval100() throws {
        let image = try readOne(netpbm("P6\n1 2\n100\n", [50, 0, 100, 25, 75, 1]))
        XCTAssertEqual(plane(image, 0), [0.5, 0.25])
        XCTAssertEqual(plane(image, 1), [0, 0.75])
        XCTAssertEqual(plane(image, 2), [1, 0.01])
    }

    func testRawPPM16Bit() throws {
        let image = try readOne(netpbm("P6\n1 1\n65535\n", [0xFF, 0xFF, 0x00, 0x01, 0x7F, 0xFF]))
        XCTAssertEqual(image.pixels, [1, scaled(1, 65535), scaled(0x7FFF, 65535)])
    }

    func testPAMBlackAndWhite() throws {
        let image = try readOne(netpbm("P7\nWIDTH 2\nHEIGHT 1\nDEPTH 1\nMAXVAL 1\nTUPLTYPE BLACKANDWHITE\nENDHDR\n", [1, 0]))
        XCTAssertEqual(plane(image, 0), [1, 0], "in PAM, 1 is white")
        XCTAssertEqual(image.source, SourceFormat(kind: .pam, plain: false, maxval: 1, tupleType: "BLACKANDWHITE", depth: 1))
    }

    func testPAMGrayscaleWithComments() throws {
        let image = try readOne(netpbm("P7\n# made by hand\nWIDTH 3\nHEIGHT 1\n# more\nDEPTH 1\nMAXVAL 100\nTUPLTYPE GRAYSCALE\nENDHDR\n",
                                       [0, 50, 100]))
        XCTAssertEqual(plane(image, 1), [0, 0.5, 1])
        XCTAssertNil(image.alpha)
    }

    func testPAMRGB() throws {
        let image = try readOne(netpbm("P7\nWIDTH 2\nHEIGHT 1\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n",
                                       [255, 0, 51, 0, 102, 255]))
        XCTAssertEqual(image.pixels, [1, 0, 0, 0.4, 0.2, 1])
        XCTAssertEqual(image.source, SourceFormat(kind: .pam, plain: false, maxval: 255, tupleType: "RGB", depth: 3))
    }

    func testPAMGrayscaleAlpha() throws {
        let image = try readOne(netpbm("P7\nWIDTH 2\nHEIGHT 1\nDEPTH 2\nMAXVAL 100\nTUPLTYPE GRAYSCALE_ALPHA\nENDHDR\n",
                                       [50, 100, 25, 0]))
        XCTAssertEqual(plane(image, 0), [0.5, 0.25])
        XCTAssertEqual(plane(image, 2), [0.5, 0.25])
        XCTAssertEqual(image.alpha, [1, 0])
        XCTAssertEqual(image.source.tupleType, "GRAYSCALE_ALPHA")
        XCTAssertEqual(image.source.depth, 2)
    }

    func testPAMRGBAlpha16Bit() throws {
        let raster: [UInt8] = [0xFF, 0xFF, 0x00, 0x00, 0x80, 0x00, 0x40, 0x00,
                               0x00, 0x00, 0xFF, 0xFF, 0x00, 0x01, 0xFF, 0xFF]
        let image = try readOne(netpbm("P7\nWIDTH 2\nHEIGHT 1\nDEPTH 4\nMAXVAL 65535\nTUPLTYPE RGB_ALPHA\nENDHDR\n", raster))
        XCTAssertEqual(plane(image, 0), [1, 0])
        XCTAssertEqual(plane(image, 1), [0, 1])
        XCTAssertEqual(plane(image, 2), [scaled(0x8000, 65535), scaled(1, 65535)])
        XCTAssertEqual(image.alpha, [scaled(0x4000, 65535), 1])
    }

    func testPAMWithoutTupleTypeIsTakenByDepth() throws {
        let rgb = try readOne(netpbm("P7\nWIDTH 1\nHEIGHT 1\nDEPTH 3\nMAXVAL 255\nENDHDR\n", [0, 51, 255]))
        XCTAssertEqual(rgb.pixels, [0, 0.2, 1])
        XCTAssertEqual(rgb.source.tupleType, "")
        let gray = try readOne(netpbm("P7\nWIDTH 1\nHEIGHT 1\nDEPTH 1\nMAXVAL 255\nENDHDR\n", [51]))
        XCTAssertEqual(gray.pixels, [0.2, 0.2, 0.2])
    }

    func testSourceFormatDescriptions() throws {
        XCTAssertEqual(try readOne(netpbm("P6\n1 1\n255\n", [0, 0, 0])).source.description, "PPM raw, maxval 255")
        XCTAssertEqual(try readOne(netpbm("P2\n1 1\n7\n3\n")).source.description, "PGM plain, maxval 7")
        XCTAssertEqual(try readOne(netpbm("P1\n1 1\n1\n")).source.description, "PBM plain")
        XCTAssertEqual(SourceFormat.written(withAlpha: true).description, "PAM RGB_ALPHA, depth 4, maxval 255")
    }

    func testReadingAFileByPath() throws {
        let url = try scratchDirectory(self).appendingPathComponent("gray.pgm")
        try Data(netpbm("P5\n2 1\n255\n", [0, 255])).write(to: url)
        let reader = try ImageReader(path: url.path, maxPixels: 100)
        XCTAssertEqual(reader.name, url.path)
        XCTAssertEqual(try reader.next()?.pixels, [0, 1, 0, 1, 0, 1])
        XCTAssertNil(try reader.next())
        XCTAssertEqual(reader.imagesRead, 1)
    }
}

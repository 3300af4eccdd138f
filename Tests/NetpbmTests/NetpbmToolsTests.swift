import Foundation
import Netpbm
import XCTest

/// The reader against netpbm's own programs: what they write is read as they mean it, and what
/// ImageWriter writes they accept. The programs come with `make setup` (Debian package netpbm).
final class NetpbmToolsTests: XCTestCase {
    /// 16x16, every byte value once per plane, with a varied alpha.
    private let levels = (0..<256).map { scaled($0, 255) }
    private var rgb: Image { Image(width: 16, height: 16, pixels: levels + levels.shuffledDeterministically() + levels.reversed()) }
    private var rgba: Image { Image(width: 16, height: 16, pixels: rgb.pixels, alpha: levels.shuffledDeterministically()) }

    func testPlainPPMFromPnmtoplainpnm() throws {
        let plainPPM = try runTool("pnmtoplainpnm", input: try written([rgb], in: self), in: self)
        XCTAssertEqual(Array(plainPPM.prefix(3)), netpbm("P3\n"))
        let image = try readOne(plainPPM)
        XCTAssertEqual(image.pixels, rgb.pixels)
        XCTAssertEqual(image.source, SourceFormat(kind: .ppm, plain: true, maxval: 255, tupleType: "RGB", depth: 3))
    }

    func testSixteenBitFromPamdepth() throws {
        // k/255 → k·257/65535: the same real number, so the same float.
        let deep = try runTool("pamdepth", ["65535"], input: try written([rgb], in: self), in: self)
        let image = try readOne(deep)
        XCTAssertEqual(image.source.maxval, 65535)
        XCTAssertEqual(image.pixels, rgb.pixels)
    }

    func testMaxval100FromPamdepthMatchesItsPlainForm() throws {
        let raw = try runTool("pamdepth", ["100"], input: try written([rgb], in: self), in: self)
        let image = try readOne(raw)
        XCTAssertEqual(image.source, SourceFormat(kind: .ppm, plain: false, maxval: 100, tupleType: "RGB", depth: 3))
        // The same samples as decimal numbers, parsed here: P3, width, height, maxval, then r g b ...
        let plain = try runTool("pnmtoplainpnm", input: raw, in: self)
        let numbers = String(decoding: plain, as: UTF8.self).split(whereSeparator: \.isWhitespace).dropFirst(4).map { Int($0)! }
        XCTAssertEqual(numbers.count, 3 * 256)
        let interleaved = (0..<256).flatMap { pixel in (0..<3).map { image.pixels[$0 * 256 + pixel] } }
        XCTAssertEqual(interleaved, numbers.map { scaled($0, 100) })
    }

    func testPBMFromPgmtopbmRawAndPlain() throws {
        // A black-and-white picture survives ppmtopgm | pgmtopbm -threshold exactly.
        let bits = (0..<48).map { Float(($0 * 7 + $0 / 5) % 3 == 0 ? 1 : 0) }
        let picture = Image(width: 8, height: 6, pixels: bits + bits + bits)
        let gray = try runTool("ppmtopgm", input: try written([picture], in: self), in: self)
        let rawPBM = try runTool("pgmtopbm", ["-threshold"], input: gray, in: self)
        XCTAssertEqual(Array(rawPBM.prefix(2)), netpbm("P4"))
        let plainPBM = try runTool("pnmtoplainpnm", input: rawPBM, in: self)
        XCTAssertEqual(Array(plainPBM.prefix(2)), netpbm("P1"))
        for (bytes, plain) in [(rawPBM, false), (plainPBM, true)] {
            let image = try readOne(bytes)
            XCTAssertEqual(image.pixels, picture.pixels)
            XCTAssertEqual(image.source, SourceFormat(kind: .pbm, plain: plain, maxval: 1, tupleType: "BLACKANDWHITE", depth: 1))
        }
    }

    func testPAMFromPamtopamAndPamchannel() throws {
        let pamRGB = try runTool("pamtopam", input: try written([rgb], in: self), in: self)
        let image = try readOne(pamRGB)
        XCTAssertEqual(image.pixels, rgb.pixels)
        XCTAssertEqual(image.source, SourceFormat(kind: .pam, plain: false, maxval: 255, tupleType: "RGB", depth: 3))

        // Red and alpha as GRAYSCALE_ALPHA.
        let grayAlpha = try runTool("pamchannel", ["-tupletype=GRAYSCALE_ALPHA", "0", "3"],
                                    input: try written([rgba], in: self), in: self)
        let gray = try readOne(grayAlpha)
        XCTAssertEqual(gray.source, SourceFormat(kind: .pam, plain: false, maxval: 255, tupleType: "GRAYSCALE_ALPHA", depth: 2))
        XCTAssertEqual(gray.pixels, plane(rgba, 0) + plane(rgba, 0) + plane(rgba, 0))
        XCTAssertEqual(gray.alpha, rgba.alpha)
    }

    func testPamtopnmDropsOurAlpha() throws {
        let ppm = try runTool("pamtopnm", input: try written([rgba], in: self), in: self)
        XCTAssertEqual(try written([rgb], in: self), ppm, "pamtopnm of our RGB_ALPHA output is our PPM output")
    }

    func testPamfileReadsOurStream() throws {
        let description = try runTool("pamfile", ["-allimages"], input: try written([rgb, rgba, rgb], in: self), in: self)
        let lines = String(decoding: description, as: UTF8.self).split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.filter { $0.contains("Image ") }.count, 3, lines.joined(separator: "\n"))
        XCTAssertTrue(lines[0].hasSuffix("PPM raw, 16 by 16  maxval 255"), lines[0])
        XCTAssertTrue(lines[1].hasSuffix("PAM, 16 by 16 by 4 maxval 255"), lines[1])
        XCTAssertTrue(lines[2].contains("RGB_ALPHA"), lines[2])
    }

    func testStreamMadeByTools() throws {
        let pbm = try runTool("pbmmake", ["-black", "3", "2"], input: [], in: self)
        let pgm = try runTool("pgmmake", ["0.5", "4", "1"], input: [], in: self)
        let ppm = try runTool("ppmmake", ["rgb:ff/00/80", "1", "5"], input: [], in: self)
        let images = try readAll(pbm + pgm + ppm)
        XCTAssertEqual(images.map(\.width), [3, 4, 1])
        XCTAssertEqual(images.map(\.height), [2, 1, 5])
        XCTAssertEqual(images.map(\.source.kind), [.pbm, .pgm, .ppm])
        XCTAssertEqual(images[0].pixels, [Float](repeating: 0, count: 18))
        XCTAssertEqual(images[1].source.maxval, 255)
        XCTAssertEqual(images[1].pixels, [Float](repeating: scaled(Int(pgm.last!), 255), count: 12), "the raster is pgm's last bytes")
        XCTAssertEqual(plane(images[2], 0), [1, 1, 1, 1, 1])
        XCTAssertEqual(plane(images[2], 1), [0, 0, 0, 0, 0])
        XCTAssertEqual(plane(images[2], 2), [Float](repeating: scaled(128, 255), count: 5))
    }
}

import Foundation
import Netpbm
import XCTest

/// The scripts in examples/ run as documented, with the built binary and small settings.
final class ExamplesTests: XCTestCase {
    let environment = ["PAMSTYLE": pamstyleBinary.path,
                       "PAMSTYLE_OPTIONS": "-size 64 -scales 1 -iterations 3 -quiet"]

    /// The width and height of a PNG, read back through pngtopnm.
    func dimensions(ofPNG path: String) throws -> (Int, Int) {
        let result = try shell("pngtopnm '\(path)'")
        XCTAssertEqual(result.status, 0, result.stderr)
        let image = try XCTUnwrap(try images(result.stdout).first)
        return (image.width, image.height)
    }

    func testNetpbmPipeline() throws {
        let out = try scratchDirectory(self).appendingPathComponent("framed.png").path
        let script = packageRoot.appendingPathComponent("examples/netpbm-pipeline.sh").path
        let run = try shell("sh '\(script)' \"$C\" \"$S\" '\(out)'",
                            environment: environment.merging([
                                "C": packageRoot.appendingPathComponent("examples/images/chelsea.ppm").path,
                                "S": packageRoot.appendingPathComponent("examples/images/scream.ppm").path,
                            ]) { $1 })
        XCTAssertEqual(run.status, 0, run.stderr)
        // pamscale -xyfit 384 384 makes 451x300 into 384x255; pnmmargin adds 8 on each side.
        let (width, height) = try dimensions(ofPNG: out)
        XCTAssertEqual(width, 384 + 16)
        XCTAssertEqual(height, 255 + 16)
    }

    func testImageMagickScript() throws {
        let out = try scratchDirectory(self).appendingPathComponent("magick.png").path
        let script = packageRoot.appendingPathComponent("examples/imagemagick.sh").path
        let content = packageRoot.appendingPathComponent("examples/images/chelsea.ppm").path
        let style = packageRoot.appendingPathComponent("examples/images/scream.ppm").path
        let run = try shell("sh '\(script)' '\(content)' '\(style)' '\(out)'", environment: environment)
        XCTAssertEqual(run.status, 0, run.stderr)
        let (width, height) = try dimensions(ofPNG: out)
        XCTAssertEqual(width, 384)
        XCTAssertEqual(height, 255)
    }

    /// The poster script keeps the photo's own size (no -size limit) and writes the print resolution into the PNG.
    func testPosterScript() throws {
        let directory = try scratchDirectory(self)
        let photo = try file("photo.ppm", in: directory, patternPPM(width: 700, height: 90))
        let out = directory.appendingPathComponent("poster.png").path
        let script = packageRoot.appendingPathComponent("examples/poster.sh").path
        let style = packageRoot.appendingPathComponent("examples/images/scream.ppm").path
        let run = try shell("sh '\(script)' '\(photo)' '\(style)' '\(out)' 60 150",
                            environment: ["PAMSTYLE": pamstyleBinary.path,
                                          "PAMSTYLE_OPTIONS": "-scales 1 -iterations 1 -quiet"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let (width, height) = try dimensions(ofPNG: out)
        XCTAssertEqual(width, 700)
        XCTAssertEqual(height, 90)
        let density = try shell("identify -units PixelsPerInch -format '%x' '\(out)'")
        // PNG keeps pixels per metre: 150 dpi reads back as 149.99.
        let dpi = try XCTUnwrap(Double(String(decoding: density.stdout, as: UTF8.self)), density.stderr)
        XCTAssertEqual(dpi, 150, accuracy: 0.1)
    }

    func testMakefileAssetBuild() throws {
        let directory = try scratchDirectory(self)
        let source = directory.appendingPathComponent("src")
        try FileManager.default.createDirectory(at: source, withIntermediateDirectories: true)
        _ = try file("a.ppm", in: source, patternPPM(width: 40, height: 32))
        _ = try file("b.ppm", in: source, patternPPM(width: 36, height: 44, phase: 1))
        let out = directory.appendingPathComponent("out").path
        let examples = packageRoot.appendingPathComponent("examples").path
        let style = packageRoot.appendingPathComponent("examples/images/scream.ppm").path
        let run = try shell("make -s -C '\(examples)' -j2 SRC='\(source.path)' OUT='\(out)' STYLE='\(style)' "
                            + "PAMSTYLE='\(pamstyleBinary.path)' OPTIONS='-size 48 -scales 1 -iterations 2'")
        XCTAssertEqual(run.status, 0, run.stderr)
        let a = try dimensions(ofPNG: out + "/a.png"), b = try dimensions(ofPNG: out + "/b.png")
        XCTAssertEqual(a.0, 40)
        XCTAssertEqual(a.1, 32)
        XCTAssertEqual(b.0, 36)
        XCTAssertEqual(b.1, 44)

        // A failing job leaves no asset behind.
        _ = try file("c.ppm", in: source, Array("P6\n40 40\n255\n".utf8))
        let failing = try shell("make -s -C '\(examples)' SRC='\(source.path)' OUT='\(out)' STYLE='\(style)' "
                                + "PAMSTYLE='\(pamstyleBinary.path)' OPTIONS='-size 48 -scales 1 -iterations 2'")
        XCTAssertNotEqual(failing.status, 0)
        XCTAssertTrue(failing.stderr.contains("pamstyle: standard input"), failing.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/c.png"))
    }
}

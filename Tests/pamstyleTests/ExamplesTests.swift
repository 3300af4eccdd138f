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

    /// One raw PPM of a stream, as it was written.
    struct RawFrame {
        var bytes: ArraySlice<UInt8>
        var width: Int
        var height: Int
        /// The raster, after the header.
        var samples: ArraySlice<UInt8> { bytes.suffix(width * height * 3) }
    }

    /// The frames of a stream of raw PPMs with maxval 255, header and raster each, as they were written.
    func rawPPMFrames(_ stream: [UInt8]) throws -> [RawFrame] {
        var frames: [RawFrame] = []
        var at = 0
        func number() throws -> Int {
            while at < stream.count, stream[at] == 32 || (9 ... 13).contains(stream[at]) { at += 1 }
            let start = at
            while at < stream.count, (48 ... 57).contains(stream[at]) { at += 1 }
            return try XCTUnwrap(Int(String(decoding: stream[start ..< at], as: UTF8.self)),
                                 "frame \(frames.count): no number at byte \(start)")
        }
        while at < stream.count {
            let start = at
            XCTAssertTrue(stream[at...].starts(with: "P6".utf8), "frame \(frames.count) is not a raw PPM")
            at += 2
            let width = try number(), height = try number()
            XCTAssertEqual(try number(), 255, "frame \(frames.count)")
            at += 1 + width * height * 3
            guard at <= stream.count else {
                XCTFail("frame \(frames.count) is cut short")
                break
            }
            frames.append(RawFrame(bytes: stream[start ..< at], width: width, height: height))
        }
        return frames
    }

    /// Runs examples/video-hosts.sh on `input` with two job slots on this machine.
    func videoOverHosts(_ styles: [String], input: [UInt8], segment: Int, overlap: Int,
                        options: [String]) throws -> RunResult {
        let script = packageRoot.appendingPathComponent("examples/video-hosts.sh").path
        return try pamstyleTests.run(URL(fileURLWithPath: "/bin/sh"), [script] + styles, input: input,
                                     environment: ["PAMSTYLE": pamstyleBinary.path,
                                                   "PAMSTYLE_OPTIONS": options.joined(separator: " "),
                                                   "SEGMENT": "\(segment)", "OVERLAP": "\(overlap)",
                                                   "HOSTS": "2/:"])
    }

    let videoOptions = ["-size", "48", "-scales", "1", "-iterations", "2", "-quiet"]

    /// The style image under a name with a space, which the script must keep whole.
    func styleWithSpace() throws -> String {
        let scream = try Data(contentsOf: packageRoot.appendingPathComponent("examples/images/scream.ppm"))
        return try file("the scream.ppm", in: try scratchDirectory(self), Array(scream))
    }

    /// Ten frames in segments of four, each after the two frames before it: 0-3, 2-7 and 6-9, run two at a
    /// time. Frames outside the overlaps are what pamstyle -temporal makes of their segment alone, byte for
    /// byte; the overlap frames 2, 3 and 6, 7 are the earlier segment's results crossfaded into the later
    /// one's, a third and two thirds of the way.
    func testVideoOverHosts() throws {
        let style = try styleWithSpace()
        let frames = (0 ..< 10).map { patternPPM(width: 48, height: 32, phase: 0.3 * Double($0)) }
        let result = try videoOverHosts([style], input: Array(frames.joined()), segment: 4, overlap: 2,
                                        options: videoOptions)
        XCTAssertEqual(result.status, 0, result.stderr)
        let output = try rawPPMFrames(result.stdout)
        XCTAssertEqual(output.count, 10)
        for (index, frame) in output.enumerated() {
            XCTAssertEqual(frame.width, 48, "frame \(index)")
            XCTAssertEqual(frame.height, 32, "frame \(index)")
        }
        guard output.count == 10 else { return }

        // Each segment alone: the input frame it starts at and what pamstyle -temporal makes of it.
        let segments = try [0 ..< 4, 2 ..< 8, 6 ..< 10].map { range in
            let direct = try pamstyle(["-temporal"] + videoOptions + [style], input: Array(frames[range].joined()))
            XCTAssertEqual(direct.status, 0, direct.stderr)
            let results = try rawPPMFrames(direct.stdout)
            XCTAssertEqual(results.count, range.count)
            return (first: range.lowerBound, results: results)
        }
        for index in [0, 1, 4, 5, 8, 9] {
            let segment = segments[index / 4]
            XCTAssertTrue(output[index].bytes.elementsEqual(segment.results[index - segment.first].bytes),
                          "frame \(index) is not segment \(index / 4)'s result")
        }
        // The i-th overlap frame mixes the later segment's result with a weight of i/3: within a unit of
        // that mix, and so between the two results, sample by sample.
        for (index, earlier, i) in [(2, 0, 1), (3, 0, 2), (6, 1, 1), (7, 1, 2)] {
            let old = segments[earlier].results[index - segments[earlier].first].samples
            let new = segments[earlier + 1].results[i - 1].samples
            XCTAssertFalse(old.elementsEqual(new), "frame \(index): the two segments agree, which proves nothing")
            let weight = Double(i) / 3
            var worst = 0.0
            for (sample, (a, b)) in zip(output[index].samples, zip(old, new)) {
                worst = max(worst, abs(Double(sample) - ((1 - weight) * Double(a) + weight * Double(b))))
            }
            XCTAssertLessThanOrEqual(worst, 1, "frame \(index)")
        }
    }

    /// Fewer frames than a segment: one segment, the same as pamstyle -temporal on them.
    func testVideoOverHostsShorterThanASegment() throws {
        let style = try styleWithSpace()
        let input = Array((0 ..< 3).map { patternPPM(width: 48, height: 32, phase: 0.3 * Double($0)) }.joined())
        let result = try videoOverHosts([style], input: input, segment: 4, overlap: 2, options: videoOptions)
        XCTAssertEqual(result.status, 0, result.stderr)
        let direct = try pamstyle(["-temporal"] + videoOptions + [style], input: input)
        XCTAssertEqual(direct.status, 0, direct.stderr)
        XCTAssertEqual(try rawPPMFrames(result.stdout).count, 3)
        XCTAssertTrue(result.stdout == direct.stdout, "the output is not pamstyle -temporal's")
    }

    func testVideoOverHostsRefusesOverlapOfASegment() throws {
        let style = try styleWithSpace()
        let result = try videoOverHosts([style], input: patternPPM(width: 48, height: 32), segment: 4, overlap: 4,
                                        options: videoOptions)
        XCTAssertNotEqual(result.status, 0)
        XCTAssertEqual(result.stderrLines, ["video-hosts.sh: OVERLAP (4) must be less than SEGMENT (4)"])
        XCTAssertTrue(result.stdout.isEmpty)
    }

    /// A segment whose pamstyle fails fails the whole run, with nothing on standard output.
    func testVideoOverHostsFailsWithASegment() throws {
        let style = try styleWithSpace()
        let input = Array((0 ..< 6).map { patternPPM(width: 48, height: 32, phase: 0.3 * Double($0)) }.joined())
        let result = try videoOverHosts([style], input: input, segment: 4, overlap: 2,
                                        options: videoOptions + ["-bogus"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("pamstyle: Unknown option '-bogus'"), result.stderr)
        XCTAssertTrue(result.stdout.isEmpty)
    }
}

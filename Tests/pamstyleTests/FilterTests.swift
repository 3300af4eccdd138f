import Foundation
import Netpbm
import XCTest

/// The built pamstyle binary as a filter: what it writes on standard output, what it says on standard
/// error, and its exit status. Images are tiny and iterations few, so each run takes a moment.
final class FilterTests: XCTestCase {
    /// Small, fast settings: one scale, a few iterations.
    let quick = ["-size", "48", "-scales", "1", "-iterations", "4", "-quiet"]
    var directory: URL!
    var style: String!

    override func setUpWithError() throws {
        directory = try scratchDirectory(self)
        style = try file("style.ppm", in: directory, patternPPM(width: 40, height: 36, phase: 2))
    }

    func testOutputHasTheInputsDimensionsAndIsPPM() throws {
        let result = try pamstyle(quick + [style], input: patternPPM(width: 61, height: 45))
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(result.stderr, "")
        XCTAssertEqual(Array(result.stdout.prefix(13)), Array("P6\n61 45\n255\n".utf8))
        let output = try images(result.stdout)
        XCTAssertEqual(output.count, 1)
        XCTAssertEqual(output[0].width, 61)
        XCTAssertEqual(output[0].height, 45)
        XCTAssertEqual(result.stdout.count, 13 + 61 * 45 * 3)
    }

    func testTheImageChanges() throws {
        let input = patternPPM(width: 48, height: 40)
        let result = try pamstyle(quick + [style], input: input)
        XCTAssertEqual(result.status, 0, result.stderr)
        let before = try images(input)[0].pixels, after = try images(result.stdout)[0].pixels
        let meanChange = zip(before, after).map { abs($0 - $1) }.reduce(0, +) / Float(before.count)
        XCTAssertGreaterThan(meanChange, 1.0 / 255, "the style should change the image")
    }

    func testRerunsGiveTheSameBytes() throws {
        let input = patternPPM(width: 50, height: 38)
        let first = try pamstyle(quick + [style], input: input)
        let second = try pamstyle(quick + [style], input: input)
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertTrue(first.stdout == second.stdout, "first and second differ")
        let random = ["-init", "random", "-seed", "7"]
        let third = try pamstyle(quick + random + [style], input: input)
        let fourth = try pamstyle(quick + random + [style], input: input)
        let otherSeed = try pamstyle(quick + ["-init", "random", "-seed", "8", style], input: input)
        XCTAssertTrue(third.stdout == fourth.stdout, "third and fourth differ")
        XCTAssertTrue(third.stdout != otherSeed.stdout, "third and otherSeed are the same")
        XCTAssertTrue(first.stdout != third.stdout, "first and third are the same")
    }

    func testAStreamOfThreeImagesGivesThreeImagesInOrder() throws {
        let gray = Array("P5\n33 40\n255\n".utf8) + (0 ..< 33 * 40).map { UInt8($0 % 256) }
        let input = patternPPM(width: 48, height: 36) + gray + patternPAM(width: 40, height: 35)
        let result = try pamstyle(quick + [style], input: input)
        XCTAssertEqual(result.status, 0, result.stderr)
        let output = try images(result.stdout)
        XCTAssertEqual(output.map(\.width), [48, 33, 40])
        XCTAssertEqual(output.map(\.height), [36, 40, 35])
        XCTAssertEqual(output.map { $0.alpha != nil }, [false, false, true])
    }

    func testAlphaIsKeptExactly() throws {
        let input = patternPAM(width: 45, height: 37)
        let result = try pamstyle(quick + [style], input: input)
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.starts(with: Array("P7\n".utf8)))
        let output = try images(result.stdout)[0]
        XCTAssertEqual(output.source.tupleType, "RGB_ALPHA")
        XCTAssertEqual(output.alpha, try images(input)[0].alpha)
    }

    func testTemporalStartsFromThePreviousResult() throws {
        // With no iterations at the working size, a frame that starts from the previous result is that
        // result; without -temporal it is the content again.
        let frame = patternPPM(width: 48, height: 36)
        let options = ["-size", "48", "-scales", "1", "-iterations", "0", "-quiet"]
        let plain = try images(try pamstyle(options + [style], input: frame + frame).stdout)
        XCTAssertEqual(plain.count, 2)
        XCTAssertTrue(plain[0] == plain[1])

        let first = try pamstyle(quick + [style], input: frame).stdout
        let chained = try pamstyle(["-size", "48", "-scales", "1", "-iterations", "4", "-quiet", "-temporal", style],
                                   input: frame + frame)
        XCTAssertEqual(chained.status, 0, chained.stderr)
        let frames = try images(chained.stdout)
        XCTAssertEqual(frames.count, 2)
        XCTAssertTrue(frames[0] == (try images(first)[0]), "the first frame is stylized as usual")
        XCTAssertTrue(frames[1] != frames[0], "the second frame goes on from the first result")
    }

    func testPreserveColorsKeepsTheContentsChrominance() throws {
        let input = patternPPM(width: 48, height: 40)
        let result = try pamstyle(quick + ["-preserve-colors", style], input: input)
        XCTAssertEqual(result.status, 0, result.stderr)
        let before = try images(input)[0], after = try images(result.stdout)[0]
        // I and Q of YIQ, from the same rows of the FCC matrix the tool uses.
        func chrominance(_ image: Image) -> [Float] {
            let n = image.width * image.height
            return (0 ..< n).flatMap { p -> [Float] in
                let r = image.pixels[p], g = image.pixels[n + p], b = image.pixels[2 * n + p]
                return [0.596 * r - 0.274 * g - 0.322 * b, 0.211 * r - 0.523 * g + 0.312 * b]
            }
        }
        let difference = zip(chrominance(before), chrominance(after)).map { abs($0 - $1) }
        // Only where no channel was clipped to 0…1 is the chrominance exactly the content's.
        let typical = difference.sorted()[difference.count / 2]
        XCTAssertLessThan(typical, 2.0 / 255)
        XCTAssertTrue(before.pixels != after.pixels)
    }

    /// The layout loss holds the luminance's large areas where the input has them: 8 × 8 block means of the luminance
    /// stay closer to the input's with a large weight than without the term, and `-verbose` reports the term.
    func testLayoutWeightKeepsTheLightAndDarkAreas() throws {
        let input = patternPPM(width: 48, height: 40)
        let options = ["-size", "48", "-scales", "1", "-iterations", "12", "-quiet", style!]
        let free = try pamstyle(["-layout-weight", "0"] + options, input: input)
        let held = try pamstyle(["-layout-weight", "10000000"] + options, input: input)
        XCTAssertEqual(free.status, 0, free.stderr)
        XCTAssertEqual(held.status, 0, held.stderr)
        func blockLuminance(_ image: Image) -> [Float] {
            let n = image.width * image.height
            return stride(from: 0, to: image.height - 7, by: 8).flatMap { y0 in
                stride(from: 0, to: image.width - 7, by: 8).map { x0 in
                    var sum: Float = 0
                    for y in y0 ..< y0 + 8 {
                        for x in x0 ..< x0 + 8 {
                            let p = y * image.width + x
                            sum += 0.299 * image.pixels[p] + 0.587 * image.pixels[n + p] + 0.114 * image.pixels[2 * n + p]
                        }
                    }
                    return sum / 64
                }
            }
        }
        let photo = blockLuminance(try images(input)[0])
        func distance(_ output: [UInt8]) throws -> Float {
            zip(blockLuminance(try images(output)[0]), photo).map { abs($0 - $1) }.reduce(0, +) / Float(photo.count)
        }
        XCTAssertLessThan(try distance(held.stdout) * 2, try distance(free.stdout))
        let verbose = try pamstyle(["-layout-weight", "10", "-verbose"] + options.filter { $0 != "-quiet" },
                                   input: input)
        XCTAssertTrue(verbose.stderrLines.contains { $0.contains(" + layout ") }, verbose.stderr)
        let without = try pamstyle(["-layout-weight", "0", "-verbose"] + options.filter { $0 != "-quiet" },
                                   input: input)
        XCTAssertFalse(without.stderr.contains(" + layout "), without.stderr)
    }

    func testColorsLuminanceIsPreserveColorsAndMatchIsItsOwn() throws {
        let input = patternPPM(width: 48, height: 40)
        let preserved = try pamstyle(quick + ["-preserve-colors", style], input: input)
        let luminance = try pamstyle(quick + ["-colors", "luminance", style], input: input)
        let both = try pamstyle(quick + ["-colors=luminance", "-preserve-colors", style], input: input)
        let match = try pamstyle(quick + ["-colors", "match", style], input: input)
        let plain = try pamstyle(quick + ["-colors", "style", style], input: input)
        for result in [preserved, luminance, both, match, plain] { XCTAssertEqual(result.status, 0, result.stderr) }
        XCTAssertTrue(preserved.stdout == luminance.stdout && both.stdout == luminance.stdout)
        XCTAssertTrue(plain.stdout == (try pamstyle(quick + [style], input: input)).stdout, "style is the default")
        XCTAssertTrue(match.stdout != plain.stdout && match.stdout != luminance.stdout)
    }

    /// -style-loss w2 runs with its own defaults: the same bytes as its style weight and layers given by hand.
    func testStyleLossW2TakesItsOwnDefaults() throws {
        let input = patternPPM(width: 48, height: 40)
        let w2 = try pamstyle(quick + ["-style-loss", "w2", style], input: input)
        let spelled = try pamstyle(quick + ["-style-loss", "w2", "-style-weight", "1000", "-style-layers",
                                            "relu1_1,relu2_1:0.31,relu3_1:0.09,relu4_1:0.099,relu5_1:0.0056", style],
                                   input: input)
        let gram = try pamstyle(quick + ["-style-loss", "gram", style], input: input)
        for result in [w2, spelled, gram] { XCTAssertEqual(result.status, 0, result.stderr) }
        XCTAssertTrue(w2.stdout == spelled.stdout)
        XCTAssertTrue(gram.stdout == (try pamstyle(quick + [style], input: input)).stdout, "gram is the default")
        XCTAssertTrue(w2.stdout != gram.stdout)
    }

    /// A PGM of width × height whose value at (x, y) is `value(x, y)`, 0…255.
    private func pgm(width: Int, height: Int, _ value: (Int, Int) -> UInt8) -> [UInt8] {
        Array("P5\n\(width) \(height)\n255\n".utf8) + (0 ..< height).flatMap { y in (0 ..< width).map { x in value(x, y) } }
    }

    /// A style mask of all ones is no mask: the same bytes; half a mask is another result.
    func testStyleMaskOfOnesIsTheUnmaskedResult() throws {
        let input = patternPPM(width: 48, height: 40)
        let ones = try file("ones.pgm", in: directory, pgm(width: 20, height: 30) { _, _ in 255 })
        let half = try file("half.pgm", in: directory, pgm(width: 48, height: 40) { x, _ in x < 24 ? 255 : 0 })
        let plain = try pamstyle(quick + [style], input: input)
        let masked = try pamstyle(quick + ["-style-masks", ones, style], input: input)
        let halved = try pamstyle(quick + ["-style-masks", half, style], input: input)
        for result in [plain, masked, halved] { XCTAssertEqual(result.status, 0, result.stderr) }
        XCTAssertTrue(masked.stdout == plain.stdout)
        XCTAssertTrue(halved.stdout != plain.stdout)
    }

    /// Where the change mask is 0 the output is the input, byte for byte; where it is 1 it is stylized.
    func testChangeMaskKeepsTheInputWhereItIsZero() throws {
        let (width, height) = (48, 40)
        let input = patternPPM(width: width, height: height)
        let mask = try file("change.pgm", in: directory, pgm(width: width, height: height) { x, _ in x < 24 ? 0 : 255 })
        let result = try pamstyle(quick + ["-change-mask", mask, style], input: input)
        XCTAssertEqual(result.status, 0, result.stderr)
        let before = try images(input)[0], after = try images(result.stdout)[0]
        var kept = 0, changed = 0
        for c in 0 ..< 3 {
            for y in 0 ..< height {
                for x in 0 ..< width {
                    let i = (c * height + y) * width + x
                    if x < 24 {
                        if after.pixels[i] == before.pixels[i] { kept += 1 }
                    } else if abs(after.pixels[i] - before.pixels[i]) > 2 / 255 {
                        changed += 1
                    }
                }
            }
        }
        XCTAssertEqual(kept, 3 * 24 * height, "the left half is the input's")
        XCTAssertGreaterThan(changed, 3 * 24 * height / 4, "the right half is stylized")
    }

    /// -padding reflect and -margin change the result; a margin larger than the image is cut to fit it.
    func testPaddingAndMarginRun() throws {
        let input = patternPPM(width: 48, height: 40)
        let plain = try pamstyle(quick + ["-margin", "0", style], input: input)
        let reflect = try pamstyle(quick + ["-margin", "0", "-padding", "reflect", style], input: input)
        let margin = try pamstyle(quick + ["-margin", "8", style], input: input)
        let huge = try pamstyle(quick + ["-margin", "1024", style], input: input)
        let most = try pamstyle(quick + ["-margin", "47", style], input: input)
        for result in [plain, reflect, margin, huge, most] { XCTAssertEqual(result.status, 0, result.stderr) }
        XCTAssertTrue(reflect.stdout != plain.stdout && margin.stdout != plain.stdout && margin.stdout != reflect.stdout)
        XCTAssertTrue(huge.stdout == most.stdout, "the margin is at most the working size's shorter side less one")
        XCTAssertTrue((try pamstyle(quick + [style], input: input)).stdout
                      == (try pamstyle(quick + ["-margin", "16", "-padding", "zero", style], input: input)).stdout,
                      "a margin of 16 and zero padding are the defaults")
    }

    func testTwoStylesBlend() throws {
        let second = try file("second.ppm", in: directory, patternPPM(width: 36, height: 36, phase: 4))
        let input = patternPPM(width: 48, height: 36)
        let even = try pamstyle(quick + [style, second], input: input)
        let weighted = try pamstyle(quick + ["-style-blend", "3,1", style, second], input: input)
        let single = try pamstyle(quick + ["-style-blend", "1,0", style, second], input: input)
        let alone = try pamstyle(quick + [style], input: input)
        for result in [even, weighted, single] {
            XCTAssertEqual(result.status, 0, result.stderr)
        }
        XCTAssertTrue(even.stdout != weighted.stdout, "even and weighted are the same")
        XCTAssertTrue(single.stdout == alone.stdout, "a blend of 1 and 0 is the first style alone")
    }

    func testInitFromAFile() throws {
        let start = try file("start.ppm", in: directory, patternPPM(width: 48, height: 36, phase: 1))
        let input = patternPPM(width: 48, height: 36)
        let options: [String] = ["-size", "48", "-scales", "1", "-iterations", "0", "-quiet", "-init", start, style]
        let result = try pamstyle(options, input: input)
        XCTAssertEqual(result.status, 0, result.stderr)
        // With no iterations the result is the -init image, which 8-bit PPM round-trips exactly.
        XCTAssertTrue(result.stdout == patternPPM(width: 48, height: 36, phase: 1))
    }

    func testVerboseLossDecreases() throws {
        let result = try pamstyle(["-size", "48", "-scales", "1", "-iterations", "30", "-verbose", style],
                                  input: patternPPM(width: 48, height: 36))
        XCTAssertEqual(result.status, 0, result.stderr)
        let losses = result.stderrLines.compactMap { line -> Double? in
            guard let range = line.range(of: ": loss ") else { return nil }
            return Double(line[range.upperBound...].prefix { $0 != " " })
        }
        XCTAssertEqual(losses.count, 4, result.stderr)  // iterations 0 (the start), 10, 20, 30
        XCTAssertLessThan(losses.last!, losses.first!)
        // Each line's total is the sum of its terms.
        for line in result.stderrLines where line.contains(": loss ") {
            let numbers = line.split(separator: " ").compactMap { Double($0) }
            XCTAssertGreaterThanOrEqual(numbers.count, 4, String(line))
            XCTAssertEqual(numbers[0], numbers.dropFirst().reduce(0, +), accuracy: numbers[0] * 1e-4)
        }
        // The network passes so far: the start's, then at least one per iteration.
        let evaluations = result.stderrLines.compactMap { line -> Int? in
            guard let open = line.range(of: "("), let close = line.range(of: " evaluation") else { return nil }
            return Int(line[open.upperBound ..< close.lowerBound])
        }
        XCTAssertEqual(evaluations.count, 4, result.stderr)
        XCTAssertEqual(evaluations.first, 1)
        XCTAssertGreaterThanOrEqual(evaluations.last!, 31)
        XCTAssertEqual(evaluations, evaluations.sorted())
    }

    /// `-size native` optimizes at the input's own size, over as many scales as it needs; `-verbose` says how each
    /// scale runs, and a small `-memory` makes the network run in stripes, with the same result as whole maps.
    func testNativeSizeAndMemory() throws {
        let input = patternPPM(width: 640, height: 240)
        // In single precision: bf16 products round the stripes' last bits apart, which the optimization carries
        // further.
        let arguments: [String] = ["-size", "native", "-iterations", "2", "-scale-iterations", "1", "-precision", "single",
                                   "-verbose", style!]
        let whole = try pamstyle(arguments, input: input, timeout: 300)
        XCTAssertEqual(whole.status, 0, whole.stderr)
        let sizes = whole.stderrLines.filter { $0.contains(": network ") }
        XCTAssertEqual(sizes.count, 2, whole.stderr)
        XCTAssertTrue(sizes[0].hasPrefix("pamstyle: 320x120: network relu1_1 … relu5_1 whole"), String(sizes[0]))
        XCTAssertTrue(sizes[1].hasPrefix("pamstyle: 640x240: network relu1_1 … relu5_1 whole"), String(sizes[1]))
        let striped = try pamstyle(["-memory", "360"] + arguments, input: input, timeout: 300)
        XCTAssertEqual(striped.status, 0, striped.stderr)
        let layout = striped.stderrLines.filter { $0.contains("640x240: network ") }
        XCTAssertTrue(layout.first?.contains(" stripes of ") ?? false, striped.stderr)
        let (a, b) = (try images(whole.stdout), try images(striped.stdout))
        XCTAssertEqual(a.count, 1)
        XCTAssertEqual(b.count, 1)
        XCTAssertEqual(a[0].width, 640)
        XCTAssertEqual(a[0].height, 240)
        // Stripes round differently in the last bits, which the optimization can carry a little way.
        var total: Float = 0
        for (p, q) in zip(a[0].pixels, b[0].pixels) { total += abs(p - q) }
        XCTAssertLessThanOrEqual(total / Float(a[0].pixels.count), Float(0.25) / 255,
                                 "stripes and whole maps give the same picture")
    }

    func testTimeLimitStopsTheOptimization() throws {
        let started = Date()
        let result = try pamstyle(["-size", "64", "-scales", "1", "-iterations", "1000000", "-time-limit", "1",
                                   "-verbose", style], input: patternPPM(width: 64, height: 48), timeout: 120)
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(try images(result.stdout).count, 1)
        let iterations = result.stderrLines.filter { $0.contains(" iteration ") }.count
        XCTAssertLessThan(iterations * 10, 1_000_000, "stopped long before the last iteration")
        XCTAssertLessThan(Date().timeIntervalSince(started), 120)
    }

    func testCheckpointsAreWritten() throws {
        let checkpoint = directory.appendingPathComponent("checkpoint.ppm").path
        let result = try pamstyle(quick + ["-checkpoint", checkpoint, "-checkpoint-every", "2", style],
                                  input: patternPPM(width: 50, height: 40))
        XCTAssertEqual(result.status, 0, result.stderr)
        let saved = try images(Array(try Data(contentsOf: URL(fileURLWithPath: checkpoint))))
        XCTAssertEqual(saved.count, 1)
        XCTAssertEqual(saved[0].width, 50)
        XCTAssertEqual(saved[0].height, 40)
        // The last checkpoint (iteration 4 of 4) is the result.
        XCTAssertTrue(saved[0] == (try images(result.stdout)[0]))
    }

    func testAClosedOutputEndsQuietly() throws {
        let input = try file("in.ppm", in: directory, patternPPM(width: 48, height: 36) + patternPPM(width: 48, height: 36))
        let arguments = quick.joined(separator: " ")
        let command = "\(pamstyleBinary.path) \(arguments) \(style!) < \(input) | head -c 10 > /dev/null; echo ${PIPESTATUS[0]}"
        let result = try shell(command)
        XCTAssertEqual(result.stderr, "", "no broken-pipe message")
        XCTAssertEqual(String(decoding: result.stdout, as: UTF8.self), "141\n")
    }

    func testHelpAndVersion() throws {
        let help = try pamstyle(["-help"])
        XCTAssertEqual(help.status, 0)
        let text = String(decoding: help.stdout, as: UTF8.self)
        for option in ["-style-weight", "-iterations", "-optimizer", "-init", "-size", "-pooling", "-preserve-colors",
                       "-max-pixels", "-time-limit", "-checkpoint", "-temporal", "-quiet", "-verbose", "-version"] {
            XCTAssertTrue(text.contains(option), "help lists \(option)")
        }
        let version = try pamstyle(["-version"])
        XCTAssertEqual(version.status, 0)
        XCTAssertTrue(String(decoding: version.stdout, as: UTF8.self).hasPrefix("pamstyle "))
    }

    func testDoubleDashAndEqualsSpellings() throws {
        let input = patternPPM(width: 48, height: 36)
        let single = try pamstyle(quick + [style], input: input)
        let double = try pamstyle(["--size=48", "--scales", "1", "-iterations=4", "--quiet", style], input: input)
        XCTAssertEqual(double.status, 0, double.stderr)
        XCTAssertTrue(single.stdout == double.stdout, "single and double differ")
    }

    func testAdamRecipeRuns() throws {
        let result = try pamstyle(["-optimizer", "adam", "-learning-rate", "2", "-iterations", "5", "-scales", "1",
                                   "-size", "48", "-content-layers", "relu4_2",
                                   "-style-layers", "relu1_1:0.2,relu2_1:0.2,relu3_1:0.2,relu4_1:0.2,relu5_1:0.2",
                                   "-style-weight", "0.0005", "-pooling", "avg", "-quiet", style], input: patternPPM(width: 48, height: 36))
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(try images(result.stdout).count, 1)
    }
}

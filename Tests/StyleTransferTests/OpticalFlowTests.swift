import Foundation
import XCTest
import StyleTransfer

/// `OpticalFlow.estimate` against known motions of a photo and of a synthetic pattern; `warp` against hand-computed
/// samples; `reliability` on flows with and without an occlusion.
final class OpticalFlowTests: XCTestCase {
    /// The luminance of examples/images/chelsea.ppm (451 × 300), loaded once.
    static let photo: (luminance: [Float], width: Int, height: Int) = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("examples/images/chelsea.ppm")
        let rgb = try! ReferenceTests.readPPM(url, width: 451, height: 300)
        return (YIQ.luminance(ofRGB: rgb), 451, 300)
    }()

    /// The frames' size in the photo tests: the photo is shrunk to it and then enlarged by 1/0.9.
    let width = 240, height = 160

    /// The endpoint error of the estimated flow between frames of the photo moved by `motion`, over the frame less a
    /// border as wide as the motion (`SyntheticMotion.endpointError`).
    func photoEndpointError(_ motion: SyntheticMotion) -> Double {
        let (first, second) = motion.frames(of: Self.photo.luminance, sourceWidth: Self.photo.width,
                                            sourceHeight: Self.photo.height, width: width, height: height)
        let flow = OpticalFlow.estimate(from: first, to: second, width: width, height: height)
        return motion.endpointError(of: flow)
    }

    func testSubpixelTranslationOfPhoto() {
        let error = photoEndpointError(SyntheticMotion(name: "subpixel", translation: (2.5, -1.25)))
        XCTAssertLessThan(error, 0.05)
    }

    func testLargeTranslationOfPhoto() {
        let error = photoEndpointError(SyntheticMotion(name: "large", translation: (11, 6)))
        XCTAssertLessThan(error, 0.05)
    }

    func testSixteenPixelTranslationOfPhoto() {
        let error = photoEndpointError(SyntheticMotion(name: "sixteen", translation: (-16, 16)))
        XCTAssertLessThan(error, 0.1)
    }

    func testRotationOfPhoto() {
        let error = photoEndpointError(SyntheticMotion(name: "rotation", rotationDegrees: 2))
        XCTAssertLessThan(error, 0.1)
    }

    func testZoomOfPhoto() {
        let error = photoEndpointError(SyntheticMotion(name: "zoom", zoom: 1.03))
        XCTAssertLessThan(error, 0.1)
    }

    /// A smooth random pattern, a sum of twelve plane waves with wavelengths of 6 to 40 pixels, evaluated exactly at any
    /// point: frames of it need no interpolation.
    struct Pattern {
        var waves: [(kx: Double, ky: Double, phase: Double)] = []

        init(seed: UInt64) {
            var random = TestRandom(state: seed)
            for _ in 0 ..< 12 {
                let wavelength = random.uniformDouble(6, 40), angle = random.uniformDouble(0, Double.pi)
                let k = 2 * Double.pi / wavelength
                waves.append((k * cos(angle), k * sin(angle), random.uniformDouble(0, 2 * Double.pi)))
            }
        }

        func value(_ x: Double, _ y: Double) -> Float {
            Float(0.5 + 0.04 * waves.reduce(0) { $0 + sin($1.kx * x + $1.ky * y + $1.phase) })
        }

        /// The pattern at the frame's pixels, and at A⁻¹ of them: second(A(p)) = first(p).
        func frames(_ motion: SyntheticMotion, width: Int, height: Int) -> (first: [Float], second: [Float]) {
            var first = [Float](), second = [Float]()
            for y in 0 ..< height {
                for x in 0 ..< width {
                    first.append(value(Double(x), Double(y)))
                    let origin = motion.inverseMap(x: Double(x), y: Double(y), width: width, height: height)
                    second.append(value(origin.x, origin.y))
                }
            }
            return (first, second)
        }
    }

    func testMotionsOfPattern() {
        let pattern = Pattern(seed: 11)
        let (width, height) = (192, 128)
        let limits = [("subpixel", SyntheticMotion(name: "", translation: (2.5, -1.25)), 0.02),
                      ("large", SyntheticMotion(name: "", translation: (11, 6)), 0.02),
                      ("rotation", SyntheticMotion(name: "", rotationDegrees: 2), 0.03),
                      ("zoom", SyntheticMotion(name: "", zoom: 1.03), 0.03)]
        for (name, motion, limit) in limits {
            let (first, second) = pattern.frames(motion, width: width, height: height)
            let flow = OpticalFlow.estimate(from: first, to: second, width: width, height: height)
            XCTAssertLessThan(motion.endpointError(of: flow), limit, name)
        }
    }

    /// The flow is what `warp` needs: the second frame warped by it is the first, as nearly as warped by the true flow
    /// (bilinear interpolation blurs either); and the endpoint error helper measures what it says (a zero flow is off
    /// by the whole translation).
    func testWarpingByEstimatedFlowGivesFirstFrame() {
        let motion = SyntheticMotion(name: "", translation: (2.5, -1.25))
        let (first, second) = motion.frames(of: Self.photo.luminance, sourceWidth: Self.photo.width,
                                            sourceHeight: Self.photo.height, width: width, height: height)
        XCTAssertEqual(motion.endpointError(of: .zero(width: width, height: height)),
                       (2.5 * 2.5 + 1.25 * 1.25).squareRoot(), accuracy: 1e-6)
        let flow = OpticalFlow.estimate(from: first, to: second, width: width, height: height)
        /// The mean absolute difference from the first frame over the frame less a 5-pixel border.
        func difference(_ image: [Float]) -> Double {
            var sum = 0.0, count = 0.0
            for y in 5 ..< height - 5 {
                for x in 5 ..< width - 5 {
                    sum += Double(abs(image[y * width + x] - first[y * width + x]))
                    count += 1
                }
            }
            return sum / count
        }
        let unwarped = difference(second)
        let estimated = difference(OpticalFlow.warp(second, channels: 1, by: flow))
        let truth = difference(OpticalFlow.warp(second, channels: 1, by: motion.flow(width: width, height: height)))
        XCTAssertLessThan(estimated, 1.05 * truth)
        XCTAssertLessThan(estimated, unwarped / 5)
    }

    func testIdenticalFramesGiveZeroFlow() {
        let (first, _) = SyntheticMotion(name: "").frames(of: Self.photo.luminance, sourceWidth: Self.photo.width,
                                                          sourceHeight: Self.photo.height, width: width, height: height)
        let flow = OpticalFlow.estimate(from: first, to: first, width: width, height: height)
        for i in flow.dx.indices {
            XCTAssertLessThan((flow.dx[i] * flow.dx[i] + flow.dy[i] * flow.dy[i]).squareRoot(), 0.05, "pixel \(i)")
        }
    }

    func testFlatFramesGiveFiniteFlow() {
        let (width, height) = (96, 64)
        let flat = [Float](repeating: 0.5, count: width * height)
        let slightlyBrighter = [Float](repeating: 0.52, count: width * height)
        for target in [flat, slightlyBrighter] {
            let flow = OpticalFlow.estimate(from: flat, to: target, width: width, height: height)
            XCTAssertTrue(flow.dx.allSatisfy(\.isFinite) && flow.dy.allSatisfy(\.isFinite))
            XCTAssertLessThan(flow.dx.map(abs).max()!, 0.05)
            XCTAssertLessThan(flow.dy.map(abs).max()!, 0.05)
        }
    }

    /// Textureless regions are filled from their surroundings: a flat square in the middle of a moving pattern moves
    /// with it.
    func testTexturelessRegionIsFilledSmoothly() {
        let pattern = Pattern(seed: 3)
        let (width, height) = (128, 96)
        let motion = SyntheticMotion(name: "", translation: (3, -2))
        func flattened(_ x: Double, _ y: Double) -> Float {
            abs(x - 64) < 20 && abs(y - 48) < 20 ? 0.5 : pattern.value(x, y)
        }
        var first = [Float](), second = [Float]()
        for y in 0 ..< height {
            for x in 0 ..< width {
                first.append(flattened(Double(x), Double(y)))
                second.append(flattened(Double(x) - 3, Double(y) + 2))
            }
        }
        let flow = OpticalFlow.estimate(from: first, to: second, width: width, height: height)
        XCTAssertTrue(flow.dx.allSatisfy(\.isFinite) && flow.dy.allSatisfy(\.isFinite))
        XCTAssertLessThan(motion.endpointError(of: flow, border: 8), 0.05)
        // The middle of the flat square, 20 pixels from any texture.
        XCTAssertEqual(flow.dx[48 * width + 64], 3, accuracy: 0.1)
        XCTAssertEqual(flow.dy[48 * width + 64], -2, accuracy: 0.1)
    }

    /// A textured square moves (5, 3) over a still textured background: the flow is right inside the square and zero on
    /// the background, away from the boundary where they occlude each other.
    func testMovingSquareOverStillBackground() {
        let (background, square) = (Pattern(seed: 1), Pattern(seed: 2))
        let (width, height) = (160, 120)
        let (left, top, side, shift) = (50.0, 40.0, 40.0, (x: 5.0, y: 3.0))
        func frame(_ x: Double, _ y: Double, moved: Bool) -> Float {
            let (ox, oy) = moved ? shift : (0, 0)
            let inside = x >= left + ox && x < left + ox + side && y >= top + oy && y < top + oy + side
            return inside ? square.value(x - ox, y - oy) : background.value(x, y)
        }
        var first = [Float](), second = [Float]()
        for y in 0 ..< height {
            for x in 0 ..< width {
                first.append(frame(Double(x), Double(y), moved: false))
                second.append(frame(Double(x), Double(y), moved: true))
            }
        }
        let flow = OpticalFlow.estimate(from: first, to: second, width: width, height: height)
        var squareError = 0.0, squareCount = 0.0, backgroundError = 0.0, backgroundCount = 0.0
        for y in 0 ..< height {
            for x in 0 ..< width {
                let p = y * width + x, (px, py) = (Double(x), Double(y))
                if px >= left + 3 && px < left + side - 3 && py >= top + 3 && py < top + side - 3 {
                    squareError += Double(hypot(flow.dx[p] - Float(shift.x), flow.dy[p] - Float(shift.y)))
                    squareCount += 1
                } else if px < left - 10 || px >= left + side + 15 || py < top - 10 || py >= top + side + 13 {
                    backgroundError += Double(hypot(flow.dx[p], flow.dy[p]))
                    backgroundCount += 1
                }
            }
        }
        XCTAssertLessThan(squareError / squareCount, 0.1)
        XCTAssertLessThan(backgroundError / backgroundCount, 0.02)
    }

    func testEstimateIsDeterministicWhateverTheThreads() {
        let motion = SyntheticMotion(name: "", rotationDegrees: 2)
        let (first, second) = motion.frames(of: Self.photo.luminance, sourceWidth: Self.photo.width,
                                            sourceHeight: Self.photo.height, width: width, height: height)
        let one = OpticalFlow.estimate(from: first, to: second, width: width, height: height, threads: 1)
        for threads in [1, 2, 3] {
            let other = OpticalFlow.estimate(from: first, to: second, width: width, height: height, threads: threads)
            XCTAssertEqual(other.dx.map(\.bitPattern), one.dx.map(\.bitPattern), "\(threads) threads")
            XCTAssertEqual(other.dy.map(\.bitPattern), one.dy.map(\.bitPattern), "\(threads) threads")
        }
    }

    // MARK: - Warp

    func testWarpByIntegerShiftCopiesPixelsAndClampsAtBorders() {
        let (width, height, channels) = (7, 5, 3)
        var random = TestRandom(state: 5)
        let image = random.array(channels * width * height)
        let flow = FlowField(width: width, height: height, dx: [Float](repeating: 2, count: width * height),
                             dy: [Float](repeating: -1, count: width * height))
        let warped = OpticalFlow.warp(image, channels: channels, by: flow)
        for c in 0 ..< channels {
            for y in 0 ..< height {
                for x in 0 ..< width {
                    let source = (c * height + max(y - 1, 0)) * width + min(x + 2, width - 1)
                    XCTAssertEqual(warped[(c * height + y) * width + x].bitPattern, image[source].bitPattern,
                                   "channel \(c) at (\(x), \(y))")
                }
            }
        }
    }

    func testWarpBySubpixelFlowInterpolatesBilinearly() {
        let (width, height) = (4, 3)
        let image: [Float] = [0, 1, 2, 3,
                              10, 11, 12, 13,
                              20, 21, 22, 23,
                              // A second channel: the first squared.
                              0, 1, 4, 9,
                              100, 121, 144, 169,
                              400, 441, 484, 529]
        var flow = FlowField.zero(width: width, height: height)
        // (1, 0) reads (1.25, 0.5): between 1, 2, 11, 12 with weights ⅜, ⅛, ⅜, ⅛.
        flow.dx[1] = 0.25
        flow.dy[1] = 0.5
        // (2, 2) reads (1.5, 2.75), clamped to (1.5, 2): halfway between 21 and 22.
        flow.dx[2 * width + 2] = -0.5
        flow.dy[2 * width + 2] = 0.75
        // (0, 1) reads (−3, −4), clamped to the corner (0, 0).
        flow.dx[width] = -3
        flow.dy[width] = -5
        let warped = OpticalFlow.warp(image, channels: 2, by: flow)
        let plane = width * height
        XCTAssertEqual(warped[1], 0.375 * 1 + 0.125 * 2 + 0.375 * 11 + 0.125 * 12, accuracy: 1e-6)
        XCTAssertEqual(warped[plane + 1], 0.375 * 1 + 0.125 * 4 + 0.375 * 121 + 0.125 * 144, accuracy: 1e-4)
        XCTAssertEqual(warped[2 * width + 2], 21.5, accuracy: 1e-6)
        XCTAssertEqual(warped[plane + 2 * width + 2], 462.5, accuracy: 1e-4)
        XCTAssertEqual(warped[width], 0)
        XCTAssertEqual(warped[plane + width], 0)
        // Pixels with zero flow are copied.
        for p in [0, 3, width + 1, 2 * width + 3] {
            XCTAssertEqual(warped[p], image[p])
            XCTAssertEqual(warped[plane + p], image[plane + p])
        }
    }

    // MARK: - Reliability

    func testConsistentTranslationIsReliableWhereItStaysInTheFrame() {
        let (width, height) = (20, 14)
        let n = width * height
        let forward = FlowField(width: width, height: height, dx: [Float](repeating: 3, count: n),
                                dy: [Float](repeating: 2, count: n))
        let backward = FlowField(width: width, height: height, dx: [Float](repeating: -3, count: n),
                                 dy: [Float](repeating: -2, count: n))
        let reliable = OpticalFlow.reliability(backward: backward, forward: forward)
        for y in 0 ..< height {
            for x in 0 ..< width {
                // Pixels of frame t whose origin p − (3, 2) lies outside frame t − 1 have no counterpart.
                XCTAssertEqual(reliable[y * width + x], x >= 3 && y >= 2 ? 1 : 0, "(\(x), \(y))")
            }
        }
    }

    /// A 16 × 16 square moves 6 pixels right over a still background: in frame t the strip it uncovered is disoccluded,
    /// and the pixels next to its edges lie on a motion boundary; everything else is reliable.
    func testMovingSquareMarksDisocclusionAndMotionBoundary() {
        let (width, height) = (64, 48)
        let (left, top, side, shift) = (20, 16, 16, 6)
        var forward = FlowField.zero(width: width, height: height)
        var backward = FlowField.zero(width: width, height: height)
        for y in top ..< top + side {
            for x in left ..< left + side { forward.dx[y * width + x] = Float(shift) }
            for x in left + shift ..< left + shift + side { backward.dx[y * width + x] = Float(-shift) }
        }
        let reliable = OpticalFlow.reliability(backward: backward, forward: forward)
        let (squareLeft, squareRight) = (left + shift, left + shift + side - 1)
        let rows = top ..< top + side, columns = squareLeft ... squareRight
        for y in 0 ..< height {
            for x in 0 ..< width {
                let disoccluded = rows.contains(y) && (left ..< squareLeft).contains(x)
                // Central differences straddle the square's edge at the pixels on either side of it.
                let verticalEdge = rows.contains(y) && [squareLeft - 1, squareLeft, squareRight, squareRight + 1].contains(x)
                let horizontalEdge = columns.contains(x) && [top - 1, top, top + side - 1, top + side].contains(y)
                let expected: Float = disoccluded || verticalEdge || horizontalEdge ? 0 : 1
                XCTAssertEqual(reliable[y * width + x], expected, "(\(x), \(y))")
            }
        }
    }
}

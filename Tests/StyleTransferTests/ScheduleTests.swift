import XCTest
@testable import Kernels
@testable import StyleTransfer

/// The coarse-to-fine schedule, its fit to a time limit, and the division of a memory budget: pure planning.
final class ScheduleTests: XCTestCase {
    func plan(_ width: Int, _ height: Int, scales: Int? = nil) -> Schedule {
        Schedule.planned(working: Size(width: width, height: height), scales: scales, iterations: 135,
                         scaleIterations: 60, minimumSide: 32)
    }

    /// As many scales as the size needs, from about 256 pixels up, iterations halving above 768 pixels.
    func testAutomaticScales() {
        XCTAssertEqual(plan(512, 384), Schedule(sizes: [Size(width: 256, height: 192), Size(width: 512, height: 384)],
                                                iterations: [60, 135]))
        let native = plan(4032, 3024)
        XCTAssertEqual(native.sizes.map(\.width), [252, 504, 1008, 2016, 4032])
        XCTAssertEqual(native.sizes.map(\.height), [189, 378, 756, 1512, 3024])
        XCTAssertEqual(native.iterations, [60, 135, 67, 33, 16])
        XCTAssertEqual(plan(700, 300).iterations, [60, 135])
        XCTAssertEqual(plan(300, 200).sizes, [Size(width: 300, height: 200)])
        XCTAssertEqual(plan(300, 200).iterations, [135])
        XCTAssertEqual(plan(1600, 100).sizes.map(\.height), [50, 100], "no side under the minimum")
    }

    /// A given number of scales, down to 128 pixels, as before.
    func testGivenScales() {
        XCTAssertEqual(plan(512, 384, scales: 3).sizes.map(\.width), [128, 256, 512])
        XCTAssertEqual(plan(512, 384, scales: 3).iterations, [60, 60, 135])
        XCTAssertEqual(plan(512, 384, scales: 1).sizes.map(\.width), [512])
        XCTAssertEqual(plan(200, 100, scales: 8).sizes.map(\.width), [200])
    }

    /// A time limit shrinks the iterations of the scales left together, never below one, and leaves a schedule that
    /// fits alone.
    func testFittingATimeLimit() {
        let schedule = plan(4032, 3024)
        let pace = 1e-6  // seconds per iteration and pixel
        let work = zip(schedule.iterations, schedule.sizes).reduce(0.0) { $0 + Double($1.0 * $1.1.pixels) * pace }
        XCTAssertEqual(schedule.fitted(from: 0, seconds: work * 2, secondsPerPixel: pace), schedule.iterations)
        let half = schedule.fitted(from: 0, seconds: work / 2, secondsPerPixel: pace)
        for (fitted, planned) in zip(half, schedule.iterations) {
            XCTAssertEqual(Double(fitted), Double(planned) / 2, accuracy: 1)
        }
        let later = schedule.fitted(from: 3, seconds: 0, secondsPerPixel: pace)
        XCTAssertEqual(later, [1, 1])
        let fitting = zip(half, schedule.sizes).reduce(0.0) { $0 + Double($1.0 * $1.1.pixels) * pace }
        XCTAssertLessThanOrEqual(fitting, work / 2)
    }

    /// The budget goes to L-BFGS's full history in single precision unless a half-precision or shorter history lets
    /// the network run with much less work; never below 3 pairs while those fit; the shortest when nothing fits. The
    /// content targets go to half precision with the history.
    func testMemoryPlans() {
        let pixels = 1_000_000, targets = 2_000_000
        let images = (2 * 3 * pixels + targets) * 4
        let imagesWithHalfTargets = 2 * 3 * pixels * 4 + targets * 2
        let single = LBFGS.allocatedBytes(parameterCount: 3 * pixels, historySize: 5, historyPrecision: .single)
        let half = LBFGS.allocatedBytes(parameterCount: 3 * pixels, historySize: 5, historyPrecision: .half)
        let half2 = LBFGS.allocatedBytes(parameterCount: 3 * pixels, historySize: 2, historyPrecision: .half)
        let minimum = 100 << 20, fast = 300 << 20
        // The network's work: 3 at its minimum, 1 from `fast` bytes on.
        func plan(_ budget: Int) -> MemoryPlan {
            MemoryPlan.planned(budget: budget, pixels: pixels, targetFloats: targets, history: 5, usesLBFGS: true) {
                $0 < minimum ? nil : $0 < fast ? 3 : 1
            }
        }
        XCTAssertEqual(plan(1 << 30), MemoryPlan(history: 5, historyPrecision: .single, fixedBytes: images + single,
                                                  networkBytes: (1 << 30) - images - single))
        XCTAssertEqual(plan(1 << 30).targetPrecision, .single)
        // Half precision buys the fast network; single precision would leave it the slow one.
        let both = images + half + fast
        XCTAssertLessThan(both, images + single + fast)
        XCTAssertEqual(plan(both).historyPrecision, .half)
        XCTAssertEqual(plan(both).targetPrecision, .half)
        XCTAssertEqual(plan(both).history, 5)
        XCTAssertEqual(plan(both).fixedBytes, imagesWithHalfTargets + half)
        // Only the minimum fits with 5 pairs in single precision: single it is.
        XCTAssertEqual(plan(images + single + minimum).historyPrecision, .single)
        // Nothing but 2 pairs fits: 2 pairs.
        XCTAssertEqual(plan(images + half2 + minimum).history, 2)
        // 3 pairs leave the network only its slow minimum, 1 pair its fast layout: 1 pair.
        let half1 = LBFGS.allocatedBytes(parameterCount: 3 * pixels, historySize: 1, historyPrecision: .half)
        let half3 = LBFGS.allocatedBytes(parameterCount: 3 * pixels, historySize: 3, historyPrecision: .half)
        XCTAssertGreaterThanOrEqual(imagesWithHalfTargets + half1 + fast, imagesWithHalfTargets + half3 + minimum)
        XCTAssertEqual(plan(imagesWithHalfTargets + half1 + fast).history, 1)
        XCTAssertLessThan(plan(1).networkBytes, minimum)
        XCTAssertEqual(plan(1).history, 1)
    }
}

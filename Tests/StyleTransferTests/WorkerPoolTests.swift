import Foundation
import XCTest
@testable import Kernels

final class WorkerPoolTests: XCTestCase {
    /// Counts kept under a lock, for loops whose items run on several threads.
    private final class Tally: @unchecked Sendable {
        private let lock = NSLock()
        private var counts: [Int]
        private(set) var workers = Set<Int>()

        init(_ size: Int) { counts = [Int](repeating: 0, count: size) }

        func add(_ value: Int, at index: Int, worker: Int = 0) {
            lock.lock()
            counts[index] += value
            workers.insert(worker)
            lock.unlock()
        }

        var values: [Int] {
            lock.lock()
            defer { lock.unlock() }
            return counts
        }
    }

    /// Every item runs once, on a worker below the number asked for (the caller's alone with one worker or one item);
    /// and after the helpers have gone to sleep, a loop still runs to the end.
    func testEveryItemRunsOnceOnAWorkerAskedFor() {
        let pool = WorkerPool.shared
        for (count, workers) in [(0, 2), (1, 2), (7, 1), (100, 2), (1000, coreCount), (5, 8)] {
            let tally = Tally(count)
            pool.run(count, workers: workers) { item, worker in tally.add(1, at: item, worker: worker) }
            XCTAssertEqual(tally.values, [Int](repeating: 1, count: count), "\(count) items on \(workers) workers")
            XCTAssertTrue(tally.workers.allSatisfy { $0 >= 0 && $0 < max(1, workers) }, "\(tally.workers)")
            if workers == 1 || count == 1 { XCTAssertEqual(tally.workers, count == 0 ? [] : [0]) }
        }
        Thread.sleep(forTimeInterval: Double(WorkerPool.spinNanoseconds) * 3e-9)
        let tally = Tally(1)
        pool.run(64, workers: 2) { item, _ in tally.add(item, at: 0) }
        XCTAssertEqual(tally.values, [64 * 63 / 2])
    }

    /// A loop started inside another, or on another thread while one runs, runs on its caller's thread and finishes.
    func testNestedAndConcurrentLoopsFinish() {
        let pool = WorkerPool.shared
        let inner = Tally(1)
        pool.run(8, workers: 2) { _, _ in
            pool.run(10, workers: 2) { item, worker in
                XCTAssertEqual(worker, 0)
                inner.add(item, at: 0)
            }
        }
        XCTAssertEqual(inner.values, [8 * 45])
        let sums = Tally(4)
        DispatchQueue.concurrentPerform(iterations: 4) { caller in
            for _ in 0 ..< 50 {
                pool.run(100, workers: 2) { item, _ in sums.add(item, at: caller) }
            }
        }
        XCTAssertEqual(sums.values, [Int](repeating: 50 * 4950, count: 4))
    }

    /// Buffers large enough for all cores to write their zeros come out zero from end to end, over memory that held
    /// other values before (freed buffers of the same size), whatever their size's remainder.
    func testLargeBuffersAreZero() {
        for count in [(4 << 20) / 4 - 1, 5 << 20, (9 << 20) / 4 + 3] {
            for _ in 0 ..< 2 {
                let tensor = Tensor(channels: 1, height: 1, width: count)
                XCTAssertNil(UnsafeBufferPointer(start: tensor.storage, count: count).first { $0 != 0 }, "\(count)")
                tensor.storage.update(repeating: 1, count: count)
                let bytes = ByteBuffer(capacity: count + 1)
                XCTAssertNil(UnsafeBufferPointer(start: bytes.storage, count: count + 1).first { $0 != 0 }, "\(count)")
                bytes.storage.update(repeating: 7, count: count + 1)
            }
        }
    }
}

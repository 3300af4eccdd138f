import CGEMM
import Dispatch
import Foundation
import Synchronization

/// The threads the kernels' parallel loops run on: the calling thread and `helpers` threads of the pool's own, which
/// wait for work by spinning for a while (so that the next loop, usually microseconds away, starts at once) and then
/// sleep on a condition (so that an idle pamstyle takes no processor time). One loop runs at a time; a loop started
/// while another runs, from another thread or from inside it, runs on its caller's thread alone.
package final class WorkerPool: @unchecked Sendable {
    /// The pool of the kernels: one helper for each core but the caller's.
    package static let shared = WorkerPool(helpers: coreCount - 1)

    /// How long a helper spins for the next loop before it sleeps, in nanoseconds.
    package static let spinNanoseconds: UInt64 = 2_000_000

    package let helpers: Int
    /// Bumped to start each loop; each helper waits for it to change.
    private let generation = Atomic<Int>(0)
    /// The next item of the running loop.
    private let ticket = Atomic<Int>(0)
    /// The helpers done with the running loop (those it does not use included).
    private let finished = Atomic<Int>(0)
    /// The helpers asleep on `condition`.
    private let sleepers = Atomic<Int>(0)
    private let running = Atomic<Bool>(false)
    private let condition = NSCondition()
    // The running loop, written before `generation` is bumped and read by the helpers after they see it bumped.
    private var count = 0
    private var workers = 0
    private var body: ((_ item: Int, _ worker: Int) -> Void)?

    private init(helpers: Int) {
        self.helpers = max(0, helpers)
        for index in 0 ..< self.helpers {
            let thread = Thread { [unowned self] in self.serve(worker: index + 1) }
            thread.name = "pamstyle worker \(index + 1)"
            thread.start()
        }
    }

    /// Calls `body(item, worker)` for every item in `0..<count`, on up to `workers` threads (worker 0 is the caller's,
    /// the rest the helpers'), each taking the next item as soon as it finishes one; returns when all are done.
    package func run(_ count: Int, workers: Int, _ body: (_ item: Int, _ worker: Int) -> Void) {
        guard workers > 1, helpers > 0, count > 1,
              running.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            for item in 0 ..< count { body(item, 0) }
            return
        }
        withoutActuallyEscaping(body) { body in
            self.body = body
            self.count = count
            self.workers = workers
            ticket.store(0, ordering: .relaxed)
            finished.store(0, ordering: .relaxed)
            generation.add(1, ordering: .sequentiallyConsistent)
            if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
                condition.lock()
                condition.broadcast()
                condition.unlock()
            }
            take(body, worker: 0)
            // Every helper saw this loop before the next may start, so none reads the next one's fields for this one.
            while finished.load(ordering: .sequentiallyConsistent) < helpers { cgemm_pause() }
            self.body = nil
        }
        running.store(false, ordering: .releasing)
    }

    private func take(_ body: (Int, Int) -> Void, worker: Int) {
        while true {
            let item = ticket.add(1, ordering: .relaxed).oldValue
            if item >= count { return }
            body(item, worker)
        }
    }

    private func serve(worker: Int) {
        var seen = 0
        while true {
            let start = DispatchTime.now().uptimeNanoseconds
            var spins = 0
            while generation.load(ordering: .sequentiallyConsistent) == seen {
                cgemm_pause()
                spins &+= 1
                guard spins & 255 == 0, DispatchTime.now().uptimeNanoseconds &- start > Self.spinNanoseconds else {
                    continue
                }
                condition.lock()
                sleepers.add(1, ordering: .sequentiallyConsistent)
                while generation.load(ordering: .sequentiallyConsistent) == seen { condition.wait() }
                sleepers.subtract(1, ordering: .sequentiallyConsistent)
                condition.unlock()
            }
            seen = generation.load(ordering: .sequentiallyConsistent)
            if worker < workers, let body { take(body, worker: worker) }
            finished.add(1, ordering: .sequentiallyConsistent)
        }
    }
}

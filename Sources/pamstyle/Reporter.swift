import Foundation
import StyleTransfer

/// Everything pamstyle says on standard error: a progress bar when standard error is a terminal, loss
/// lines with -verbose, and errors, always one line beginning with "pamstyle: ".
final class Reporter {
    private let quiet: Bool
    private let verbose: Bool
    private let terminal: Bool
    private var barShown = false

    init(quiet: Bool, verbose: Bool) {
        self.quiet = quiet
        self.verbose = verbose
        self.terminal = isatty(STDERR_FILENO) != 0
    }

    func error(_ error: Error) {
        clearBar()
        say("pamstyle: \(Reporter.describe(error))\n")
    }

    /// A line shown with -verbose.
    func note(_ text: String) {
        if verbose { say("pamstyle: \(text)\n") }
    }

    func startImage(_ index: Int, width: Int, height: Int) {
        note("image \(index): \(width)x\(height)")
    }

    func finishImage(_ index: Int) {
        clearBar()
    }

    func progress(_ progress: TransferProgress) {
        if verbose, let setup = progress.setup {
            note("\(progress.width)x\(progress.height): \(setup)")
        }
        if verbose, progress.iteration % 10 == 0 || progress.iteration == progress.iterations {
            let losses = progress.losses
            let layout = losses.layout.map { String(format: " + layout %.6g", $0) } ?? ""
            let temporal = losses.temporal.map { String(format: " + temporal %.6g", $0) } ?? ""
            note(String(format: "%dx%d iteration %d/%d: loss %.6g = content %.6g + style %.6g + tv %.6g%@%@ (%d %@)",
                        progress.width, progress.height, progress.iteration, progress.iterations,
                        losses.total, losses.content, losses.style, losses.tv, layout, temporal, progress.evaluations,
                        progress.evaluations == 1 ? "evaluation" : "evaluations"))
        } else if !quiet, !verbose, terminal {
            drawBar(progress)
        }
    }

    private func drawBar(_ progress: TransferProgress) {
        let width = 30
        let done = progress.totalIterations == 0 ? 1 : Double(progress.totalIteration) / Double(progress.totalIterations)
        let filled = Int((done * Double(width)).rounded(.down))
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        say(String(format: "\rpamstyle: [%@] %3d%% %dx%d loss %.4g %.0fs\u{1B}[K", bar, Int(done * 100),
                   progress.width, progress.height, progress.losses.total, progress.elapsed))
        barShown = true
    }

    private func clearBar() {
        if barShown {
            say("\r\u{1B}[K")
            barShown = false
        }
    }

    private func say(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }

    /// The sentence for an error: its own description when it has one, with no trailing period.
    static func describe(_ error: Error) -> String {
        let text = (error as? LocalizedError)?.errorDescription ?? String(describing: error)
        return text.replacingOccurrences(of: "\n", with: " ")
    }
}

import Foundation
import XCTest

/// A property of the whole command line, on the built binary: a few hundred random runs (options from
/// `CaseBuilder.options` with good and bad values, style files, init files and standard input in every
/// Netpbm format, good and bad) each end in one of two ways, as `CommandLineModel.swift` predicts:
///
/// - exit status 0, nothing on standard error (loss lines with -verbose), and on standard output one
///   well-formed image per input image, of its size: PPM (P6, maxval 255), or PAM RGB_ALPHA carrying the
///   input's alpha;
/// - exit status 1, one line on standard error, "pamstyle: ...", naming something that was wrong, and on
///   standard output only the images before the one that failed.
///
/// Never a signal, another status, a hang (`timeout`), or an empty success. A run the model holds to be
/// right must succeed, and a run with a wrong part must be refused. One successful run in
/// `rerunEvery` without -time-limit is run again and must write the same bytes.
///
/// Replay: PAMSTYLE_PROPERTY_SEED (decimal or 0x… hexadecimal) and PAMSTYLE_PROPERTY_CASES set the seed and
/// the number of cases, PAMSTYLE_PROPERTY_CASE runs one case alone. A failure prints all three, the command
/// line, and how its inputs were made; the failing case's folder is kept with its files.
final class CommandLinePropertyTests: XCTestCase {
    static let defaultSeed: UInt64 = 0x7061_6D73_7479_6C65   // "pamstyle"
    /// Cases with the release binary (as `make test` builds it), and with the slower debug binary.
    static let releaseCases = 200
    static let debugCases = 40
    /// Seconds a run may take; each should take well under two.
    static let timeout: TimeInterval = 60
    /// Runs at a time.
    static let workers = 2
    static let rerunEvery = 8

    func testRandomCommandLinesEndWithImagesOrOneLine() throws {
        let environment = ProcessInfo.processInfo.environment
        let (binary, isRelease) = Self.binaryUnderTest()
        let seed = try environment["PAMSTYLE_PROPERTY_SEED"].map(Self.parseSeed) ?? Self.defaultSeed
        let count = try environment["PAMSTYLE_PROPERTY_CASES"].map { try XCTUnwrap(Int($0), "PAMSTYLE_PROPERTY_CASES") }
            ?? (isRelease ? Self.releaseCases : Self.debugCases)
        let indices = try environment["PAMSTYLE_PROPERTY_CASE"].map { [try XCTUnwrap(Int($0), "PAMSTYLE_PROPERTY_CASE")] }
            ?? Array(0 ..< count)
        let seedText = "0x" + String(seed, radix: 16)

        let runDirectory = FileManager.default.temporaryDirectory
            .appendingPathComponent("pamstyle-property-\(seedText)-\(ProcessInfo.processInfo.processIdentifier)")
        try FileManager.default.createDirectory(at: runDirectory, withIntermediateDirectories: true)

        let cases = indices.map { index in
            var builder = CaseBuilder(seed: seed, index: index)
            return builder.build(index: index)
        }
        let started = Date()
        let outcomes = Self.runAll(cases, binary: binary, in: runDirectory)
        let seconds = Date().timeIntervalSince(started)

        let failures = outcomes.filter { $0.failure != nil }
        var summary = "CommandLinePropertyTests: \(cases.count) cases of seed \(seedText) with \(binary.path) "
            + "in \(String(format: "%.1f", seconds)) s, \(failures.count) failed"
        if let slowest = outcomes.max(by: { $0.seconds < $1.seconds }) {
            summary += String(format: "; the slowest, case %d, %.2f s: ", slowest.index, slowest.seconds) + slowest.commandLine
        }
        print(summary)
        if failures.isEmpty {
            try? FileManager.default.removeItem(at: runDirectory)
            return
        }
        // Each kind of failure once, with the cases that show it, then every case in full.
        let kinds = Dictionary(grouping: failures, by: { $0.failure!.kind })
        for (kind, group) in kinds.sorted(by: { $0.value[0].index < $1.value[0].index }) {
            print("  \(kind): case\(group.count == 1 ? "" : "s") \(group.map { String($0.index) }.joined(separator: ", "))")
        }
        for outcome in failures {
            let replay = "PAMSTYLE_PROPERTY_SEED=\(seedText) PAMSTYLE_PROPERTY_CASE=\(outcome.index) "
                + "swift test --filter pamstyleTests.CommandLinePropertyTests"
            XCTFail("""
                case \(outcome.index) of seed \(seedText): \(outcome.failure!.kind)
                \(outcome.failure!.detail)
                  command, in \(outcome.directory.path):
                    \(outcome.commandLine)
                  standard input (stdin.pnm): \(outcome.inputs)
                  replay: \(replay)
                """)
        }
    }

    /// The judge itself, on made-up endings of two runs: a good one with an RGB_ALPHA input, and one with a
    /// bad -size.
    func testTheJudgeTellsGoodEndingsFromBad() {
        var random = PropertyRandom(seed: 1)
        let image = makeImage(.pamRGBAlpha, plain: false, width: 3, height: 2, maxval: 65535, random: &random)
        var good = PropertyCase(index: 0)
        good.stdinImages = [image]
        let alpha = image.outputAlpha!
        let header = Array("P7\nWIDTH 3\nHEIGHT 2\nDEPTH 4\nMAXVAL 255\nTUPLTYPE RGB_ALPHA\nENDHDR\n".utf8)
        let output = header + alpha.flatMap { [7, 8, 9, $0] }
        func ending(_ status: Int32, _ stdout: [UInt8] = [], _ stderr: String = "") -> RunResult {
            RunResult(status: status, stdout: stdout, stderr: stderr)
        }
        XCTAssertNil(Self.judge(ending(0, output), good))
        var changedAlpha = output
        changedAlpha[changedAlpha.count - 1] ^= 1
        var killed = ending(4)
        killed.killedBySignal = true
        var hung = ending(124)
        hung.timedOut = true
        let badEndings: [(RunResult, String)] = [
            (ending(0), "too few"),
            (ending(0, changedAlpha), "alpha"),
            (ending(0, Array(output.dropLast())), "whole images"),
            (ending(0, Array("P6\n3 2\n255\n".utf8) + [UInt8](repeating: 1, count: 18)), "without alpha"),
            (ending(0, output + output), "too many"),
            (ending(0, output, "pamstyle: a note\n"), "standard error"),
            (ending(1, [], "pamstyle: the optimization diverged\n"), "a good run refused"),
            (killed, "signal 4"),
            (hung, "no end"),
            (ending(2, [], "pamstyle: usage\n"), "exit status 2"),
        ]
        for (result, kind) in badEndings {
            XCTAssertTrue(Self.judge(result, good)?.kind.contains(kind) ?? false, "\(kind): \(String(describing: Self.judge(result, good)))")
        }

        var refused = PropertyCase(index: 1)
        refused.refusals["-size"] = .refused(mentions: ["-size", "8"])
        refused.stdinImages = [image]
        XCTAssertNil(Self.judge(ending(1, [], "pamstyle: -size must be from 32 to 16384; you specified 8\n"), refused))
        XCTAssertEqual(Self.judge(ending(1, [], "pamstyle: something else\n"), refused)?.kind.hasPrefix("the message names none"), true)
        XCTAssertEqual(Self.judge(ending(1, [], "pamstyle: -size\npamstyle: -size\n"), refused)?.kind.hasPrefix("exit status 1 without one line"), true)
        XCTAssertEqual(Self.judge(ending(1, output, "pamstyle: -size 8\n"), refused)?.kind, "exit status 1 with 1 image written")
        XCTAssertEqual(Self.judge(ending(0, output), refused)?.kind, "exit status 0, but a wrong part should be refused")
    }

    // MARK: Running

    /// What one case gave.
    struct Outcome: Sendable {
        var index: Int
        var failure: (kind: String, detail: String)?
        var seconds: Double
        var directory: URL
        var commandLine: String
        var inputs: String
    }

    /// Runs the cases, `workers` at a time, each in its own folder; the folders of the cases that pass are
    /// removed.
    static func runAll(_ cases: [PropertyCase], binary: URL, in runDirectory: URL) -> [Outcome] {
        final class Shared: @unchecked Sendable {
            let lock = NSLock()
            var next = 0
            var outcomes: [Outcome] = []
        }
        let shared = Shared()
        let done = DispatchGroup()
        for _ in 0 ..< workers {
            done.enter()
            Thread {
                while true {
                    shared.lock.lock()
                    let position = shared.next
                    shared.next += 1
                    shared.lock.unlock()
                    guard position < cases.count else { break }
                    let outcome = runCase(cases[position], binary: binary, in: runDirectory)
                    shared.lock.lock()
                    shared.outcomes.append(outcome)
                    shared.lock.unlock()
                }
                done.leave()
            }.start()
        }
        done.wait()
        return shared.outcomes.sorted { $0.index < $1.index }
    }

    static func runCase(_ propertyCase: PropertyCase, binary: URL, in runDirectory: URL) -> Outcome {
        let directory = runDirectory.appendingPathComponent("case-\(propertyCase.index)")
        let files = propertyCase.files.map { "\($0.name): \($0.description)" }
        let inputs = propertyCase.stdinDescription.joined(separator: "; ")
            + (files.isEmpty ? "" : "\n  files: " + files.joined(separator: "; "))
        var outcome = Outcome(index: propertyCase.index, seconds: 0, directory: directory,
                              commandLine: ([binary.path] + propertyCase.arguments).map(shellQuoted).joined(separator: " ")
                                  + " < stdin.pnm",
                              inputs: inputs)
        let started = Date()
        do {
            let manager = FileManager.default
            try manager.createDirectory(at: directory, withIntermediateDirectories: true)
            for file in propertyCase.files {
                let url = directory.appendingPathComponent(file.name)
                if let contents = file.contents {
                    try Data(contents).write(to: url)
                } else {
                    try manager.createDirectory(at: url, withIntermediateDirectories: true)
                }
            }
            try Data(propertyCase.stdin).write(to: directory.appendingPathComponent("stdin.pnm"))
            func runOnce() throws -> RunResult {
                try pamstyleTests.run(binary, propertyCase.arguments, input: propertyCase.stdin, directory: directory,
                                      timeout: timeout)
            }
            let result = try runOnce()
            outcome.failure = judge(result, propertyCase)
            if outcome.failure == nil, result.status == 0, propertyCase.index % rerunEvery == 0, !propertyCase.timeLimited {
                let again = try runOnce()
                if again.status != 0 || again.stdout != result.stdout {
                    let difference = zip(result.stdout, again.stdout).enumerated().first { $0.element.0 != $0.element.1 }?.offset
                        ?? min(result.stdout.count, again.stdout.count)
                    outcome.failure = ("a second run gave other bytes",
                                       "  exit status \(again.status), \(again.stdout.count) bytes against \(result.stdout.count), "
                                           + "the first difference at byte \(difference)\n  standard error: \(again.stderr.debugDescription)")
                }
            }
        } catch {
            outcome.failure = ("the test could not run the case", "  \(error)")
        }
        outcome.seconds = Date().timeIntervalSince(started)
        if outcome.failure == nil {
            try? FileManager.default.removeItem(at: directory)
        }
        return outcome
    }

    // MARK: Judging

    /// What is wrong with how a run of `propertyCase` ended: a short kind (for grouping) and the details; nil
    /// when nothing is.
    static func judge(_ result: RunResult, _ propertyCase: PropertyCase) -> (kind: String, detail: String)? {
        let stderrText = "  standard error: \(result.stderr.isEmpty ? "(empty)" : result.stderr.debugDescription)"
        if result.timedOut {
            return ("no end within \(Int(timeout)) s", stderrText)
        }
        if result.killedBySignal {
            return ("killed by signal \(result.status)", stderrText)
        }
        guard result.status == 0 || result.status == 1 else {
            return ("exit status \(result.status)", stderrText)
        }
        let lines = result.stderrLines
        if propertyCase.verbose {
            if let line = lines.first(where: { !$0.hasPrefix("pamstyle: ") }) {
                return ("a line on standard error without \"pamstyle: \"", "  line: \(line.debugDescription)")
            }
        } else if result.status == 0, !result.stderr.isEmpty {
            return ("exit status 0 with something on standard error", stderrText)
        }
        if result.status == 1 {
            guard (propertyCase.verbose ? !lines.isEmpty : lines.count == 1), lines.last!.hasPrefix("pamstyle: "),
                  result.stderr.hasSuffix("\n") else {
                return ("exit status 1 without one line \"pamstyle: ...\"", stderrText)
            }
        }
        let message = lines.last.map(String.init) ?? ""

        let verdicts = Array(propertyCase.refusals.values) + (propertyCase.stdinRefusal.map { [$0.verdict] } ?? [])
        let mustRefuse = propertyCase.refusals.values.contains { if case .refused = $0 { true } else { false } }
        let mayRefuse = propertyCase.refusals.values.contains { if case .either = $0 { true } else { false } }
            || !propertyCase.stdinUncertain.isEmpty
        let wrongParts = propertyCase.refusals.keys.sorted().joined(separator: ", ")
        let stdout = result.stdout

        if propertyCase.givesVersion || propertyCase.givesHelp {
            // Both print and exit before anything is checked but the parsing.
            if result.status == 1 {
                return verdicts.isEmpty ? ("exit status 1 with -version or -help: \(numbersHidden(message))", stderrText) : nil
            }
            let text = String(decoding: stdout, as: UTF8.self)
            let version = text.hasPrefix("pamstyle ") && text.split(separator: "\n").count == 1
            let help = text.contains("USAGE:")
            if !(propertyCase.givesVersion && version) && !(propertyCase.givesHelp && help) {
                return ("-version or -help printed something else", "  standard output: \(text.prefix(200).debugDescription)")
            }
            return nil
        }

        let parsed = parseOutput(stdout)
        if let problem = parsed.problem {
            return ("standard output is not a stream of whole images", "  \(problem)\n\(stderrText)")
        }
        let expected = propertyCase.stdinImages
        let written = parsed.images
        for (index, image) in written.enumerated() where index < expected.count {
            let want = expected[index]
            if image.width != want.width || image.height != want.height {
                return ("an output image of the wrong size",
                        "  image \(index + 1): \(image.width)x\(image.height), expected \(want.width)x\(want.height)")
            }
            if (image.alpha == nil) != (want.outputAlpha == nil) {
                return ("an output image \(want.outputAlpha == nil ? "with" : "without") alpha",
                        "  image \(index + 1) of input \(want.description)")
            }
            if let alpha = image.alpha, alpha != want.outputAlpha! {
                let first = zip(alpha, want.outputAlpha!).enumerated().first { $0.element.0 != $0.element.1 }!
                return ("the alpha plane changed",
                        "  image \(index + 1), sample \(first.offset): \(first.element.0), expected \(first.element.1)")
            }
        }

        if result.status == 0 {
            if mustRefuse || propertyCase.stdinRefusal != nil {
                let what = propertyCase.stdinRefusal.map { "standard input's image \($0.index + 1)" } ?? ""
                return ("exit status 0, but a wrong part should be refused",
                        "  wrong: \([wrongParts, what].filter { !$0.isEmpty }.joined(separator: ", "))")
            }
            if written.count != expected.count {
                return ("exit status 0 with \(written.count < expected.count ? "too few" : "too many") images",
                        "  \(written.count) images written for \(expected.count) read")
            }
            return nil
        }

        // Exit status 1.
        if !mustRefuse, propertyCase.stdinRefusal == nil, !mayRefuse {
            return ("a good run refused: \(numbersHidden(message))", stderrText)
        }
        let mentions = verdicts.flatMap(\.mentions) + (propertyCase.stdinUncertain.isEmpty ? [] : ["standard input"])
        if !mentions.contains(where: { message.contains($0) }) {
            return ("the message names none of the wrong parts: \(numbersHidden(message))",
                    "  wrong: \(wrongParts); any of \(mentions.map(\.debugDescription).joined(separator: ", ")) "
                        + "should be in the message\n\(stderrText)")
        }
        let allowed = mustRefuse ? 0 : expected.count
        if mayRefuse ? written.count > allowed : written.count != allowed {
            return ("exit status 1 with \(written.count) image\(written.count == 1 ? "" : "s") written",
                    "  expected \(mayRefuse ? "at most " : "")\(allowed), the images before the one that failed")
        }
        return nil
    }

    /// The message with its numbers and file names made alike, so that one kind of failure is one group.
    static func numbersHidden(_ message: String) -> String {
        message.replacingOccurrences(of: "[0-9]+(\\.[0-9]+)?", with: "#", options: .regularExpression)
    }

    /// An image of pamstyle's output.
    struct OutputImage {
        var width: Int
        var height: Int
        var alpha: [UInt8]?
    }

    /// Reads standard output as a stream of pamstyle's images: P6 with maxval 255, or P7 with depth 4,
    /// maxval 255 and tuple type RGB_ALPHA, each with exactly its raster's bytes.
    static func parseOutput(_ bytes: [UInt8]) -> (images: [OutputImage], problem: String?) {
        var images: [OutputImage] = []
        var position = 0
        func isSpace(_ byte: UInt8) -> Bool { [9, 10, 13, 32].contains(byte) }
        /// The next whitespace-delimited word, skipping whitespace before it.
        func word() -> String? {
            while position < bytes.count, isSpace(bytes[position]) { position += 1 }
            let start = position
            while position < bytes.count, !isSpace(bytes[position]) { position += 1 }
            return start < position ? String(decoding: bytes[start ..< position], as: UTF8.self) : nil
        }
        while position < bytes.count {
            let number = images.count + 1
            let magic = word()
            var width = 0, height = 0, depth = 3
            if magic == "P6" {
                guard let w = word().flatMap({ Int($0) }), let h = word().flatMap({ Int($0) }), word() == "255",
                      position < bytes.count, isSpace(bytes[position]) else {
                    return (images, "image \(number): a P6 header that is not \"P6 width height 255\"")
                }
                (width, height) = (w, h)
                position += 1
            } else if magic == "P7" {
                var fields: [String: String] = [:]
                while let key = word(), key != "ENDHDR" {
                    guard let value = word() else { break }
                    fields[key] = value
                }
                guard position < bytes.count, bytes[position] == 10, let w = fields["WIDTH"].flatMap({ Int($0) }),
                      let h = fields["HEIGHT"].flatMap({ Int($0) }), fields["DEPTH"] == "4", fields["MAXVAL"] == "255",
                      fields["TUPLTYPE"] == "RGB_ALPHA" else {
                    return (images, "image \(number): a P7 header that is not RGB_ALPHA of depth 4 and maxval 255: \(fields)")
                }
                (width, height, depth) = (w, h, 4)
                position += 1
            } else {
                return (images, "image \(number): starts with \(magic.map { $0.prefix(20).debugDescription } ?? "nothing"), not P6 or P7")
            }
            guard width > 0, height > 0 else {
                return (images, "image \(number): \(width)x\(height)")
            }
            let count = width * height * depth
            guard bytes.count - position >= count else {
                return (images, "image \(number), \(width)x\(height): \(bytes.count - position) bytes of raster, expected \(count)")
            }
            let raster = bytes[position ..< position + count]
            position += count
            images.append(OutputImage(width: width, height: height,
                                      alpha: depth == 4 ? stride(from: raster.startIndex + 3, to: raster.endIndex, by: 4).map { raster[$0] } : nil))
        }
        return (images, nil)
    }

    // MARK: Settings

    /// The binary to run: the release build when it is newer than every source file (as `make test` leaves
    /// it), otherwise the debug one built beside the test bundle.
    static func binaryUnderTest() -> (URL, release: Bool) {
        let release = packageRoot.appendingPathComponent(".build/release/pamstyle")
        guard let built = modificationDate(release) else { return (pamstyleBinary, false) }
        var sources = [packageRoot.appendingPathComponent("Package.swift")]
        let enumerator = FileManager.default.enumerator(at: packageRoot.appendingPathComponent("Sources"),
                                                        includingPropertiesForKeys: [.contentModificationDateKey])
        while let url = enumerator?.nextObject() as? URL {
            sources.append(url)
        }
        let stale = sources.contains { (modificationDate($0) ?? .distantPast) > built }
        if stale {
            print("CommandLinePropertyTests: \(release.path) is older than the sources; running the debug binary")
        }
        return stale ? (pamstyleBinary, false) : (release, true)
    }

    static func modificationDate(_ url: URL) -> Date? {
        (try? url.resourceValues(forKeys: [.contentModificationDateKey]))?.contentModificationDate
    }

    static func parseSeed(_ text: String) throws -> UInt64 {
        let value = text.hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text)
        return try XCTUnwrap(value, "PAMSTYLE_PROPERTY_SEED must be a number, decimal or 0x…; it is '\(text)'")
    }
}

/// `word` as a shell reads it back: as it is when it holds nothing special, in single quotes otherwise.
func shellQuoted(_ word: String) -> String {
    let plain = !word.isEmpty && word.unicodeScalars.allSatisfy {
        CharacterSet.alphanumerics.contains($0) && $0.isASCII || "-_./:,=+@%".unicodeScalars.contains($0)
    }
    return plain ? word : "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

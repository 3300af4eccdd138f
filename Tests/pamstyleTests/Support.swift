import Foundation
import Netpbm
import XCTest

/// The package's root folder (this file is Tests/pamstyleTests/Support.swift).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// The pamstyle executable built beside the test bundle.
let pamstyleBinary: URL = {
    let products = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
    return products.appendingPathComponent("pamstyle")
}()

/// What a run of a program gave.
struct RunResult {
    var status: Int32
    var stdout: [UInt8]
    var stderr: String
    /// Whether a signal ended the process (then `status` is the signal's number).
    var killedBySignal = false
    /// Whether it was still running at the timeout and was terminated (then `status` is 124).
    var timedOut = false
    /// The error lines, for messages that must be exactly one line.
    var stderrLines: [Substring] { stderr.split(separator: "\n") }
}

/// Makes writing a run's input fail with EPIPE, instead of killing the test process with SIGPIPE, when the run
/// ends before reading it all (after a usage error or a bad header). The programs the tests run inherit
/// it; pamstyle ignores SIGPIPE itself anyway.
private let brokenPipeIgnored: Void = {
    signal(SIGPIPE, SIG_IGN)
}()

/// Runs `executable` with `arguments` in `directory` (or the current one), feeding `input` on standard input;
/// kills it after `timeout` seconds (a hang is a failure, reported through the status 124).
func run(_ executable: URL, _ arguments: [String], input: [UInt8] = [], environment: [String: String]? = nil,
         directory: URL? = nil, timeout: TimeInterval = 300) throws -> RunResult {
    _ = brokenPipeIgnored
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    if let directory {
        process.currentDirectoryURL = directory
    }
    if let environment {
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
    process.standardInput = stdin
    process.standardOutput = stdout
    process.standardError = stderr
    try process.run()

    // Read both outputs while writing the input, so that no pipe fills up and blocks the child.
    let group = DispatchGroup()
    nonisolated(unsafe) var out = Data(), err = Data()
    DispatchQueue.global().async(group: group) { out = stdout.fileHandleForReading.readDataToEndOfFile() }
    DispatchQueue.global().async(group: group) { err = stderr.fileHandleForReading.readDataToEndOfFile() }
    DispatchQueue.global().async {
        try? stdin.fileHandleForWriting.write(contentsOf: Data(input))
        try? stdin.fileHandleForWriting.close()
    }
    var timedOut = false
    if group.wait(timeout: .now() + timeout) == .timedOut {
        timedOut = true
        process.terminate()
        group.wait()
    }
    process.waitUntilExit()
    return RunResult(status: timedOut ? 124 : process.terminationStatus, stdout: Array(out),
                     stderr: String(decoding: err, as: UTF8.self),
                     killedBySignal: !timedOut && process.terminationReason == .uncaughtSignal, timedOut: timedOut)
}

/// Runs pamstyle.
func pamstyle(_ arguments: [String], input: [UInt8] = [], environment: [String: String]? = nil,
              timeout: TimeInterval = 300) throws -> RunResult {
    try run(pamstyleBinary, arguments, input: input, environment: environment, timeout: timeout)
}

/// Runs a shell command line.
func shell(_ command: String, environment: [String: String]? = nil, timeout: TimeInterval = 300) throws -> RunResult {
    try run(URL(fileURLWithPath: "/bin/bash"), ["-c", command], environment: environment, timeout: timeout)
}

/// A raw PPM of a smooth color pattern with a few edges, so that the network sees structure.
func patternPPM(width: Int, height: Int, phase: Double = 0) -> [UInt8] {
    var bytes = Array("P6\n\(width) \(height)\n255\n".utf8)
    for y in 0 ..< height {
        for x in 0 ..< width {
            let u = Double(x) / Double(width), v = Double(y) / Double(height)
            let r = 0.5 + 0.5 * sin(6 * u + phase)
            let g = (x / 8 + y / 8) % 2 == 0 ? 0.8 : 0.2
            let b = 0.5 + 0.5 * cos(5 * v - 3 * u + phase)
            bytes += [r, g, b].map { UInt8(($0 * 255).rounded()) }
        }
    }
    return bytes
}

/// The same pattern as a PAM with tuple type RGB_ALPHA and a ramp of alpha values.
func patternPAM(width: Int, height: Int) -> [UInt8] {
    let rgb = patternPPM(width: width, height: height).suffix(width * height * 3)
    var bytes = Array("P7\nWIDTH \(width)\nHEIGHT \(height)\nDEPTH 4\nMAXVAL 255\nTUPLTYPE RGB_ALPHA\nENDHDR\n".utf8)
    for (index, start) in stride(from: rgb.startIndex, to: rgb.endIndex, by: 3).enumerated() {
        bytes += rgb[start ..< start + 3]
        bytes.append(UInt8((index * 7) % 256))
    }
    return bytes
}

/// Every image of a stream held in memory.
func images(_ bytes: [UInt8]) throws -> [Image] {
    let reader = try ImageReader(bytes: bytes, name: "output", maxPixels: 1 << 24)
    var images: [Image] = []
    while let image = try reader.next() {
        images.append(image)
    }
    return images
}

/// A scratch directory, removed when the test ends.
func scratchDirectory(_ test: XCTestCase) throws -> URL {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("pamstyleTests-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
}

/// Writes `bytes` to `name` in `directory` and returns its path.
func file(_ name: String, in directory: URL, _ bytes: [UInt8]) throws -> String {
    let url = directory.appendingPathComponent(name)
    try Data(bytes).write(to: url)
    return url.path
}

import Foundation
import Netpbm
import XCTest

/// The bytes of a Netpbm file: an ASCII header (and, for plain formats, raster) followed by raw bytes.
func netpbm(_ text: String, _ raw: [UInt8] = []) -> [UInt8] {
    Array(text.utf8) + raw
}

/// Every image of a stream held in memory (reading stops at the first error, which is thrown).
func readAll(_ bytes: [UInt8], name: String = "test", maxPixels: Int = 1 << 24) throws -> [Image] {
    let reader = try ImageReader(bytes: bytes, name: name, maxPixels: maxPixels)
    var images: [Image] = []
    while let image = try reader.next() {
        images.append(image)
    }
    return images
}

/// The one image of a stream held in memory.
func readOne(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) throws -> Image {
    let images = try readAll(bytes)
    XCTAssertEqual(images.count, 1, "images in the stream", file: file, line: line)
    return try XCTUnwrap(images.first, file: file, line: line)
}

/// The error that reading a whole stream throws (nil, with a test failure, if it throws none), and the
/// images read before it.
func readError(_ bytes: [UInt8], name: String = "test", maxPixels: Int = 1 << 24,
               file: StaticString = #filePath, line: UInt = #line) -> (error: NetpbmError?, images: [Image]) {
    var images: [Image] = []
    do {
        let reader = try ImageReader(bytes: bytes, name: name, maxPixels: maxPixels)
        while let image = try reader.next() {
            images.append(image)
        }
        XCTFail("no error; read \(images.count) images", file: file, line: line)
        return (nil, images)
    } catch let error as NetpbmError {
        return (error, images)
    } catch {
        XCTFail("not a NetpbmError: \(error)", file: file, line: line)
        return (nil, images)
    }
}

/// One plane (0 red, 1 green, 2 blue) of an image, row by row.
func plane(_ image: Image, _ index: Int) -> [Float] {
    let size = image.width * image.height
    return Array(image.pixels[index * size ..< (index + 1) * size])
}

/// sample / maxval as the reader computes it (both exact in Float, the quotient correctly rounded).
func scaled(_ sample: Int, _ maxval: Int) -> Float {
    Float(sample) / Float(maxval)
}

/// A scratch directory, removed when the test ends.
func scratchDirectory(_ test: XCTestCase) throws -> URL {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("NetpbmTests-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
}

/// The bytes ImageWriter writes for these images, through a file.
func written(_ images: [Image], in test: XCTestCase) throws -> [UInt8] {
    let url = try scratchDirectory(test).appendingPathComponent("out.pnm")
    do {
        let writer = try ImageWriter(path: url.path)
        for image in images {
            try writer.write(image)
        }
    }
    return Array(try Data(contentsOf: url))
}

/// Runs a netpbm program (installed by `make setup`, Debian package netpbm) with `input` on its standard
/// input and returns its standard output; a missing program or a failure fails the test.
func runTool(_ name: String, _ arguments: [String] = [], input: [UInt8], in test: XCTestCase,
             file: StaticString = #filePath, line: UInt = #line) throws -> [UInt8] {
    let path = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        .split(separator: ":").map { "\($0)/\(name)" }
        .first { FileManager.default.isExecutableFile(atPath: $0) }
    let tool = try XCTUnwrap(path, "\(name) is not installed (run `make setup`: Debian package netpbm)",
                             file: file, line: line)
    let directory = try scratchDirectory(test)
    let inURL = directory.appendingPathComponent("in")
    let outURL = directory.appendingPathComponent("out")
    let errURL = directory.appendingPathComponent("err")
    try Data(input).write(to: inURL)
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)

    let process = Process()
    process.executableURL = URL(fileURLWithPath: tool)
    process.arguments = arguments
    process.standardInput = try FileHandle(forReadingFrom: inURL)
    process.standardOutput = try FileHandle(forWritingTo: outURL)
    process.standardError = try FileHandle(forWritingTo: errURL)
    try process.run()
    process.waitUntilExit()
    let stderr = String(decoding: try Data(contentsOf: errURL), as: UTF8.self)
    XCTAssertEqual(process.terminationStatus, 0, "\(name) \(arguments): \(stderr)", file: file, line: line)
    return Array(try Data(contentsOf: outURL))
}

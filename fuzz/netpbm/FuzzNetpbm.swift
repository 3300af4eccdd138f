// libFuzzer target "netpbm": the fuzz input is a whole Netpbm stream, read the way pamstyle reads
// standard input. fuzz/build.sh compiles this file together with Sources/Netpbm/*.swift (one module)
// and links the CNetpbm shim (instrumented C) and libnetpbm.
//
// Per input: ImageReader(bytes:name:maxPixels:) over an fmemopen stream, then next() until the end of
// the stream or the first error: header (libnetpbm), pixel limit, raster (libnetpbm, row by row),
// conversion to planar float, next-image detection (pm_nextimage). Besides the sanitizers, the harness
// traps when a documented property of the reader does not hold:
//   - every image has width, height ≥ 1, width × height ≤ maxPixels, 3 planes of width × height
//     samples in 0…1 and, if any, an alpha plane of width × height samples in 0…1;
//   - an error is a NetpbmError whose description is one non-empty line, and every later next()
//     throws the same error;
//   - after the clean end, next() keeps returning nil, and an empty stream is NetpbmError.noImage.
import Foundation

/// The pixel limit (pamstyle's -max-pixels) for the fuzzed reader: 65536 pixels allow every raster path
/// (rows of up to 65536 samples, 16-bit samples, alpha) while the buffers of one image stay under 1 MiB,
/// so that headers with large sizes, which the fuzzer makes often, do not slow it down.
let fuzzMaxPixels = 1 << 16

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNetpbm(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    let reader: ImageReader
    do {
        reader = try ImageReader(bytes: bytes, name: "fuzz input", maxPixels: fuzzMaxPixels)
    } catch {
        fatalError("ImageReader(bytes:) failed on \(size) bytes: \(error)")
    }
    var images = 0
    while true {
        let image: Image?
        do {
            image = try reader.next()
        } catch let error as NetpbmError {
            checkFailure(error, reader: reader, imagesBefore: images, inputSize: size)
            return 0
        } catch {
            fatalError("next() threw something that is not a NetpbmError: \(error)")
        }
        guard let image else {
            require(images > 0, "next() returned nil for a stream without images")
            require(reader.imagesRead == images, "imagesRead \(reader.imagesRead), images \(images)")
            for _ in 0..<2 {
                guard (try? reader.next()) == .some(nil) else { fatalError("next() after the end did not return nil") }
            }
            return 0
        }
        images += 1
        checkImage(image)
    }
}

private func checkImage(_ image: Image) {
    let size = image.width * image.height
    require(image.width >= 1 && image.height >= 1, "image of \(image.width)x\(image.height)")
    require(size <= fuzzMaxPixels, "image of \(image.width)x\(image.height) is above the pixel limit")
    require(image.pixels.count == 3 * size, "\(image.pixels.count) samples for \(image.width)x\(image.height)")
    require(image.pixels.allSatisfy { $0 >= 0 && $0 <= 1 }, "a sample outside 0…1")
    if let alpha = image.alpha {
        require(alpha.count == size, "\(alpha.count) alpha samples for \(image.width)x\(image.height)")
        require(alpha.allSatisfy { $0 >= 0 && $0 <= 1 }, "an alpha sample outside 0…1")
    }
    let source = image.source
    require((1...65535).contains(source.maxval), "maxval \(source.maxval)")
    require(source.depth >= 1, "depth \(source.depth)")
    require(!source.description.isEmpty, "an empty format description")
}

private func checkFailure(_ error: NetpbmError, reader: ImageReader, imagesBefore: Int, inputSize: Int) {
    let message = error.errorDescription ?? ""
    require(!message.isEmpty, "an error without a description: \(error)")
    require(!message.contains(where: \.isNewline), "an error description of more than one line: \(message)")
    if case .noImage = error {
        require(imagesBefore == 0, "noImage after \(imagesBefore) images")
    }
    if case .cannotOpen = error {
        fatalError("cannotOpen while reading \(inputSize) bytes from memory: \(message)")
    }
    require(reader.imagesRead == imagesBefore, "imagesRead \(reader.imagesRead) after \(imagesBefore) images")
    for _ in 0..<2 {
        do {
            _ = try reader.next()
            fatalError("next() after the error \(message) did not throw")
        } catch let again as NetpbmError {
            require(again == error, "next() after the error \(message) threw \(again)")
        } catch {
            fatalError("next() threw something that is not a NetpbmError: \(error)")
        }
    }
}

/// precondition that keeps its message in an -O build (the harness reports why it stopped).
func require(_ condition: Bool, _ message: @autoclosure () -> String = "") {
    if !condition {
        fatalError("fuzz-netpbm: property violated: \(message())")
    }
}

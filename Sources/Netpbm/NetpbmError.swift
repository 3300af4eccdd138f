import Foundation

/// Why a Netpbm stream could not be read or written. `errorDescription` is the one line the user reads
/// (the program adds its name in front); `source` and `destination` are a path, "standard input" or
/// "standard output"; `image` counts the images of a stream from 1.
public enum NetpbmError: Error, LocalizedError, Equatable {
    /// The file could not be opened; `reason` is the C library's (e.g. "No such file or directory").
    case cannotOpen(path: String, reason: String)
    /// The stream holds no image at all (it is empty).
    case noImage(source: String)
    /// Where an image should start there is something else; `firstBytes` are its first bytes.
    case notNetpbm(source: String, image: Int, firstBytes: [UInt8])
    /// libnetpbm refused the header; `message` is libnetpbm's own.
    case badHeader(source: String, image: Int, message: String)
    /// Reading the raster failed at row `row` (0-based) of `height`; `message` is libnetpbm's own.
    case badRaster(source: String, image: Int, row: Int, height: Int, message: String)
    /// width × height exceeds the pixel limit; refused before anything was allocated for the raster.
    case tooLarge(source: String, image: Int, width: Int, height: Int, limit: Int)
    /// A PAM whose tuples are not (gray or RGB) with optional alpha, e.g. CMYK.
    case unsupportedTupleType(source: String, image: Int, tupleType: String, depth: Int)
    /// The reader of the output went away (EPIPE).
    case brokenPipe(destination: String)
    /// Any other write failure; `message` is libnetpbm's or the C library's.
    case writeFailed(destination: String, message: String)

    public var errorDescription: String? {
        switch self {
        case let .cannotOpen(path, reason):
            "\(path): cannot open: \(reason)"
        case let .noImage(source):
            "\(source): no image (the input is empty)"
        case let .notNetpbm(source, image, firstBytes):
            "\(Self.place(source, image))not a Netpbm image (\(Self.describe(firstBytes)))"
        case let .badHeader(source, image, message):
            "\(Self.place(source, image))bad header: \(message)"
        case let .badRaster(source, image, row, height, message):
            "\(Self.place(source, image))cannot read row \(row + 1) of \(height): \(message)"
        case let .tooLarge(source, image, width, height, limit):
            "\(Self.place(source, image))\(width)x\(height) pixels exceeds the limit of \(limit) (-max-pixels)"
        case let .unsupportedTupleType(source, image, tupleType, depth):
            "\(Self.place(source, image))PAM tuple type \"\(Self.printable(tupleType))\" with depth \(depth) is not an image "
                + "pamstyle can read (it reads BLACKANDWHITE, GRAYSCALE, RGB and their _ALPHA forms)"
        case let .brokenPipe(destination):
            "\(destination): broken pipe (the reading end was closed)"
        case let .writeFailed(destination, message):
            "\(destination): cannot write: \(message)"
        }
    }

    /// "source: " for the first image of a stream, "source: image N: " after it.
    private static func place(_ source: String, _ image: Int) -> String {
        image > 1 ? "\(source): image \(image): " : "\(source): "
    }

    /// `text` on one line of ASCII: an ASCII control character becomes \xNN (as the C shim shows such bytes
    /// in libnetpbm's messages), any other character outside printable ASCII \u{N…} (hexadecimal).
    static func printable(_ text: String) -> String {
        var result = ""
        for scalar in text.unicodeScalars {
            switch scalar.value {
            case 0x20..<0x7F:
                result.unicodeScalars.append(scalar)
            case 0..<0x80:
                result += String(format: "\\x%02x", scalar.value)
            default:
                result += "\\u{\(String(scalar.value, radix: 16))}"
            }
        }
        return result
    }

    /// Names the file format the bytes start like, or shows the bytes.
    static func describe(_ firstBytes: [UInt8]) -> String {
        let signatures: [(name: String, prefix: [UInt8])] = [
            ("JPEG", [0xFF, 0xD8, 0xFF]),
            ("PNG", [0x89, 0x50, 0x4E, 0x47]),
            ("GIF", Array("GIF8".utf8)),
            ("TIFF", [0x49, 0x49, 0x2A, 0x00]),
            ("TIFF", [0x4D, 0x4D, 0x00, 0x2A]),
            ("BMP", Array("BM".utf8)),
            ("gzip", [0x1F, 0x8B]),
        ]
        if let match = signatures.first(where: { firstBytes.starts(with: $0.prefix) }) {
            return "it starts like a \(match.name) file"
        }
        if firstBytes.count >= 12, firstBytes.starts(with: Array("RIFF".utf8)),
           Array(firstBytes[8..<12]) == Array("WEBP".utf8) {
            return "it starts like a WebP file"
        }
        let hex = firstBytes.prefix(8).map { String(format: "%02x", $0) }.joined(separator: " ")
        return "it starts with the bytes \(hex), not with a magic number P1 to P7"
    }
}

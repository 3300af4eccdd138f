import CNetpbm
import Foundation

/// The images of a Netpbm stream (PBM, PGM, PPM, PAM; plain or raw; maxval 1…65535), one at a time,
/// read through libnetpbm.
///
/// Each call to `next()` reads one whole image: its header, a check of its size against `maxPixels`
/// before anything is allocated for the raster, then the raster. Only that image's bytes are
/// consumed, so the stream may be a pipe that delivers the next image later.
///
/// After an error the stream's position is undefined: every later `next()` throws the same error.
public final class ImageReader {
    /// How errors name the stream: a path, "standard input", or the name given.
    public let name: String
    /// The largest width × height accepted.
    public let maxPixels: Int
    /// How many images `next()` has returned so far.
    public private(set) var imagesRead = 0

    private let file: UnsafeMutablePointer<FILE>
    private let ownsFile: Bool
    private let reader: OpaquePointer   // cnp_reader *, owned
    private var failure: NetpbmError?
    private var ended = false

    /// Reads from an open FILE, which stays open and belongs to the caller.
    /// - Precondition: `maxPixels` ≥ 1.
    public convenience init(file: UnsafeMutablePointer<FILE>, name: String, maxPixels: Int) {
        self.init(file: file, owned: false, name: name, maxPixels: maxPixels)
    }

    /// Reads the file at `path`.
    /// - Throws: `NetpbmError.cannotOpen`.
    public convenience init(path: String, maxPixels: Int) throws {
        var reason = [CChar](repeating: 0, count: 256)
        guard let file = cnp_open(path, "rb", &reason, reason.count) else {
            throw NetpbmError.cannotOpen(path: path, reason: string(fromCString: reason))
        }
        self.init(file: file, owned: true, name: path, maxPixels: maxPixels)
    }

    /// Reads a stream held in memory (a copy of `bytes` is taken).
    /// - Throws: `NetpbmError.cannotOpen` when the memory for it cannot be had.
    public convenience init(bytes: [UInt8], name: String, maxPixels: Int) throws {
        guard let file = cnp_open_memory(bytes, bytes.count) else {
            throw NetpbmError.cannotOpen(path: name, reason: "out of memory")
        }
        self.init(file: file, owned: true, name: name, maxPixels: maxPixels)
    }

    /// Reads the process's standard input, named "standard input" in errors.
    public static func standardInput(maxPixels: Int) -> ImageReader {
        ImageReader(file: cnp_stdin(), owned: false, name: "standard input", maxPixels: maxPixels)
    }

    private init(file: UnsafeMutablePointer<FILE>, owned: Bool, name: String, maxPixels: Int) {
        precondition(maxPixels >= 1, "ImageReader: maxPixels must be at least 1, not \(maxPixels)")
        self.file = file
        self.ownsFile = owned
        self.name = name
        self.maxPixels = maxPixels
        // A failed allocation of this small struct traps, as any Swift allocation would.
        self.reader = cnp_reader_new(file)!
    }

    deinit {
        cnp_reader_free(reader)
        if ownsFile {
            _ = cnp_close(file)
        }
    }

    /// The next image of the stream, read completely; nil at the clean end of a stream that held at
    /// least one image.
    /// - Throws: `NetpbmError.noImage` when the stream is empty; any other `NetpbmError` for an image
    ///   that cannot be read (and again on every later call).
    public func next() throws -> Image? {
        if let failure {
            throw failure
        }
        if ended {
            return nil
        }
        do {
            guard let image = try readImage(index: imagesRead + 1) else {
                ended = true
                if imagesRead == 0 {
                    throw NetpbmError.noImage(source: name)
                }
                return nil
            }
            imagesRead += 1
            return image
        } catch let error as NetpbmError {
            failure = error
            throw error
        }
    }

    private func readImage(index: Int) throws(NetpbmError) -> Image? {
        var header = cnp_header()
        switch cnp_read_header(reader, &header) {
        case CNP_OK:
            break
        case CNP_END_OF_STREAM:
            return nil
        case CNP_NOT_NETPBM:
            var lead = [UInt8](repeating: 0, count: 16)
            let count = cnp_reader_lead(reader, &lead, lead.count)
            throw .notNetpbm(source: name, image: index, firstBytes: Array(lead.prefix(count)))
        default:
            throw .badHeader(source: name, image: index, message: String(cString: cnp_reader_message(reader)))
        }

        let width = Int(header.width)
        let height = Int(header.height)
        let format = sourceFormat(header)
        if width * height > maxPixels {
            throw .tooLarge(source: name, image: index, width: width, height: height, limit: maxPixels)
        }
        guard let layout = Layout(header) else {
            throw .unsupportedTupleType(source: name, image: index, tupleType: format.tupleType,
                                        depth: format.depth)
        }

        var pixels = [Float](repeating: 0, count: 3 * width * height)   // (3, height, width)
        var alpha: [Float]? = nil                                         // (height, width)
        var rowsRead: Int32 = 0
        let status: cnp_status
        if let alphaPlane = layout.alphaPlane {
            var plane = [Float](repeating: 0, count: width * height)
            status = cnp_read_raster(reader, Int32(layout.colorDepth), Int32(alphaPlane), &pixels, &plane, &rowsRead)
            alpha = plane
        } else {
            status = cnp_read_raster(reader, Int32(layout.colorDepth), -1, &pixels, nil, &rowsRead)
        }
        guard status == CNP_OK else {
            throw .badRaster(source: name, image: index, row: Int(rowsRead), height: height,
                             message: String(cString: cnp_reader_message(reader)))
        }
        return Image(width: width, height: height, pixels: pixels, alpha: alpha, source: format)
    }

    private func sourceFormat(_ header: cnp_header) -> SourceFormat {
        let magic = UInt8(truncatingIfNeeded: header.format)   // the second byte: '1' … '7'
        let kind: SourceFormat.Kind = switch magic {
        case UInt8(ascii: "1"), UInt8(ascii: "4"): .pbm
        case UInt8(ascii: "2"), UInt8(ascii: "5"): .pgm
        case UInt8(ascii: "3"), UInt8(ascii: "6"): .ppm
        default: .pam
        }
        let plain = magic >= UInt8(ascii: "1") && magic <= UInt8(ascii: "3")
        return SourceFormat(kind: kind, plain: plain, maxval: Int(header.maxval),
                            tupleType: String(cString: cnp_reader_tuple_type(reader)), depth: Int(header.depth))
    }
}

/// Which tuple planes hold the color and the alpha.
private struct Layout {
    let colorDepth: Int    // 1 (gray) or 3 (RGB), the lowest planes
    let alphaPlane: Int?

    /// As libnetpbm interprets the tuple type; a PAM with a tuple type it does not know is taken as
    /// gray at depth 1 and RGB at depth 3, and refused otherwise.
    init?(_ header: cnp_header) {
        let depth = Int(header.depth)
        if header.visual != 0 {
            colorDepth = Int(header.color_depth)
            alphaPlane = header.have_opacity != 0 ? Int(header.opacity_plane) : nil
            guard colorDepth == 1 || colorDepth == 3, colorDepth <= depth, (alphaPlane ?? 0) < depth else {
                return nil
            }
        } else if depth == 1 || depth == 3 {
            colorDepth = depth
            alphaPlane = nil
        } else {
            return nil
        }
    }
}

/// The text of a NUL-terminated C string held in an array.
func string(fromCString characters: [CChar]) -> String {
    String(decoding: characters.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

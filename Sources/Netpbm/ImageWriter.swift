import CNetpbm
import Foundation

/// Writes images as a Netpbm stream through libnetpbm: raw PPM (P6, maxval 255) for an image without
/// alpha, PAM with TUPLTYPE RGB_ALPHA (maxval 255) for one with alpha. Each sample v becomes
/// round(255 v) clamped to 0…255 (NaN becomes 0). The stream is flushed after every image, so a
/// reader downstream gets each image whole as soon as it is written.
public final class ImageWriter {
    /// How errors name the stream: a path, "standard output", or the name given.
    public let name: String

    private let file: UnsafeMutablePointer<FILE>
    private let ownsFile: Bool

    /// Writes to an open FILE, which stays open and belongs to the caller.
    public convenience init(file: UnsafeMutablePointer<FILE>, name: String) {
        self.init(file: file, owned: false, name: name)
    }

    /// Creates (or truncates) the file at `path`; it is closed when the writer goes away.
    /// - Throws: `NetpbmError.cannotOpen`.
    public convenience init(path: String) throws {
        var reason = [CChar](repeating: 0, count: 256)
        guard let file = cnp_open(path, "wb", &reason, reason.count) else {
            throw NetpbmError.cannotOpen(path: path, reason: string(fromCString: reason))
        }
        self.init(file: file, owned: true, name: path)
    }

    /// Writes to the process's standard output, named "standard output" in errors.
    public static func standardOutput() -> ImageWriter {
        ImageWriter(file: cnp_stdout(), owned: false, name: "standard output")
    }

    private init(file: UnsafeMutablePointer<FILE>, owned: Bool, name: String) {
        self.file = file
        self.ownsFile = owned
        self.name = name
    }

    deinit {
        if ownsFile {
            _ = cnp_close(file)
        }
    }

    /// Writes one image and flushes the stream.
    /// - Throws: `NetpbmError.brokenPipe` when the reading end of a pipe is closed (this needs SIGPIPE
    ///   ignored, see `ignoreBrokenPipeSignal()`, or the signal ends the process first);
    ///   `NetpbmError.writeFailed` for any other failure.
    public func write(_ image: Image) throws {
        precondition(image.width <= Int(Int32.max) && image.height <= Int(Int32.max),
                     "ImageWriter: \(image.width)x\(image.height) is too large for libnetpbm")
        var message = [CChar](repeating: 0, count: 512)
        let error: Int32
        if let alpha = image.alpha {
            error = cnp_write_image(file, Int32(image.width), Int32(image.height), image.pixels, alpha,
                                    &message, message.count)
        } else {
            error = cnp_write_image(file, Int32(image.width), Int32(image.height), image.pixels, nil,
                                    &message, message.count)
        }
        if error == EPIPE {
            throw NetpbmError.brokenPipe(destination: name)
        }
        if error != 0 {
            throw NetpbmError.writeFailed(destination: name, message: string(fromCString: message))
        }
    }

    /// Makes writing to a pipe whose reader has gone fail with EPIPE (`NetpbmError.brokenPipe`)
    /// instead of killing the process with SIGPIPE. Affects the whole process; call it once at start.
    public static func ignoreBrokenPipeSignal() {
        _ = cnp_ignore_sigpipe()
    }
}

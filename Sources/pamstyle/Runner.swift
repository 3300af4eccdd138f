import CBLAS
import Foundation
import Netpbm
import Kernels
import StyleTransfer

/// The work of one pamstyle run, after the command line is parsed: load, compute the style targets,
/// then read, stylize and write each image of standard input.
struct Runner {
    let command: Command
    let report: Reporter

    /// Runs and returns the exit status: 0, 1 after an error, 141 when standard output was closed.
    func run() -> Int32 {
        do {
            let options = try command.options()
            if let threads = command.threads {
                openblas_set_num_threads(Int32(threads))
            }
            ImageWriter.ignoreBrokenPipeSignal()
            let stylizer = try makeStylizer(options)
            try stylizeStream(with: stylizer)
            return 0
        } catch NetpbmError.brokenPipe {
            return 141
        } catch {
            report.error(error)
            return 1
        }
    }

    private func makeStylizer(_ commandOptions: Options) throws -> Stylizer {
        var options = commandOptions
        if let file = command.initializationFile {
            options.initialization = .image(try readFirstImage(file).rgb)
        }
        if let files = command.styleMaskFiles {
            options.styleMasks = try files.map { Mask(luminanceOf: try readFirstImage($0).rgb) }
        }
        if let file = command.changeMask {
            options.changeMask = Mask(luminanceOf: try readFirstImage(file).rgb)
        }
        let path = try VGGWeights.locate(explicit: command.weights,
                                         environment: ProcessInfo.processInfo.environment,
                                         executablePath: VGGWeights.runningExecutablePath)
        let weights = try VGGWeights.load(from: path)
        let styles = try command.styleFiles.map { try readFirstImage($0).rgb }
        let stylizer = try Stylizer(weights: weights, options: options, styles: styles)
        report.note("weights \(path); style targets from \(styles.count) image\(styles.count == 1 ? "" : "s"); "
            + stylizer.kernelSummary)
        return stylizer
    }

    private func stylizeStream(with stylizer: Stylizer) throws {
        let reader = ImageReader.standardInput(maxPixels: command.maxPixels)
        let writer = ImageWriter.standardOutput()
        var index = 0
        while let image = try reader.next() {
            index += 1
            report.startImage(index, width: image.width, height: image.height)
            let result = try stylizer.stylize(image.rgb, observeStart: command.verbose) { progress in
                report.progress(progress)
                if let checkpoint = command.checkpoint, progress.isCheckpoint {
                    try writeCheckpoint(progress.snapshot(), alpha: image.alpha, to: checkpoint)
                }
            }
            report.finishImage(index)
            try writer.write(Image(result, alpha: image.alpha))
        }
    }

    private func readFirstImage(_ path: String) throws -> Image {
        let reader = try ImageReader(path: path, maxPixels: command.maxPixels)
        guard let image = try reader.next() else {
            throw NetpbmError.noImage(source: path)
        }
        return image
    }

    /// Writes the image next to `path` and renames it into place, so a reader never sees half of it.
    private func writeCheckpoint(_ snapshot: RGBImage, alpha: [Float]?, to path: String) throws {
        let temporary = path + ".\(getpid()).tmp"
        do {
            do {
                let writer = try ImageWriter(path: temporary)
                try writer.write(Image(snapshot, alpha: alpha))
            }
            guard rename(temporary, path) == 0 else {
                throw NetpbmError.writeFailed(destination: path, message: String(cString: strerror(errno)))
            }
        } catch {
            unlink(temporary)
            throw error
        }
    }
}

extension Image {
    /// The core's view of the image: its RGB planes.
    var rgb: RGBImage { RGBImage(width: width, height: height, pixels: pixels) }

    /// An image to write: the stylized RGB planes with the input's alpha, if it had one.
    init(_ rgb: RGBImage, alpha: [Float]?) {
        self.init(width: rgb.width, height: rgb.height, pixels: rgb.pixels, alpha: alpha)
    }
}

// --job and --peak: pamstyle's own evaluation and L-BFGS step at each size, and the machine's arithmetic peak they are
// measured against.

import CPeak
import Foundation
import Kernels
import Netpbm
import StyleTransfer

// MARK: - Peak

/// The arithmetic peak of the machine, measured: `threads` cores running independent multiply-add chains at once.
struct Peak {
    /// Single-precision fused multiply-adds, on the widest vectors the processor has (GFLOP/s, all threads).
    let fmaGigaflops: Double
    /// The same on one thread.
    let fmaGigaflopsPerCore: Double
    /// The vector width of `fmaGigaflops`: 512 or 256 (0 when the processor has neither AVX-512F nor AVX2 and FMA).
    let fmaBits: Int
    /// BF16 dot products (vdpbf16ps), all threads; nil when the processor lacks AVX512_BF16.
    let bf16Gigaflops: Double?
    /// Half-precision multiply-adds (vfmadd231ph), all threads; nil when the processor lacks AVX512_FP16.
    let fp16Gigaflops: Double?

    /// Each kernel on one thread and then on all, for about `seconds` each; the median of three such timings.
    static func measure(threads: Int, seconds: Double = 0.2) -> Peak {
        func rate(_ kernel: @escaping @Sendable (Int) -> Double, threads: Int) -> Double {
            guard kernel(1) > 0 else { return 0 }
            // Rounds that take about `seconds` on one thread.
            var rounds = 1 << 16
            while true {
                let start = threadSeconds()
                _ = kernel(rounds)
                if threadSeconds() - start > seconds / 4 || rounds >= 1 << 40 { break }
                rounds *= 2
            }
            let timed = rounds * 4
            var rates: [Double] = []
            for _ in 0 ..< 3 {
                let start = now()
                var flops = [Double](repeating: 0, count: threads)
                flops.withUnsafeMutableBufferPointer { flops in
                    let target = UncheckedFlops(pointer: flops.baseAddress!)
                    DispatchQueue.concurrentPerform(iterations: threads) { thread in
                        target.pointer[thread] = kernel(timed)
                    }
                }
                rates.append(flops.reduce(0, +) / (now() - start) / 1e9)
            }
            return median(rates)
        }
        let fma512: @Sendable (Int) -> Double = { cpeak_fma512($0) }
        let fma256: @Sendable (Int) -> Double = { cpeak_fma256($0) }
        let wide = cpeak_fma512(1) > 0
        let kernel = wide ? fma512 : fma256
        let bits = wide ? 512 : cpeak_fma256(1) > 0 ? 256 : 0
        let bf16: @Sendable (Int) -> Double = { cpeak_bf16dot512($0) }
        let fp16: @Sendable (Int) -> Double = { cpeak_fp16fma512($0) }
        return Peak(fmaGigaflops: bits == 0 ? .nan : rate(kernel, threads: threads),
                    fmaGigaflopsPerCore: bits == 0 ? .nan : rate(kernel, threads: 1), fmaBits: bits,
                    bf16Gigaflops: cpeak_bf16dot512(1) > 0 ? rate(bf16, threads: threads) : nil,
                    fp16Gigaflops: cpeak_fp16fma512(1) > 0 ? rate(fp16, threads: threads) : nil)
    }

    var fields: [(String, Any)] {
        var fields: [(String, Any)] = [("fma_peak_gflops", fmaGigaflops), ("fma_peak_gflops_per_core", fmaGigaflopsPerCore),
                                       ("fma_peak_bits", fmaBits)]
        if let bf16Gigaflops { fields.append(("bf16_peak_gflops", bf16Gigaflops)) }
        if let fp16Gigaflops { fields.append(("fp16_peak_gflops", fp16Gigaflops)) }
        // What `-precision auto` weighs (ProductPrecision.fastest), timed anew.
        for precision in [ProductPrecision.bf16, .half] where precision.isSupported {
            fields.append(("\(precision.rawValue)_product_speedup", ProductPrecision.measuredSpeedup(of: precision)))
        }
        return fields
    }
}

/// A pointer the peak's threads write their own slots through.
struct UncheckedFlops: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Double>
}

// MARK: - Products counted

/// The floating-point operations of the products one evaluation of a width × height map (the image and its margin)
/// needs, as the engine computes them (a multiply-add counts as two): the Winograd products of conv1_2 … conv5_1 (α²/m²
/// multiply-adds per pixel and channel pair: 2.25 for F(4×4, 3×3), 1.78 for F(6×6, 3×3); tiles past the map's edge not
/// counted) forward and backward, conv1_1's im2col products forward and backward (27 · 64 per pixel each way), and for
/// each style layer its Gram matrix's upper triangle (C(C+1)/2 per pixel) and the product of its gradient (C² per
/// pixel).
func productFlops(width: Int, height: Int, tile: WinogradTile, styleLayers: [String]) -> Double {
    var multiplyAdds = 0.0
    for convolution in VGG19.convolutionTable {
        let layer = convolution.name.replacingOccurrences(of: "conv", with: "relu")
        guard VGG19.layerNames.firstIndex(of: layer)! <= VGG19.layerNames.firstIndex(of: "relu5_1")! else { continue }
        let shape = VGG19.shape(of: layer, height: height, width: width)
        let pixels = Double(shape.height * shape.width)
        let pairs = Double(convolution.inChannels * convolution.outChannels)
        multiplyAdds += 2 * pixels * pairs * (convolution.inChannels <= 4 ? 9 : tile.multiplyAddsPerPixel)
    }
    for layer in styleLayers {
        let shape = VGG19.shape(of: layer, height: height, width: width)
        let c = Double(shape.channels), pixels = Double(shape.height * shape.width)
        multiplyAdds += pixels * (c * (c + 1) / 2 + c * c)
    }
    return 2 * multiplyAdds
}

// MARK: - The job

/// --job: at each size, pamstyle's own scale set up as `pamstyle` sets it up (default options, the content and style
/// images given), then `warmup` + `repeats` evaluations of its objective (network, Gram and content losses, total
/// variation) and `repeats` steps of its optimizer from there, each step's evaluations timed inside it. One JSON line
/// per size, with the loss where the evaluations start (the content, or the `--start` image: a result to score) and
/// after the steps.
func runJob(_ options: BenchOptions) throws {
    guard options.kernels.count == 1 else { throw BenchError.usage("--job takes one kernel path") }
    try KernelPath.force(options.kernels[0])
    defer { try? KernelPath.force(KernelPath.detected) }
    let weights = try VGGWeights.load(from: VGGWeights.locate(explicit: options.weightsPath,
                                                              environment: ProcessInfo.processInfo.environment,
                                                              executablePath: VGGWeights.runningExecutablePath))
    let content = try readImage(located(options.contentPath)), style = try readImage(located(options.stylePath))
    var pamstyleOptions = Options()
    if let threads = options.threads { pamstyleOptions.threads = threads }
    pamstyleOptions.precision = options.precision
    let stylizer = try Stylizer(weights: weights, options: pamstyleOptions, styles: [style], tile: options.tile)
    let threads = options.threads ?? coreCount
    let peak = Peak.measure(threads: threads)
    let start = try options.startPath.map(readImage)
    for (width, height) in options.sizes {
        var scale = try stylizer.scale(of: content, at: Size(width: width, height: height))
        if let start {
            guard start.width == width && start.height == height else {
                throw BenchError.usage("--start is \(start.width)x\(start.height), not the size \(width)x\(height)")
            }
            scale.image = start.pixels
        }
        var gradient = [Float](repeating: 0, count: scale.image.count)
        var evaluationTimes: [Double] = [], processorTimes: [Double] = []
        var value = 0.0, startValue = Double.nan
        for iteration in 0 ..< options.warmup + options.repeats {
            let processorStart = processSeconds(), start = now()
            value = try scale.image.withUnsafeBufferPointer { image in
                try gradient.withUnsafeMutableBufferPointer { try scale.objective(image, $0) }
            }
            let end = now(), processorEnd = processSeconds()
            if iteration == 0 { startValue = value }
            guard iteration >= options.warmup else { continue }
            evaluationTimes.append(end - start)
            processorTimes.append(processorEnd - processorStart)
        }
        // The optimizer's steps, each step's evaluations timed inside it: what is left is the optimizer's own work.
        var stepTimes: [Double] = [], optimizerTimes: [Double] = [], evaluationsPerStep: [Double] = []
        let objective = scale.objective
        for _ in 0 ..< options.repeats {
            var inside = 0.0, evaluations = 0
            let start = now()
            let info = try scale.image.withUnsafeMutableBufferPointer { pixels in
                try scale.optimizer.step(pixels) { point, gradient in
                    let start = now()
                    defer { inside += now() - start; evaluations += 1 }
                    return try objective(point, gradient)
                }
            }
            let seconds = now() - start
            stepTimes.append(seconds)
            optimizerTimes.append(seconds - inside)
            evaluationsPerStep.append(Double(evaluations))
            value = info.value
        }
        let seconds = median(evaluationTimes)
        // The network sees the image with its mirrored margin (`Stylizer.networkSize`).
        let margin = min(Options().margin, min(width, height) - 1)
        let flops = productFlops(width: width + 2 * margin, height: height + 2 * margin, tile: stylizer.tile,
                                 styleLayers: Options().styleLayers.map(\.layer.name))
        let size = width == height ? "\(width)" : "\"\(width)x\(height)\""
        var fields: [(String, Any)] = [("size", size), ("job", true), ("kernels", "\"\(KernelPath.current.rawValue)\""),
                                       ("precision", "\"\(stylizer.precision.rawValue)\""),
                                       ("tile", stylizer.tile.output),
                                       ("loss_at_start", startValue),
                                       ("seconds_per_eval", seconds),
                                       ("processor_seconds_per_eval", median(processorTimes)),
                                       ("us_per_pixel", seconds / Double(width * height) * 1e6),
                                       ("seconds_per_step", median(stepTimes)),
                                       ("evaluations_per_step", median(evaluationsPerStep)),
                                       ("optimizer_seconds_per_step", median(optimizerTimes)),
                                       ("product_gflop", flops / 1e9), ("product_gflops", flops / seconds / 1e9)]
        fields += peak.fields
        fields += [("fraction_of_fma_peak", flops / seconds / 1e9 / peak.fmaGigaflops),
                   ("loss", value), ("peak_rss_mb", peakRSSMegabytes()), ("repeats", options.repeats),
                   ("threads", threads), ("layout", "\"\(scale.layout)\"")]
        FileHandle.standardOutput.write((json(fields) + "\n").data(using: .utf8)!)
    }
}

/// --peak: the machine's arithmetic peak alone, one JSON line.
func runPeak(_ options: BenchOptions) {
    let peak = Peak.measure(threads: options.threads ?? coreCount)
    FileHandle.standardOutput.write((json(peak.fields + [("threads", options.threads ?? coreCount)]) + "\n")
        .data(using: .utf8)!)
}

// MARK: - Images

/// The first image of a Netpbm file.
func readImage(_ path: String) throws -> RGBImage {
    guard let image = try ImageReader(path: path, maxPixels: Options().maxPixels).next() else {
        throw BenchError.usage("\(path) holds no image")
    }
    return RGBImage(width: image.width, height: image.height, pixels: image.pixels)
}

/// A path as given, or, when it is relative and names no file from here, relative to the source tree the bench was
/// built in (the nearest folder above its executable that holds Package.swift): the default images are found from
/// any directory.
func located(_ path: String) -> String {
    guard !path.hasPrefix("/") && !FileManager.default.fileExists(atPath: path) else { return path }
    var folder = URL(fileURLWithPath: VGGWeights.runningExecutablePath).deletingLastPathComponent()
    while folder.path != "/" {
        if FileManager.default.fileExists(atPath: folder.appendingPathComponent("Package.swift").path) {
            return folder.appendingPathComponent(path).path
        }
        folder = folder.deletingLastPathComponent()
    }
    return path
}

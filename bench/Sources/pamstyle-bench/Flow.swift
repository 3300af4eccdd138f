// --flow: seconds per OpticalFlow.estimate and its endpoint errors on known motions of the content image.

import Foundation
import Kernels
import StyleTransfer

func runFlow(_ options: BenchOptions) throws {
    if let pair = options.pair { return try runFlowPair(pair, options) }
    let photo = try readImage(located(options.contentPath))
    let luminance = YIQ.luminance(ofRGB: photo.pixels)  // (photo.height, photo.width)
    for (width, height) in options.sizesGiven ? options.sizes : [(512, 288)] {
        for motion in SyntheticMotion.standard {
            let (first, second) = motion.frames(of: luminance, sourceWidth: photo.width, sourceHeight: photo.height,
                                                width: width, height: height)
            var flow = FlowField.zero(width: width, height: height)
            var times: [Double] = [], processorTimes: [Double] = []
            for iteration in 0 ..< options.warmup + options.repeats {
                let processorStart = processSeconds()
                let start = now()
                flow = OpticalFlow.estimate(from: first, to: second, width: width, height: height,
                                            threads: options.threads)
                let end = now()
                guard iteration >= options.warmup else { continue }
                times.append(end - start)
                processorTimes.append(processSeconds() - processorStart)
            }
            let fields: [(String, Any)] = [("size", "\"\(width)x\(height)\""), ("motion", "\"\(motion.name)\""),
                                           ("seconds_per_call", median(times)),
                                           ("processor_seconds_per_call", median(processorTimes)),
                                           ("epe", motion.endpointError(of: flow)),
                                           ("repeats", options.repeats), ("threads", options.threads ?? coreCount)]
            FileHandle.standardOutput.write((json(fields) + "\n").data(using: .utf8)!)
        }
    }
}

/// --flow --pair: the flow from one image to another, timed, and written as a Middlebury .flo file.
func runFlowPair(_ pair: (first: String, second: String), _ options: BenchOptions) throws {
    guard let floPath = options.floPath else { throw BenchError.usage("--pair needs --flo OUT.flo") }
    let first = try readImage(pair.first), second = try readImage(pair.second)
    guard first.width == second.width && first.height == second.height else {
        throw BenchError.usage("\(pair.first) is \(first.width)x\(first.height), \(pair.second) is "
                               + "\(second.width)x\(second.height): the two frames must be of one size")
    }
    let (width, height) = (first.width, first.height)
    let from = YIQ.luminance(ofRGB: first.pixels), to = YIQ.luminance(ofRGB: second.pixels)  // (height, width)
    var flow = FlowField.zero(width: width, height: height)
    var times: [Double] = []
    for iteration in 0 ..< options.warmup + options.repeats {
        let start = now()
        flow = OpticalFlow.estimate(from: from, to: to, width: width, height: height, threads: options.threads)
        if iteration >= options.warmup { times.append(now() - start) }
    }
    var data = Data()
    func append<T>(_ value: T) { withUnsafeBytes(of: value) { data.append(contentsOf: $0) } }
    append(Float(202021.25).bitPattern.littleEndian)
    append(Int32(width).littleEndian)
    append(Int32(height).littleEndian)
    for p in 0 ..< width * height {
        append(flow.dx[p].bitPattern.littleEndian)
        append(flow.dy[p].bitPattern.littleEndian)
    }
    try data.write(to: URL(fileURLWithPath: floPath))
    let fields: [(String, Any)] = [("size", "\"\(width)x\(height)\""), ("pair", "\"\(pair.first) \(pair.second)\""),
                                   ("seconds_per_call", median(times)), ("repeats", options.repeats),
                                   ("threads", options.threads ?? coreCount)]
    FileHandle.standardOutput.write((json(fields) + "\n").data(using: .utf8)!)
}

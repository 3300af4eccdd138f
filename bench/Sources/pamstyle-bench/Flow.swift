// --flow: seconds per OpticalFlow.estimate and its endpoint errors on known motions of the content image.

import Foundation
import Kernels
import StyleTransfer

func runFlow(_ options: BenchOptions) throws {
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

import Foundation

// The model behind CommandLinePropertyTests: random pamstyle runs (options, style files, standard input),
// each with what pamstyle must do with it. The options are a table, `CaseBuilder.options`: a new option
// is one row there, with one of the value makers below or a new one.

// MARK: - Random numbers

/// SplitMix64 (Steele, Lea and Flood): the property test's seedable generator, whose stream is fixed by the
/// seed, so a failing case can be made again from its seed and index.
struct PropertyRandom {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    /// The generator of case `index` of a run seeded with `seed`: cases do not depend on one another, so
    /// one can be replayed alone.
    init(seed: UInt64, index: Int) {
        var mixer = PropertyRandom(seed: seed ^ (UInt64(index) &* 0xD1B5_4A32_D192_ED03))
        state = mixer.next()
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1), 53 bits.
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }

    mutating func chance(_ probability: Double) -> Bool { unit() < probability }

    /// Uniform in `range`, which holds fewer than 2⁶³ values.
    mutating func int(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.upperBound - range.lowerBound + 1))
    }

    mutating func pick<T>(_ items: [T]) -> T { items[int(0 ... items.count - 1)] }

    /// Uniform in `range`, or log-uniform when `range` spans more than a factor of 100 above 0.
    mutating func real(_ range: ClosedRange<Double>) -> Double {
        if range.lowerBound > 0, range.upperBound / range.lowerBound > 100 {
            return exp(log(range.lowerBound) + unit() * (log(range.upperBound) - log(range.lowerBound)))
        }
        return range.lowerBound + unit() * (range.upperBound - range.lowerBound)
    }
}

// MARK: - Verdicts

/// What pamstyle must do with one part of a run: an option's value, a file it reads, an image of its input.
enum Verdict {
    case accepted
    /// Refused: exit status 1, one line naming one of `mentions` (the option, its value, the file).
    case refused(mentions: [String])
    /// Either outcome is right, because it depends on something the model leaves out (whether a checkpoint
    /// falls due before the optimization stops, whether the installed libnetpbm knows a tuple type, whether
    /// extreme weights overflow): the run must still end as every run must, and an error must name one of
    /// `mentions`.
    case either(mentions: [String])

    var mentions: [String] {
        switch self {
        case .accepted: []
        case .refused(let mentions), .either(let mentions): mentions
        }
    }
}

// MARK: - Netpbm images

/// A Netpbm image made for a case: its bytes, a description for replaying by hand, and what pamstyle's
/// output for it must hold.
struct CaseImage {
    var bytes: [UInt8]
    var description: String
    var width: Int
    var height: Int
    /// The name's extension: pbm, pgm, ppm or pam.
    var fileExtension: String
    /// The alpha samples the output must carry, as pamstyle writes them (maxval 255); nil without alpha.
    var outputAlpha: [UInt8]?
    /// Whether the installed libnetpbm may not know the image's tuple type.
    var uncertain: Bool
}

/// The kinds of Netpbm image pamstyle reads.
enum ImageKind: CaseIterable {
    case pbm, pgm, ppm
    case pamBlackAndWhite, pamGray, pamGrayAlpha, pamRGB, pamRGBAlpha, pamBlackAndWhiteAlpha
    /// A PAM of depth 3 without a TUPLTYPE line, which libnetpbm takes as RGB.
    case pamUntyped

    var depth: Int {
        switch self {
        case .pbm, .pgm, .pamBlackAndWhite, .pamGray: 1
        case .pamGrayAlpha, .pamBlackAndWhiteAlpha: 2
        case .ppm, .pamRGB, .pamUntyped: 3
        case .pamRGBAlpha: 4
        }
    }

    var hasAlpha: Bool { [.pamGrayAlpha, .pamRGBAlpha, .pamBlackAndWhiteAlpha].contains(self) }
    var isBlackAndWhite: Bool { [.pbm, .pamBlackAndWhite, .pamBlackAndWhiteAlpha].contains(self) }

    var tupleType: String? {
        switch self {
        case .pamBlackAndWhite: "BLACKANDWHITE"
        case .pamGray: "GRAYSCALE"
        case .pamGrayAlpha: "GRAYSCALE_ALPHA"
        case .pamRGB: "RGB"
        case .pamRGBAlpha: "RGB_ALPHA"
        case .pamBlackAndWhiteAlpha: "BLACKANDWHITE_ALPHA"
        default: nil
        }
    }

    /// The file name extension netpbm uses.
    var fileExtension: String {
        switch self {
        case .pbm: "pbm"
        case .pgm: "pgm"
        case .ppm: "ppm"
        default: "pam"
        }
    }
}

/// The sample pamstyle writes for `sample` of an image with `maxval`: the reader's float division, then the
/// writer's rounding to 0…255.
func writtenSample(_ sample: Int, maxval: Int) -> UInt8 {
    let scaled = Float(sample) / Float(maxval) * 255
    if !(scaled > 0) { return 0 }
    if scaled >= 255 { return 255 }
    return UInt8(scaled + 0.5)
}

/// Makes a well-formed image of `kind`, with random samples. `dropped` samples (bytes for raw formats) are
/// left off the end of the raster, which makes it malformed.
func makeImage(_ kind: ImageKind, plain: Bool, width: Int, height: Int, maxval requested: Int,
               random: inout PropertyRandom, dropped: Int = 0) -> CaseImage {
    let maxval = kind.isBlackAndWhite ? 1 : requested
    let plain = plain && [.pbm, .pgm, .ppm].contains(kind)
    let depth = kind.depth
    var samples = [Int]()   // (height, width, depth)
    samples.reserveCapacity(width * height * depth)
    for _ in 0 ..< width * height * depth {
        // Mostly the extremes and the middle, so that small maxvals and 16-bit samples both show.
        samples.append(random.chance(0.3) ? random.pick([0, maxval, maxval / 2]) : random.int(0 ... maxval))
    }

    var header: String
    let magic: String
    switch kind {
    case .pbm: magic = plain ? "P1" : "P4"
    case .pgm: magic = plain ? "P2" : "P5"
    case .ppm: magic = plain ? "P3" : "P6"
    default: magic = "P7"
    }
    if magic == "P7" {
        header = "P7\nWIDTH \(width)\nHEIGHT \(height)\nDEPTH \(depth)\nMAXVAL \(maxval)\n"
        if let tupleType = kind.tupleType { header += "TUPLTYPE \(tupleType)\n" }
        header += "ENDHDR\n"
    } else if kind == .pbm {
        header = "\(magic)\n\(width) \(height)\n"
    } else {
        header = "\(magic)\n\(width) \(height)\n\(maxval)\n"
    }

    var raster = [UInt8]()
    if plain {
        // PBM: 1 is black. One row a line, samples separated by spaces.
        var tokens = samples.map { kind == .pbm ? String(1 - $0) : String($0) }
        tokens.removeLast(min(dropped, tokens.count))
        for start in stride(from: 0, to: tokens.count, by: max(1, width * depth)) {
            raster += Array(tokens[start ..< min(tokens.count, start + width * depth)].joined(separator: " ").utf8) + [10]
        }
    } else if kind == .pbm {
        for row in 0 ..< height {
            var byte: UInt8 = 0
            for column in 0 ..< width {
                if samples[row * width + column] == 0 { byte |= 0x80 >> UInt8(column % 8) }
                if column % 8 == 7 || column == width - 1 {
                    raster.append(byte)
                    byte = 0
                }
            }
        }
        raster.removeLast(min(dropped, raster.count))
    } else {
        for sample in samples {
            if maxval > 255 { raster.append(UInt8(sample >> 8)) }
            raster.append(UInt8(sample & 0xFF))
        }
        raster.removeLast(min(dropped, raster.count))
    }

    var alpha: [UInt8]?
    if kind.hasAlpha {
        alpha = (0 ..< width * height).map { writtenSample(samples[$0 * depth + depth - 1], maxval: maxval) }
    }
    let name = kind.tupleType.map { "PAM \($0)" } ?? (kind == .pamUntyped ? "PAM without TUPLTYPE" : kind.fileExtension.uppercased())
    var description = "\(magic) \(plain ? "plain" : "raw") \(name) \(width)x\(height) maxval \(maxval)"
    if dropped > 0 { description += ", the last \(dropped) \(plain ? "samples" : "bytes") of the raster left off" }
    return CaseImage(bytes: Array(header.utf8) + raster, description: description, width: width, height: height,
                     fileExtension: kind.fileExtension, outputAlpha: alpha, uncertain: kind == .pamBlackAndWhiteAlpha)
}

/// A random well-formed image of a random kind and size.
func randomImage(_ random: inout PropertyRandom, allowWide: Bool = false) -> CaseImage {
    let (width, height) = randomSize(&random, allowWide: allowWide)
    return randomImage(&random, width: width, height: height)
}

func randomImage(_ random: inout PropertyRandom, width: Int, height: Int) -> CaseImage {
    let kind = random.pick(ImageKind.allCases)
    let maxval = random.chance(0.8) ? random.pick([1, 255, 65535]) : random.int(2 ... 65534)
    return makeImage(kind, plain: random.chance(0.3), width: width, height: height, maxval: maxval, random: &random)
}

/// Tiny and odd sizes, up to 48 pixels a side; with `allowWide`, now and then a strip long enough (128 pixels
/// or more) for a second scale of the coarse-to-fine schedule.
func randomSize(_ random: inout PropertyRandom, allowWide: Bool) -> (Int, Int) {
    let roll = random.unit()
    if roll < 0.1 { return (1, 1) }
    if roll < 0.25 { return random.pick([(3, 17), (17, 3), (33, 5), (5, 33), (1, 48), (48, 1), (48, 48), (2, 2)]) }
    if allowWide, roll < 0.3 {
        let long = random.int(128 ... 160), short = random.int(8 ... 40)
        return random.chance(0.5) ? (long, short) : (short, long)
    }
    return (random.int(1 ... 48), random.int(1 ... 48))
}

/// Bytes that are not a readable Netpbm image, and what is wrong with them.
func malformedImage(_ random: inout PropertyRandom) -> (bytes: [UInt8], description: String) {
    let choice = random.int(0 ... 11)
    switch choice {
    case 0, 1, 2:
        let (width, height) = randomSize(&random, allowWide: false)
        let truncated = makeImage(random.pick(ImageKind.allCases.filter { $0 != .pamBlackAndWhiteAlpha }),
                                  plain: random.chance(0.3), width: width, height: height,
                                  maxval: random.pick([1, 255, 65535]), random: &random, dropped: random.int(1 ... 12))
        return (truncated.bytes, truncated.description)
    case 3: return (Array("P6\nabc def\n255\n".utf8), "P6 with a width and height that are not numbers")
    case 4: return (Array("P6\n0 5\n255\n".utf8), "P6 of width 0")
    case 5: return (Array("P5\n2 2\n0\n".utf8) + [0, 0, 0, 0], "P5 with maxval 0")
    case 6: return (Array("P5\n2 2\n65536\n".utf8) + [UInt8](repeating: 0, count: 8), "P5 with maxval 65536")
    case 7: return (Array("P7\nWIDTH 2\nHEIGHT 2\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\n".utf8) + [1, 2, 3],
                    "P7 without ENDHDR")
    case 8: return (Array("P2\n2 1\n3\n1 9\n".utf8), "P2 with a sample above its maxval")
    case 9: return (Array("P7\nWIDTH 2\nHEIGHT 1\nDEPTH 4\nMAXVAL 255\nTUPLTYPE CMYK\nENDHDR\n".utf8) + [UInt8](repeating: 9, count: 8),
                    "P7 CMYK")
    case 10: return ([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + [UInt8](repeating: 0, count: 24), "a PNG signature")
    default: return (Array("P6\n4 4".utf8), "a P6 header cut short")
    }
}

// MARK: - Options

/// A value for an option, as the command line spells it, and what pamstyle must do with it.
struct OptionValue {
    var text: String
    var verdict: Verdict
}

/// Makes a value for an option within a case (the case's files and other choices at hand).
typealias ValueMaker = @Sendable (inout CaseBuilder, _ option: String) -> OptionValue

/// One option of the command line: its name without the dash, how often a case gives it, and its values
/// (nil for a flag).
struct OptionRow {
    let name: String
    let frequency: Double
    let value: ValueMaker?

    init(_ name: String, _ frequency: Double, _ value: ValueMaker?) {
        self.name = name
        self.frequency = frequency
        self.value = value
    }
}

/// Whole numbers: mostly from `typical`, its smaller values more often (they make the cheaper runs),
/// sometimes from `sometimes`, the ends of `valid` when `ends` (an option whose largest value would take
/// long has `ends: false`), or, when the case asks for a fault, something else.
func integer(_ valid: ClosedRange<Int>, typical: ClosedRange<Int>, sometimes: ClosedRange<Int>? = nil,
             ends: Bool = true) -> ValueMaker {
    { builder, option in
        if builder.fault() {
            var wrong = ["", "x", "1.5", "2e3", "0x10", "nan", " 4", "99999999999999999999", "\u{0663}"]
            if valid.lowerBound > Int.min { wrong += [String(valid.lowerBound - 1), String(valid.lowerBound - 7)] }
            if valid.upperBound < Int.max { wrong += [String(valid.upperBound + 1)] }
            return builder.refused(option, builder.random.pick(wrong))
        }
        let roll = builder.random.unit()
        var value = min(builder.random.int(typical), builder.random.int(typical))
        if let sometimes, roll < 0.15 {
            value = builder.random.int(sometimes)
        } else if ends, roll < 0.22 {
            value = builder.random.pick([valid.lowerBound, valid.upperBound])
        }
        // Forms Swift's Int parser takes too: a plus sign, leading zeros.
        let text = builder.random.chance(0.05) ? (builder.random.chance(0.5) ? "+\(value)" : "00\(value)") : String(value)
        return OptionValue(text: text, verdict: .accepted)
    }
}

/// `word` (accepted) with probability `chance`, else a value of `other`.
func either(_ word: String, _ chance: Double, _ other: @escaping ValueMaker) -> ValueMaker {
    { builder, option in
        builder.random.chance(chance) ? OptionValue(text: word, verdict: .accepted) : other(&builder, option)
    }
}

/// What a real number must be.
enum RealRule {
    case nonNegative
    /// Above 0 and at most `atMost`.
    case positive(atMost: Double)
}

/// Real numbers: mostly from `typical`; the edges of `rule`; huge finite values; or, when the case asks for a
/// fault, NaN, infinities, negatives, overflow and garbage. `double` for an option parsed as a Double (a
/// Float overflows sooner). Huge weights may make the loss overflow, which pamstyle may report as a
/// diverged optimization; `hugeIsSafe` for an option where they must simply work.
func real(_ rule: RealRule, typical: ClosedRange<Double>, double: Bool = false, hugeIsSafe: Bool = false) -> ValueMaker {
    { builder, option in
        if builder.fault() {
            var wrong = ["nan", "NaN", "inf", "-inf", "infinity", double ? "1e400" : "1e40", "-1", "-0.5", "", "x",
                         "1,5", "2..5"]
            switch rule {
            case .nonNegative: break
            case .positive(let limit):
                wrong += ["0", "0.0"]
                if limit.isFinite { wrong.append(String(limit * 1.0625)) }
            }
            return builder.refused(option, builder.random.pick(wrong))
        }
        let roll = builder.random.unit()
        if roll < 0.05 {
            if case .positive(let limit) = rule, limit.isFinite {
                return OptionValue(text: String(limit), verdict: .accepted)
            }
            let huge = builder.random.pick(double ? ["1e300", "1e30"] : ["3e38", "1e30"])
            return OptionValue(text: huge, verdict: hugeIsSafe ? .accepted : .either(mentions: [option, huge, "diverged"]))
        }
        if roll < 0.12 {
            switch rule {
            case .nonNegative: return OptionValue(text: builder.random.pick(["0", "0.0", "0e0"]), verdict: .accepted)
            case .positive: return OptionValue(text: builder.random.pick(["1e-3", "0.001", "1E-2"]), verdict: .accepted)
            }
        }
        let value = builder.random.real(typical)
        let text = builder.random.chance(0.2) ? String(format: "%.2e", value) : String(format: "%.4g", value)
        return OptionValue(text: text, verdict: .accepted)
    }
}

/// One of `words`, or, when the case asks for a fault, one of `wrong`.
func word(_ words: [String], wrong: [String]) -> ValueMaker {
    { builder, option in
        builder.fault() ? builder.refused(option, builder.random.pick(wrong))
            : OptionValue(text: builder.random.pick(words), verdict: .accepted)
    }
}

/// Every layer a loss can read.
let vgg19Layers: [String] = {
    let convs = [(1, 2), (2, 2), (3, 4), (4, 4), (5, 4)]
    return convs.flatMap { block, count in
        (1 ... count).flatMap { ["conv\(block)_\($0)", "relu\(block)_\($0)"] } + ["pool\(block)"]
    }
}()

/// A list of layers with optional weights (`relu1_1,relu3_1:0.5`), half of them from the first two blocks,
/// which run in stripes; or, when the case asks for a fault, a list with an unknown layer, a bad weight, a
/// layer twice, or two colons.
let layerList: ValueMaker = { builder, option in
    var items = (0 ..< builder.random.int(1 ... 4)).map { _ in
        builder.random.pick(builder.random.chance(0.5) ? Array(vgg19Layers.prefix(10)) : vgg19Layers)
    }
    items = items.enumerated().filter { !items[..<$0.offset].contains($0.element) }.map(\.element)
    items = items.map { layer in
        builder.random.chance(0.4) ? "\(layer):\(builder.random.pick(["0.5", "1", "0", "2e-3", "10", "0.25"]))" : layer
    }
    guard builder.fault() else {
        return OptionValue(text: items.joined(separator: ","), verdict: .accepted)
    }
    let slot = builder.random.int(0 ... items.count)
    switch builder.random.int(0 ... 3) {
    case 0:
        let unknown = ["relu0_1", "relu5_5", "conv6_1", "pool6", "RELU1_1", "relu4", "", "fc6", "relu1_1_"]
        items.insert(builder.random.pick(unknown), at: slot)
    case 1: items.insert("relu2_1:" + builder.random.pick(["x", "-1", "nan", "inf", "", "1e40"]), at: slot)
    case 2: items.append(String(items[0].split(separator: ":")[0]))   // listed twice
    default: items.insert("relu3_1:1:2", at: slot)
    }
    return builder.refused(option, items.joined(separator: ","))
}

/// One blend weight per style file, or the wrong count, no positive weight, or a bad weight.
let styleBlend: ValueMaker = { builder, option in
    let count = builder.styleFileCount
    var weights = (0 ..< max(count, 1)).map { _ in builder.random.pick(["1", "2", "0.5", "0", "3e-1", "10"]) }
    if !weights.contains(where: { $0 != "0" }) { weights[0] = "1" }
    // Without style files the run is refused anyway, and so is any list of weights.
    guard builder.fault() || count == 0 else {
        return OptionValue(text: weights.joined(separator: ","), verdict: .accepted)
    }
    switch builder.random.int(0 ... 3) {
    case 0: weights.append("1")
    case 1: weights = weights.map { _ in "0" }
    case 2: weights[0] = builder.random.pick(["-1", "x", "nan", "inf", ""])
    default: if weights.count > 1 { weights.removeLast() } else { weights.append("2") }
    }
    return builder.refused(option, weights.joined(separator: ","))
}

/// One mask image per style file; or a list one too short or too long, or naming a file that cannot be read.
let styleMasks: ValueMaker = { builder, option in
    let count = max(builder.styleFileCount, 1)
    var names = (0 ..< count).map { _ in builder.imageFile(stem: "mask") }
    // Without style files the run is refused anyway, and so is any list of masks.
    guard builder.fault() || builder.styleFileCount == 0 else {
        return OptionValue(text: names.joined(separator: ","), verdict: .accepted)
    }
    switch builder.random.int(0 ... 2) {
    case 0:
        names.append(names[0])
        return builder.refused(option, names.joined(separator: ","))
    case 1 where count > 1:
        names.removeLast()
        return builder.refused(option, names.joined(separator: ","))
    default:
        let bad = builder.badFile(stem: "mask")
        names[0] = bad
        return OptionValue(text: names.joined(separator: ","), verdict: .refused(mentions: [bad]))
    }
}

/// A mask image; or a file that cannot be read as one, or an empty name.
let changeMask: ValueMaker = { builder, option in
    guard builder.fault() else { return OptionValue(text: builder.imageFile(stem: "change"), verdict: .accepted) }
    if builder.random.chance(0.2) { return OptionValue(text: "", verdict: .refused(mentions: [option])) }
    let name = builder.badFile(stem: "change")
    return OptionValue(text: name, verdict: .refused(mentions: [name]))
}

/// content, random, an image file, or a file that cannot be read as one.
let initialization: ValueMaker = { builder, option in
    if builder.fault() {
        if builder.random.chance(0.2) { return OptionValue(text: "", verdict: .refused(mentions: [option])) }
        let name = builder.badFile(stem: "init")
        return OptionValue(text: name, verdict: .refused(mentions: [name]))
    }
    switch builder.random.int(0 ... 2) {
    case 0: return OptionValue(text: "content", verdict: .accepted)
    case 1: return OptionValue(text: "random", verdict: .accepted)
    default:
        return OptionValue(text: builder.imageFile(stem: "init"), verdict: .accepted)
    }
}

let seed: ValueMaker = { builder, option in
    builder.fault() ? builder.refused(option, builder.random.pick(["-1", "18446744073709551616", "x", "", "1.0"]))
        : OptionValue(text: builder.random.pick(["0", "1", "42", "18446744073709551615", String(builder.random.next())]),
                      verdict: .accepted)
}

/// The weights file: the real one, or a missing one, a folder, an image, an empty name.
let weightsFile: ValueMaker = { builder, option in
    let real = packageRoot.appendingPathComponent("weights/vgg19-conv-q8.pstw").path
    guard builder.fault() else { return OptionValue(text: real, verdict: .accepted) }
    let name: String
    switch builder.random.int(0 ... 3) {
    case 0: return OptionValue(text: "", verdict: .refused(mentions: [option]))
    case 1:
        name = "image.pstw"
        builder.files.append(CaseFile(name: name, contents: randomImage(&builder.random).bytes, description: "an image"))
    case 2:
        name = "weights-folder"
        builder.files.append(CaseFile(name: name, contents: nil, description: "a folder"))
    default: name = "missing.pstw"
    }
    return OptionValue(text: name, verdict: .refused(mentions: [name]))
}

/// A checkpoint file in the case's folder; or an empty name; or one in a missing folder, which fails only if
/// a checkpoint falls due.
let checkpointFile: ValueMaker = { builder, option in
    guard builder.fault() else { return OptionValue(text: "checkpoint.pam", verdict: .accepted) }
    if builder.random.chance(0.3) { return OptionValue(text: "", verdict: .refused(mentions: [option])) }
    let name = "no-such-folder/checkpoint.ppm"
    return OptionValue(text: name, verdict: .either(mentions: [name]))
}

/// A pixel limit: large, at its upper end, or small enough to refuse some of the case's images (the
/// builder checks every image against it).
let maxPixels: ValueMaker = { builder, option in
    if builder.fault() {
        return builder.refused(option, builder.random.pick(["0", "-1", "268435457", "9223372036854775807", "x", "",
                                                             "99999999999999999999"]))
    }
    let value = builder.random.pick([1, 2, 300, 1000, 2000, 2304, 1_000_000, 268_435_456])
    return OptionValue(text: String(value), verdict: .accepted)
}

// MARK: - Cases

/// A file in a case's folder; nil contents make a folder.
struct CaseFile {
    var name: String
    var contents: [UInt8]?
    var description: String
}

/// A well-formed image pamstyle reads from a file, with what it must do about it.
struct ReadImage {
    /// The file's name, which pamstyle's messages give.
    var source: String
    /// Its pixels, for -max-pixels.
    var pixels: Int
    /// For a style image, the most pixels it can be seen at: resized for -style-scale, never enlarged, but
    /// each side at least 32 (`Stylizer.minimumSide`); -max-pixels holds for that size too.
    var seenPixelsAtMost: Int?
    var verdict: Verdict
}

/// One random pamstyle run and what it must do.
struct PropertyCase {
    var index: Int
    var arguments: [String] = []
    var files: [CaseFile] = []
    var stdin: [UInt8] = []
    var stdinDescription: [String] = []
    /// The images of standard input, in order, each with its expected output size and alpha.
    var stdinImages: [CaseImage] = []
    /// Refusals before the first image is read (options, style and -init files, weights), and the ones
    /// that may or may not happen.
    var refusals: [String: Verdict] = [:]
    /// The first image of standard input pamstyle must refuse (0-based), with what it must name.
    var stdinRefusal: (index: Int, verdict: Verdict)?
    /// Images of standard input pamstyle may refuse.
    var stdinUncertain: [Int] = []
    var givesVersion = false
    var givesHelp = false
    var verbose = false
    /// With -time-limit the result depends on the machine's speed.
    var timeLimited = false
}

/// Builds one case: style files, standard input, then options from the table, then the rules across them.
struct CaseBuilder {
    var random: PropertyRandom
    /// The chance that a part of this case is made wrong: 0 for about half the cases, so that most runs
    /// reach the network.
    let faultRate: Double
    var files: [CaseFile] = []
    var styleFileCount = 0
    /// Images read from files (style, -init), for the pixel limit.
    var fileImages: [ReadImage] = []
    private var fileCounter = 0

    /// The options, one row each.
    static let options: [OptionRow] = [
        // Loss
        OptionRow("content-weight", 0.25, real(.nonNegative, typical: 0 ... 10)),
        OptionRow("style-weight", 0.3, real(.nonNegative, typical: 0.01 ... 1000)),
        OptionRow("tv-weight", 0.25, real(.nonNegative, typical: 0 ... 10)),
        OptionRow("layout-weight", 0.25, real(.nonNegative, typical: 0 ... 5000)),
        OptionRow("content-layers", 0.35, layerList),
        OptionRow("style-layers", 0.35, layerList),
        // Styles
        OptionRow("style-blend", 0.15, styleBlend),
        OptionRow("style-masks", 0.1, styleMasks),
        OptionRow("change-mask", 0.1, changeMask),
        OptionRow("style-scale", 0.2, real(.positive(atMost: 8), typical: 0.05 ... 2)),
        OptionRow("preserve-colors", 0.2, nil),
        OptionRow("colors", 0.2, word(["style", "luminance", "match"], wrong: ["Style", "", "content", "luminance,match"])),
        OptionRow("style-loss", 0.2, word(["gram", "w2"], wrong: ["GRAM", "", "w1", "gram,w2"])),
        // Optimization: a case always gives the iterations, so that every run is short.
        OptionRow("optimizer", 0.4, word(["lbfgs", "adam"], wrong: ["LBFGS", "sgd", "", "adam,lbfgs", "l-bfgs"])),
        OptionRow("iterations", 1, integer(0 ... .max, typical: 0 ... 3, ends: false)),
        OptionRow("scale-iterations", 1, integer(0 ... .max, typical: 0 ... 2, ends: false)),
        OptionRow("scales", 0.3, integer(1 ... 8, typical: 1 ... 3)),
        OptionRow("learning-rate", 0.2, real(.positive(atMost: .infinity), typical: 0.1 ... 20)),
        OptionRow("history", 0.15, integer(1 ... 100, typical: 1 ... 8)),
        OptionRow("init", 0.2, initialization),
        OptionRow("seed", 0.2, seed),
        // Size and network.
        OptionRow("size", 0.9, either("native", 0.15, integer(32 ... 16384, typical: 32 ... 64, sometimes: 65 ... 2048))),
        OptionRow("margin", 0.2, integer(0 ... 1024, typical: 0 ... 40)),
        OptionRow("padding", 0.2, word(["zero", "reflect"], wrong: ["Zero", "", "mirror", "zero,reflect"])),
        OptionRow("pooling", 0.2, word(["max", "avg", "average"], wrong: ["min", "MAX", "", "mean"])),
        OptionRow("weights", 0.05, weightsFile),
        OptionRow("threads", 0.3, integer(1 ... 256, typical: 1 ... 2, sometimes: 3 ... 8)),
        // bf16 and half are left out: whether they are accepted depends on the processor (ErrorTests checks both).
        OptionRow("precision", 0.15, word(["auto", "single"], wrong: ["quarter", "", "BF16", "double", "auto,single"])),
        OptionRow("memory", 0.2, integer(64 ... 1 << 20, typical: 64 ... 4096)),  // see `residentMiB`
        // Streams, limits and messages
        OptionRow("temporal", 0.2, nil),
        OptionRow("temporal-weight", 0.1, real(.nonNegative, typical: 0 ... 10)),
        OptionRow("max-pixels", 0.15, maxPixels),
        OptionRow("time-limit", 0.1, real(.positive(atMost: .infinity), typical: 0.001 ... 5, double: true, hugeIsSafe: true)),
        OptionRow("checkpoint", 0.05, checkpointFile),
        OptionRow("checkpoint-every", 0.08, integer(1 ... .max, typical: 1 ... 3)),
        OptionRow("quiet", 0.5, nil),
        OptionRow("verbose", 0.06, nil),
        OptionRow("version", 0.01, nil),
        OptionRow("help", 0.01, nil),
    ]

    /// Options pamstyle does not have.
    /// The least -memory, in MiB, that holds what a stylization keeps whatever the image (`Stylizer.residentBytes`:
    /// the weights, the kernels made from them, the process); up to 400, a tiny image may fit or not.
    static let residentMiB = 190
    static let unknownOptions = ["-bogus", "-iter", "-Size", "-preserve-colours", "--quiet-please", "-s", "-hush"]

    init(seed: UInt64, index: Int) {
        random = PropertyRandom(seed: seed, index: index)
        faultRate = random.pick([0, 0, 0, 0, 0, 0.08, 0.08, 0.08, 0.2, 0.35])
    }

    /// Whether to make this part wrong.
    mutating func fault() -> Bool { faultRate > 0 && random.chance(faultRate) }

    /// A value pamstyle must refuse, naming the option or the value.
    func refused(_ option: String, _ text: String) -> OptionValue {
        OptionValue(text: text, verdict: .refused(mentions: text.trimmingCharacters(in: .whitespaces).isEmpty
                                                  ? [option] : [option, text]))
    }

    private mutating func nextName(_ stem: String, _ fileExtension: String) -> String {
        fileCounter += 1
        return "\(stem)-\(fileCounter).\(fileExtension)"
    }

    /// Writes a well-formed image (now and then with more after it, which pamstyle ignores) for pamstyle to
    /// read as a style image or an -init image, and returns its name.
    mutating func imageFile(stem: String, style: Bool = false) -> String {
        var image = randomImage(&random)
        let name = nextName(stem, image.fileExtension)
        var description = image.description
        if random.chance(0.1) {
            let extra = random.chance(0.5) ? randomImage(&random).bytes : Array("trailing garbage".utf8)
            image.bytes += extra
            description += ", then more bytes"
        }
        files.append(CaseFile(name: name, contents: image.bytes, description: description))
        fileImages.append(ReadImage(source: name, pixels: image.width * image.height,
                                    seenPixelsAtMost: style ? max(32, image.width) * max(32, image.height) : nil,
                                    verdict: image.uncertain ? .either(mentions: [name]) : .accepted))
        return name
    }

    /// Names a file pamstyle cannot read as an image (writing it, when it exists): missing, empty, a folder,
    /// or malformed.
    mutating func badFile(stem: String) -> String {
        switch random.int(0 ... 5) {
        case 0:
            return nextName("missing-\(stem)", "ppm")
        case 1:
            let name = nextName(stem, "ppm")
            files.append(CaseFile(name: name, contents: [], description: "empty"))
            return name
        case 2:
            let name = nextName("\(stem)-folder", "d")
            files.append(CaseFile(name: name, contents: nil, description: "a folder"))
            return name
        default:
            let (bytes, description) = malformedImage(&random)
            let name = nextName(stem, "pnm")
            files.append(CaseFile(name: name, contents: bytes, description: description))
            return name
        }
    }

    /// The whole case.
    mutating func build(index: Int) -> PropertyCase {
        var result = PropertyCase(index: index)

        // Style files: usually one, sometimes several, now and then none or a bad one.
        var styleNames: [String] = []
        let styleCount = random.chance(0.03) ? 0 : random.pick([1, 1, 1, 1, 2, 2, 3])
        for _ in 0 ..< styleCount {
            if fault() {
                let name = random.chance(0.1) ? "" : badFile(stem: "style")
                result.refusals[name.isEmpty ? "an empty style file name" : name]
                    = .refused(mentions: [name.isEmpty ? "style" : name])
                styleNames.append(name)
            } else {
                styleNames.append(imageFile(stem: "style", style: true))
            }
        }
        styleFileCount = styleNames.count
        if styleNames.isEmpty { result.refusals["no style file"] = .refused(mentions: ["no style image"]) }

        makeStandardInput(&result)

        // Options from the table, in random order, each spelled -name value, -name=value, or with two dashes.
        var given: [String: OptionValue] = [:]   // flags with an empty text
        var words: [[String]] = []
        for row in Self.options where random.chance(row.frequency) {
            let name = random.chance(0.15) ? "--\(row.name)" : "-\(row.name)"
            guard let maker = row.value else {
                given[row.name] = OptionValue(text: "", verdict: .accepted)
                words.append([name])
                continue
            }
            let value = maker(&self, "-\(row.name)")
            given[row.name] = value
            if case .accepted = value.verdict {} else { result.refusals["-\(row.name)"] = value.verdict }
            words.append(random.chance(0.25) ? ["\(name)=\(value.text)"] : [name, value.text])
        }
        if fault(), random.chance(0.3) {
            let unknown = random.pick(Self.unknownOptions)
            result.refusals[unknown] = .refused(mentions: [unknown])
            words.append([unknown])
        }
        words = shuffled(words)
        let styleFirst = random.chance(0.15)
        result.arguments = (styleFirst ? styleNames : []) + words.flatMap { $0 } + (styleFirst ? [] : styleNames)
        result.files = files

        // The rules across options.
        result.givesVersion = given["version"] != nil
        result.givesHelp = given["help"] != nil
        result.verbose = given["verbose"] != nil
        result.timeLimited = given["time-limit"] != nil
        if given["quiet"] != nil, given["verbose"] != nil {
            result.refusals["-quiet -verbose"] = .refused(mentions: ["-quiet", "-verbose"])
        }
        if given["preserve-colors"] != nil, let colors = given["colors"], case .accepted = colors.verdict,
           colors.text != "luminance" {
            result.refusals["-preserve-colors -colors"] = .refused(mentions: ["-preserve-colors"])
        }
        if given["temporal-weight"] != nil, given["temporal"] == nil {
            result.refusals["-temporal-weight without -temporal"] = .refused(mentions: ["-temporal-weight"])
        }
        // -memory counts the weights, the kernels made from them and the process (about 200 MiB) before any image.
        if let value = given["memory"], case .accepted = value.verdict, let mib = Int(value.text), mib < 400 {
            result.refusals["-memory"] = mib < Self.residentMiB ? .refused(mentions: ["-memory"])
                                                                : .either(mentions: ["-memory"])
        }
        var limit = 16_777_216
        if let value = given["max-pixels"], case .accepted = value.verdict { limit = Int(value.text)! }
        for image in fileImages {
            if image.pixels > limit {
                result.refusals[image.source] = .refused(mentions: [image.source, "-max-pixels"])
            } else if let seen = image.seenPixelsAtMost, seen > limit {
                // Whether it is seen that large depends on the working size.
                result.refusals["\(image.source) as seen"] = .either(mentions: ["-max-pixels"])
            }
        }
        for (index, image) in result.stdinImages.enumerated() where image.width * image.height > limit {
            if index < (result.stdinRefusal?.index ?? .max) {
                result.stdinRefusal = (index, .refused(mentions: ["standard input", "-max-pixels"]))
            }
        }
        if let refusal = result.stdinRefusal {
            result.stdinImages = Array(result.stdinImages.prefix(refusal.index))
            result.stdinUncertain = result.stdinUncertain.filter { $0 < refusal.index }
        }
        for image in fileImages {
            if case .either = image.verdict, result.refusals[image.source] == nil { result.refusals[image.source] = image.verdict }
        }
        return result
    }

    /// Standard input: one to three images (sometimes of one size, as video frames are), the last of them
    /// now and then malformed or followed by garbage or blank space; or nothing at all.
    private mutating func makeStandardInput(_ result: inout PropertyCase) {
        if fault(), random.chance(0.15) {
            result.stdinDescription = ["empty"]
            result.stdinRefusal = (0, .refused(mentions: ["standard input"]))
            return
        }
        let count = random.pick([1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3])
        let frames = count > 1 && random.chance(0.5)
        let (width, height) = randomSize(&random, allowWide: true)
        for index in 0 ..< count {
            let image = frames ? randomImage(&random, width: width, height: height) : randomImage(&random, allowWide: true)
            result.stdin += image.bytes
            result.stdinDescription.append(image.description)
            if image.uncertain { result.stdinUncertain.append(index) }
            result.stdinImages.append(image)
        }
        if fault() {
            let (bytes, description) = malformedImage(&random)
            result.stdin += bytes
            result.stdinDescription.append(description)
            result.stdinRefusal = (count, .refused(mentions: ["standard input"]))
        } else if random.chance(0.05) {
            result.stdin += Array("\n \n".utf8)
            result.stdinDescription.append("then blank space")
        }
    }

    private mutating func shuffled<T>(_ items: [T]) -> [T] {
        var items = items
        for index in items.indices.reversed() where index > 0 {
            items.swapAt(index, random.int(0 ... index))
        }
        return items
    }
}

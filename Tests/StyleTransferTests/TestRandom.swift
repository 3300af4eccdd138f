import StyleTransfer

/// The tests' seeded random numbers: the core's SplitMix64 with uniform helpers.
struct TestRandom {
    private var generator: SplitMix64

    init(state: UInt64) {
        generator = SplitMix64(seed: state)
    }

    mutating func next() -> UInt64 { generator.next() }

    /// Uniform in [0, 1), 24 bits.
    mutating func unit() -> Float { Float(next() >> 40) / Float(1 << 24) }

    /// Uniform in [low, high).
    mutating func uniform(_ low: Float, _ high: Float) -> Float { low + (high - low) * unit() }

    /// Uniform in [low, high), 53 bits.
    mutating func uniformDouble(_ low: Double, _ high: Double) -> Double {
        low + (high - low) * Double(next() >> 11) / Double(1 << 53)
    }

    /// `count` values uniform in [low, high).
    mutating func array(_ count: Int, _ low: Float = 0, _ high: Float = 1) -> [Float] {
        (0 ..< count).map { _ in uniform(low, high) }
    }
}

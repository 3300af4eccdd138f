import CBLAS
import CGEMM
import Foundation
import Synchronization

/// Where the heavy products run: the Winograd convolutions' products, the im2col convolutions' products (conv1_1), the
/// Gram matrices and the Gram loss's gradient.
///
/// The project's own kernels (the CGEMM target) come in three instruction sets, and the widest one the processor runs
/// is chosen at run time (`detected`), so their speed does not depend on OpenBLAS's processor detection. OpenBLAS stays
/// selectable as the fallback and for comparisons; on the own paths it runs only the products of Winograd layers on
/// maps under 4 pixels a side (see `Convolution.usesOwnIm2col`). Every path computes the same sums up to rounding and
/// is deterministic on its own; two paths may differ in the last bits.
///
/// `force` chooses another path for the whole process (tests and benchmarks): the Gram products read the path at each
/// call, a convolution when it is made (its kernels are laid out for the own kernels or for OpenBLAS). Not to be forced
/// while products run.
public enum KernelPath: String, Sendable, CaseIterable {
    /// The own kernels with AVX-512F.
    case avx512
    /// The own kernels with AVX2 and FMA.
    case avx2
    /// The own kernels in plain C, vectorized by the compiler for the baseline of the target (SSE2 on x86-64).
    case portable
    /// OpenBLAS's `cblas_sgemm` and `cblas_ssyrk`, in the kernels of the processor OpenBLAS believes it runs on.
    case openblas

    /// The own kernels' instruction set, or nil for OpenBLAS.
    private var isa: cgemm_isa? {
        switch self {
        case .avx512: CGEMM_AVX512
        case .avx2: CGEMM_AVX2
        case .portable: CGEMM_PORTABLE
        case .openblas: nil
        }
    }

    private init(_ isa: cgemm_isa) {
        switch isa {
        case CGEMM_AVX512: self = .avx512
        case CGEMM_AVX2: self = .avx2
        default: self = .portable
        }
    }

    /// Whether this processor runs the path (the portable kernels and OpenBLAS run everywhere).
    public var isSupported: Bool { isa.map { cgemm_supports($0) != 0 } ?? true }

    /// The default path: the own kernels in the widest instruction set this processor runs.
    public static let detected = KernelPath(cgemm_detected())

    /// Whether `force` chose OpenBLAS (the own kernels' instruction set is then kept for a later `force`).
    private static let openBLASForced = Atomic<Bool>(false)

    /// The path the products take now: `detected` unless `force` chose another.
    public static var current: KernelPath {
        openBLASForced.load(ordering: .relaxed) ? .openblas : KernelPath(cgemm_selected())
    }

    /// Makes the products take `path` from now on; throws, changing nothing, when the processor cannot run it.
    public static func force(_ path: KernelPath) throws(KernelPathError) {
        if let isa = path.isa {
            guard cgemm_select(isa) != 0 else { throw .unsupported(path) }
        }
        openBLASForced.store(path == .openblas, ordering: .relaxed)
    }

    /// One line naming the path, for `-verbose`: `kernels: avx2`, or `kernels: openblas (Haswell)` with the core whose
    /// kernels OpenBLAS chose.
    public static var summary: String {
        let path = current
        guard path == .openblas, let core = openblas_get_corename() else { return "kernels: \(path.rawValue)" }
        return "kernels: openblas (\(String(cString: core)))"
    }
}

/// A kernel path this processor cannot run.
public enum KernelPathError: Error, LocalizedError, Equatable {
    case unsupported(KernelPath)

    public var errorDescription: String? {
        switch self {
        case .unsupported(let path):
            let instructions = path == .avx512 ? "AVX-512F" : "AVX2 and FMA"
            return "The \(path.rawValue) kernels need \(instructions), which this processor lacks."
        }
    }
}

/// The precision of the Winograd convolutions' products (the bulk of the arithmetic) and, with bf16 or half, of the
/// Gram style loss's products (`StyleLoss.precision`); the transforms, the im2col products and the rest of the losses
/// stay in single precision whatever it is.
public enum ProductPrecision: String, Sendable, CaseIterable {
    /// float32 operands and sums.
    case single
    /// Operands rounded to bfloat16 (8 significant bits, relative error up to 2⁻⁹), sums in float32: AVX512_BF16's dot
    /// products, which do twice the multiply-adds of an FMA per instruction. Runs only on the `avx512` kernel path of
    /// a processor with AVX512_BF16; the products of convolutions made on another path stay in single precision.
    case bf16
    /// Operands scaled by powers of two and rounded to half precision (11 significant bits, relative error up to
    /// 2⁻¹¹), each lane summing up to 128 products in half precision (chains of 32, each added to the sum of those
    /// before it) before adding them to float32 sums: AVX512_FP16's multiply-adds, twice an FMA's per instruction
    /// (`cgemm_panels_fp16_pairs`, on tiles the input transform writes in half precision). Runs only on the `avx512`
    /// kernel path of a processor with AVX512_FP16, for the Winograd products and the Gram losses' products
    /// (`cgemm_gram_upper_fp16`, `cgemm_multiply_fp16`).
    case half

    /// Whether this processor runs the products in this precision.
    public var isSupported: Bool {
        switch self {
        case .single: true
        case .bf16: cgemm_supports_bf16() != 0
        case .half: cgemm_supports_fp16() != 0
        }
    }

    /// The precision whose products, timed here, run the fastest on the avx512 path, if at least `speedup` times as
    /// fast as in single precision; `single` otherwise (on processors whose BF16 dot products are no faster than their
    /// FMAs, and without AVX512_FP16). Timed once, the first time this is read: a few milliseconds of products the size
    /// of a Winograd band.
    public static let fastest: ProductPrecision = {
        guard KernelPath.detected == .avx512 else { return .single }
        let speedups = [ProductPrecision.bf16, .half].filter(\.isSupported).map { ($0, measuredSpeedup(of: $0)) }
        guard let best = speedups.max(by: { $0.1 < $1.1 }), best.1 >= speedup else { return .single }
        return best.0
    }()

    /// How much faster the products in bf16 or half precision must be to be chosen: a margin wide enough that the noise
    /// of a shared machine never flips the choice between runs on the same processor (bf16 measures about 2 on an AMD
    /// Zen 4, and about 1 on an Intel Xeon whose AVX512_BF16 issues as many multiply-adds a cycle as its FMAs; half
    /// precision about 1.7 there, its products at conv4_x's size).
    public static let speedup = 1.2

    /// Single-precision time over this precision's for a product of Winograd's shapes (bf16: 64 × 64 by 64 × 240, on
    /// operands already in bfloat16 pairs, `cgemm_panels_bf16_pairs`, as the convolutions hold them; half: 512 × 512
    /// by 512 × 96, a deep layer's, `cgemm_panels_fp16`, on the kernel in pairs as the convolutions hold it), the
    /// fastest of seven timings of each on this thread; 0 where the processor does not run it, 1 for single.
    public static func measuredSpeedup(of precision: ProductPrecision) -> Double {
        guard precision.isSupported else { return 0 }
        guard precision != .single else { return 1 }
        let (m, n, calls) = precision == .bf16 ? (64, 240, 5) : (512, 96, 2)
        let a = [Float](repeating: 0.25, count: m * m), b = [Float](repeating: 0.5, count: m * n)
        // 0.25 and 0.5 in bfloat16 (0x3E80, 0x3F00), two to a word; 8 and 0.5 in half precision (0x4800, 0x3800).
        let aPairs = [UInt32](repeating: precision == .bf16 ? 0x3E80_3E80 : 0x4800_4800, count: m * m / 2)
        let bPairs = [UInt32](repeating: 0x3F00_3F00, count: m * n / 2)
        var c = [Float](repeating: 0, count: m * n)
        func seconds() -> Double {
            var time = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
            return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
        }
        var single = Double.infinity, reduced = Double.infinity
        c.withUnsafeMutableBufferPointer { c in
            for _ in 0 ..< 7 {
                var start = seconds()
                for _ in 0 ..< calls { cgemm_panels(Int32(m), Int32(n), Int32(m), 1, a, 0, b, c.baseAddress!, n) }
                single = min(single, seconds() - start)
                start = seconds()
                for _ in 0 ..< calls {
                    if precision == .bf16 {
                        cgemm_panels_bf16_pairs(Int32(m), Int32(n), Int32(m), 1, aPairs, bPairs, c.baseAddress!, n)
                    } else {
                        cgemm_panels_fp16(Int32(m), Int32(n), Int32(m), 1.0 / 32, aPairs, b, c.baseAddress!, n)
                    }
                }
                reduced = min(reduced, seconds() - start)
            }
        }
        return reduced > 0 ? single / reduced : 0
    }
}

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

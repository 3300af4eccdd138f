// swift-tools-version:6.0
import PackageDescription

/// The numeric code is always optimized, debug test runs included. Only the small target of hot kernels drops Swift's
/// overflow and precondition traps (its loops use wrapping arithmetic and are checked against slow references in the
/// tests); the core around them, the driver, the planner and the weights parser, keeps every check.
let kernelSettings: [SwiftSetting] = [.unsafeFlags(["-Ounchecked"])]
let checkedSettings: [SwiftSetting] = [.unsafeFlags(["-O"])]

let package = Package(
    name: "pamstyle",
    products: [
        .executable(name: "pamstyle", targets: ["pamstyle"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.0"),
    ],
    targets: [
        .target(
            name: "CNetpbm",
            cSettings: [.unsafeFlags(["-O2"])],
            linkerSettings: [.linkedLibrary("netpbm")]
        ),
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS"),
        .target(name: "CGEMM", cSettings: [.unsafeFlags(["-O3"])]),
        .target(name: "Netpbm", dependencies: ["CNetpbm"]),
        .target(name: "Kernels", dependencies: ["CBLAS", "CGEMM"], swiftSettings: kernelSettings),
        .target(name: "StyleTransfer", dependencies: ["Kernels", "CBLAS", "CGEMM"], swiftSettings: checkedSettings),
        .executableTarget(
            name: "pamstyle",
            dependencies: [
                "Netpbm", "StyleTransfer", "Kernels",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .target(name: "CPeak", path: "bench/Sources/CPeak", cSettings: [.unsafeFlags(["-O2"])]),
        .executableTarget(name: "pamstyle-bench",
                          dependencies: ["StyleTransfer", "Kernels", "CGEMM", "CBLAS", "CPeak", "Netpbm"],
                          path: "bench/Sources/pamstyle-bench",
                          swiftSettings: checkedSettings),
        .testTarget(name: "NetpbmTests", dependencies: ["Netpbm"]),
        .testTarget(name: "StyleTransferTests", dependencies: ["StyleTransfer", "Kernels", "CGEMM"], exclude: ["Fixtures"]),
        .testTarget(name: "pamstyleTests", dependencies: ["Netpbm", "pamstyle"]),
    ]
)

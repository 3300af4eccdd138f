// swift-tools-version:6.0
import PackageDescription

/// The numeric code is always optimized (debug test runs included) and drops Swift's overflow and bounds traps in the kernels' hot loops;
/// the kernels use wrapping arithmetic and are checked against slow references in the tests.
let fastMath: [SwiftSetting] = [.unsafeFlags(["-Ounchecked"])]

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
        .target(name: "StyleTransfer", dependencies: ["CBLAS", "CGEMM"], swiftSettings: fastMath),
        .executableTarget(
            name: "pamstyle",
            dependencies: [
                "Netpbm", "StyleTransfer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(name: "pamstyle-bench", dependencies: ["StyleTransfer", "CGEMM", "CBLAS"],
                          path: "bench/Sources/pamstyle-bench",
                          swiftSettings: fastMath),
        .testTarget(name: "NetpbmTests", dependencies: ["Netpbm"]),
        .testTarget(name: "StyleTransferTests", dependencies: ["StyleTransfer", "CGEMM"], exclude: ["Fixtures"]),
        .testTarget(name: "pamstyleTests", dependencies: ["Netpbm", "pamstyle"]),
    ]
)

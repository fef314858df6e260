// swift-tools-version:5.9
import PackageDescription

let package = Package(
    name: "IWAE",
    // MARK: - Public API
    products: [
        .library(name: "IWAELinearAlgebra", targets: ["IWAELinearAlgebra"]),
        .library(name: "IWAEData", targets: ["IWAEData"]),
        .library(name: "IWAECore", targets: ["IWAECore"]),
        .executable(name: "iwae", targets: ["iwae"]),
        .executable(name: "iwae-bench", targets: ["iwae-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-numerics", from: "1.0.0"),
    ],
    targets: [
        // MARK: - C libraries (only IWAELinearAlgebra imports CBLAS and the kernels)
        .systemLibrary(
            name: "CBLAS",
            path: "CBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev", "liblapacke-dev"])]
        ),
        .systemLibrary(
            name: "CZlib",
            path: "CZlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        .target(name: "CIWAEKernels"),

        // MARK: - Engine
        .target(
            name: "IWAELinearAlgebra",
            dependencies: ["CBLAS", "CIWAEKernels", .product(name: "RealModule", package: "swift-numerics")]
        ),
        .target(name: "IWAEData", dependencies: ["CZlib", "IWAELinearAlgebra"]),
        .target(
            name: "IWAECore",
            dependencies: ["IWAELinearAlgebra", "IWAEData", .product(name: "RealModule", package: "swift-numerics")]
        ),
        .executableTarget(
            name: "iwae",
            dependencies: ["IWAECore", "IWAEData", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),

        // MARK: - Benchmarks
        .executableTarget(
            name: "iwae-bench",
            dependencies: ["IWAECore", "IWAEData", "IWAELinearAlgebra",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Benchmarks/iwae-bench"
        ),

        // MARK: - Tests
        .testTarget(
            name: "IWAETests",
            dependencies: ["IWAELinearAlgebra", "IWAEData", "IWAECore", "iwae"],
            path: "Tests/IWAETests"
        ),
    ]
)

// swift-tools-version:5.9
import PackageDescription

let package = Package(
    name: "IWAE",
    // MARK: - Public API
    products: [
        .library(name: "IWAELinearAlgebra", targets: ["IWAELinearAlgebra"]),
        .library(name: "IWAEData", targets: ["IWAEData"]),
        .library(name: "IWAECore", targets: ["IWAECore"]),
        // Everything in one import: the three modules above and checkpoints.
        .library(name: "IWAE", targets: ["IWAE"]),
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
        .target(
            name: "IWAEData",
            dependencies: ["CZlib", "IWAELinearAlgebra", .product(name: "RealModule", package: "swift-numerics")]
        ),
        .target(
            name: "IWAECore",
            dependencies: ["IWAELinearAlgebra", .product(name: "RealModule", package: "swift-numerics")]
        ),
        .target(name: "IWAE", dependencies: ["IWAECore", "IWAEData", "IWAELinearAlgebra"]),

        // MARK: - Command-line tools
        // What the two executables share: progress display and line-buffered output.
        .target(
            name: "IWAEConsole",
            dependencies: ["IWAE", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "iwae",
            dependencies: ["IWAE", "IWAEConsole", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),

        // MARK: - Benchmarks
        .executableTarget(
            name: "iwae-bench",
            dependencies: ["IWAE", "IWAEConsole", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Benchmarks/iwae-bench"
        ),

        // MARK: - Tests
        .testTarget(
            name: "IWAETests",
            dependencies: ["IWAE", "iwae"],
            path: "Tests/IWAETests"
        ),
    ]
)

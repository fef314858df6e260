// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "IWAE",
    // MARK: - Public API
    products: [
        // The one library: `import IWAE` re-exports the engine's modules
        // (IWAELinearAlgebra, IWAECore, IWAEData) and adds checkpoints.
        .library(name: "IWAE", targets: ["IWAE"]),
        .executable(name: "iwae", targets: ["iwae"]),
        .executable(name: "iwae-bench", targets: ["iwae-bench"]),
    ],
    // `swift build --traits MPI` adds training across processes (mpirun);
    // without it nothing needs OpenMPI.
    traits: [
        .trait(name: "MPI", description: "Data-parallel training across MPI ranks (needs Debian's libopenmpi-dev and openmpi-bin)."),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-numerics", from: "1.0.0"),
        // `swift package generate-documentation --target IWAE` (the DocC catalog in Sources/IWAE/IWAE.docc).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"),
    ],
    targets: [
        // MARK: - C libraries (only IWAELinearAlgebra imports CBLAS, CDNNL and the kernels)
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
        .systemLibrary(
            name: "CDNNL",
            path: "CDNNL",
            providers: [.apt(["libdnnl-dev"])]
        ),
        .target(name: "CIWAEKernels"),
        .systemLibrary(
            name: "CMPI",
            path: "CMPI",
            pkgConfig: "ompi-c",
            providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]
        ),

        // MARK: - Engine
        .target(
            name: "IWAELinearAlgebra",
            dependencies: ["CBLAS", "CDNNL", "CIWAEKernels", .product(name: "RealModule", package: "swift-numerics")]
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
        // The MPI rank group (empty without the MPI trait; the only module that imports CMPI).
        .target(
            name: "IWAEMPI",
            dependencies: ["IWAECore", "IWAELinearAlgebra", .target(name: "CMPI", condition: .when(traits: ["MPI"]))]
        ),

        // MARK: - Command-line tools
        // What the two executables share: progress display, line-buffered output, option types.
        .target(
            name: "IWAEConsole",
            dependencies: ["IWAE", "IWAEMPI", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "iwae",
            dependencies: ["IWAE", "IWAEConsole", "IWAEMPI", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),

        // MARK: - Benchmarks
        .executableTarget(
            name: "iwae-bench",
            dependencies: ["IWAE", "IWAEConsole", "IWAEMPI", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Benchmarks/iwae-bench"
        ),

        // MARK: - Tests
        .testTarget(
            name: "IWAETests",
            dependencies: ["IWAE", "iwae"],
            path: "Tests/IWAETests",
            exclude: ["PublicAPI.txt"]   // read by PublicSurfaceTests from the source tree
        ),
    ],
    swiftLanguageModes: [.v5]
)

// swift-tools-version:5.9
// A separate package that uses the engine as a downstream user would: it
// depends on the repository by path and imports one module, `IWAE`.
import PackageDescription

let package = Package(
    name: "IWAEExamples",
    dependencies: [.package(name: "IWAE", path: "..")],
    targets: [
        .executableTarget(name: "iwae-examples", dependencies: [.product(name: "IWAE", package: "IWAE")]),
    ]
)

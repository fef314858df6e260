import ArgumentParser
import Foundation
import IWAE
import IWAEConsole

@main
struct IWAECommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "iwae",
        abstract: "Train and evaluate variational and importance-weighted autoencoders on OpenBLAS.",
        subcommands: [Train.self, Resume.self, Evaluate.self, Sample.self, GradStats.self, Kernels.self])

    static func main() {
        relaunchWithBestBLASKernels()
        ProcessRanks.run(IWAECommand.self, tool: "iwae")
    }
}

/// Options naming the data a command reads.
struct DataOptions: ParsableArguments {
    @Option(help: "mnist (checked against its sha256; see --mnist-directory), fashion-mnist (Debian's dataset-fashion-mnist), a directory of MNIST-format IDX files, or linear-gaussian (synthetic).")
    var data: String?
    @Option(help: "Where --data mnist finds its four IDX files (default: ../shared/data/mnist, then ~/.local/share/iwae/mnist).")
    var mnistDirectory: String?

    /// The named data set (synthetic settings at their defaults).
    func source() throws -> DataSource {
        guard let data else { throw IWAEError.invalidArgument("no data set: pass --data mnist, --data fashion-mnist or --data DIR") }
        return try DataSource(name: data, mnistDirectory: mnistDirectory)
    }
}

/// Loads the test split only (for evaluation and samples): the `--data`
/// set, or the checkpoint's own (synthetic data regenerated from its record),
/// checked against the model's data dimension.
func loadTestSet(_ option: DataOptions, checkpoint: Checkpoint) throws -> (name: String, images: ImageSet) {
    let source: DataSource
    if option.data != nil { source = try option.source() }
    else if let recorded = checkpoint.data { source = recorded }
    else { throw IWAEError.invalidArgument("no data set: pass --data mnist, --data fashion-mnist or --data DIR") }
    let images = try source.load(.test)
    let expected = checkpoint.model.configuration.dataDimension
    guard images.dimension == expected else {
        throw IWAEError.invalidArgument("test images have dimension \(images.dimension) but the checkpoint's model expects \(expected)")
    }
    return (source.name, images)
}

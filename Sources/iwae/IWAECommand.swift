import ArgumentParser
import Foundation
import IWAE
import IWAEConsole

@main
struct IWAECommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "iwae",
        abstract: "Train and evaluate variational and importance-weighted autoencoders on OpenBLAS.",
        subcommands: [Train.self, Resume.self, Evaluate.self, BDMC.self, Score.self, Sample.self, GradStats.self, Kernels.self])

    static func main() {
        relaunchWithBestBLASKernels()
        ProcessRanks.run(IWAECommand.self, tool: "iwae")
    }
}

/// Options naming the data a command reads.
struct DataOptions: ParsableArguments {
    @Option(help: "mnist (checked against its sha256; see --mnist-directory), fashion-mnist (Debian's dataset-fashion-mnist), a directory of MNIST-format IDX files, linear-gaussian (synthetic), or a table: a .npy, .npz, .csv, .tsv or .safetensors file of rows.")
    var data: String?
    @Option(help: "Where --data mnist finds its four IDX files (default: ../shared/data/mnist, then ~/.local/share/iwae/mnist).")
    var mnistDirectory: String?
    @Option(help: "The array of an .npz file, or the tensor of a .safetensors file, to read (default: its only one).")
    var dataKey: String?

    /// The named data set (synthetic settings at their defaults).
    func source() throws -> DataSource {
        guard let data else { throw IWAEError.invalidArgument("no data set: pass --data mnist, --data fashion-mnist, --data DIR or --data FILE") }
        return try DataSource(name: data, mnistDirectory: mnistDirectory)
    }

    /// Whether --data names a table file.
    var namesTable: Bool { data.map(RawTable.isTableFile) ?? false }
}

/// Loads the rows to evaluate (for evaluation, scores and samples): the
/// `--data` set or table file, or the checkpoint's own test rows (synthetic
/// data regenerated from its record, a table's test file or held-out rows),
/// checked against the model's data dimension.
func loadTestSet(_ option: DataOptions, checkpoint: Checkpoint) throws -> (name: String, examples: Examples) {
    let recorded = checkpoint.data
    let name: String, examples: Examples
    if option.namesTable, let path = option.data {
        if case .table(let table)? = recorded, let encoding = table.encoding {
            examples = .table(try table.table(path, key: option.dataKey, encoding: encoding,
                                              width: checkpoint.model.configuration.dataDimension))
        } else {
            // A model trained on images scores a table of the same images: its kind decided from the values.
            let table = try DataTable(contentsOf: path, key: option.dataKey)
            try table.checkFinite()
            examples = .table(table)
        }
        name = path + (option.dataKey.map { ":" + $0 } ?? "")
    } else {
        if option.dataKey != nil { throw IWAEError.invalidArgument("--data-key names an array of a .npz or .safetensors --data file") }
        let source: DataSource
        if option.data != nil { source = try option.source() }
        else if let recorded { source = recorded }
        else { throw IWAEError.invalidArgument("no data set: pass --data mnist, --data fashion-mnist, --data DIR or --data FILE") }
        guard let test = try source.loadTest() else {
            throw IWAEError.invalidArgument("the model was trained on \(source.name) without test rows (--test-data or --test-fraction): pass the rows to evaluate with --data FILE")
        }
        if case .table(let t) = source {
            name = t.testFile.map { $0 + (t.testKey.map { ":" + $0 } ?? "") } ?? "\(t.name), held-out rows"
        } else {
            name = source.name
        }
        examples = test
    }
    let expected = checkpoint.model.configuration.dataDimension
    guard examples.dimension == expected else {
        throw IWAEError.invalidArgument("\(name) has dimension \(examples.dimension) (features per row) but the checkpoint's model expects \(expected)")
    }
    return (name, examples)
}

import ArgumentParser
import Foundation
import IWAECore
import IWAEData
import IWAELinearAlgebra

@main
struct IWAECommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "iwae",
        abstract: "Train and evaluate variational and importance-weighted autoencoders on OpenBLAS.",
        subcommands: [Train.self, Evaluate.self, Sample.self, GradStats.self])

    /// Parses and runs a command; every failure is one line on stderr and a
    /// non-zero exit (help and version keep their usual output).
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch IWAEError.interrupted(let message) {
            ProgressBar.finishLine()
            FileHandle.standardError.write(Data("iwae: interrupted: \(message)\n".utf8))
            Foundation.exit(SignalFlag.signal == SIGTERM ? 143 : 130)
        } catch let error as IWAEError {
            fail("\(error)", code: 1)
        } catch {
            let code = exitCode(for: error)
            if code == .success { exit(withError: error) }
            let message = message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
            fail("\(message) (see 'iwae help')", code: code.rawValue)
        }
    }

    static func fail(_ message: String, code: Int32) -> Never {
        ProgressBar.finishLine()
        FileHandle.standardError.write(Data("iwae: error: \(message)\n".utf8))
        Foundation.exit(code)
    }
}

/// Options naming the data a command reads.
struct DataOptions: ParsableArguments {
    @Option(help: "fashion-mnist (Debian's dataset-fashion-mnist), a directory of MNIST-format IDX files, or linear-gaussian (synthetic).")
    var data: String?
}

/// The seed of the one-time binarization of test (and validation) images:
/// every evaluation sees the same binary images.
let heldOutBinarizationSeed: UInt64 = 0x7E57  // iwae-bench uses the same

/// The data set named by `--data`, or else the one the checkpoint was trained on.
func dataSource(_ option: String?, checkpoint: Checkpoint? = nil) throws -> String {
    guard let source = option ?? checkpoint?.info["data"] else {
        throw IWAEError.invalidArgument("no data set: pass --data fashion-mnist or --data DIR")
    }
    return source
}

/// Loads the test split only (for evaluation and samples): the `--data`
/// set, or the checkpoint's own (synthetic data regenerated from its settings).
func loadTestSet(_ option: String?, checkpoint: Checkpoint) throws -> (name: String, images: ImageSet) {
    let name = try dataSource(option, checkpoint: checkpoint)
    let source = try DataSource(name: name, settings: option == nil ? checkpoint.info : [:])
    return (name, try source.load(.test))
}

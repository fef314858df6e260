import ArgumentParser
import Foundation
import IWAE
import IWAEMPI

// The engine's option types parse straight from the command line: a bad
// value is refused by ArgumentParser with the list of valid ones.
extension BoundKind: ExpressibleByArgument {}
extension CovarianceKind: ExpressibleByArgument {}
extension PriorKind: ExpressibleByArgument {}
extension LikelihoodKind: ExpressibleByArgument {}
extension GradientEstimator: ExpressibleByArgument {}
extension ScoreBaseline: ExpressibleByArgument {}
extension GradientReducer: ExpressibleByArgument {}
extension LearningRateSchedule: ExpressibleByArgument {}
extension OutputInitialization: ExpressibleByArgument {
    /// A new run's choices (`unchanged` keeps a loaded model's layer: Swift only).
    public static var allValueStrings: [String] { allCases.filter { $0 != .unchanged }.map(\.rawValue) }
    public init?(argument: String) {
        guard let value = OutputInitialization(rawValue: argument), value != .unchanged else { return nil }
        self = value
    }
}
extension GEMMChoice: ExpressibleByArgument {}
extension Precision: ExpressibleByArgument {}
extension AISSettings.Schedule: ExpressibleByArgument {}
extension AISSettings.Start: ExpressibleByArgument {}
extension Activation: ExpressibleByArgument {
    /// The hidden nonlinearities (identity is only an output layer's).
    public static var allValueStrings: [String] { allCases.filter { $0 != .identity }.map(\.rawValue) }
}

/// Hidden widths such as "200,200", or "none" for no hidden layer.
public struct Widths: ExpressibleByArgument, Equatable, Sendable {
    public var values: [Int]

    public init(_ values: [Int]) { self.values = values }

    public init?(argument: String) {
        if argument == "none" { values = []; return }
        let widths = argument.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !widths.isEmpty, widths.allSatisfy({ $0 != nil && $0! >= 1 }) else { return nil }
        values = widths.map { $0! }
    }

    public var defaultValueDescription: String { values.isEmpty ? "none" : values.map(String.init).joined(separator: ",") }
}

/// A stochastic layer above z₁ on the command line: `DIM@ENCODER[/DECODER]`,
/// the layer's dimension, the hidden widths of q(z_{l+1}|z_l), and of
/// p(z_l|z_{l+1}) (default: the encoder's reversed); `none` for no hidden layer.
/// The IWAE paper's second layer is `50@100,100`.
public struct UpperLayerArgument: ExpressibleByArgument, Sendable {
    public var layer: StochasticLayer

    public init?(argument: String) {
        let parts = argument.split(separator: "@", maxSplits: 1).map(String.init)
        guard parts.count == 2, let dimension = Int(parts[0]), dimension >= 1 else { return nil }
        let networks = parts[1].split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard networks.count <= 2, let encoder = Widths(argument: networks[0]) else { return nil }
        let decoder = networks.count == 2 ? Widths(argument: networks[1]) : Widths(encoder.values.reversed())
        guard let decoder else { return nil }
        layer = StochasticLayer(dimension: dimension, encoderHidden: encoder.values, decoderHidden: decoder.values)
    }
}

/// A comma-separated list of positive integers, such as "1,10,100".
public struct PositiveIntegers: ExpressibleByArgument, Equatable, Sendable {
    public var values: [Int]

    public init(_ values: [Int]) { self.values = values }

    public init?(argument: String) {
        let parts = argument.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ $0 != nil && $0! >= 1 }) else { return nil }
        values = parts.map { $0! }
    }

    public var defaultValueDescription: String { values.map(String.init).joined(separator: ",") }
}

/// A comma-separated list of an option's values (`--objectives elbo,iwae`),
/// each parsed as `Element` parses one: a misspelt value is the argument
/// parser's one-line error, naming the option.
public struct CommaSeparated<Element: ExpressibleByArgument>: ExpressibleByArgument {
    public var values: [Element]

    public init(_ values: [Element]) { self.values = values }

    public init?(argument: String) {
        let parts = argument.split(separator: ",", omittingEmptySubsequences: false)
            .map { Element(argument: $0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ $0 != nil }) else { return nil }
        values = parts.map { $0! }
    }

    public var defaultValueDescription: String { values.map(\.defaultValueDescription).joined(separator: ",") }

    public static var allValueStrings: [String] { Element.allValueStrings }
}

/// One process of a command that runs as several MPI ranks: its rank, and
/// how it leaves MPI (`MPI_Finalize`) when every rank leaves together.
public struct CommandLineRank {
    public var rank: Int
    public var finish: () -> Void

    public init(rank: Int, finish: @escaping () -> Void) {
        self.rank = rank
        self.finish = finish
    }
}

/// Runs a command-line tool: output line-buffered, and every failure one
/// line on stderr (`tool: error: …`) with a non-zero exit; an interruption
/// exits 130 (SIGINT) or 143 (SIGTERM). Help and version keep their output.
///
/// As one of several ranks (`rank`), rank 0 alone prints what all ranks
/// agreed on (success, parse errors, `IWAEError.rankFailed`, interruptions)
/// and every rank then finishes MPI; an error only this rank met is printed
/// with its rank, and the process exits without finishing MPI, so that
/// mpirun stops the others.
///
/// `aliases` maps an option to the subcommand it stands for: with
/// `["train": ("--resume", "resume")]`, `train --resume DIR …` is parsed as
/// `resume DIR …`, and the argument parser checks what may come with it.
public func runCommandLine(_ command: ParsableCommand.Type, tool: String, rank: CommandLineRank? = nil,
                           aliases: [String: (option: String, subcommand: String)] = [:]) -> Never {
    lineBufferStandardOutput()
    let quiet = (rank?.rank ?? 0) != 0
    func leave(_ code: Int32, agreed: Bool) -> Never {
        if agreed { rank?.finish() }
        exit(code)
    }
    func fail(_ message: String, code: Int32, agreed: Bool = true) -> Never {
        ProgressBar.finishLine()
        fflush(stdout)
        let line = message.split(whereSeparator: \.isNewline).joined(separator: " ")
        if !quiet || !agreed {
            let prefix = agreed || rank == nil ? "" : "rank \(rank!.rank): "
            FileHandle.standardError.write(Data("\(tool): error: \(prefix)\(line)\n".utf8))
        }
        leave(code, agreed: agreed)
    }
    do {
        // Swift would turn invalid bytes into U+FFFD and write to another path.
        for i in 1..<Int(CommandLine.argc) {
            if let raw = CommandLine.unsafeArgv[i], String(validatingCString: raw) == nil {
                fail("argument \(i) is not valid UTF-8; name files with UTF-8 paths", code: 64)
            }
        }
        var arguments = Array(CommandLine.arguments.dropFirst())
        if let first = arguments.first, let alias = aliases[first],
           let at = arguments.firstIndex(where: { $0 == alias.option || $0.hasPrefix(alias.option + "=") }) {
            // The option's value becomes the subcommand's argument.
            let separate = arguments[at] == alias.option
            let value = separate ? (at + 1 < arguments.count ? arguments[at + 1] : nil) : String(arguments[at].dropFirst(alias.option.count + 1))
            arguments.removeSubrange(at..<(separate ? Swift.min(at + 2, arguments.count) : at + 1))
            arguments.replaceSubrange(0..<1, with: [alias.subcommand] + (value.map { [$0] } ?? []))
        }
        var parsed = try command.parseAsRoot(arguments)
        try parsed.run()
        fflush(stdout)
        if ferror(stdout) != 0 { fail("cannot write the output (\(String(cString: strerror(errno))))", code: 1) }
        leave(0, agreed: true)
    } catch IWAEError.stoppedWithOtherRanks {
        leave(1, agreed: true)
    } catch IWAEError.interrupted(let message) {
        ProgressBar.finishLine()
        if !quiet { FileHandle.standardError.write(Data("\(tool): interrupted: \(message)\n".utf8)) }
        leave(SignalFlag.signal == SIGTERM ? 143 : 130, agreed: true)
    } catch let error as IWAEError {
        fail("\(error)", code: 1, agreed: rank == nil || error.isAgreedAcrossRanks)
    } catch let error as DataError {
        fail("\(error)", code: 1, agreed: rank == nil)
    } catch {
        // Parse errors: every rank parsed the same arguments.
        let code = command.exitCode(for: error)
        if code == .success { if quiet { leave(0, agreed: true) }; command.exit(withError: error) }
        let message = command.message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
        fail("\(message) (see '\(tool) help')", code: code.rawValue)
    }
}

/// SIGINT and SIGTERM set a flag that the training loop polls after each step.
public final class SignalFlag: @unchecked Sendable {
    nonisolated(unsafe) static var raised: sig_atomic_t = 0
    nonisolated(unsafe) public static var signal: Int32 = 0

    public var isSet: Bool { SignalFlag.raised != 0 }

    public static func install() -> SignalFlag {
        let handler: @convention(c) (Int32) -> Void = { number in
            SignalFlag.signal = number
            SignalFlag.raised = 1
        }
        Foundation.signal(SIGINT, handler)
        Foundation.signal(SIGTERM, handler)
        return SignalFlag()
    }
}

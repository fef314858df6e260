import ArgumentParser
import Foundation
import IWAE
import IWAEConsole
import IWAEMPI

/// The processes this `iwae` belongs to: itself alone, or, under `mpirun`
/// in a build with `--traits MPI`, the ranks of `MPI_COMM_WORLD`. Only
/// `iwae train` runs across ranks.
enum ProcessRanks {
    nonisolated(unsafe) static var current: RankGroup = SingleRank()

    /// Worker threads per rank when `--threads` is not given: the active
    /// cores shared among the ranks on this machine (nil: all cores).
    static var defaultWorkers: Int? {
        #if MPI
        if let group = current as? MPIRanks {
            return Swift.max(1, ProcessInfo.processInfo.activeProcessorCount / group.localCount)
        }
        #endif
        return nil
    }

    /// Sets the reducer and the exchange timeout of an MPI group (no-op for one process).
    static func configure(reducer: GradientReducer, timeout: Double) {
        #if MPI
        if let group = current as? MPIRanks {
            group.reducer = reducer
            if group.watchdog == nil { group.watchdog = ExchangeWatchdog(timeout: timeout, rank: group.rank, tool: "iwae",
                                                                 stopRequested: { SignalFlag.signal != 0 }) }
        }
        #endif
    }

    /// Runs `command` as this process: alone, or as one MPI rank when mpirun
    /// started several (one-line errors when this build or subcommand cannot).
    static func run(_ command: ParsableCommand.Type, tool: String) -> Never {
        let launched = ProcessLaunch.launchedRanks
        // `train --resume DIR` is `resume DIR` under its older spelling.
        let aliases = ["train": (option: "--resume", subcommand: "resume")]
        guard launched > 1 else { runCommandLine(command, tool: tool, aliases: aliases) }
        let rankZero = (ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"] ?? ProcessInfo.processInfo.environment["PMI_RANK"]) == "0"
        func refuse(_ message: String) -> Never {
            if rankZero { FileHandle.standardError.write(Data("\(tool): error: \(message)\n".utf8)) }
            exit(1)
        }
        guard ProcessLaunch.supportsMPI else {
            refuse("mpirun started \(launched) processes but this \(tool) was built without MPI: build it with 'swift build -c release --traits MPI'")
        }
        guard ["train", "resume"].contains(CommandLine.arguments.dropFirst().first) else {
            refuse("only '\(tool) train' and '\(tool) resume' run across MPI ranks; run other commands without mpirun")
        }
        #if MPI
        let group = MPIRanks()
        current = group
        ProgressBar.silenced = group.rank != 0
        runCommandLine(command, tool: tool, rank: CommandLineRank(rank: group.rank, finish: group.finish), aliases: aliases)
        #else
        runCommandLine(command, tool: tool)   // not reached: supportsMPI is false here
        #endif
    }
}

/// `--reducer` and `--rank-timeout`, the options of a run under mpirun, as
/// `train` and `resume` take them.
struct RankOptions: ParsableArguments {
    @Option(help: "Under mpirun: how the ranks sum gradients (ordered: the bits of one process with all ranks' threads; allreduce: MPI_Allreduce, faster, other bits).")
    var reducer: GradientReducer = .ordered
    @Option(help: "Under mpirun: seconds one exchange may wait for the other ranks before every rank is stopped (a rank that hangs).")
    var rankTimeout: Double = 600

    /// Checks the options and hands them to this process's ranks.
    func configure() throws {
        guard rankTimeout > 0 else { throw IWAEError.invalidArgument("--rank-timeout must be positive, got \(rankTimeout)") }
        ProcessRanks.configure(reducer: reducer, timeout: rankTimeout)
    }
}

import ArgumentParser
import Foundation
import IWAE
import IWAEConsole
import IWAEMPI

struct Resume: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Continue the training run in DIR from its last checkpoint, bit for bit (its options come from the checkpoint; also spelled 'iwae train --resume DIR').")

    @Argument(help: "The run's output directory.") var directory: String?
    @Option(name: .customLong("resume"), help: ArgumentHelp("The run's directory, as 'iwae train --resume DIR' gives it.", visibility: .hidden))
    var resumeDirectory: String?
    @Option(help: "Train to this many epochs in all (default: the run's own).") var epochs: Int?
    @OptionGroup var checkpointOptions: CheckpointOptions
    @OptionGroup var rankOptions: RankOptions

    func validate() throws {
        guard (directory == nil) != (resumeDirectory == nil) else {
            throw ValidationError("give the run's directory once: iwae resume DIR (also spelled iwae train --resume DIR)")
        }
    }

    func run() throws {
        try rankOptions.configure()
        try Resume.resume(directory ?? resumeDirectory!, epochs: epochs, checkpointEvery: checkpointOptions.checkpointEvery)
    }

    /// Continues the run in `directory` on this process's ranks, printing
    /// as `iwae train` prints.
    static func resume(_ directory: String, epochs: Int?, checkpointEvery: Int?) throws {
        let ranks = ProcessRanks.current
        let (run, images, checkpoint) = try ranks.together {
            try TrainingRun.resuming(directory, epochs: epochs, checkpointEvery: checkpointEvery, ranks: ranks.count)
        }
        let stop = SignalFlag.install()
        try run.train(examples: images, resuming: checkpoint, ranks: ranks, shouldStop: { stop.isSet }, events: .console,
                      faults: .fromEnvironment(rank: ranks.rank))
    }
}

extension TrainingRun.Events {
    /// The run's log and progress bar on the terminal (`ProgressBar`).
    static var console: TrainingRun.Events {
        TrainingRun.Events(log: { ProgressBar.log($0) }, progress: { p in
            ProgressBar.draw("epoch \(p.epoch)/\(p.epochs)", done: p.batch, total: p.batches,
                             detail: "bound \(formatted(p.runningBound))  \(Int(p.examplesPerSecond)) ex/s")
        })
    }
}

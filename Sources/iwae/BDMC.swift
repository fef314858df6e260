import ArgumentParser
import Foundation
import IWAE
import IWAEConsole

struct BDMC: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bdmc",
        abstract: "Bidirectional Monte Carlo: on data simulated from the model, AIS from the prior (a lower bound of log p(x)) and from the exact posterior sample (an upper bound), and their gap for each T.")

    @Argument(help: "Training output directory (or a model.safetensors file).") var checkpoint: String
    @Option(help: "Examples (z, x) simulated from the model.") var examples: Int = 100
    @Option(help: "Intermediate distributions T, comma-separated: one forward and one reverse run each.")
    var steps: String = "100,1000"
    @OptionGroup var ais: AISOptions
    @Option(help: "Seed of the simulation and the chains.") var seed: UInt64 = 1
    @Option(help: "Worker threads (default: all active cores).") var threads: Int?
    @Flag(help: "Print one JSON object per T instead of a table.") var json = false

    func run() throws {
        guard (1...1_000_000).contains(examples) else { throw IWAEError.invalidArgument("--examples must be between 1 and 1000000, got \(examples)") }
        if ais.aisSteps != nil { throw IWAEError.invalidArgument("bdmc takes its list of T as --steps (e.g. --steps 100,1000)") }
        let list = steps.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !list.isEmpty, list.allSatisfy({ $0 != nil }) else { throw IWAEError.invalidArgument("--steps must be a comma-separated list of integers, got '\(steps)'") }
        let settings = try list.map { try ais.settings(steps: $0!) }
        if let t = threads, !(1...TrainingOptions.maximumWorkers).contains(t) {
            throw IWAEError.invalidArgument("--threads must be between 1 and \(TrainingOptions.maximumWorkers), got \(t)")
        }
        let loaded = try Checkpoint.load(from: checkpoint)
        let workers = ModelWorkers(model: loaded.model, workers: threads, seed: seed)
        if !json { print("BDMC on \(examples) examples simulated from the model; true log p(x) lies between the bounds") }
        for s in settings {
            let started = Date()
            let bdmc = try workers.bidirectionalMonteCarlo(examples: examples, settings: s, seed: seed)
            let seconds = Date().timeIntervalSince(started)
            for estimate in [bdmc.lower, bdmc.upper] {
                if let bad = estimate.logLikelihoods.firstIndex(where: { !$0.isFinite }) {
                    throw IWAEError.numerical("BDMC: the chains of simulated example \(bad) diverged (its bound is \(estimate.logLikelihoods[bad])): nothing written; try a smaller --step-size")
                }
            }
            let divergent = bdmc.lower.divergentProposals + bdmc.upper.divergentProposals
            if divergent > 0 {
                FileHandle.standardError.write(Data("iwae: warning: \(divergent) HMC proposals diverged (NaN or infinite energy) and were rejected\n".utf8))
            }
            if json {
                print(jsonLine([("ais_steps", s.steps), ("leapfrog", s.leapfrogSteps), ("chains", s.chains), ("examples", examples),
                                ("lower", bdmc.lower.meanLogLikelihood), ("lower_stderr", bdmc.lower.standardError),
                                ("upper", bdmc.upper.meanLogLikelihood), ("upper_stderr", bdmc.upper.standardError),
                                ("gap", bdmc.gap), ("divergent_proposals", divergent), ("seconds", seconds)]
                               + (bdmc.exactMeanLogLikelihood.map { [("exact", $0)] } ?? [])))
            } else {
                print("T = \(s.steps)".padding(toLength: 10, withPad: " ", startingAt: 0)
                      + "lower \(formatted(bdmc.lower.meanLogLikelihood))  upper \(formatted(bdmc.upper.meanLogLikelihood))  gap \(formatted(bdmc.gap, 3)) nats"
                      + (bdmc.exactMeanLogLikelihood.map { "  exact \(formatted($0, 3)) (linear-Gaussian closed form)" } ?? "") + "  (\(formatted(seconds, 1)) s)")
            }
        }
    }
}

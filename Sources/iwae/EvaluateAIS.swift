import ArgumentParser
import Foundation
import IWAE
import IWAEConsole

/// The options of `evaluate --method ais` (Mathematics §9).
struct AISOptions: ParsableArguments {
    @Option(help: "AIS: intermediate distributions T.") var aisSteps: Int?
    @Option(help: "AIS: leapfrog steps L per HMC transition.") var leapfrog: Int?
    @Option(help: "AIS: chains C per example whose weights make the estimate.") var chains: Int?
    @Option(help: "AIS: pilot chains per example that steer the step size toward 65 % acceptance and never enter the estimate (0: a fixed step size).")
    var pilotChains: Int?
    @Option(help: "AIS: how β rises from 0 to 1.") var schedule: AISSettings.Schedule?
    @Option(help: "AIS: the leapfrog step size at the start.") var stepSize: Double?
    @Option(help: "AIS: where the chains start: prior (p(z) p(x|z)^β) or encoder (q(z|x)^(1−β) p(x, z)^β).")
    var aisStart: AISSettings.Start?

    var given: Bool {
        aisSteps != nil || leapfrog != nil || chains != nil || pilotChains != nil || schedule != nil || stepSize != nil || aisStart != nil
    }

    /// The settings, each value checked once by `AISSettings` (T = `steps`
    /// when given: `bdmc` runs a list of them).
    func settings(steps: Int? = nil) throws -> AISSettings {
        let defaults = try AISSettings()
        return try AISSettings(steps: steps ?? aisSteps ?? defaults.steps, leapfrogSteps: leapfrog ?? defaults.leapfrogSteps,
                               chains: chains ?? defaults.chains, pilotChains: pilotChains ?? defaults.pilotChains,
                               schedule: schedule ?? defaults.schedule, start: aisStart ?? defaults.start,
                               initialStepSize: stepSize ?? defaults.initialStepSize)
    }
}

extension Evaluate {
    /// `evaluate --method ais`: the AIS estimate of every test row, in the
    /// data's own units, as a table or one JSON object.
    func evaluateByAIS(_ workers: ModelWorkers<Float>, test: Examples, x: Tensor<Float>, dataName: String) throws {
        let settings = try ais.settings()
        let started = Date()
        let modelUnits = try workers.annealedImportanceSampling(x.matrix, settings: settings, seed: estimation.seed) { done in
            let elapsed = Date().timeIntervalSince(started)
            ProgressBar.draw("AIS T=\(settings.steps)", done: done, total: test.count,
                             detail: "\(formatted(Double(done) / max(elapsed, 1e-9), 2)) \(test.noun)/s")
        }
        let seconds = Date().timeIntervalSince(started)
        ProgressBar.finishLine()
        if let bad = modelUnits.logLikelihoods.firstIndex(where: { !$0.isFinite }) {
            throw IWAEError.numerical("AIS: the chains of test row \(bad) diverged (its estimate is \(modelUnits.logLikelihoods[bad])): no estimate written; try a smaller --step-size or more --ais-steps")
        }
        if modelUnits.divergentProposals > 0 {
            FileHandle.standardError.write(Data("iwae: warning: \(modelUnits.divergentProposals) HMC proposals diverged (NaN or infinite energy) and were rejected; the estimate stands, a smaller --step-size moves the chains better\n".utf8))
        }
        let logLikelihoods = modelUnits.logLikelihoods.map { $0 + test.logJacobian }
        let mean = logLikelihoods.reduce(0, +) / Double(logLikelihoods.count)
        let acceptance = modelUnits.acceptanceRates.reduce(0, +) / Double(modelUnits.examples)
        let stepSize = modelUnits.finalStepSizes.reduce(0, +) / Double(modelUnits.examples)
        if let perExample {
            let lines = logLikelihoods.indices.map { i in
                jsonLine([("index", i), ("log_likelihood", logLikelihoods[i]), ("standard_error", modelUnits.standardErrors[i]),
                          ("acceptance", modelUnits.acceptanceRates[i])]) + "\n"
            }
            try writeFileAtomically(Array(lines.joined().utf8), to: perExample)
        }
        let model = workers.model
        let exact = model.isLinearGaussian ? try model.exactLogLikelihood(x.matrix) : nil
        let exactNLL = exact.map { -$0.reduce(0, +) / Double($0.count) - test.logJacobian }
        if json {
            let fields: [(String, any JSONField)] = [
                ("method", "ais"), ("nll", -mean), ("nll_stderr", modelUnits.standardError),
                ("ais_steps", settings.steps), ("leapfrog", settings.leapfrogSteps), ("chains", settings.chains),
                ("pilot_chains", settings.pilotChains), ("schedule", settings.schedule.rawValue), ("ais_start", settings.start.rawValue),
                ("acceptance", acceptance), ("step_size", stepSize), ("divergent_proposals", modelUnits.divergentProposals),
                ("examples", modelUnits.examples), ("precision", workers.plan.precision.rawValue),
                ("seconds", seconds), ("data", dataName), ("log_jacobian", test.logJacobian),
            ]
            print(jsonLine(fields + (exactNLL.map { [("exact_nll", $0)] } ?? [])))
        } else {
            print("test \(test.noun)".padding(toLength: 19, withPad: " ", startingAt: 0) + "\(modelUnits.examples) (\(dataName))")
            print("log p(x) ≈ AIS     \(formatted(mean)) ± \(formatted(modelUnits.standardError)) nats (T = \(settings.steps), \(settings.schedule.rawValue) β, L = \(settings.leapfrogSteps), \(settings.chains) chains from the \(settings.start.rawValue))")
            print("NLL                \(formatted(-mean)) nats")
            if test.logJacobian != 0 {
                print("units              the data's own: standardized features' log-likelihood + log|dy/dx| = \(formatted(test.logJacobian))")
            }
            if let exactNLL { print("exact NLL          \(formatted(exactNLL, 4)) nats (linear-Gaussian closed form); estimate − exact \(formatted(-mean - exactNLL, 4))") }
            print("HMC                acceptance \(formatted(acceptance, 3)) (pilots steer toward \(AISSettings.targetAcceptance)), step size \(formatted(stepSize, 4)), \(modelUnits.divergentProposals) divergent proposals")
            print("time               \(formatted(seconds, 1)) s")
        }
    }
}

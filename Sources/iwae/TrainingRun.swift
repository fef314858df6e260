import Foundation
import IWAE
import IWAEConsole

/// One `iwae train` run in its output directory: the model, the trainer, the
/// checkpoints (with the typed `TrainingRecord` that `--resume` reads back),
/// `metrics.jsonl`, signals and the log.
struct TrainingRun {
    var directory: String
    var configuration: ModelConfiguration
    var options: TrainingOptions
    var data: DataSource
    var trainExamplesLimit: Int?
    var validationExamples: Int
    var checkpointEvery: Int?

    /// Trains on `images`: a new run (the model initialized from the seed, a
    /// first checkpoint written), or, from `checkpoint`, the continuation of
    /// one, bit for bit (same seed streams, order and position).
    ///
    /// Under mpirun every rank runs this with the same arguments; rank 0
    /// alone holds the directory's lock and writes checkpoints, metrics and
    /// the log. Each phase that can fail on one rank only ends in an
    /// agreement (`RankGroup.together`), so all ranks stop together.
    func train(images: ImageSet, resuming checkpoint: Checkpoint?) throws {
        let ranks = ProcessRanks.current
        let writes = ranks.rank == 0
        let seeds = options.seeds
        let (model, split, heldOut) = try ranks.together {
            if writes {
                try RunDirectory.lock(directory)
                RunDirectory.removeOrphanedTemporaries(in: directory)
            }
            let split = try images.splitValidation(count: validationExamples, seed: seeds.validationSplit)
            let model = VariationalAutoencoder<Float>(configuration, seed: seeds.initialization)
            // A resumed run takes every parameter from its checkpoint below.
            if checkpoint == nil { try model.initializeOutputLayer(from: split.train, options.outputInitialization) }
            let heldOut = split.validation.count > 0 ? model.evaluationImages(split.validation) : nil
            return (model, split, heldOut)
        }
        let trainer = try Trainer(model: model, options: options, validation: heldOut, ranks: ranks)
        try ranks.together {
            guard let checkpoint else { return }
            guard let saved = checkpoint.optimizer, let state = checkpoint.trainingState,
                  saved.firstMoment.count == model.store.values.count else {
                throw IWAEError.invalidCheckpoint("the checkpoint in \(directory) does not match its own training record")
            }
            model.store.values.pointer.update(from: checkpoint.model.store.values.pointer, count: model.store.values.count)
            trainer.optimizer.restore(step: saved.step, firstMoment: saved.firstMoment, secondMoment: saved.secondMoment)
            try trainer.restore(state)
        }
        let record = TrainingRecord(options: options, data: data, trainExamplesLimit: trainExamplesLimit,
                                    validationExamples: validationExamples, threads: trainer.workers.totalWorkerCount,
                                    trainCount: split.train.count, validationCount: split.validation.count)
        let imageSize = Checkpoint.ImageSize(width: images.width, height: images.height)
        let counts = trainer.gemmPlan.counts
        let across = (ranks.count > 1 ? " on \(ranks.count) ranks × \(trainer.workers.workerCount) threads" : "")
            + "; products by oneDNN at \(counts[.onednn] ?? 0) and OpenBLAS at \(counts[.openblas] ?? 0) of \(trainer.gemmPlan.backends.count) sites (--gemm \(options.gemm.rawValue))"
            + (options.precision == .bf16 ? ", bf16 inputs" : "")
        if options.precision == .bf16 { ProgressBar.log(Precision.bf16Products.notice) }
        if let state = checkpoint?.trainingState {
            ProgressBar.log("resuming \(directory) at epoch \(state.epoch), step \(state.step) (\(options.epochs) epochs in all)\(across)")
        } else {
            ProgressBar.log("training \(options.objective.bound.rawValue) K=\(options.objective.samplesPerExample) on \(split.train.count) images (\(split.validation.count) held out), batch \(options.batchSize), \(options.epochs) epochs, \(model.store.values.count) parameters\(across)")
        }
        // Fault injection for the multi-rank tests: the faulty rank's
        // checkpoint write fails from this step on (IWAE_FAULT_RANK picks it).
        let environment = ProcessInfo.processInfo.environment
        let faulty = environment["IWAE_FAULT_RANK"].flatMap(Int.init).map { $0 == ranks.rank } ?? true
        let failSavesFromStep = faulty ? environment["IWAE_FAULT_FAIL_SAVE_AT_STEP"].flatMap(Int.init) : nil
        func save(_ state: TrainingState) throws {
            if let step = failSavesFromStep, state.step >= step {
                throw IWAEError.writeFailed("cannot write the checkpoint at step \(state.step) (injected fault)")
            }
            // Never replace a good checkpoint with values that are no longer finite.
            let finite = { (t: Tensor<Float>) in t.buffer.allSatisfy { $0.isFinite } }
            guard finite(model.store.values), finite(trainer.optimizer.firstMoment), finite(trainer.optimizer.secondMoment) else {
                throw IWAEError.numerical("the parameters or Adam's moments are not finite at epoch \(state.epoch), step \(state.step) (diverged: try a smaller --learning-rate); the last finite checkpoint in \(directory) is kept")
            }
            guard writes else { return }
            try Checkpoint(model: model, data: data, imageSize: imageSize, training: record, optimizer: trainer.optimizer,
                           trainingState: state).save(to: directory)
        }
        if checkpoint == nil {
            let state = trainer.currentState
            try ranks.together { try save(state) }
        }
        let stop = SignalFlag.install()
        // Fault injection for the crash-recovery tests: die (SIGKILL), be
        // interrupted (SIGINT) or stopped (SIGSTOP, a hung rank) right after a
        // given step, as from outside. Under mpirun, IWAE_FAULT_RANK names the
        // rank that does it (default: all).
        let killAtStep = faulty ? environment["IWAE_FAULT_KILL_AT_STEP"].flatMap(Int.init) : nil
        let interruptAtStep = faulty ? environment["IWAE_FAULT_INTERRUPT_AT_STEP"].flatMap(Int.init) : nil
        let stopAtStep = faulty ? environment["IWAE_FAULT_STOP_AT_STEP"].flatMap(Int.init) : nil
        let metricsPath = directory + "/metrics.jsonl"
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let started = Date()
        do {
            try trainer.train(split.train, checkpointEvery: checkpointEvery, shouldStop: { stop.isSet }, afterStep: { step in
                if step == killAtStep { kill(getpid(), SIGKILL) }
                if step == interruptAtStep { kill(getpid(), SIGINT) }
                if step == stopAtStep { kill(getpid(), SIGSTOP) }
            }, onCheckpoint: save, onProgress: { p in
                ProgressBar.draw("epoch \(p.epoch)/\(p.epochs)", done: p.batch, total: p.batches,
                                 detail: "bound \(formatted(p.runningBound))  \(Int(p.examplesPerSecond)) ex/s")
            }, onEpoch: { m, state in
                try save(state)
                guard writes else { return }
                try appendLine(String(decoding: try encoder.encode(m), as: UTF8.self), to: metricsPath)
                let validation = m.validationBound.map { "  validation \(formatted($0))" } ?? ""
                ProgressBar.log("epoch \(m.epoch)/\(options.epochs)  train \(formatted(m.trainBound))\(validation)  \(Int(m.examplesPerSecond)) ex/s  \(formatted(m.seconds, 1)) s")
            })
        } catch IWAEError.interrupted(let message) {
            throw IWAEError.interrupted("\(message); checkpoint saved in \(directory); continue with: iwae train --resume \(directory)")
        }
        ProgressBar.log("done in \(formatted(Date().timeIntervalSince(started), 1)) s; checkpoint \(directory)/\(Checkpoint.fileName)")
    }
}

/// What `iwae train` keeps in its output directory besides the checkpoint
/// and metrics: an exclusive lock for the whole run, and the clean-up of
/// what killed runs left behind.
enum RunDirectory {
    static let lockName = ".iwae-train.lock"
    /// Descriptors of the locks this process holds (kept open until exit).
    nonisolated(unsafe) static var held: [String: Int32] = [:]

    /// Takes the run directory's exclusive lock (flock), held until the
    /// process exits; a second `iwae train` on the same directory fails at once.
    static func lock(_ directory: String) throws {
        if held[directory] != nil { return }
        let fd = open(directory + "/" + lockName, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw IWAEError.writeFailed("cannot lock \(directory): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw IWAEError.invalidArgument("another iwae train is running in \(directory) (it holds \(directory)/\(lockName))")
        }
        held[directory] = fd
    }

    /// Whether this process holds `directory`'s lock.
    static func holdsLock(_ directory: String) -> Bool { held[directory] != nil }

    /// Removes temporary checkpoint files (`.model.safetensors.tmp-PID`)
    /// whose writer is no longer alive, as a SIGKILL leaves them.
    static func removeOrphanedTemporaries(in directory: String) {
        let prefix = "." + Checkpoint.fileName + ".tmp-"
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasPrefix(prefix) {
            guard let pid = Int32(name.dropFirst(prefix.count)), pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { unlink(directory + "/" + name) }
        }
    }

    /// Removes a directory this run created if the run failed before it
    /// wrote anything there (only the lock).
    static func removeIfUnused(_ directory: String) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? ["?"]
        guard names.allSatisfy({ $0 == lockName }) else { return }
        unlink(directory + "/" + lockName)
        rmdir(directory)
    }
}

/// Appends one line to a file and flushes it to disk.
func appendLine(_ line: String, to path: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    guard fd >= 0 else { throw IWAEError.writeFailed("cannot write \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    let bytes = Array((line + "\n").utf8)
    let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    guard written == bytes.count, fsync(fd) == 0 else {
        throw IWAEError.writeFailed("cannot write \(path): \(String(cString: strerror(errno)))")
    }
}

// What `iwae train --resume` does with a loaded checkpoint before its first
// step, for the fuzz targets that reach a checkpoint (compiled with each).
import IWAE

/// Rebuilds the trainer of `checkpoint`'s run and restores its state, as
/// `--resume` does, throwing where `--resume` would refuse.
func exerciseResume(_ checkpoint: Checkpoint) {
    guard checkpoint.resumeDamage == nil, let record = checkpoint.training, let state = checkpoint.trainingState else { return }
    // No timing of products per input: OpenBLAS throughout.
    guard let options = try? record.options.with(epochs: 0, workers: record.threads, gemm: .openblas),
          let trainer = try? Trainer(model: checkpoint.model, options: options, validation: nil) else { return }
    guard (try? trainer.restore(state)) != nil else { return }
    _ = try? trainer.checkResumedState(trainCount: record.trainCount)
}

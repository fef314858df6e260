// libFuzzer target: checkpoints whose checksums are recomputed after every
// mutation, so that mutations reach past the CRCs into the typed metadata,
// the model's construction and the resumed training state. Built and run by
// Tests/Fuzz/run.sh, not by `swift test`.
import IWAE

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzResealedCheckpoint(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let file = try? SafetensorsFile(parsing: bytes, name: "fuzz") else { return 0 }
    guard let checkpoint = try? Checkpoint(Checkpoint.resealed(file), name: "fuzz") else { return 0 }
    // What --resume does before the first step: rebuild the trainer and validate the state.
    guard let record = checkpoint.training, let state = checkpoint.trainingState else { return 0 }
    var options = record.options
    options.workers = record.threads
    options.epochs = 0
    options.gemm = .openblas   // no timing of products per input
    guard (try? options.validate()) != nil,
          let trainer = try? Trainer(model: checkpoint.model, options: options, validation: nil) else { return 0 }
    guard (try? trainer.restore(state)) != nil else { return 0 }
    _ = try? trainer.checkResumedState(trainCount: record.trainCount)
    return 0
}

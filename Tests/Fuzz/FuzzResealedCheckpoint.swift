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
    exerciseResume(checkpoint)
    return 0
}

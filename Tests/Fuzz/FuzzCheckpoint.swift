// libFuzzer target: the safetensors parser and the checkpoint loader on
// arbitrary bytes. Built and run by Tests/Fuzz/run.sh, not by `swift test`.
import IWAE

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCheckpoint(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let file = try? SafetensorsFile(parsing: bytes, name: "fuzz") else { return 0 }
    // Whatever parses re-encodes to a file that parses to the same tensors.
    if let again = try? SafetensorsFile(parsing: file.encoded(), name: "fuzz") {
        precondition(again.entries.map(\.name).sorted() == file.entries.map(\.name).sorted())
    }
    _ = try? Checkpoint(file, name: "fuzz")
    return 0
}

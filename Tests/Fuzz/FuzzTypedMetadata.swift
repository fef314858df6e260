// libFuzzer target: structural mutations of the typed JSON documents inside a
// real checkpoint's `__metadata__` (model, data, image, training, state), the
// checksums recomputed after each, then what `evaluate` and `--resume` do
// with the result. The fuzzer's bytes are a program of edits, not the file:
// each edit picks a document, walks to a field, and sets it to a value at an
// edge (0, −1, 2⁶³−1, 2⁴⁰, ±1e308, wrong types, null), deletes it, adds an
// unknown key, or nests it deeply. The seed checkpoint is
// $IWAE_FUZZ_CHECKPOINT (Tests/Fuzz/run.sh makes one mid-epoch).
// Built and run by Tests/Fuzz/run.sh, not by `swift test`.
import Foundation
import IWAE

let seedFile: SafetensorsFile = {
    let path = ProcessInfo.processInfo.environment["IWAE_FUZZ_CHECKPOINT"] ?? ".build-fuzz/fuzz/seed-run-mid/model.safetensors"
    let bytes = [UInt8](FileManager.default.contents(atPath: path) ?? Data())
    guard let file = try? SafetensorsFile(parsing: bytes, name: path) else { fatalError("no seed checkpoint at \(path)") }
    return file
}()

let documents = ["model", "data", "image", "training", "state"]
let edgeValues: [Any] = [0, -1, 1, Int.max, Int.min, 1 << 40, 1 << 41, -(1 << 40), 1e308, -1e308, 0.5, 1e-320,
                         "", "x", "fp16", true, NSNull(), [Any](), [String: Any](), [1 << 40, -1], ["kind": "linear-gaussian"]]

/// Reads the fuzzer's bytes as small integers.
struct Program {
    var bytes: ArraySlice<UInt8>
    mutating func next(_ bound: Int) -> Int? {
        guard let b = bytes.popFirst(), bound > 0 else { return nil }
        return Int(b) % bound
    }
}

/// Applies one edit to `value` along a path chosen by `program`.
func edit(_ value: Any, _ program: inout Program, depth: Int = 0) -> Any {
    guard let choice = program.next(8) else { return value }
    if depth < 6, choice < 3 {   // go deeper
        if var object = value as? [String: Any], !object.isEmpty {
            let keys = object.keys.sorted()
            let key = keys[program.next(keys.count) ?? 0]
            object[key] = edit(object[key]!, &program, depth: depth + 1)
            return object
        }
        if var array = value as? [Any], !array.isEmpty {
            let i = program.next(array.count) ?? 0
            array[i] = edit(array[i], &program, depth: depth + 1)
            return array
        }
    }
    switch choice {
    case 3: return edgeValues[program.next(edgeValues.count) ?? 0]
    case 4:   // delete a key
        if var object = value as? [String: Any], !object.isEmpty {
            let keys = object.keys.sorted()
            object[keys[program.next(keys.count) ?? 0]] = nil
            return object
        }
        return value
    case 5:   // an unknown key
        if var object = value as? [String: Any] {
            object["unknown\(program.next(4) ?? 0)"] = edgeValues[program.next(edgeValues.count) ?? 0]
            return object
        }
        return value
    case 6:   // deep nesting
        var nested = value
        for _ in 0..<(1 + (program.next(256) ?? 0)) { nested = [nested] }
        return nested
    default:   // the same value as a string, or an array cut short
        if let array = value as? [Any] { return Array(array.prefix(program.next(max(array.count, 1)) ?? 0)) }
        return "\(value)"
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTypedMetadata(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    var program = Program(bytes: ArraySlice(UnsafeBufferPointer(start: data, count: size)))
    var file = seedFile
    while let d = program.next(documents.count) {
        let key = documents[d]
        guard let text = file.metadata[key],
              let document = try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed]) else { continue }
        let changed = edit(document, &program)
        guard JSONSerialization.isValidJSONObject([changed]),
              let json = try? JSONSerialization.data(withJSONObject: [changed], options: [.fragmentsAllowed]) else { continue }
        // Unwrap the one-element array that made fragments serializable.
        file.metadata[key] = String(String(decoding: json, as: UTF8.self).dropFirst().dropLast())
    }
    guard let checkpoint = try? Checkpoint(Checkpoint.resealed(file), name: "fuzz") else { return 0 }
    // What evaluate reads, and what --resume does before its first step.
    _ = checkpoint.model.configuration.parameterCount
    exerciseResume(checkpoint)
    return 0
}

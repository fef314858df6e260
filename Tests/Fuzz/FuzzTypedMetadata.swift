// libFuzzer target: structural mutations of the typed JSON documents inside a
// real checkpoint's `__metadata__` (model, data, image, training, state), the
// checksums recomputed after each, then what `evaluate` and `--resume` do
// with the result. The fuzzer's bytes are a program of edits, not the file:
// each edit picks a document, walks to a field, and sets it to a value at an
// edge (0, −1, 2⁶³−1, 2⁴⁰, ±1e308, wrong types, null), deletes it, adds an
// unknown key or a known key twice, repeats it in a very long array, or nests
// it deeply. The seed checkpoint is
// $IWAE_FUZZ_CHECKPOINT (Tests/Fuzz/run.sh makes one mid-epoch).
//
// The documents are edited as a small JSON tree of this file's own (not
// Foundation's JSONSerialization, whose bridging to NSArray took 40 % of the
// time), written as bytes, a long array by copying its element's text, and
// the target is compiled with -O: about 265 executions a second on one core
// (12 with String appends at -Onone).
// Built and run by Tests/Fuzz/run.sh, not by `swift test`.
import Foundation
import IWAE

/// A JSON value as the edits see it; numbers keep their text.
indirect enum JSON {
    case number(String), string(String), bool(Bool), null
    case array([JSON]), object([(key: String, value: JSON)])
    /// An array of `count` copies of one value, written by copying its text.
    case repeated(JSON, count: Int)

    /// Parses the documents the engine writes (no whitespace handling beyond
    /// skipping it, escapes kept as written).
    static func parse(_ text: String) -> JSON? {
        var parser = Parser(bytes: Array(text.utf8))
        guard let value = parser.value() else { return nil }
        parser.skipSpace()
        return parser.index == parser.bytes.count ? value : nil
    }

    struct Parser {
        let bytes: [UInt8]
        var index = 0
        mutating func skipSpace() {
            while index < bytes.count, [0x20, 0x0A, 0x0D, 0x09].contains(bytes[index]) { index += 1 }
        }
        mutating func value() -> JSON? {
            skipSpace()
            guard index < bytes.count else { return nil }
            switch bytes[index] {
            case UInt8(ascii: "{"):
                index += 1
                var members: [(key: String, value: JSON)] = []
                skipSpace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "}") { index += 1; return .object(members) }
                while true {
                    skipSpace()
                    guard case .string(let key)? = value() else { return nil }
                    skipSpace()
                    guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { return nil }
                    index += 1
                    guard let member = value() else { return nil }
                    members.append((key, member))
                    skipSpace()
                    guard index < bytes.count else { return nil }
                    if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                    if bytes[index] == UInt8(ascii: "}") { index += 1; return .object(members) }
                    return nil
                }
            case UInt8(ascii: "["):
                index += 1
                var elements: [JSON] = []
                skipSpace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "]") { index += 1; return .array(elements) }
                while true {
                    guard let element = value() else { return nil }
                    elements.append(element)
                    skipSpace()
                    guard index < bytes.count else { return nil }
                    if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                    if bytes[index] == UInt8(ascii: "]") { index += 1; return .array(elements) }
                    return nil
                }
            case UInt8(ascii: "\""):
                let start = index + 1
                index += 1
                while index < bytes.count, bytes[index] != UInt8(ascii: "\"") {
                    index += bytes[index] == UInt8(ascii: "\\") ? 2 : 1
                }
                guard index < bytes.count else { return nil }
                defer { index += 1 }
                return .string(String(decoding: bytes[start..<index], as: UTF8.self))
            default:
                let start = index
                while index < bytes.count, !",]} \n\r\t".utf8.contains(bytes[index]) { index += 1 }
                let word = String(decoding: bytes[start..<index], as: UTF8.self)
                switch word {
                case "true": return .bool(true)
                case "false": return .bool(false)
                case "null": return .null
                default: return word.isEmpty ? nil : .number(word)
                }
            }
        }
    }

    var text: String { String(decoding: bytes, as: UTF8.self) }

    var bytes: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(byteCount)
        write(to: &out)
        return out
    }

    /// The length of the text, without writing it.
    var byteCount: Int {
        switch self {
        case .number(let n): return n.utf8.count
        case .string(let s): return s.utf8.count + 2
        case .bool(let b): return b ? 4 : 5
        case .null: return 4
        case .array(let elements): return 2 + max(elements.count - 1, 0) + elements.reduce(0) { $0 + $1.byteCount }
        case .repeated(let element, let count): return 2 + max(count - 1, 0) + count * element.byteCount
        case .object(let members): return 2 + max(members.count - 1, 0) + members.reduce(0) { $0 + $1.key.utf8.count + 3 + $1.value.byteCount }
        }
    }

    /// Appends the value's text as UTF-8 (bytes, not String appends: the
    /// long arrays of one input write megabytes).
    func write(to out: inout [UInt8]) {
        switch self {
        case .number(let n): out += n.utf8
        case .string(let s): out.append(UInt8(ascii: "\"")); out += s.utf8; out.append(UInt8(ascii: "\""))
        case .bool(let b): out += (b ? "true" : "false").utf8
        case .null: out += "null".utf8
        case .array(let elements):
            out.append(UInt8(ascii: "["))
            for i in elements.indices { if i > 0 { out.append(UInt8(ascii: ",")) }; elements[i].write(to: &out) }
            out.append(UInt8(ascii: "]"))
        case .repeated(let element, let count):
            let text = element.bytes
            out.append(UInt8(ascii: "["))
            for i in 0..<count { if i > 0 { out.append(UInt8(ascii: ",")) }; out += text }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for i in members.indices {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                out.append(UInt8(ascii: "\"")); out += members[i].key.utf8; out += "\":".utf8
                members[i].value.write(to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }
}

let seedFile: SafetensorsFile = {
    let path = ProcessInfo.processInfo.environment["IWAE_FUZZ_CHECKPOINT"] ?? ".build-fuzz/fuzz/seed-run-mid/model.safetensors"
    let bytes = [UInt8](FileManager.default.contents(atPath: path) ?? Data())
    guard let file = try? SafetensorsFile(parsing: bytes, name: path) else { fatalError("no seed checkpoint at \(path)") }
    return file
}()

let documents = ["model", "data", "image", "training", "state"]
/// The seed's documents, parsed once; each must write back to its own text,
/// or the edits would not start from the real file.
let seedDocuments: [String: JSON] = Dictionary(uniqueKeysWithValues: documents.compactMap { key in
    guard let text = seedFile.metadata[key] else { return nil }
    guard let document = JSON.parse(text), document.text == text else { fatalError("the seed's \(key) document does not round-trip") }
    return (key, document)
})
let edgeValues: [JSON] = [
    "0", "-1", "1", "\(Int.max)", "\(Int.min)", "\(1 << 40)", "\(1 << 41)", "\(-(1 << 40))", "1e308", "-1e308", "0.5", "1e-320",
    "18446744073709551616", "1e400", "-0",
].map { JSON.number($0) } + [
    .string(""), .string("x"), .string("fp16"), .string("bf16"), .string("linear-gaussian"), .string("\\u0000"),
    .bool(true), .null, .array([]), .object([]), .array([.number("\(1 << 40)"), .number("-1")]),
    .object([("kind", .string("linear-gaussian"))]),
]

/// Reads the fuzzer's bytes as small integers.
struct Program {
    var bytes: ArraySlice<UInt8>
    mutating func next(_ bound: Int) -> Int? {
        guard let b = bytes.popFirst(), bound > 0 else { return nil }
        return Int(b) % bound
    }
}

/// Levels of nesting the edits of the current input have added.
nonisolated(unsafe) var addedNesting = 0
let maximumAddedNesting = 700
/// Bytes of text the long-array edits of the current input have added.
nonisolated(unsafe) var repeatedBytes = 0
let maximumRepeatedBytes = 3 << 20

/// Applies one edit to `value` along a path chosen by `program`.
func edit(_ value: JSON, _ program: inout Program, depth: Int = 0) -> JSON {
    guard let choice = program.next(9) else { return value }
    if depth < 6, choice < 3 {   // go deeper
        if case .object(var members) = value, !members.isEmpty {
            let i = program.next(members.count) ?? 0
            members[i].value = edit(members[i].value, &program, depth: depth + 1)
            return .object(members)
        }
        if case .array(var elements) = value, !elements.isEmpty {
            let i = program.next(elements.count) ?? 0
            elements[i] = edit(elements[i], &program, depth: depth + 1)
            return .array(elements)
        }
    }
    switch choice {
    case 3: return edgeValues[program.next(edgeValues.count) ?? 0]
    case 4:   // delete a key
        if case .object(var members) = value, !members.isEmpty {
            members.remove(at: program.next(members.count) ?? 0)
            return .object(members)
        }
        return value
    case 5:   // an unknown key, or a known key twice
        if case .object(var members) = value {
            if let i = program.next(3), i == 0, !members.isEmpty {
                members.append((members[0].key, edgeValues[program.next(edgeValues.count) ?? 0]))
            } else {
                members.append(("unknown\(program.next(4) ?? 0)", edgeValues[program.next(edgeValues.count) ?? 0]))
            }
            return .object(members)
        }
        return value
    case 6:   // deep nesting, up to `maximumAddedNesting` levels per input (past
              // Foundation's limit of 512, within the stack of this recursive writer)
        var nested = value
        for _ in 0..<(1 + (program.next(256) ?? 0)) where addedNesting < maximumAddedNesting {
            nested = .array([nested])
            addedNesting += 1
        }
        return nested
    case 7:   // a very long array of the value (up to 2¹⁴ copies), as a forger lists layers or
              // widths, within `maximumRepeatedBytes` of text per input (past the readers' 1 MiB
              // document limit, within this target's own memory)
        let length = value.byteCount
        let count = min(1 << (program.next(15) ?? 0), max(1, (maximumRepeatedBytes - repeatedBytes) / max(length, 1)))
        repeatedBytes += count * length
        return .repeated(value, count: count)
    default:   // the same value as a string, or an array cut short
        if case .array(let elements) = value { return .array(Array(elements.prefix(program.next(max(elements.count, 1)) ?? 0))) }
        if case .repeated(let element, let count) = value { return .repeated(element, count: program.next(count) ?? 0) }
        if case .string(let s) = value { return .number(s.isEmpty ? "0" : s) }
        return .string(value.text.replacingOccurrences(of: "\"", with: ""))
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTypedMetadata(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    var program = Program(bytes: ArraySlice(UnsafeBufferPointer(start: data, count: size)))
    var file = seedFile
    var edited = seedDocuments
    addedNesting = 0
    repeatedBytes = 0
    while let d = program.next(documents.count) {
        let key = documents[d]
        guard let document = edited[key] else { continue }
        edited[key] = edit(document, &program)
    }
    for (key, document) in edited { file.metadata[key] = document.text }
    guard let checkpoint = try? Checkpoint(Checkpoint.resealed(file), name: "fuzz") else { return 0 }
    // What evaluate reads, and what --resume does before its first step.
    _ = checkpoint.model.configuration.parameterCount
    exerciseResume(checkpoint)
    return 0
}

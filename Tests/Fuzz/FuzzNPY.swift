// libFuzzer target: the .npy reader (any header, dtype, order and shape) on
// arbitrary bytes in memory, and, for bytes that start as a zip archive,
// the .npz reader on them as a file. Every table it accepts is read row by
// row to its end: a header that lies about the size must be refused, not read.
// Built and run by Tests/Fuzz/run.sh, not by `swift test`.
import Foundation
import IWAEData

private let scratch = NSTemporaryDirectory() + "fuzz-npz-\(getpid()).npz"

private func readAll(_ table: RawTable) {
    precondition(table.rows >= 1 && table.columns >= 1)
    var row = [Double](repeating: 0, count: table.columns)
    for r in 0..<table.rows { row.withUnsafeMutableBufferPointer { table.read(row: r, into: $0.baseAddress!) } }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNPY(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let owner = UnsafeMutableRawBufferPointer.Owner(byteCount: size)
    if size > 0 { owner.buffer.copyMemory(from: UnsafeRawBufferPointer(start: data, count: size)) }
    if let table = try? NPY.table(.owned(owner, offset: 0), count: size, name: "fuzz") { readAll(table) }
    if size >= 4, data[0] == 0x50, data[1] == 0x4B {
        FileManager.default.createFile(atPath: scratch, contents: Data(bytes: data, count: size))
        for key in [nil, "a", "train"] as [String?] {
            if let table = try? RawTable(contentsOf: scratch, key: key) { readAll(table) }
        }
    }
    return 0
}

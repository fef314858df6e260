// libFuzzer target: the CSV/TSV reader on arbitrary bytes, with and without
// a column selection (by index and by name). A table it accepts holds only
// finite numbers, and its every row reads back.
// Built and run by Tests/Fuzz/run.sh, not by `swift test`.
import IWAEData

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCSV(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    for delimiter in [UInt8(ascii: ","), 0x09] {
        for selection in [nil, ColumnSelection("0"), ColumnSelection("1-2,0"), ColumnSelection("a,b")] as [ColumnSelection?] {
            guard let table = try? DelimitedText.table(bytes, name: "fuzz", delimiter: delimiter, columns: selection) else { continue }
            precondition(table.rows >= 1 && table.columns >= 1)
            for r in 0..<table.rows { precondition(table.row(r).allSatisfy(\.isFinite)) }
        }
    }
    return 0
}

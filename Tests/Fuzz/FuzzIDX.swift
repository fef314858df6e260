// libFuzzer target: the IDX reader (plain and gzip) on arbitrary bytes.
// Built and run by Tests/Fuzz/run.sh, not by `swift test`.
import IWAEData

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzIDX(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    var bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if isGzip(bytes) {
        guard let inflated = try? gunzip(bytes, name: "fuzz", limit: 1 << 24) else { return 0 }
        bytes = inflated
    }
    if let array = try? IDXArray(parsing: bytes, name: "fuzz") {
        // A parsed array is consistent and round-trips.
        precondition(array.values.count == array.shape.reduce(1, *))
        precondition(array.encoded == bytes)
    }
    return 0
}

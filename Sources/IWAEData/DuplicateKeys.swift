/// The first key that an object of a JSON text holds twice, found in one
/// pass over the bytes, in memory that grows with the keys of the objects
/// open at once, never with the text's values.
///
/// RFC 8259 leaves the meaning of a repeated key open, and readers differ:
/// Foundation's decoder keeps the first copy, its `JSONSerialization` the
/// last. A document that repeats a key is therefore refused before either
/// reads it. Keys compare after their escapes are decoded (`"a"` and
/// `"\u0061"` are the same key). The text is assumed to be JSON; what is
/// not is left to the parser that follows (this returns nil or a key
/// found before the damage).
package func firstDuplicateKey(in text: some Collection<UInt8>) -> String? {
    let bytes = Array(text)
    var i = 0
    // One set of keys per open object; nil for an open array.
    var open: [Set<String>?] = []
    var expectingKey = false

    /// The index after the closing quote of the string whose opening quote is at `start`.
    func skipString(at start: Int) -> Int? {
        var j = start + 1
        while j < bytes.count {
            switch bytes[j] {
            case UInt8(ascii: "\""): return j + 1
            case UInt8(ascii: "\\"): j += 2
            default: j += 1
            }
        }
        return nil
    }

    /// The string whose opening quote is at `start`, its escapes decoded
    /// (as UTF-8 bytes, made a String once), and the index after it.
    func decodedString(at start: Int) -> (String, Int)? {
        var utf8 = [UInt8]()
        var j = start + 1
        func hex(_ at: Int) -> UInt32? {
            guard at + 4 <= bytes.count else { return nil }
            var v: UInt32 = 0
            for b in bytes[at..<at + 4] {
                guard let d = Character(UnicodeScalar(b)).hexDigitValue else { return nil }
                v = v << 4 | UInt32(d)
            }
            return v
        }
        while j < bytes.count {
            let b = bytes[j]
            if b == UInt8(ascii: "\"") { return (String(decoding: utf8, as: UTF8.self), j + 1) }
            if b != UInt8(ascii: "\\") { utf8.append(b); j += 1; continue }
            guard j + 1 < bytes.count else { return nil }
            let e = bytes[j + 1]
            j += 2
            var scalar: UnicodeScalar
            switch e {
            case UInt8(ascii: "n"): scalar = "\n"
            case UInt8(ascii: "t"): scalar = "\t"
            case UInt8(ascii: "r"): scalar = "\r"
            case UInt8(ascii: "b"): scalar = "\u{8}"
            case UInt8(ascii: "f"): scalar = "\u{C}"
            case UInt8(ascii: "u"):
                guard var v = hex(j) else { return nil }
                j += 4
                if (0xD800..<0xDC00).contains(v), j + 6 <= bytes.count, bytes[j] == UInt8(ascii: "\\"), bytes[j + 1] == UInt8(ascii: "u"),
                   let low = hex(j + 2), (0xDC00..<0xE000).contains(low) {
                    v = 0x10000 + ((v - 0xD800) << 10) + (low - 0xDC00)
                    j += 6
                }
                scalar = UnicodeScalar(v) ?? "\u{FFFD}"
            default: scalar = UnicodeScalar(e)   // \" \\ \/
            }
            utf8.append(contentsOf: Array(String(scalar).utf8))
        }
        return nil
    }

    while i < bytes.count {
        switch bytes[i] {
        case UInt8(ascii: "{"):
            open.append([])
            expectingKey = true
            i += 1
        case UInt8(ascii: "["):
            open.append(nil)
            expectingKey = false
            i += 1
        case UInt8(ascii: "}"), UInt8(ascii: "]"):
            if !open.isEmpty { open.removeLast() }
            expectingKey = false
            i += 1
        case UInt8(ascii: ","):
            expectingKey = open.last.map { $0 != nil } ?? false
            i += 1
        case UInt8(ascii: "\""):
            if expectingKey, let last = open.indices.last, open[last] != nil {
                guard let (key, next) = decodedString(at: i) else { return nil }
                if open[last]!.contains(key) { return key }
                open[last]!.insert(key)   // in place: no copy of the set
                i = next
            } else {
                guard let next = skipString(at: i) else { return nil }
                i = next
            }
            expectingKey = false
        default:
            i += 1
        }
    }
    return nil
}

/// Unknown keys, refused by the decoding itself: each type's `init(from:)`
/// names the keys it reads, and a strict reader (a format-3 checkpoint)
/// refuses any other key of the object in the same pass. A key written out
/// with its default value is a key the type reads, so it is accepted; a
/// `null` stands for an absent optional field, so an unknown key whose
/// value is null is ignored.

/// The user-info flag of a strict decoding: set to `true`, every type that
/// calls `refuseUnknownKeys` throws `UnknownKey` for a key it does not read.
package let refusingUnknownKeys = CodingUserInfoKey(rawValue: "iwae.refusingUnknownKeys")!

/// A key that no type of this version reads, with its path in the document
/// (`options.warmup`, `upperLayers[2].dropout`).
package struct UnknownKey: Error, CustomStringConvertible {
    package var path: String
    package var description: String { path }
}

/// Any key of a JSON object, to list what the object holds.
private struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

extension Decoder {
    /// In a strict decoding, throws `UnknownKey` for the first key of this
    /// object (in sorted order) that is not one of `Keys`, or that
    /// `allowed` rules out (keys that belong to another case of an enum),
    /// unless its value is null. Does nothing otherwise.
    package func refuseUnknownKeys<Keys: CodingKey>(_ keys: Keys.Type, allowed: (Keys) -> Bool = { _ in true }) throws {
        guard userInfo[refusingUnknownKeys] as? Bool == true else { return }
        let object = try container(keyedBy: AnyKey.self)
        for key in object.allKeys.sorted(by: { $0.stringValue < $1.stringValue }) {
            if let known = Keys(stringValue: key.stringValue), allowed(known) { continue }
            if try object.decodeNil(forKey: key) { continue }
            throw UnknownKey(path: (codingPath + [key]).reduce("") { path, step in
                if let index = step.intValue { return path + "[\(index)]" }
                return path.isEmpty ? step.stringValue : path + "." + step.stringValue
            })
        }
    }
}

/// The numeric element types a data file can hold (NumPy's, safetensors'),
/// read in either byte order.
package enum ElementType: String, Sendable, Equatable, Codable, CaseIterable {
    case bool, uint8, int8, uint16, int16, uint32, int32, uint64, int64, float16, bfloat16, float32, float64

    /// Bytes per element.
    package var size: Int {
        switch self {
        case .bool, .uint8, .int8: return 1
        case .uint16, .int16, .float16, .bfloat16: return 2
        case .uint32, .int32, .float32: return 4
        case .uint64, .int64, .float64: return 8
        }
    }

    /// Whether the type holds integers (bool counts as one).
    package var isInteger: Bool {
        switch self {
        case .float16, .bfloat16, .float32, .float64: return false
        default: return true
        }
    }

    /// Converts `count` elements starting at `source`, element f at byte
    /// `offsets[f]` (or at f · size when `offsets` is nil), into `out` as
    /// Double (exact for every type but 64-bit integers beyond 2⁵³).
    @inline(__always)
    func convert<Out: BinaryFloatingPoint>(_ source: UnsafeRawPointer, offsets: UnsafePointer<Int>?, count: Int,
                                           swapped: Bool, into out: UnsafeMutablePointer<Out>) {
        @inline(__always) func each<T>(_: T.Type, _ value: (T) -> Out) {
            if let offsets {
                for f in 0..<count { out[f] = value(source.loadUnaligned(fromByteOffset: offsets[f], as: T.self)) }
            } else {
                let stride = MemoryLayout<T>.size
                for f in 0..<count { out[f] = value(source.loadUnaligned(fromByteOffset: f * stride, as: T.self)) }
            }
        }
        switch (self, swapped) {
        case (.bool, _): each(UInt8.self) { $0 == 0 ? 0 : 1 }
        case (.uint8, _): each(UInt8.self) { Out($0) }
        case (.int8, _): each(Int8.self) { Out($0) }
        case (.uint16, false): each(UInt16.self) { Out($0) }
        case (.uint16, true): each(UInt16.self) { Out($0.byteSwapped) }
        case (.int16, false): each(Int16.self) { Out($0) }
        case (.int16, true): each(Int16.self) { Out($0.byteSwapped) }
        case (.uint32, false): each(UInt32.self) { Out($0) }
        case (.uint32, true): each(UInt32.self) { Out($0.byteSwapped) }
        case (.int32, false): each(Int32.self) { Out($0) }
        case (.int32, true): each(Int32.self) { Out($0.byteSwapped) }
        case (.uint64, false): each(UInt64.self) { Out($0) }
        case (.uint64, true): each(UInt64.self) { Out($0.byteSwapped) }
        case (.int64, false): each(Int64.self) { Out($0) }
        case (.int64, true): each(Int64.self) { Out($0.byteSwapped) }
        case (.float16, false): each(UInt16.self) { Out(Float(halfBits: $0)) }
        case (.float16, true): each(UInt16.self) { Out(Float(halfBits: $0.byteSwapped)) }
        case (.bfloat16, false): each(UInt16.self) { Out(Float(bitPattern: UInt32($0) << 16)) }
        case (.bfloat16, true): each(UInt16.self) { Out(Float(bitPattern: UInt32($0.byteSwapped) << 16)) }
        case (.float32, false): each(UInt32.self) { Out(Float(bitPattern: $0)) }
        case (.float32, true): each(UInt32.self) { Out(Float(bitPattern: $0.byteSwapped)) }
        case (.float64, false): each(UInt64.self) { Out(Double(bitPattern: $0)) }
        case (.float64, true): each(UInt64.self) { Out(Double(bitPattern: $0.byteSwapped)) }
        }
    }
}

extension Float {
    /// The value of IEEE 754 binary16 bits (subnormals, infinities and NaN included).
    package init(halfBits h: UInt16) {
        let sign = UInt32(h >> 15) << 31
        let exponent = Int((h >> 10) & 0x1f), fraction = UInt32(h & 0x3ff)
        switch exponent {
        case 0:   // zero or subnormal: fraction · 2⁻²⁴
            let magnitude = Float(fraction) * 0x1p-24
            self = sign == 0 ? magnitude : -magnitude
        case 0x1f:
            self = Float(bitPattern: sign | 0x7f80_0000 | (fraction << 13))
        default:
            self = Float(bitPattern: sign | UInt32(exponent - 15 + 127) << 23 | (fraction << 13))
        }
    }
}

import RealModule

/// What a table's values are, as the engine models them.
public enum TableKind: String, Sendable, Codable, CaseIterable {
    /// Every value 0 or 1: a Bernoulli decoder, the values as they are.
    case binary
    /// Intensities in [0, 1] (uint8 read as v/255): a Bernoulli decoder on
    /// dynamically binarized values, as MNIST.
    case intensity
    /// Anything else: a Gaussian decoder on standardized features.
    case continuous
}

/// How a table's raw values become the values the model sees (Mathematics §5):
///
///     values:        y = v
///     intensity:     y = v / scale                      (Float arithmetic, as IDX images)
///     standardized:  y_d = (v_d − mean_d) / scale_d     (Double, then rounded to Float)
///
/// A density of y is one of v times |dy/dv| = Π_d 1/scale_d, so
/// log p(v) = log p(y) − Σ_d log scale_d (`logJacobian`).
public enum TableEncoding: Sendable, Equatable, Codable {
    case values
    case intensity(scale: Double)
    case standardized(mean: [Double], scale: [Double])

    /// log |dy/dv|: −Σ_d log scale_d for standardized features, 0 otherwise
    /// (the Bernoulli models' probabilities are of the binarized values).
    public var logJacobian: Double {
        if case .standardized(_, let scale) = self { return -scale.reduce(0) { $0 + Double.log($1) } }
        return 0
    }

    private enum Keys: String, CodingKey { case kind, scale, mean }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        switch self {
        case .values: try c.encode("values", forKey: .kind)
        case .intensity(let scale):
            try c.encode("intensity", forKey: .kind)
            try c.encode(scale, forKey: .scale)
        case .standardized(let mean, let scale):
            try c.encode("standardized", forKey: .kind)
            try c.encode(mean, forKey: .mean)
            try c.encode(scale, forKey: .scale)
        }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        let kind = try c.decode(String.self, forKey: .kind)
        try decoder.refuseUnknownKeys(Keys.self) {
            $0 == .kind || ($0 == .scale && kind != "values") || ($0 == .mean && kind == "standardized")
        }
        switch kind {
        case "values": self = .values
        case "intensity":
            let scale = try c.decode(Double.self, forKey: .scale)
            guard scale.isFinite, scale > 0 else { throw DataError.invalidData("an intensity scale of \(scale)") }
            self = .intensity(scale: scale)
        case "standardized":
            let mean = try c.decode([Double].self, forKey: .mean), scale = try c.decode([Double].self, forKey: .scale)
            guard mean.count == scale.count, !mean.isEmpty, mean.allSatisfy(\.isFinite), scale.allSatisfy({ $0.isFinite && $0 > 0 }) else {
                throw DataError.invalidData("a standardization whose means and scales are not finite, positive and of one length")
            }
            self = .standardized(mean: mean, scale: scale)
        case let kind: throw DataError.invalidData("unknown table encoding '\(kind)' (values, intensity or standardized)")
        }
    }

    /// The number of features it applies to, when it says (standardized).
    package var width: Int? { if case .standardized(let mean, _) = self { return mean.count } else { return nil } }
}

/// One pass over a table's rows: per feature the least and largest value,
/// mean and standard deviation (Welford, in Double), and whether every
/// value is 0 or 1. The first NaN or infinity stops it with a one-line error
/// naming the row and column.
package struct TableStatistics: Sendable {
    package var rows: Int
    package var minimum: [Double]
    package var maximum: [Double]
    package var mean: [Double]
    /// Population standard deviation (divided by N).
    package var standardDeviation: [Double]
    package var allBinary: Bool

    package init(_ table: RawTable, rows indices: [Int]? = nil) throws {
        let d = table.columns
        let n = indices?.count ?? table.rows
        var lo = [Double](repeating: .infinity, count: d), hi = [Double](repeating: -.infinity, count: d)
        // Sums of v − v₀ and (v − v₀)² about the first row's values v₀ (shifted
        // sums: exact enough in Double whatever the features' offsets).
        var origin = [Double](repeating: 0, count: d), sum = [Double](repeating: 0, count: d), squares = sum
        var binary = true
        try withUnsafeTemporaryAllocation(of: Double.self, capacity: Swift.max(d, 1)) { row in
            try lo.withUnsafeMutableBufferPointer { lo in
            try hi.withUnsafeMutableBufferPointer { hi in
            try origin.withUnsafeMutableBufferPointer { origin in
            try sum.withUnsafeMutableBufferPointer { sum in
            try squares.withUnsafeMutableBufferPointer { squares in
                for i in 0..<n {
                    let r = indices?[i] ?? i
                    table.read(row: r, into: row.baseAddress!)
                    if i == 0 { for f in 0..<d { origin[f] = row[f].isFinite ? row[f] : 0 } }
                    var finite = true, rowBinary = true
                    for f in 0..<d {
                        let v = row[f]
                        finite = finite && v.isFinite
                        lo[f] = Swift.min(lo[f], v)
                        hi[f] = Swift.max(hi[f], v)
                        rowBinary = rowBinary && (v == 0 || v == 1)
                        let shifted = v - origin[f]
                        sum[f] += shifted
                        squares[f] += shifted * shifted
                    }
                    binary = binary && rowBinary
                    guard finite else {
                        let f = (0..<d).first { !row[$0].isFinite }!
                        throw DataError.invalidData("\(table.name): row \(r), \(table.describe(column: f)): \(row[f]) (NaN and infinities are not data: fill or drop them)")
                    }
                }
            } } } } }
        }
        let count = Double(Swift.max(n, 1))
        rows = n
        minimum = lo
        maximum = hi
        mean = (0..<d).map { origin[$0] + sum[$0] / count }
        standardDeviation = (0..<d).map { f in
            let m = sum[f] / count
            return Swift.max(0, squares[f] / count - m * m).squareRoot()
        }
        allBinary = binary
    }

    /// The kind the values call for: binary (all 0 or 1), intensity (uint8,
    /// or floats within [0, 1]) or continuous.
    package func kind(of type: ElementType) -> TableKind {
        if allBinary { return .binary }
        if type == .uint8 { return .intensity }
        if !type.isInteger && minimum.allSatisfy({ $0 >= 0 }) && maximum.allSatisfy({ $0 <= 1 }) { return .intensity }
        return .continuous
    }

    /// The encoding of `kind` for these values, checked: binary needs every
    /// value 0 or 1, intensity every value in [0, 255] (uint8) or [0, 1], and
    /// continuous no constant feature (its scale would be 0: a Gaussian
    /// cannot model it, so it is refused, naming the columns to leave out).
    package func encoding(_ kind: TableKind, of table: RawTable) throws -> TableEncoding {
        switch kind {
        case .binary:
            guard allBinary else {
                let f = (0..<minimum.count).first { minimum[$0] != 0 && minimum[$0] != 1 || maximum[$0] != 0 && maximum[$0] != 1 } ?? 0
                throw DataError.invalidArgument("\(table.name): --data-kind binary needs every value to be 0 or 1, but \(table.describe(column: f)) holds values in [\(minimum[f]), \(maximum[f])]")
            }
            return .values
        case .intensity:
            let scale: Double = table.elementType == .uint8 ? 255 : 1
            if let f = (0..<minimum.count).first(where: { minimum[$0] < 0 || maximum[$0] > scale }) {
                throw DataError.invalidArgument("\(table.name): intensities must lie in [0, \(Int(scale))], but \(table.describe(column: f)) holds values in [\(minimum[f]), \(maximum[f])]: use --data-kind continuous")
            }
            return scale == 1 ? .values : .intensity(scale: scale)
        case .continuous:
            let constant = (0..<minimum.count).filter { !(standardDeviation[$0] > 0) || minimum[$0] == maximum[$0] }
            if !constant.isEmpty {
                let named = constant.prefix(8).map { table.describe(column: $0) + " = \(minimum[$0])" }.joined(separator: ", ")
                throw DataError.invalidArgument("\(table.name): \(constant.count) constant feature\(constant.count == 1 ? "" : "s") in the training rows (\(named)\(constant.count > 8 ? ", …" : "")): a Gaussian on standardized features cannot model a value that never varies (its density would be infinite); leave \(constant.count == 1 ? "it" : "them") out with --columns")
            }
            return .standardized(mean: mean, scale: standardDeviation)
        }
    }
}

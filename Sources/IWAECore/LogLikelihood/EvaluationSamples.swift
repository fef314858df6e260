/// k of the log-likelihood estimate L_k (Mathematics §5): importance samples
/// per test example. Its own type, not the training objective's K: an
/// evaluation has no estimator and takes up to 10⁷ draws, streamed in chunks.
/// Checked once, when made.
public struct EvaluationSamples: Equatable, Sendable, CustomStringConvertible {
    /// k.
    public let perExample: Int

    /// The values `iwae evaluate --k` accepts.
    public static let range = 1...10_000_000
    /// The protocol's k (Burda et al. 2015).
    public static let standard = EvaluationSamples(checked: 5000)

    /// Throws one line unless `k` is in `range`.
    public init(_ k: Int) throws {
        guard EvaluationSamples.range.contains(k) else {
            throw IWAEError.invalidArgument("k must be between 1 and 10,000,000, got \(k)")
        }
        perExample = k
    }

    private init(checked k: Int) { perExample = k }

    public var description: String { String(perExample) }

    /// Decoder rows a forward-only pass (`estimateLogLikelihood`, the
    /// validation bound) holds by default: 500 rows (1.5 MB of logits at
    /// D = 784 per worker, near the size of a core's L2). On an AMD EPYC Zen 5
    /// (1 MB of L2 a core), k = 5000 on 1,000 images took 0.925× the time
    /// of 1,000 rows (median of 5 alternating pairs; 400 rows as fast as 500,
    /// 250 no faster than 1,000), peak memory 92 MB against 102; 4,000 rows
    /// were slower still (10.5 s and 131 MB against 1,000 rows' 10.1 s and
    /// 86 MB, an earlier build).
    @usableFromInline package static let rowsPerPass = 500

    /// Draws of each example a pass holds: k, at most `rowsPerPass`.
    package func drawsPerPass(rowsPerPass: Int = EvaluationSamples.rowsPerPass) -> Int {
        Swift.min(perExample, Swift.max(1, rowsPerPass))
    }

    /// Examples an evaluation pass holds: as many as fit `rowsPerPass` rows
    /// of draws, at least one (one example per pass from k = 500 on at the
    /// default 500 rows). Passes start at multiples of it.
    package func examplesPerPass(rowsPerPass: Int = EvaluationSamples.rowsPerPass) -> Int {
        EvaluationSamples.examplesPerPass(drawsPerExample: perExample, rowsPerPass: rowsPerPass)
    }

    /// Examples a forward-only pass of `drawsPerExample` draws each holds in
    /// about `rowsPerPass` rows, at least one.
    package static func examplesPerPass(drawsPerExample: Int, rowsPerPass: Int = EvaluationSamples.rowsPerPass) -> Int {
        Swift.max(1, Swift.max(1, rowsPerPass) / Swift.min(drawsPerExample, Swift.max(1, rowsPerPass)))
    }
}

extension EvaluationSamples: ExpressibleByIntegerLiteral {
    /// A k written in code (`samples: 50`); a literal out of `range` is a
    /// programming error and stops the program.
    public init(integerLiteral k: Int) {
        precondition(EvaluationSamples.range.contains(k), "k must be between 1 and 10,000,000, got \(k)")
        perExample = k
    }
}

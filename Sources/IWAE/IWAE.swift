// The engine in one import: `import IWAE` brings the model and its
// components (IWAECore), data sets and file formats (IWAEData), the linear
// algebra (IWAELinearAlgebra), and checkpoints.
@_exported import IWAECore
@_exported import IWAEData
@_exported import IWAELinearAlgebra

extension ImageSet: TrainingExamples {
    public func write(_ indices: ArraySlice<Int>, binarize: Bool, using rng: Xoshiro256, into out: inout MutableSpan<Float>) {
        precondition(out.count == indices.count * dimension, "\(out.count) values for \(indices.count) rows of \(dimension)")
        out.withUnsafeMutableBufferPointer { out in
            guard let out = out.baseAddress else { return }
            if binarize { self.binarize(indices, into: out, using: rng) } else { copy(indices, into: out) }
        }
    }

    public func firstNonFiniteRow() -> Int? { pixels.firstIndex { !$0.isFinite }.map { $0 / Swift.max(dimension, 1) } }
}

extension DataTable: TrainingExamples {
    public func write(_ indices: ArraySlice<Int>, binarize: Bool, using rng: Xoshiro256, into out: inout MutableSpan<Float>) {
        precondition(out.count == indices.count * dimension, "\(out.count) values for \(indices.count) rows of \(dimension)")
        out.withUnsafeMutableBufferPointer { out in
            guard let out = out.baseAddress else { return }
            write(rows: indices, into: out)
            if binarize {
                for r in 0..<indices.count { binarizeRow(out + r * dimension, into: out + r * dimension, count: dimension, using: rng) }
            }
        }
    }
}

extension Examples: TrainingExamples {
    public func write(_ indices: ArraySlice<Int>, binarize: Bool, using rng: Xoshiro256, into out: inout MutableSpan<Float>) {
        switch self {
        case .images(let i): i.write(indices, binarize: binarize, using: rng, into: &out)
        case .table(let t): t.write(indices, binarize: binarize, using: rng, into: &out)
        }
    }

    public func firstNonFiniteRow() -> Int? {
        switch self {
        case .images(let i): return i.firstNonFiniteRow()
        case .table(let t): return t.firstNonFiniteRow()
        }
    }

    /// Splits off `validationCount` examples chosen by a seeded permutation
    /// (`ImageSet.splitValidation`'s): (training, validation), each in order.
    package func splitValidation(count validationCount: Int, seed: UInt64) throws -> (train: Examples, validation: Examples) {
        switch self {
        case .images(let i):
            let (train, validation) = try i.splitValidation(count: validationCount, seed: seed)
            return (.images(train), .images(validation))
        case .table(let t):
            let (train, validation) = try validationSplit(count: t.count, validation: validationCount, seed: seed)
            return (.table(t.rows(train)), .table(t.rows(validation)))
        }
    }

    /// The examples at positions `range`, in order.
    package func rows(_ range: Range<Int>) -> Examples {
        switch self {
        case .images(let i): return .images(i.subset(range))
        case .table(let t): return .table(t.rows(Array(range)))
        }
    }

    /// The examples as images (a table's when its rows are images: a
    /// 3-dimensional array), or a one-line error.
    package func images() throws -> ImageSet {
        switch self {
        case .images(let i): return i
        case .table(let t):
            guard let shape = t.imageShape else {
                throw IWAEError.invalidArgument("\(t.raw.name): rows of \(t.dimension) features are not images (a 3-dimensional array, N × height × width, is)")
            }
            var pixels = [Float](repeating: 0, count: t.count * t.dimension)
            pixels.withUnsafeMutableBufferPointer { write(rows: 0..<t.count, into: $0.baseAddress!) }
            return ImageSet(count: t.count, width: shape.width, height: shape.height, pixels: pixels,
                            labels: [UInt8](repeating: 0, count: t.count))
        }
    }

    /// Writes the rows `range` (encoded, not binarized) into `out`.
    func write(rows range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        switch self {
        case .images(let i): i.copy(range, into: out)
        case .table(let t): t.write(rows: range, into: out)
        }
    }
}

extension VariationalAutoencoder where Scalar == Float {
    /// The rows as this model sees them at evaluation, in memory (N, D):
    /// encoded, then for a Bernoulli likelihood binarized once, row r (counting
    /// from `firstRow`) from its own stream (`binarizeForEvaluation`).
    package func evaluationRows(_ examples: Examples, firstRow: Int = 0) -> Tensor<Float> {
        let x = Tensor<Float>(shape: [examples.count, examples.dimension])
        examples.write(rows: 0..<examples.count, into: x.pointer)
        if configuration.likelihood == .bernoulli {
            binarizeForEvaluation(x.pointer, rows: examples.count, dimension: examples.dimension, firstRow: firstRow)
        }
        return x
    }

    /// The images as this model sees them at evaluation: binarized once
    /// (`ImageSet.binarizedForEvaluation`) for a Bernoulli likelihood, as
    /// they are for a Gaussian one.
    public func evaluationImages(_ images: ImageSet) -> ImageSet {
        configuration.likelihood == .bernoulli ? images.binarizedForEvaluation() : images
    }

    /// log p(x) ≈ L_k (Mathematics §5) for each of `examples` rows of
    /// `values` (row-major, D values each), as `iwae evaluate` computes it:
    /// for a Bernoulli likelihood each value v becomes 1 with probability v
    /// (the evaluation binarization, row r from its own stream, so binary
    /// rows pass unchanged and intensities in [0, 1] are binarized as images
    /// are), k samples per row, on `threads` cores (default: all).
    /// `logLikelihoods` holds each row's estimate and `standardErrors` its
    /// Monte Carlo error.
    public func logLikelihood(of values: [Float], examples n: Int, samples: EvaluationSamples = .standard,
                              seed: UInt64 = LogLikelihoodEstimate.standardSeed,
                              threads: Int? = nil) throws -> LogLikelihoodEstimate {
        guard n >= 1, values.count == n * configuration.dataDimension else {
            throw IWAEError.invalidArgument("expected \(n) × \(configuration.dataDimension) values, got \(values.count)")
        }
        let x = Tensor<Float>(shape: [n, configuration.dataDimension], values: values)
        if configuration.likelihood == .bernoulli { binarizeForEvaluation(x.pointer, rows: n, dimension: configuration.dataDimension) }
        return try ModelWorkers(model: self, workers: threads, seed: seed).estimateLogLikelihood(x.matrix, samples: samples, seed: seed)
    }

    /// log p(x) ≈ L_k (Mathematics §5) for each image, as `iwae evaluate`
    /// computes it, and as `logLikelihood(of: images.pixels, examples: images.count)`.
    public func logLikelihood(of images: ImageSet, samples: EvaluationSamples = .standard,
                              seed: UInt64 = LogLikelihoodEstimate.standardSeed,
                              threads: Int? = nil) throws -> LogLikelihoodEstimate {
        guard images.dimension == configuration.dataDimension else {
            throw IWAEError.invalidArgument("images have dimension \(images.dimension) but the model expects \(configuration.dataDimension)")
        }
        return try logLikelihood(of: images.pixels, examples: images.count, samples: samples, seed: seed, threads: threads)
    }

    /// log p(v) ≈ L_k (Mathematics §5) for each row of `table`, in the data's
    /// own units, as `iwae evaluate` and `iwae score` compute it: the rows
    /// encoded (`TableEncoding`), binarized once for a Bernoulli model, each
    /// row drawing from its own stream, the encoding's log-Jacobian added.
    /// `logLikelihoods` holds each row's estimate and `standardErrors` its Monte Carlo error.
    public func logLikelihood(of table: DataTable, samples: EvaluationSamples = .standard,
                              seed: UInt64 = LogLikelihoodEstimate.standardSeed,
                              threads: Int? = nil) throws -> LogLikelihoodEstimate {
        guard table.dimension == configuration.dataDimension else {
            throw IWAEError.invalidArgument("\(table.raw.name) has dimension \(table.dimension) but the model expects \(configuration.dataDimension)")
        }
        let x = evaluationRows(.table(table))
        return try ModelWorkers(model: self, workers: threads, seed: seed).estimateLogLikelihood(x.matrix, samples: samples, seed: seed)
            .shifted(by: table.encoding.logJacobian)
    }
}

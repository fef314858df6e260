import IWAELinearAlgebra

/// How a run starts the decoder's output layer. `Trainer` applies it at the
/// start of a new run (`VariationalAutoencoder.initializeOutputLayer(from:_:)`),
/// from the training examples it is given.
public enum OutputInitialization: String, Codable, Sendable, CaseIterable {
    /// Glorot-uniform weights from the seed, like every other layer; the
    /// bias at the data mean.
    case glorot
    /// Column j of the weights is the j-th principal direction of the
    /// training examples, at Glorot's scale
    /// (`VariationalAutoencoder.initializeOutputWeights(principalComponents:)`);
    /// the bias at the data mean.
    case pca
    /// The model's output layer as it is: a loaded model trained further.
    case unchanged

    /// The largest data dimension D for `.pca`: its D × D covariance and
    /// LAPACK's workspace take about 3 · 8 · D² bytes (400 MB at 4,096).
    public static let largestPCADimension = 4096
}

extension VariationalAutoencoder where Scalar == Float {
    /// Starts the decoder's output layer from the training examples: its
    /// bias at their feature means (`initializeOutputBias`) and, with
    /// `.pca`, its weights along their principal directions
    /// (`initializeOutputWeights(principalComponents:)`), computed from the
    /// examples as they are before binarization; `.unchanged` leaves the
    /// layer alone. `Trainer` calls this at the start of a new run.
    public func initializeOutputLayer(from train: some TrainingExamples, _ kind: OutputInitialization) throws {
        guard kind != .unchanged else { return }
        guard train.dimension == configuration.dataDimension else {
            throw IWAEError.invalidArgument("the data have dimension \(train.dimension) but the model expects \(configuration.dataDimension)")
        }
        guard train.count > 0 else { throw IWAEError.invalidData("the training set is empty") }
        let rows = { (range: Range<Int>, out: UnsafeMutablePointer<Float>) in
            train.write(Array(range)[...], binarize: false, using: Xoshiro256(seed: 0), into: out)
        }
        initializeOutputBias(dataMean: featureMeans(count: train.count, dimension: train.dimension, rows: rows))
        guard kind == .pca else { return }
        guard train.dimension <= OutputInitialization.largestPCADimension else {
            throw IWAEError.invalidArgument("--output-init pca factors a D × D covariance: D = \(train.dimension) is above \(OutputInitialization.largestPCADimension); use --output-init glorot")
        }
        let components = PrincipalComponents(count: train.count, dimension: train.dimension,
                                             binarized: configuration.likelihood == .bernoulli, rows: rows)
        guard let components else {
            throw IWAEError.numerical("the principal directions of the \(train.count) training examples could not be computed (LAPACK dsyevd did not converge)")
        }
        initializeOutputWeights(principalComponents: components)
    }
}

/// The mean of each of `dimension` features over `count` rows that
/// `rows(range, out)` writes, 1,024 rows at a time, summed in Double in row
/// order (the bits of `ImageSet.pixelMean`).
private func featureMeans(count: Int, dimension: Int, rows: (Range<Int>, UnsafeMutablePointer<Float>) -> Void) -> [Float] {
    let chunk = Swift.min(1024, count)
    var sum = [Double](repeating: 0, count: dimension)
    withUnsafeTemporaryAllocation(of: Float.self, capacity: Swift.max(1, chunk * dimension)) { buffer in
        var start = 0
        while start < count {
            let n = Swift.min(chunk, count - start)
            rows(start..<start + n, buffer.baseAddress!)
            for r in 0..<n { for d in 0..<dimension { sum[d] += Double(buffer[r * dimension + d]) } }
            start += n
        }
    }
    return sum.map { Float($0 / Double(count)) }
}

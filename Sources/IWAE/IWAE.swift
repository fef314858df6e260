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

extension VariationalAutoencoder where Scalar == Float {
    /// Starts the decoder's output layer from the training images: its bias
    /// at their pixel means (`initializeOutputBias`) and, with `.pca`, its
    /// weights along their principal directions
    /// (`initializeOutputWeights(principalComponents:)`), computed from the
    /// images as training draws them (binarized for a Bernoulli likelihood).
    public func initializeOutputLayer(from train: ImageSet, _ kind: OutputInitialization) throws {
        guard train.dimension == configuration.dataDimension else {
            throw IWAEError.invalidArgument("images have dimension \(train.dimension) but the model expects \(configuration.dataDimension)")
        }
        initializeOutputBias(dataMean: train.pixelMean)
        guard kind == .pca else { return }
        guard train.dimension <= OutputInitialization.largestPCADimension else {
            throw IWAEError.invalidArgument("--output-init pca factors a D × D covariance: D = \(train.dimension) is above \(OutputInitialization.largestPCADimension); use --output-init glorot")
        }
        let components = train.pixels.withUnsafeBufferPointer {
            PrincipalComponents(rows: $0, count: train.count, dimension: train.dimension,
                                binarized: configuration.likelihood == .bernoulli)
        }
        guard let components else {
            throw IWAEError.numerical("the principal directions of the \(train.count) training images could not be computed (LAPACK dsyevd did not converge)")
        }
        initializeOutputWeights(principalComponents: components)
    }

    /// The images as this model sees them at evaluation: binarized once with
    /// the fixed evaluation stream (`ImageSet.binarizedForEvaluation`) for a
    /// Bernoulli likelihood, as they are for a Gaussian one.
    public func evaluationImages(_ images: ImageSet) -> ImageSet {
        configuration.likelihood == .bernoulli ? images.binarizedForEvaluation() : images
    }

    /// log p(x) ≈ L_k (Mathematics §5) for each image, as `iwae evaluate`
    /// computes it: the evaluation binarization, k samples per image.
    public func logLikelihood(of images: ImageSet, samples: EvaluationSamples = .standard,
                              seed: UInt64 = LogLikelihoodEstimate.standardSeed,
                              threads: Int? = nil) throws -> LogLikelihoodEstimate {
        guard images.dimension == configuration.dataDimension else {
            throw IWAEError.invalidArgument("images have dimension \(images.dimension) but the model expects \(configuration.dataDimension)")
        }
        let x = evaluationImages(images)
        return try logLikelihood(of: x.pixels, examples: x.count, samples: samples, seed: seed, threads: threads)
    }
}

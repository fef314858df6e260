import IWAELinearAlgebra

extension ModelWorkers {
    /// Data-parallel `annealedImportanceSampling`: the passes
    /// (`aisExamplesPerPass` examples each, from row 0) are cut into
    /// contiguous blocks, one per worker, and example b draws from stream
    /// `firstRow + b`, so the estimate does not depend on the thread count
    /// (up to the products' rounding, which can differ with the rows of a pass).
    @_specialize(exported: true, where Scalar == Float)
    public func annealedImportanceSampling(_ x: MatrixView<Scalar>, settings: AISSettings, seed: UInt64, firstRow: Int = 0,
                                           reverseFrom posterior: [MatrixView<Scalar>]? = nil,
                                           progress: ((Int) -> Void)? = nil) throws -> AISEstimate {
        let perPass = VariationalAutoencoder<Scalar>.aisExamplesPerPass(settings)
        let results = try inBlocksOfPasses(rows: x.rows, perPass: perPass, progress: progress) { replica, block, progress in
            try replica.annealedImportanceSampling(x.rows(block), settings: settings, seed: seed, firstRow: firstRow + block.lowerBound,
                                                   reverseFrom: posterior.map { $0.map { $0.rows(block) } }, progress: progress)
        }
        return results.dropFirst().reduce(results[0]) { $0.merged(with: $1) }
    }
}

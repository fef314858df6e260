import IWAELinearAlgebra

extension ModelWorkers {
    /// Data-parallel `annealedImportanceSampling`: the workers take the
    /// passes (`aisExamplesPerPass` examples each, from row 0) one at a time
    /// (`PassQueue`), and example b draws from stream `firstRow + b`, so the
    /// estimate does not depend on the thread count (up to the products'
    /// rounding, which can differ with the rows of a pass).
    @_specialize(exported: true, where Scalar == Float)
    public func annealedImportanceSampling(_ x: MatrixView<Scalar>, settings: AISSettings, seed: UInt64, firstRow: Int = 0,
                                           reverseFrom posterior: [MatrixView<Scalar>]? = nil,
                                           progress: ((Int) -> Void)? = nil) throws -> AISEstimate {
        let passes = PassQueue(rows: x.rows, perPass: VariationalAutoencoder<Scalar>.aisExamplesPerPass(settings))
        let parts = try onWorkers(passes, progress: progress) { replica, progress in
            try replica.annealedImportanceSampling(x, settings: settings, seed: seed, firstRow: firstRow, reverseFrom: posterior,
                                                   passes: passes, progress: progress)
        }
        return AISEstimate(settings: settings, concatenating: parts)
    }
}

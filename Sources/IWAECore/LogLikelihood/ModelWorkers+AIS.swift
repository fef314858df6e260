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
        let passes = (x.rows + perPass - 1) / perPass
        let active = Swift.max(1, Swift.min(workerCount, passes))
        func rows(_ w: Int) -> Range<Int> {
            let p = WorkerPool.block(w, of: passes, workers: active)
            return Swift.min(x.rows, p.lowerBound * perPass)..<Swift.min(x.rows, p.upperBound * perPass)
        }
        var results = [AISEstimate?](repeating: nil, count: active)
        let errors = results.withUnsafeMutableBufferPointer { slots in
            let slotBase = slots.baseAddress!
            return WorkerPool.run(active, firstRow: { rows($0).lowerBound }) { w in
                let block = rows(w)
                slotBase[w] = try self.replicas[w].annealedImportanceSampling(
                    x.rows(block), settings: settings, seed: seed, firstRow: firstRow + block.lowerBound,
                    reverseFrom: posterior.map { $0.map { $0.rows(block) } },
                    progress: w == 0 ? progress.map { report in { done in report(Swift.min(x.rows, done * active)) } } : nil)
            }
        }
        try errors.rethrow()
        return results.dropFirst().reduce(results[0]!) { $0.merged(with: $1!) }
    }
}

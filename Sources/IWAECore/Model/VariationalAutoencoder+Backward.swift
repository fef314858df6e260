import IWAELinearAlgebra
import RealModule

// A training step's gradient: the forward to the bound, then the backward
// through the generative side and each encoder by the chosen estimator
// (Mathematics §3).
extension VariationalAutoencoder {
    /// `accumulateGradient` for code outside the package: accumulates one
    /// training step's gradient ∇(−lossScale · Σ_b bound_b) into
    /// `store.gradients` and returns the per-example bounds (B).
    @discardableResult
    public func trainingStepGradient(
        _ x: MatrixView<Scalar>, objective: Objective, using rng: Xoshiro256, lossScale: Scalar? = nil
    ) throws -> [Scalar] {
        try objective.check(for: configuration)
        guard x.columns == configuration.dataDimension else {
            throw IWAEError.invalidArgument("examples have dimension \(x.columns) but the model expects \(configuration.dataDimension)")
        }
        return Array(try accumulateGradient(x, objective: objective, using: rng, lossScale: lossScale))
    }

    /// One training-step gradient of `objective` (checked when it was made,
    /// and against the model by the trainer): encode, K draws, log weights,
    /// bound and backward. Accumulates ∇(−lossScale · Σ_b bound_b) into
    /// `store.gradients` (lossScale defaults to 1/B: the mean) and returns the
    /// per-example bounds (B), valid until the next call.
    @discardableResult
    package func accumulateGradient(
        _ x: MatrixView<Scalar>, objective: Objective, using rng: Xoshiro256, lossScale: Scalar? = nil
    ) throws -> UnsafeMutableBufferPointer<Scalar> {
        let K = objective.samplesPerExample
        let encoded = try encode(x)
        let lw = try logWeights(encoded, samplesPerExample: K, using: rng)
        lw.bound(objective.bound, into: bounds.pointer)
        let omega = MatrixView(boundWeightValues.pointer, rows: x.rows, columns: K)
        lw.boundWeights(objective.bound, into: omega)
        backward(lw, boundWeights: omega, scale: lossScale ?? 1 / Scalar(x.rows), objective: objective)
        return UnsafeMutableBufferPointer(start: bounds.pointer, count: x.rows)
    }

    /// Accumulates into `store.gradients` the gradient of
    ///
    ///     loss = −scale · Σ_b Σ_j ω_bj · log w_bj                       (ω held fixed)
    ///     loss = −scale · [ Σ_b Σ_j ω_bj · log p(x_b|z_bj) − Σ_b KL_b ]  (elbo-analytic)
    ///
    /// where ω (B, K) is ∂bound/∂ log w; with ω from `boundWeights` and
    /// scale = 1/B this is the gradient of −mean bound (Mathematics §3): θ and λ
    /// through the generative terms with g = −scale·ω, φ by the objective's
    /// estimator (K is `lw`'s).
    ///
    /// The generative side runs first and leaves ∂loss/∂z_l (its paths) in
    /// each encoder's `sampleGradient`; the encoders then run top-down, each
    /// adding its path into the layer below.
    public func backward(_ lw: LogWeights<Scalar>, boundWeights omega: MatrixView<Scalar>, scale lossScale: Scalar,
                         objective: Objective) {
        let K = lw.samplesPerExample, rows = lw.examples * K, estimator = objective.estimator, bound = objective.bound
        precondition(omega.rows == lw.examples && omega.columns == K && omega.isContiguous)
        let g = lossWeights.pointer
        for b in 0..<lw.examples { for j in 0..<K { g[b * K + j] = -lossScale * omega[b, j] } }
        generativeBackward(lw, weights: g, paths: estimator != .score, prior: bound != .elboAnalytic)
        if bound == .elboAnalytic {
            encoder.backward(samplesPerExample: K, directScale: nil, klPrior: prior, klScale: lossScale, store)
            return
        }
        // ∂loss/∂z_l of every layer, (B·K, k_l) each.
        func dz(_ l: Int) -> UnsafeMutablePointer<Scalar> { encoders[l].sampleGradient.pointer }
        switch estimator {
        case .reparam:
            // −log q's path through z and its direct term cancel; what is left
            // of each q is its log-determinant, weighted by g.
            for l in encoders.indices.reversed() { encoderBackward(l, directScale: g, samplesPerExample: K) }
        case .stl, .dreg:
            // Path terms only (Roeder et al.); DReG weights every φ path once more by w̃ (Tucker et al.).
            var c = g
            if estimator == .dreg {
                // ω is (B, K) contiguous: draw r's weight is ω.pointer[r].
                let path = pathWeights.pointer, w = omega.pointer
                for r in 0..<rows { path[r] = g[r] * w[r] }
                for l in encoders.indices { Scalar.scaleRows(dz(l), by: w, rows: rows, columns: encoders[l].dimension) }
                c = path
            }
            for l in encoders.indices.reversed() {
                let k = encoders[l].dimension, m = dz(l)
                let v = encoders[l].whiten(samplesPerExample: drawsPerInput(ofLayer: l, samplesPerExample: K))
                if l == 0 {
                    // −log q(z₁|x) through z₁: +c·v, no direct term.
                    for r in 0..<rows { for i in 0..<k { m[r * k + i] += c[r] * v[r * k + i] } }
                    encoderBackward(0, directScale: nil, samplesPerExample: K)
                } else {
                    // Everything the pathwise gradient takes, including the path into z_l
                    // through q's own density, minus q's direct dependence on φ at fixed z:
                    // c·∇_φ log q, a score-function pass (M = c·v, direct scale −c, no input path).
                    encoderBackward(l, directScale: c, samplesPerExample: K)
                    let minusC = scoreWeights.pointer
                    for r in 0..<rows {
                        for i in 0..<k { m[r * k + i] = c[r] * v[r * k + i] }
                        minusC[r] = -c[r]
                    }
                    encoders[l].backward(samplesPerExample: 1, directScale: minusC, store)
                }
            }
        case .score:
            // z fixed: a_j ∇_φ log q(z_j), with ∇_μ log q = v and ∇_L log q = lower(v εᵀ) − diag(1/L_ii):
            // M_j = a_j v_j and direct scale −a_j, in every layer, with no path between layers.
            let a = scoreWeights.pointer
            scoreCoefficients(lw, boundWeights: omega, scale: lossScale, objective: objective, into: a)
            for l in encoders.indices {
                let k = encoders[l].dimension, m = dz(l), v = encoders[l].whiten(samplesPerExample: drawsPerInput(ofLayer: l, samplesPerExample: K))
                for r in 0..<rows { for i in 0..<k { m[r * k + i] = a[r] * v[r * k + i] } }
            }
            for r in 0..<rows { a[r] = -a[r] }
            for l in encoders.indices {
                encoders[l].backward(samplesPerExample: drawsPerInput(ofLayer: l, samplesPerExample: K), directScale: a, store)
            }
        }
    }

    /// θ and λ: the likelihood, the conditional priors and (unless its KL is
    /// differentiated in closed form) the top prior, weighted by g. With
    /// `paths`, their gradients with respect to each z_l go to
    /// `encoders[l].sampleGradient` (overwritten); without, z is held fixed.
    private func generativeBackward(_ lw: LogWeights<Scalar>, weights g: UnsafeMutablePointer<Scalar>, paths: Bool,
                                    prior includePrior: Bool) {
        let K = lw.samplesPerExample, top = encoders.count - 1
        // z₁'s gradient is written by the likelihood; the layers above only accumulate.
        for upper in encoders.dropFirst() where paths { upper.sampleGradient.pointer.update(repeating: 0, count: upper.samplesView(1).count) }
        likelihood.backward(weights: g, targets: lw.input, samplesPerExample: K, store, dz: paths ? encoder.sampleGradientView(K) : nil)
        if includePrior {
            prior.backward(latentSamples(top, samplesPerExample: K), weights: g, path: paths ? UnsafePointer(g) : nil,
                           sampleGradient: encoders[top].sampleGradient.pointer, store)
        }
        for (l, conditional) in conditionalPriors.enumerated() {
            conditional.densityBackward(at: latentSamples(l, samplesPerExample: K), weights: g,
                                        pointGradient: paths ? encoders[l].sampleGradient.pointer : nil, store,
                                        dx: paths ? encoders[l + 1].sampleGradientView(1) : nil)
        }
    }

    /// Encoder l's backward from its `sampleGradient`, adding its input path
    /// into the layer below (l ≥ 1).
    private func encoderBackward(_ l: Int, directScale: UnsafePointer<Scalar>?, samplesPerExample K: Int) {
        encoders[l].backward(samplesPerExample: drawsPerInput(ofLayer: l, samplesPerExample: K), directScale: directScale, store,
                             dx: l > 0 ? encoders[l - 1].sampleGradientView(drawsPerInput(ofLayer: l - 1, samplesPerExample: K)) : nil,
                             accumulateInput: true)
    }
}

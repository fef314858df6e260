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
    package func trainingStepGradient(
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
        let draws = objective.drawsPerExample
        let encoded = try encode(x)
        let lw = try logWeights(encoded, drawsPerExample: draws, using: rng)
        lw.bound(objective, into: bounds.pointer)
        let omega = MatrixView(boundWeightValues.pointer, rows: x.rows, columns: draws)
        lw.boundWeights(objective, into: omega)
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
    /// estimator (K is `lw`'s: all M·K draws). For PIWAE, φ takes the
    /// encoder's ω_φ (MIWAE's, `encoderBoundWeights`) instead: the
    /// generative side runs once with g − g_φ without paths, then with g_φ
    /// and its paths, so θ and λ get g and the encoder g_φ (θ's gradient is
    /// linear in its weights).
    ///
    /// The generative side runs first and leaves ∂loss/∂z_l (its paths) in
    /// each encoder's `sampleGradient`; the encoders then run top-down, each
    /// adding its path into the layer below.
    package func backward(_ lw: LogWeights<Scalar>, boundWeights omega: MatrixView<Scalar>, scale lossScale: Scalar,
                         objective: Objective) {
        let K = lw.drawsPerExample, rows = lw.examples * K, estimator = objective.estimator, bound = objective.bound
        precondition(omega.rows == lw.examples && omega.columns == K && omega.isContiguous)
        var omega = omega
        let g = lossWeights.pointer
        for b in 0..<lw.examples { for j in 0..<K { g[b * K + j] = -lossScale * omega[b, j] } }
        if bound == .piwae {
            // θ, λ take g (IWAE-(M·K)); the paths into the encoder take c = −scale·ω_φ (MIWAE).
            let encoderOmega = MatrixView(encoderBoundWeightValues.pointer, rows: lw.examples, columns: K)
            encoderBoundWeights(objective, logWeights: lw.values, into: encoderOmega)
            let c = pathWeights.pointer   // free until DReG's pass, which reads g only
            for r in 0..<rows { c[r] = -lossScale * encoderOmega.pointer[r] }
            if estimator == .score {
                generativeBackward(lw, weights: g, paths: false, prior: true)
            } else {
                generativePathsBackward(lw, weights: g, pathWeights: c)
            }
            g.update(from: c, count: rows)   // from here on, the encoder's weights
            omega = encoderOmega
        } else {
            generativeBackward(lw, weights: g, paths: estimator != .score, prior: bound != .elboAnalytic)
        }
        if bound == .elboAnalytic {
            encoder.backward(drawsPerExample: K, directScale: nil, klPrior: prior, klScale: lossScale, store)
            return
        }
        // ∂loss/∂z_l of every layer, (B·K, k_l) each.
        func dz(_ l: Int) -> UnsafeMutablePointer<Scalar> { encoders[l].sampleGradient.pointer }
        switch estimator {
        case .reparam:
            // −log q's path through z and its direct term cancel; what is left
            // of each q is its log-determinant, weighted by g.
            for l in encoders.indices.reversed() { encoderBackward(l, directScale: g, drawsPerExample: K) }
        case .stl, .dreg:
            // Path terms only (Roeder et al.); DReG weights every φ path once more by w̃ (Tucker et al.).
            var c = g
            if estimator == .dreg {
                // ω is (B, K) contiguous: draw r's weight is ω.pointer[r], w̃ = M·ω within its group
                // (M = 1: ω itself, untouched).
                let path = pathWeights.pointer
                var w = omega.pointer
                if objective.groups > 1 {
                    let normalized = encoderBoundWeightValues.pointer
                    for r in 0..<rows { normalized[r] = Scalar(objective.groups) * w[r] }
                    w = normalized
                }
                for r in 0..<rows { path[r] = g[r] * w[r] }
                for l in encoders.indices { Scalar.scaleRows(dz(l), by: w, rows: rows, columns: encoders[l].dimension) }
                c = path
            }
            for l in encoders.indices.reversed() {
                let k = encoders[l].dimension, m = dz(l)
                let v = encoders[l].whiten(drawsPerExample: drawsPerInput(ofLayer: l, drawsPerExample: K))
                if l == 0 {
                    // −log q(z₁|x) through z₁: +c·v, no direct term.
                    for r in 0..<rows { for i in 0..<k { m[r * k + i] += c[r] * v[r * k + i] } }
                    encoderBackward(0, directScale: nil, drawsPerExample: K)
                } else {
                    // Everything the pathwise gradient takes, including the path into z_l
                    // through q's own density, minus q's direct dependence on φ at fixed z:
                    // c·∇_φ log q, a score-function pass (M = c·v, direct scale −c, no input path).
                    encoderBackward(l, directScale: c, drawsPerExample: K)
                    let minusC = scoreWeights.pointer
                    for r in 0..<rows {
                        for i in 0..<k { m[r * k + i] = c[r] * v[r * k + i] }
                        minusC[r] = -c[r]
                    }
                    encoders[l].backward(drawsPerExample: 1, directScale: minusC, store)
                }
            }
        case .score:
            // z fixed: a_j ∇_φ log q(z_j), with ∇_μ log q = v and ∇_L log q = lower(v εᵀ) − diag(1/L_ii):
            // M_j = a_j v_j and direct scale −a_j, in every layer, with no path between layers.
            let a = scoreWeights.pointer
            scoreCoefficients(lw, boundWeights: omega, scale: lossScale, objective: objective, into: a)
            for l in encoders.indices {
                let k = encoders[l].dimension, m = dz(l), v = encoders[l].whiten(drawsPerExample: drawsPerInput(ofLayer: l, drawsPerExample: K))
                for r in 0..<rows { for i in 0..<k { m[r * k + i] = a[r] * v[r * k + i] } }
            }
            for r in 0..<rows { a[r] = -a[r] }
            for l in encoders.indices {
                encoders[l].backward(drawsPerExample: drawsPerInput(ofLayer: l, drawsPerExample: K), directScale: a, store)
            }
        }
    }

    /// θ and λ: each layer's generative side and (unless its KL is
    /// differentiated in closed form) the top prior, weighted by g. With
    /// `paths`, their gradients with respect to each z_l go to
    /// `encoders[l].sampleGradient` (overwritten); without, z is held fixed.
    private func generativeBackward(_ lw: LogWeights<Scalar>, weights g: UnsafeMutablePointer<Scalar>, paths: Bool,
                                    prior includePrior: Bool) {
        generativeBackward(lw, paths: paths) { l, layer, y, repeats, dy, dz in
            layer.generative.backward(weights: g, of: y, repeats: repeats, store, targetGradient: dy, conditionGradient: dz)
            if l == 0 && includePrior { priorBackward(lw, weights: g, paths: paths ? g : nil) }
        }
    }

    /// `generativeBackward` with paths, when the paths take other weights
    /// than the parameters (PIWAE): θ and λ get g, each z_l's path c. Each
    /// layer's generative side runs with c (parameters and paths), then with
    /// g − c for its parameters only (their gradient is linear in the
    /// weights); the prior takes both at once.
    private func generativePathsBackward(_ lw: LogWeights<Scalar>, weights g: UnsafeMutablePointer<Scalar>,
                                         pathWeights c: UnsafeMutablePointer<Scalar>) {
        let difference = scoreWeights.pointer   // free until the score estimator's pass
        for r in 0..<lw.examples * lw.drawsPerExample { difference[r] = g[r] - c[r] }
        generativeBackward(lw, paths: true) { l, layer, y, repeats, dy, dz in
            layer.generative.backward(weights: c, then: difference, of: y, repeats: repeats, store, targetGradient: dy,
                                      conditionGradient: dz)
            if l == 0 { priorBackward(lw, weights: g, paths: c) }
        }
    }

    /// The walk of both: layer by layer bottom up, each generative side given
    /// its target y (x, then z_{l−1}), its repeats and, with `paths`, where
    /// its gradients go: z₁'s is written by the likelihood, the prior and
    /// the layers above add theirs (the layers above z₁ start from zero).
    private func generativeBackward(
        _ lw: LogWeights<Scalar>, paths: Bool,
        _ body: (Int, LayerDistributions<Scalar>, MatrixView<Scalar>, Int, UnsafeMutablePointer<Scalar>?, MatrixView<Scalar>?) -> Void
    ) {
        let K = lw.drawsPerExample
        for upper in encoders.dropFirst() where paths { upper.sampleGradient.pointer.update(repeating: 0, count: upper.samplesView(1).count) }
        for (l, layer) in layers.enumerated() {
            body(l, layer, l == 0 ? lw.input : latentSamples(l - 1, drawsPerExample: K), l == 0 ? K : 1,
                 paths && l > 0 ? encoders[l - 1].sampleGradient.pointer : nil,
                 paths ? encoders[l].sampleGradientView(drawsPerInput(ofLayer: l, drawsPerExample: K)) : nil)
        }
    }

    /// log r(z_L)'s backward: λ weighted by g, and z_L's path weighted by
    /// `paths` when given.
    private func priorBackward(_ lw: LogWeights<Scalar>, weights g: UnsafePointer<Scalar>, paths: UnsafePointer<Scalar>?) {
        let top = encoders.count - 1
        prior.backward(latentSamples(top, drawsPerExample: lw.drawsPerExample), weights: g, path: paths,
                       sampleGradient: encoders[top].sampleGradient.pointer, store)
    }

    /// Encoder l's backward from its `sampleGradient`, adding its input path
    /// into the layer below (l ≥ 1).
    private func encoderBackward(_ l: Int, directScale: UnsafePointer<Scalar>?, drawsPerExample K: Int) {
        encoders[l].backward(drawsPerExample: drawsPerInput(ofLayer: l, drawsPerExample: K), directScale: directScale, store,
                             dx: l > 0 ? encoders[l - 1].sampleGradientView(drawsPerInput(ofLayer: l - 1, drawsPerExample: K)) : nil,
                             accumulateInput: true)
    }
}

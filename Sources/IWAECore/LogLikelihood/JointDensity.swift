import IWAELinearAlgebra
import RealModule

/// The latent rows z = (z₁ … z_L) of AIS chains and the two parts of
/// log f_β(z) = log p₀(z) + β ℓ(z) there, with their gradients by layer
/// (Mathematics §9):
///
///     from the prior:    log p₀ = log p(z) = log r(z_L) + Σ_{l<L} log p(z_l | z_{l+1}),   ℓ = log p(x | z₁)
///     from the encoder:  log p₀ = log q(z|x),                                           ℓ = log p(x, z) − log q(z|x)
///
/// Shapes: R rows (example-major, `chainsPerExample` per example of x), one
/// (R, k_l) buffer per layer; `startGradient[l]` = ∂ log p₀/∂z_l,
/// `ratioGradient[l]` = ∂ℓ/∂z_l; `logStart`, `logRatio` (R).
package final class LatentState<Scalar: BLASScalar> {
    package let rows: Int
    package let dimensions: [Int]
    package let z: [Tensor<Scalar>]
    package let startGradient: [Tensor<Scalar>]
    package let ratioGradient: [Tensor<Scalar>]
    package let logStart: Tensor<Scalar>
    package let logRatio: Tensor<Scalar>

    package init(rows: Int, dimensions: [Int]) {
        self.rows = rows
        self.dimensions = dimensions
        z = dimensions.map { Tensor(shape: [rows * $0]) }
        startGradient = dimensions.map { Tensor(shape: [rows * $0]) }
        ratioGradient = dimensions.map { Tensor(shape: [rows * $0]) }
        logStart = Tensor(shape: [rows])
        logRatio = Tensor(shape: [rows])
    }

    package func latent(_ l: Int) -> MatrixView<Scalar> { MatrixView(z[l].pointer, rows: rows, columns: dimensions[l]) }

    private var perLayer: [[Tensor<Scalar>]] { [z, startGradient, ratioGradient] }

    /// Copies every value of `other` (same shapes) into this state.
    package func copy(from other: LatentState) {
        for (a, b) in zip(perLayer.joined(), other.perLayer.joined()) { a.pointer.update(from: b.pointer, count: a.count) }
        logStart.pointer.update(from: other.logStart.pointer, count: rows)
        logRatio.pointer.update(from: other.logRatio.pointer, count: rows)
    }

    /// Copies row r of `other` into this state.
    package func copyRow(_ r: Int, from other: LatentState) {
        for (mine, theirs) in zip(perLayer, other.perLayer) {
            for l in dimensions.indices {
                let k = dimensions[l]
                (mine[l].pointer + r * k).update(from: theirs[l].pointer + r * k, count: k)
            }
        }
        logStart[r] = other.logStart[r]
        logRatio[r] = other.logRatio[r]
    }
}

extension VariationalAutoencoder {
    /// Draws the rows of `state` from the prior, top down: z_L ~ r(z_L),
    /// then z_l ~ p(z_l | z_{l+1}); `noise` gives each example's block of
    /// standard normals, layer by layer.
    package func drawFromPrior(_ state: LatentState<Scalar>, noise: Noise) throws {
        let top = state.dimensions.count - 1
        let zTop = state.z[top].pointer, kTop = state.dimensions[top]
        noise.fillStandardNormal(zTop, count: state.rows * kTop)
        for i in 0..<kTop {
            let (mean, variance) = prior.parameters(i, store)
            let deviation = Scalar.sqrt(variance)
            for r in 0..<state.rows { zTop[r * kTop + i] = mean + deviation * zTop[r * kTop + i] }
        }
        for l in stride(from: top - 1, through: 0, by: -1) {
            let p = conditionalPriors[l], k = state.dimensions[l], z = state.z[l].pointer
            try p.forward(state.latent(l + 1), store)
            noise.fillStandardNormal(z, count: state.rows * k)
            for j in 0..<state.rows * k { z[j] = p.mean[j] + p.scale[j] * z[j] }
        }
    }

    /// log p(z) (into the state's start part), log p(x|z₁) (its ratio part)
    /// and their gradients with respect to z at the rows of `state` (row r
    /// scored against x's row ⌊r / C⌋), from the model's own forward and
    /// backward passes:
    ///
    ///     ∂ log r(z_L)/∂z_L = −(z_L − λ₁)/λ₂          (the prior's backward, path weights 1)
    ///     ∂ log p(z_l|z_{l+1})/∂z_l, ∂/∂z_{l+1}       (the conditional prior's density backward)
    ///     ∂ log p(x|z₁)/∂z₁                           (the likelihood's backward, weights 1)
    ///
    /// `ones` holds at least R ones. The parameters' gradients are left to
    /// the store (a replica that skips them does not compute them).
    package func jointDensity(_ state: LatentState<Scalar>, data x: MatrixView<Scalar>, chainsPerExample C: Int,
                              ones: UnsafeMutablePointer<Scalar>, scratch: UnsafeMutablePointer<Scalar>) throws {
        let R = state.rows, top = state.dimensions.count - 1
        likelihood.logLikelihood(state.latent(0), targets: x, drawsPerExample: C, keepForBackward: true, store,
                                 into: state.logRatio.pointer)
        likelihood.backward(weights: ones, targets: x, drawsPerExample: C, store,
                            dz: MatrixView(state.ratioGradient[0].pointer, rows: R, columns: state.dimensions[0]))
        for g in state.ratioGradient.dropFirst() { g.zero() }
        for g in state.startGradient { g.zero() }
        prior.logDensity(state.latent(top), store, into: state.logStart.pointer)
        scratch.update(repeating: 0, count: R)
        prior.backward(state.latent(top), weights: scratch, path: ones, sampleGradient: state.startGradient[top].pointer, store)
        for l in 0..<top {
            let p = conditionalPriors[l]
            try p.forward(state.latent(l + 1), store)
            p.logDensity(at: state.latent(l), into: scratch)
            for r in 0..<R { state.logStart[r] += scratch[r] }
            p.densityBackward(at: state.latent(l), weights: ones, pointGradient: state.startGradient[l].pointer, store,
                              dx: MatrixView(state.startGradient[l + 1].pointer, rows: R, columns: state.dimensions[l + 1]))
        }
    }
}

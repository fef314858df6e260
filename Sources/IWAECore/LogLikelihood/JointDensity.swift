import IWAELinearAlgebra
import RealModule

/// The latent rows z = (z₁ … z_L) of AIS chains and the gradients of the
/// joint density's two parts there, held by the layer (Mathematics §9):
///
///     log p(z)   = log r(z_L) + Σ_{l<L} log p(z_l | z_{l+1})      (the prior, through every layer)
///     log p(x|z) = log p(x | z₁)                                   (the likelihood)
///
/// Shapes: R rows (example-major, `chainsPerExample` per example of x), one
/// (R, k_l) buffer per layer; `priorGradient[l]` = ∂ log p(z)/∂z_l,
/// `likelihoodGradient` = ∂ log p(x|z₁)/∂z₁; `logPrior`, `logLikelihood` (R).
package final class LatentState<Scalar: BLASScalar> {
    package let rows: Int
    package let dimensions: [Int]
    package let z: [Tensor<Scalar>]
    package let priorGradient: [Tensor<Scalar>]
    package let likelihoodGradient: Tensor<Scalar>
    package let logPrior: Tensor<Scalar>
    package let logLikelihood: Tensor<Scalar>

    package init(rows: Int, dimensions: [Int]) {
        self.rows = rows
        self.dimensions = dimensions
        z = dimensions.map { Tensor(shape: [rows * $0]) }
        priorGradient = dimensions.map { Tensor(shape: [rows * $0]) }
        likelihoodGradient = Tensor(shape: [rows * dimensions[0]])
        logPrior = Tensor(shape: [rows])
        logLikelihood = Tensor(shape: [rows])
    }

    package func latent(_ l: Int) -> MatrixView<Scalar> { MatrixView(z[l].pointer, rows: rows, columns: dimensions[l]) }

    /// Copies every value of `other` (same shapes) into this state.
    package func copy(from other: LatentState) {
        for (a, b) in zip(z + priorGradient + [likelihoodGradient, logPrior, logLikelihood],
                          other.z + other.priorGradient + [other.likelihoodGradient, other.logPrior, other.logLikelihood]) {
            a.pointer.update(from: b.pointer, count: a.count)
        }
    }

    /// Copies row r of `other` into this state.
    package func copyRow(_ r: Int, from other: LatentState) {
        for l in dimensions.indices {
            let k = dimensions[l]
            (z[l].pointer + r * k).update(from: other.z[l].pointer + r * k, count: k)
            (priorGradient[l].pointer + r * k).update(from: other.priorGradient[l].pointer + r * k, count: k)
        }
        let k = dimensions[0]
        (likelihoodGradient.pointer + r * k).update(from: other.likelihoodGradient.pointer + r * k, count: k)
        logPrior[r] = other.logPrior[r]
        logLikelihood[r] = other.logLikelihood[r]
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

    /// log p(z), log p(x|z₁) and their gradients with respect to z at the
    /// rows of `state` (row r scored against x's row ⌊r / C⌋), from the
    /// model's own forward and backward passes:
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
        likelihood.logLikelihood(state.latent(0), targets: x, samplesPerExample: C, keepForBackward: true, store,
                                 into: state.logLikelihood.pointer)
        likelihood.backward(weights: ones, targets: x, samplesPerExample: C, store,
                            dz: MatrixView(state.likelihoodGradient.pointer, rows: R, columns: state.dimensions[0]))
        for g in state.priorGradient { g.zero() }
        prior.logDensity(state.latent(top), store, into: state.logPrior.pointer)
        scratch.update(repeating: 0, count: R)
        prior.backward(state.latent(top), weights: scratch, path: ones, sampleGradient: state.priorGradient[top].pointer, store)
        for l in 0..<top {
            let p = conditionalPriors[l]
            try p.forward(state.latent(l + 1), store)
            p.logDensity(at: state.latent(l), into: scratch)
            for r in 0..<R { state.logPrior[r] += scratch[r] }
            p.densityBackward(at: state.latent(l), weights: ones, pointGradient: state.priorGradient[l].pointer, store,
                              dx: MatrixView(state.priorGradient[l + 1].pointer, rows: R, columns: state.dimensions[l + 1]))
        }
    }
}

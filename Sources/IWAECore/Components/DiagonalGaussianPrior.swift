import IWAELinearAlgebra
import RealModule

/// The prior r_λ(z) = N(λ₁, diag(λ₂)) over k units (Mathematics §1): the
/// standard normal (λ₁ = 0, λ₂ = 1, fixed) or learned, with λ₂ = exp(ρ).
///
/// Parameters (learned only): `prior.mean` λ₁ (k), `prior.log_variance` ρ (k).
package final class DiagonalGaussianPrior<Scalar: BLASScalar> {
    package let kind: PriorKind
    package let dimension: Int
    let meanSlot: ParameterSlot?
    let logVarianceSlot: ParameterSlot?

    package init(_ kind: PriorKind, dimension k: Int, name: String = "prior", layout: inout ParameterLayout) {
        self.kind = kind
        dimension = k
        if kind == .learned {
            meanSlot = layout.register("\(name).mean", shape: [k])
            logVarianceSlot = layout.register("\(name).log_variance", shape: [k])
        } else {
            meanSlot = nil
            logVarianceSlot = nil
        }
    }

    /// λ₁ᵢ and λ₂ᵢ of unit i.
    @inline(__always) package func parameters(_ i: Int, _ store: ParameterStore<Scalar>) -> (mean: Scalar, variance: Scalar) {
        guard let meanSlot, let logVarianceSlot else { return (0, 1) }
        return (store.value(meanSlot)[i], Scalar.exp(store.value(logVarianceSlot)[i]))
    }

    /// log r(z) per row of z (N, k), by `standardNormalLogDensity` or
    /// `diagonalGaussianLogDensity`.
    package func logDensity(_ z: MatrixView<Scalar>, _ store: ParameterStore<Scalar>, into result: UnsafeMutablePointer<Scalar>) {
        precondition(z.columns == dimension)
        if let meanSlot, let logVarianceSlot {
            diagonalGaussianLogDensity(z, mean: store.value(meanSlot), logVariance: store.value(logVarianceSlot), into: result)
        } else {
            standardNormalLogDensity(z, into: result)
        }
    }

    /// The backward of `Σ_r g_r log r(z_r)`: accumulates into λ's gradient
    ///
    ///     ∂log r/∂λ₁ = (z − λ₁)/λ₂,   ∂log r/∂ρ = ½(z − λ₁)²/λ₂ − ½        (z fixed)
    ///
    /// weighted by `g`, and, when `path` is given, adds the path through z,
    /// `path_r · ∂log r/∂z = −path_r (z − λ₁)/λ₂`, to `dz` (N, k). The
    /// doubly reparameterized estimator passes a path weight other than g.
    package func backward(_ z: MatrixView<Scalar>, weights g: UnsafePointer<Scalar>, path: UnsafePointer<Scalar>?,
                         sampleGradient dz: UnsafeMutablePointer<Scalar>, _ store: ParameterStore<Scalar>) {
        let k = dimension, rows = z.rows
        precondition(z.columns == k)
        let dMean = meanSlot.map { store.gradient($0) }, dLogVariance = logVarianceSlot.map { store.gradient($0) }
        // Row by row, each unit's sums in the order of the rows: the bits of
        // a loop over units outside, in a sweep over z's rows as they lie.
        withUnsafeTemporaryAllocation(of: Scalar.self, capacity: 4 * k) { scratch in
            let base = scratch.baseAddress!
            let means = base, variances = base + k, sumMean = base + 2 * k, sumLogVariance = base + 3 * k
            for i in 0..<k {
                (means[i], variances[i]) = parameters(i, store)
                sumMean[i] = 0
                sumLogVariance[i] = 0
            }
            for r in 0..<rows {
                let gr = g[r], zr = z.pointer + r * z.rowStride
                for i in 0..<k {
                    let diff = zr[i] - means[i], variance = variances[i]
                    sumMean[i] += gr * diff / variance
                    sumLogVariance[i] += gr * (0.5 * diff * diff / variance - 0.5)
                }
                if let path {
                    let pr = path[r], dzr = dz + r * k
                    for i in 0..<k { dzr[i] += pr * (-(zr[i] - means[i]) / variances[i]) }
                }
            }
            for i in 0..<k {
                dMean?[i] += sumMean[i]
                dLogVariance?[i] += sumLogVariance[i]
            }
        }
    }

    /// Adds `scale ·` ∂KL(q ‖ r)/∂λ for unit i, given `meanDifference` =
    /// μᵢ − λ₁ᵢ and q's variance Σ_ii (`klDivergence`):
    ///
    ///     ∂KL/∂λ₁ = (λ₁ − μ)/λ₂,   ∂KL/∂ρ = ½(1 − (Σ_ii + (λ₁ − μ)²)/λ₂)
    @inline(__always)
    func addKLGradient(unit i: Int, meanDifference diff: Scalar, variance sigmaII: Scalar, scale c: Scalar,
                       _ store: ParameterStore<Scalar>) {
        guard let meanSlot, let logVarianceSlot else { return }
        let v = Scalar.exp(store.value(logVarianceSlot)[i])
        store.gradient(meanSlot)[i] += c * (-diff / v)
        store.gradient(logVarianceSlot)[i] += c * 0.5 * (1 - (sigmaII + diff * diff) / v)
    }
}

import IWAELinearAlgebra
import RealModule

extension GaussianConditional {
    /// v = L⁻ᵀ ε per draw (rows vᵀ = εᵀ L⁻¹), (B·K, k): ∂log q/∂z = −v and
    /// ∇_μ log q = v at fixed z. Needed by every estimator but the pathwise one.
    @discardableResult
    package func whiten(drawsPerExample K: Int) -> UnsafeMutablePointer<Scalar> {
        let k = dimension, rows = examples * K
        let eps = epsilon.pointer, v = whitened.pointer
        if isFull {
            let tc = profiler.start()
            defer { profiler.stop(.covariance, tc) }
            v.update(from: eps, count: rows * k)
            for b in 0..<examples {
                Scalar.triangularSolve(left: false, transposeA: .none, m: K, n: k, alpha: 1,
                                       a: scale.pointer + b * k * k, lda: k, b: v + b * K * k, ldb: k)
            }
        } else {
            for b in 0..<examples { for j in 0..<K { for i in 0..<k {
                v[(b * K + j) * k + i] = eps[(b * K + j) * k + i] / scale[b * k + i]
            } } }
        }
        return v
    }

    /// The backward of `forward` and `sample`: from M = ∂loss/∂z in
    /// `sampleGradient` (B·K, k), with q's direct terms folded in, to every
    /// parameter and, when `dx` is given, to ∂loss/∂h (B, in).
    ///
    ///     μ̄_b = Σ_j M_bj
    ///     log s̄_b = Σ_j M_bj ⊙ s_b ⊙ ε_bj + Σ_j g_bj                   (diagonal; ∂z/∂ log s = s ε)
    ///     L̄_b = lower(M_bᵀ E_b) + (Σ_j g_bj) diag(1/L_ii)                (full)
    ///
    /// `directScale` g (B·K) carries q's direct dependence on log det Σ (nil:
    /// none). With `klPrior`, `klScale` · ∂KL(q ‖ prior) is added first
    /// (`addKLGradient`). The full covariance then goes L̄ → Σ̄ → (Ā, d̄).
    /// With `accumulateInput`, ∂loss/∂h is added to `dx` instead of written.
    package func backward(drawsPerExample K: Int, directScale g: UnsafePointer<Scalar>?,
                         klPrior: DiagonalGaussianPrior<Scalar>? = nil, klScale: Scalar = 0,
                         _ store: ParameterStore<Scalar>, dx: MatrixView<Scalar>? = nil, accumulateInput: Bool = false) {
        let t = profiler.start()
        reparameterizationBackward(drawsPerExample: K, directScale: g)
        if let klPrior { addKLGradient(to: klPrior, scale: klScale, store) }
        if isFull { covarianceBackward() }
        profiler.stop(isFull ? .covariance : .elementwise, t)
        headsBackward(store, dx: dx, accumulateInput: accumulateInput)
    }

    private func reparameterizationBackward(drawsPerExample K: Int, directScale g: UnsafePointer<Scalar>?) {
        let k = dimension, m = sampleGradient.pointer
        let eps = epsilon.pointer, dMu = meanGradient.pointer, dScale = scaleGradient.pointer
        for b in 0..<examples {
            var gSum: Scalar = 0
            if let g { for j in 0..<K { gSum += g[b * K + j] } }
            // Each unit's sum over the draws in draw order, sweeping the draws' rows as they lie.
            let dMuB = dMu + b * k
            for i in 0..<k { dMuB[i] = 0 }
            for j in 0..<K {
                let row = m + (b * K + j) * k
                for i in 0..<k { dMuB[i] += row[i] }
            }
            if isFull {
                let lBar = dScale + b * k * k
                gemm(MatrixView(lBar, rows: k, columns: k), MatrixView(m + b * K * k, rows: K, columns: k), .transposed,
                     MatrixView(eps + b * K * k, rows: K, columns: k), .none)
                for i in 0..<k {
                    for j in (i + 1)..<Swift.max(i + 1, k) { lBar[i * k + j] = 0 }
                    lBar[i * k + i] += gSum / scale[b * k * k + i * k + i]
                }
            } else {
                let s = scale.pointer + b * k, dScaleB = dScale + b * k
                for i in 0..<k { dScaleB[i] = 0 }
                for j in 0..<K {
                    let row = m + (b * K + j) * k, epsRow = eps + (b * K + j) * k
                    for i in 0..<k { dScaleB[i] += row[i] * s[i] * epsRow[i] }
                }
                for i in 0..<k { dScaleB[i] += gSum }
            }
        }
    }

    /// Adds `scale ·` ∂KL/∂(μ, L or log s) here and ∂KL/∂λ to the prior (`klDivergence`):
    ///
    ///     ∂KL/∂μ = (μ − λ₁)/λ₂,   ∂KL/∂L_ij = L_ij/λ₂ᵢ − δ_ij/L_ii,   ∂KL/∂ log s_i = s_i²/λ₂ᵢ − 1
    private func addKLGradient(to prior: DiagonalGaussianPrior<Scalar>, scale c: Scalar, _ store: ParameterStore<Scalar>) {
        let k = dimension
        for b in 0..<examples {
            for i in 0..<k {
                let (m, v) = prior.parameters(i, store)
                let diff = mean[b * k + i] - m
                meanGradient[b * k + i] += c * diff / v
                var sigmaII: Scalar = 0
                if isFull {
                    let l = scale.pointer + b * k * k, lBar = scaleGradient.pointer + b * k * k
                    for j in 0...i {
                        lBar[i * k + j] += c * l[i * k + j] / v
                        sigmaII += l[i * k + j] * l[i * k + j]
                    }
                    lBar[i * k + i] -= c / l[i * k + i]
                } else {
                    let s = scale[b * k + i]
                    sigmaII = s * s
                    scaleGradient[b * k + i] += c * (sigmaII / v - 1)
                }
                prior.addKLGradient(unit: i, meanDifference: diff, variance: sigmaII, scale: c, store)
            }
        }
    }

    /// L̄ → Σ̄ (Murray, Mathematics §4) → Ā = 2 Σ̄ A, d̄ = diag(Σ̄) ⊙ σ(d).
    private func covarianceBackward() {
        let k = dimension, kk = k * k
        for b in 0..<examples {
            let sigmaBar = covarianceGradient.pointer + b * kk
            choleskyBackward(factor: scale.pointer + b * kk, factorGradient: scaleGradient.pointer + b * kk, n: k,
                             into: sigmaBar, work: choleskyWork.pointer)
            gemm(MatrixView(scaleRawGradient.pointer + b * kk, rows: k, columns: k), MatrixView(sigmaBar, rows: k, columns: k), .none,
                 MatrixView(scaleRaw.pointer + b * kk, rows: k, columns: k), .none, alpha: 2)
        }
        // ∂ softplus(d)/∂d = σ(d) = 1 − exp(−softplus(d)).
        for b in 0..<examples { for i in 0..<k {
            let sp = covarianceDiagonal[b * k + i]
            diagonalRawGradient[b * k + i] = covarianceGradient[b * kk + i * k + i] * -Scalar.expMinusOne(-sp)
        } }
    }

    /// μ̄ and the scale gradient back through the heads and the trunk (which
    /// times its own phases).
    func headsBackward(_ store: ParameterStore<Scalar>, dx: MatrixView<Scalar>?, accumulateInput: Bool) {
        let t = profiler.start()
        let k = dimension
        let h = trunk?.output ?? input!
        let dh = trunk?.outputGradient ?? dx
        let ones = trunk?.onesVector ?? UnsafePointer(self.ones.pointer)
        let roundedH = trunk?.roundedOutput
        meanHead.backward(dx: dh, dy: view(meanGradient, k), x: h, store, ones: ones,
                          accumulateInput: trunk == nil && accumulateInput, roundedX: roundedH)
        if let scaleHead {
            scaleHead.backward(dx: dh, dy: view(isFull ? scaleRawGradient : scaleGradient, scaleWidth), x: h, store, ones: ones,
                               accumulateInput: true, roundedX: roundedH)
        } else if let constantLogScale {
            let d = store.gradient(constantLogScale)
            for b in 0..<examples { for i in 0..<k { d[i] += scaleGradient[b * k + i] } }
        }
        diagonalHead?.backward(dx: dh, dy: view(diagonalRawGradient, k), x: h, store, ones: ones, accumulateInput: true,
                               roundedX: roundedH)
        profiler.stop(.gemm, t)
        trunk?.backward(dx: dx, store, accumulateInput: accumulateInput)
    }
}

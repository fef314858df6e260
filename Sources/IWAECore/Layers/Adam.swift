import IWAELinearAlgebra
import RealModule

/// Adam (Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization"),
/// with bias correction, minimizing a loss whose gradient is in the store.
///
///     m ← β₁ m + (1 − β₁) g
///     v ← β₂ v + (1 − β₂) g²
///     θ ← θ − η · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)
///
/// Defaults are the IWAE paper's: β₁ = 0.9, β₂ = 0.999, ε = 10⁻⁴.
/// The moments share the parameters' layout: one flat loop per step.
public final class Adam<Scalar: BLASScalar> {
    public var learningRate: Double
    public let beta1: Double
    public let beta2: Double
    public let epsilon: Double
    public private(set) var step = 0
    public let firstMoment: Tensor<Scalar>
    public let secondMoment: Tensor<Scalar>

    public init(count: Int, learningRate: Double, beta1: Double = 0.9, beta2: Double = 0.999, epsilon: Double = 1e-4) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        firstMoment = Tensor(shape: [count])
        secondMoment = Tensor(shape: [count])
    }

    /// Restores the step counter and the moments (for resuming a run).
    public func restore(step: Int, firstMoment m: [Scalar], secondMoment v: [Scalar]) {
        precondition(m.count == firstMoment.count && v.count == secondMoment.count)
        self.step = step
        m.withUnsafeBufferPointer { firstMoment.pointer.update(from: $0.baseAddress!, count: m.count) }
        v.withUnsafeBufferPointer { secondMoment.pointer.update(from: $0.baseAddress!, count: v.count) }
    }

    /// One update of `store.values` from `store.gradients`.
    @_specialize(exported: true, where Scalar == Float)
    package func update(_ store: ParameterStore<Scalar>) {
        let (stepSize, eps, b1, b2) = nextStep()
        let theta = store.values.pointer, g = store.gradients.pointer
        let m = firstMoment.pointer, v = secondMoment.pointer
        forEachChunk(count: store.values.count) { range in
            let o = range.lowerBound
            Scalar.adamStep(parameters: theta + o, gradients: g + o, firstMoment: m + o, secondMoment: v + o,
                            count: range.count, beta1: b1, beta2: b2, stepSize: stepSize, epsilon: eps)
        }
        store.valuesChanged()
    }

    /// One update of `store.values` from the sum of `sources`, gradient
    /// buffers in the store's layout (a step's data-parallel replicas, added
    /// left to right), which it leaves as they are (the next step writes
    /// over them, `ParameterStore.markGradientsStale`): the sum and the
    /// update in one pass over memory instead of two.
    /// In a bf16 plan the same pass rounds the new values into the store's
    /// `bfloat16Copy`, which the next step's products read. The pass is
    /// split over `cores` threads (nil: all, as `forEachChunk`), the caller
    /// running `meanwhile` first while the others start.
    @_specialize(exported: true, where Scalar == Float)
    package func update(_ store: ParameterStore<Scalar>, summing sources: ArraySlice<UnsafeMutablePointer<Scalar>>,
                        cores: Int? = nil, meanwhile: () -> Void = {}) {
        precondition(!sources.isEmpty)
        let (stepSize, eps, b1, b2) = nextStep()
        let theta = store.values.pointer
        let m = firstMoment.pointer, v = secondMoment.pointer
        let (bits, floats) = Scalar.self == Float.self ? store.bfloat16Copy.prepare(for: store.plan) : (nil, nil)
        forEachChunk(count: store.values.count, cores: cores, meanwhile: meanwhile) { range in
            let o = range.lowerBound
            withUnsafeTemporaryAllocation(of: UnsafeMutablePointer<Scalar>?.self, capacity: sources.count) { shifted in
                for (i, g) in sources.enumerated() { shifted[i] = g + o }
                if bits == nil && floats == nil {
                    Scalar.adamStepSumming(parameters: theta + o, gradients: UnsafePointer(shifted.baseAddress!),
                                           sources: sources.count, firstMoment: m + o, secondMoment: v + o,
                                           count: range.count, beta1: b1, beta2: b2, stepSize: stepSize, epsilon: eps)
                    return
                }
                func float(_ p: UnsafeMutablePointer<Scalar>) -> UnsafeMutablePointer<Float> {
                    UnsafeMutableRawPointer(p).assumingMemoryBound(to: Float.self)
                }
                UnsafeMutableRawPointer(shifted.baseAddress!).withMemoryRebound(to: UnsafeMutablePointer<Float>?.self, capacity: sources.count) { g in
                    adamStepSummingAndRounding(parameters: float(theta + o), gradients: UnsafePointer(g), sources: sources.count,
                                               firstMoment: float(m + o), secondMoment: float(v + o), count: range.count,
                                               beta1: b1 as! Float, beta2: b2 as! Float, stepSize: stepSize as! Float,
                                               epsilon: eps as! Float, bits: bits.map { $0 + o }, floats: floats.map { $0 + o })
                }
            }
        }
        store.bfloat16Copy.isCurrent = bits != nil || floats != nil
    }

    /// Advances the step counter and returns the step's coefficients, both
    /// bias corrections folded into the step size and ε:
    /// θ −= η·√(1−β₂ᵗ)/(1−β₁ᵗ) · m / (√v + ε·√(1−β₂ᵗ)).
    private func nextStep() -> (stepSize: Scalar, epsilon: Scalar, beta1: Scalar, beta2: Scalar) {
        step += 1
        let t = Double(step)
        let correction2 = (1 - Double.pow(beta2, t)).squareRoot()
        return (Scalar(learningRate * correction2 / (1 - Double.pow(beta1, t))), Scalar(epsilon * correction2),
                Scalar(beta1), Scalar(beta2))
    }
}

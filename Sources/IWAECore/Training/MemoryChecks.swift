import Foundation
import IWAELinearAlgebra

extension TrainingOptions {
    /// Refuses up front a run whose memory would not fit (`MemoryBudget`:
    /// the machine's memory, the cgroup's limit, `ulimit -v`): the model's
    /// parameters and the K × batch buffers of a step. The sizes may come
    /// from a command line or a checkpoint; the arithmetic is checked.
    package func checkMemory(for configuration: ModelConfiguration) throws {
        try TrainingOptions.checkModelMemory(configuration, workers: workers)
        try TrainingOptions.checkBufferMemory(samples: objective.drawsPerExample, batch: batchSize, dimension: configuration.dataDimension,
                                              hidden: configuration.widestLayer)
    }

    /// The model's parameters: 4 bytes each for the values, Adam's two
    /// moments, and one gradient per worker.
    package static func checkModelMemory(_ configuration: ModelConfiguration, workers: Int?) throws {
        let copies = 3 + Swift.max(1, workers ?? ProcessInfo.processInfo.activeProcessorCount)
        let bytes = configuration.parameterCount.flatMap { CheckedSize.product([4, copies, $0]) }
        let count = configuration.parameterCount.map(String.init) ?? "too many"
        do { try MemoryBudget.check(bytes, for: "the model's \(count) parameters (values, gradients, Adam)") }
        catch let error as MemoryBudgetError { throw IWAEError.invalidArgument(error.message) }
    }

    /// A step's buffers: 4 bytes × (3 D + 4 H + 64) per sample row, K × batch rows.
    package static func checkBufferMemory(samples: Int, batch: Int, dimension: Int, hidden: Int) throws {
        let perRow = CheckedSize.sumOfProducts([[3, dimension], [4, hidden], [64]]).flatMap { CheckedSize.product([4, $0]) }
        let bytes = perRow.flatMap { CheckedSize.product([samples, batch, $0]) }
        do { try MemoryBudget.check(bytes, for: "k=\(samples) × batch=\(batch) buffers", fraction: 0.5) }
        catch let error as MemoryBudgetError { throw IWAEError.invalidArgument(error.message) }
    }
}

extension ModelConfiguration {
    /// The widest layer of any network or latent, H in the buffer estimate.
    package var widestLayer: Int {
        ([latentDimension] + encoderHidden + decoderHidden
         + upperLayers.flatMap { [$0.dimension] + $0.encoderHidden + $0.decoderHidden }).max()!
    }
}

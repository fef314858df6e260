import ArgumentParser
import Foundation
import IWAE
import IWAEConsole

/// A training loop written with the public step alone, as a library user
/// writes one (the Getting Started article's API, nothing of the package's),
/// against `Trainer` on the same model, data and options: the time of each,
/// alternating which runs first, and their ratio.
struct UserLoop: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "user-loop",
        abstract: "A training loop written with the public step (ModelWorkers.boundsAndGradient, updateParameters) against Trainer: seconds per epoch and their ratio, alternating.")

    @Option(help: "Training images: fashion-mnist, mnist or a directory of IDX files.") var data = "fashion-mnist"
    @Option(help: "Training images used (the first N).") var trainExamples = 20_000
    @Option(help: "Importance samples K of the IWAE bound.") var k = 5
    @Option(help: "Examples per minibatch.") var batch = 100
    @Option(help: "Pairs of runs (Trainer, then the loop; the next pair the other way round).") var rounds = 4
    @Option(help: "Worker threads (default: all active cores).") var threads: Int?
    @Flag(help: "One JSON object instead of the table.") var json = false

    func run() throws {
        guard trainExamples >= batch, batch >= 1, k >= 1, rounds >= 1 else {
            throw IWAEError.invalidArgument("--train-examples must be at least --batch, and --batch, --k and --rounds at least 1")
        }
        let images = try DataSource(name: data).load(.train).prefix(trainExamples)
        let objective = try Objective(.iwae, samplesPerExample: k)
        let configuration = ModelConfiguration(dataDimension: images.dimension)
        let options = try TrainingOptions(objective: objective, epochs: 1, batchSize: batch, seed: 1, workers: threads)
        func timeTrainer() throws -> Double {
            let model = VariationalAutoencoder<Float>(configuration, seed: 1)
            let started = now()
            try Trainer(model: model, options: options, validation: nil).train(images)
            return now() - started
        }
        func timeLoop() throws -> Double {
            let model = VariationalAutoencoder<Float>(configuration, seed: 1)
            let started = now()
            try model.initializeOutputLayer(from: images, .glorot)   // as Trainer does
            try trainWithPublicStep(model, images, objective: objective, batchSize: batch, threads: threads)
            return now() - started
        }
        _ = try timeTrainer()   // plans the products (cached) and warms up
        var trainer = [Double](), loop = [Double]()
        for round in 0..<rounds {
            if round % 2 == 0 { trainer.append(try timeTrainer()); loop.append(try timeLoop()) }
            else { loop.append(try timeLoop()); trainer.append(try timeTrainer()) }
        }
        let ratios = zip(loop, trainer).map { $0 / $1 }.sorted()
        let median = ratios[ratios.count / 2]
        let cpu = Processor.current.summary
        if json {
            print(jsonLine([("cpu", cpu), ("examples", images.count), ("batch", batch), ("k", k), ("trainer_seconds", trainer.min()!),
                            ("loop_seconds", loop.min()!), ("median_ratio", median)]))
        } else {
            print("one epoch of \(images.count) images, IWAE K = \(k), batch \(batch), on \(cpu)")
            for (t, l) in zip(trainer, loop) { print("Trainer \(formatted(t, 2)) s   public-step loop \(formatted(l, 2)) s   loop/Trainer \(formatted(l / t, 3))") }
            print("median loop/Trainer \(formatted(median, 3))")
        }
    }
}

/// One epoch as a user writes it with the public API: a shuffled order, each
/// batch written into one tensor with dynamic binarization, the workers'
/// bounds and gradient, and Adam.
func trainWithPublicStep(_ model: VariationalAutoencoder<Float>, _ images: ImageSet, objective: Objective,
                         batchSize: Int, threads: Int?) throws {
    let workers = ModelWorkers(model: model, workers: threads, seed: 1)
    workers.plan = workers.trainingPlan(batchSize: batchSize, objective: objective)
    let adam = Adam<Float>(count: model.parameterCount, learningRate: 1e-3)
    var rng = Xoshiro256(seed: 2)
    let batch = Tensor<Float>(shape: [batchSize, images.dimension])
    let order = Array(0..<images.count).shuffled(using: &rng)
    for start in stride(from: 0, through: order.count - batchSize, by: batchSize) {
        batch.withMutableSpan { images.write(order[start..<start + batchSize], binarize: true, using: rng, into: &$0) }
        try workers.boundsAndGradient(batch.matrix, objective: objective)
        workers.updateParameters(with: adam)
    }
}

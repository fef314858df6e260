import IWAE
import XCTest

/// A training step's workers spread over the cores or in turn on one core
/// (`WorkerLayout`): the same bits either way, and `LayoutChooser` keeps
/// to the faster, following it when it changes, at a bounded cost.
final class WorkerLayoutTests: XCTestCase {
    /// Steps in every layout, and in layouts that change from step to step,
    /// leave the same bounds and parameters, bit for bit: Adam's pass is
    /// large enough here (154,584 parameters) to be split over two cores
    /// when spread.
    func testLayoutsGiveTheSameBits() throws {
        let configuration = ModelConfiguration(dataDimension: 300, latentDimension: 12, encoderHidden: [256], decoderHidden: [256])
        let rng = Xoshiro256(seed: 3)
        let x = Tensor<Float>(shape: [9, 300], values: (0..<2700).map { _ in Float(rng.next() % 2) })
        let objective = try Objective(.iwae, samplesPerExample: 3)
        let schedules: [[WorkerLayout?]] = [
            Array(repeating: .spread, count: 6), Array(repeating: .inTurn, count: 6),
            [.spread, .inTurn, .inTurn, .spread, .inTurn, .spread], [nil, nil, nil, nil, nil, nil],
        ]
        var results = [([[Float]], [Float])]()
        for schedule in schedules {
            let model = VariationalAutoencoder<Float>(configuration, seed: 1)
            XCTAssertGreaterThanOrEqual(model.store.values.count, 2 * 65536)
            let workers = ModelWorkers(model: model, workers: 2, seed: 9)
            let adam = Adam<Float>(count: model.store.values.count, learningRate: 1e-2)
            var bounds = [[Float]]()
            for layout in schedule {
                workers.fixedLayout = layout
                bounds.append(Array(try workers.stepGradient(x.matrix, objective: objective)))
                workers.updateParameters(with: adam)
            }
            if schedule[0] != nil {
                for layout in WorkerLayout.allCases {
                    XCTAssertEqual(workers.layouts.steps(in: layout), schedule.filter { $0 == layout }.count)
                }
            }
            results.append((bounds, model.store.values.array))
        }
        for (i, (bounds, values)) in results.enumerated().dropFirst() {
            XCTAssertEqual(bounds, results[0].0, "schedule \(i)")
            XCTAssertTrue(values == results[0].1, "schedule \(i): parameter \(values.indices.first { values[$0] != results[0].1[$0] } ?? -1) differs")
        }
        XCTAssertNotEqual(results[0].1, VariationalAutoencoder<Float>(configuration, seed: 1).store.values.array)
    }

    /// `steps` steps through `chooser`, each taking `time(step, layout)`
    /// seconds, plus `moving` seconds for a step whose layout differs from
    /// the last one's (the working set moving between the cores). Returns
    /// the total seconds.
    private func run(_ chooser: inout LayoutChooser, steps: Range<Int>, moving: Double = 0,
                     _ time: (Int, WorkerLayout) -> Double) -> Double {
        var total = 0.0
        var last: WorkerLayout?
        for step in steps {
            let layout = chooser.next
            let seconds = time(step, layout) + (last != nil && last != layout ? moving : 0)
            chooser.record(layout, seconds: seconds)
            total += seconds
            last = layout
        }
        return total
    }

    /// Where one layout is always faster, the chooser runs it, and probing
    /// the other costs about 1 % of the time (the budget), even when a
    /// change of layout costs a step's worth more.
    func testChooserKeepsToTheFasterLayoutAtABoundedCost() {
        for (fast, slow) in [(WorkerLayout.spread, WorkerLayout.inTurn), (.inTurn, .spread)] {
            for moving in [0.0, 1.0] {
                var chooser = LayoutChooser()
                let total = run(&chooser, steps: 0..<20_000, moving: moving) { _, layout in layout == fast ? 1.0 : 1.8 }
                XCTAssertEqual(chooser.active, fast)
                XCTAssertLessThan(total / 20_000, 1.02, "fast \(fast), moving \(moving)")
                XCTAssertLessThan(Double(chooser.steps(in: slow)) / 20_000, 0.02)
            }
        }
    }

    /// Layouts within a few percent of each other are probed often (at the
    /// shortest interval), and the faster is kept: the slower by 10 % takes
    /// a few percent of the steps.
    func testChooserProbesCloseLayoutsOften() {
        var chooser = LayoutChooser()
        let total = run(&chooser, steps: 0..<10_000) { _, layout in layout == .spread ? 1.0 : 1.1 }
        XCTAssertEqual(chooser.active, .spread)
        XCTAssertGreaterThan(chooser.steps(in: .inTurn), 10_000 / (LayoutChooser.minimumInterval * 10))
        XCTAssertLessThan(total / 10_000, 1.03)
    }

    /// The host moves the cores apart for 3,000 steps (spread steps 3.5
    /// times as long, as on Zen 4) and near again: the chooser takes the
    /// workers to one core within tens of steps and back within a probe's
    /// interval, each stretch costing at most 10 % more than its faster
    /// layout throughout.
    func testChooserFollowsTheHost() {
        var chooser = LayoutChooser()
        func time(_ step: Int, _ layout: WorkerLayout) -> Double {
            let apart = (3000..<6000).contains(step)
            return layout == .inTurn ? 1.0 : apart ? 2.5 : 0.7
        }
        let near = run(&chooser, steps: 0..<3000, moving: 0.5, time)
        XCTAssertEqual(chooser.active, .spread)
        let before = chooser.steps(in: .spread)
        let apart = run(&chooser, steps: 3000..<6000, moving: 0.5, time)
        XCTAssertEqual(chooser.active, .inTurn)
        XCTAssertLessThan(chooser.steps(in: .spread) - before, 100)
        let nearAgain = run(&chooser, steps: 6000..<9000, moving: 0.5, time)
        XCTAssertEqual(chooser.active, .spread)
        XCTAssertLessThan(near / (3000 * 0.7), 1.10)
        XCTAssertLessThan(apart / (3000 * 1.0), 1.10)
        XCTAssertLessThan(nearAgain / (3000 * 0.7), 1.10)
    }

    /// Times that are not finite or are negative (a clock that stepped
    /// back) count as zero and leave the chooser working.
    func testChooserTakesBadTimes() {
        var chooser = LayoutChooser()
        _ = run(&chooser, steps: 0..<2000) { step, layout in
            step % 97 == 0 ? (step % 2 == 0 ? .nan : -1) : layout == .spread ? 2.0 : 1.0
        }
        XCTAssertEqual(chooser.active, .inTurn)
        XCTAssertLessThan(chooser.steps(in: .spread), 100)
    }
}

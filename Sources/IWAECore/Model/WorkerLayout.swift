/// Where a training step's workers run. `spread`: at once, a thread each
/// (the calling thread and the helpers, `concurrently`), Adam's pass split
/// over the cores. `inTurn`: one after the other on the calling thread,
/// Adam's pass there too.
///
/// The two give the same bits: each worker computes its block alone, with
/// its own stream and one-thread products, whichever thread runs it, and
/// Adam's pass is elementwise. They differ in what crosses between cores.
/// Spread, each core reads the half of the other worker's gradient that its
/// half of Adam's pass sums, and the half of the weights the other core
/// updated (about 1.7 MB a core a step at 784-200-200-50). Where a host
/// places two virtual cores far apart, that crossing cost 2 ms a step on
/// Zen 4 (docs/RESULTS.md): more than a whole B = 20, K = 1 step takes on
/// one core, when the same host a few seconds earlier ran the step spread
/// in 0.7 ms. Only timing the steps as they run can tell (`LayoutChooser`).
package enum WorkerLayout: Int, Sendable, CaseIterable {
    case spread, inTurn

    /// The layout this one is timed against.
    var other: WorkerLayout { self == .spread ? .inTurn : .spread }
}

/// Chooses each training step's `WorkerLayout` from the times of the
/// steps before it. It runs the layout whose recent steps were faster (the
/// `active` one) and now and then times a few steps of the other (a
/// probe), switching when the other's were faster by more than `margin`:
///
///     estimate(layout) = median of its last 3 counted step times
///     interval = minimumInterval                        if estimate(other) < estimate(active)
///              = max(minimumInterval, cost of a probe / probeBudget)   otherwise
///
/// A probe's cost, in steps of the active layout, is what its steps and
/// the step after it took beyond as many active steps (the median of the
/// last 3 probes; before the first, its steps' difference of the
/// estimates). A change of layout moves the step's working set between the
/// cores' caches, which can cost more than the probe's own steps: hence
/// measured, not assumed. The first step after a change is not counted in
/// an estimate. So probes take about `probeBudget` of the training time,
/// and a layout within a few percent is probed often. A value type with no
/// clock: the caller times the steps (`ModelWorkers`), and tests feed it times.
package struct LayoutChooser: Sendable {
    /// Steps of a probe, the first not counted.
    package static let probeSteps = 4
    /// The fraction of training time probes may cost.
    static let probeBudget = 0.01
    /// Steps between probes, at least.
    package static let minimumInterval = 16
    /// Steps between probes, at most.
    package static let maximumInterval = 100_000
    /// How much faster the other layout must be to take over.
    static let margin = 0.03

    /// The layout steps run in between probes.
    package private(set) var active: WorkerLayout = .spread
    /// Each layout's last counted times (seconds).
    private var times = [LastThree(), LastThree()]
    /// The last probes' costs, in steps of the active layout.
    private var probeCosts = LastThree()
    /// Steps of the current probe still to run (0: not probing).
    private var probeLeft = 0
    /// Whether the next step is the one after a probe (whose cost it completes).
    private var closingProbe = false
    /// Seconds of the current probe's steps so far.
    private var probeSeconds = 0.0
    /// Steps since the last probe ended.
    private var sinceProbe = 0
    /// The layout of the last recorded step.
    private var last: WorkerLayout?
    /// Steps recorded in each layout (`steps(in:)`).
    private var counts = [0, 0]

    package init() {}

    /// The layout the next step runs in.
    package var next: WorkerLayout { probeLeft > 0 ? active.other : active }

    /// Steps recorded in `layout` since the chooser was made.
    package func steps(in layout: WorkerLayout) -> Int { counts[layout.rawValue] }

    /// The median of `layout`'s counted times, or nil before any.
    package func estimate(_ layout: WorkerLayout) -> Double? { times[layout.rawValue].median }

    /// Steps of `active` between probes, by the formula above (the minimum
    /// until both layouts have been timed).
    package var interval: Int {
        guard let a = estimate(active), let o = estimate(active.other), a > 0, o >= a else { return Self.minimumInterval }
        let cost = probeCosts.median ?? Double(Self.probeSteps) * (o / a - 1)
        return Swift.max(Self.minimumInterval, Int(Swift.min(cost / Self.probeBudget, Double(Self.maximumInterval))))
    }

    /// A step that ran in `layout` (the last `next`) and took `seconds`.
    package mutating func record(_ layout: WorkerLayout, seconds: Double) {
        counts[layout.rawValue] += 1
        let seconds = seconds.isFinite ? Swift.max(0, seconds) : 0
        if last == layout { times[layout.rawValue].append(seconds) }
        last = layout
        if probeLeft > 0 {
            probeSeconds += seconds
            probeLeft -= 1
            if probeLeft == 0 {
                if let o = estimate(active.other), let a = estimate(active), o < a * (1 - Self.margin) { active = active.other }
                closingProbe = true
            }
        } else if closingProbe {
            closingProbe = false
            if let a = estimate(active), a > 0 {
                probeCosts.append((probeSeconds + seconds) / a - Double(Self.probeSteps + 1))
            }
            sinceProbe = 0
        } else {
            sinceProbe += 1
            if sinceProbe >= interval {
                probeLeft = Self.probeSteps
                probeSeconds = 0
            }
        }
    }

}

/// The last three values appended, and their median (no allocation: a
/// step records its time in it).
private struct LastThree: Sendable {
    private var a = 0.0, b = 0.0, c = 0.0
    private var count = 0

    mutating func append(_ value: Double) {
        (a, b, c) = (b, c, value)
        count = Swift.min(count + 1, 3)
    }

    /// The median (of two, the larger), or nil before any.
    var median: Double? {
        switch count {
        case 0: nil
        case 1: c
        case 2: Swift.max(b, c)
        default: Swift.max(Swift.min(a, b), Swift.min(Swift.max(a, b), c))
        }
    }
}

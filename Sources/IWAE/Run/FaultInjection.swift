import Foundation

/// Faults injected into a run at given steps, for the crash-recovery and
/// multi-rank tests: the one seam through which tests break a run on
/// purpose. Production code never makes one but `none`; `iwae` reads one
/// from the `IWAE_FAULT_*` environment (`fromEnvironment`), which nothing
/// else reads.
package struct FaultInjection: Sendable, Equatable {
    /// The checkpoint write fails from this step on.
    package var failSavesFromStep: Int?
    /// The process kills itself (SIGKILL) right after this step.
    package var killAtStep: Int?
    /// The process interrupts itself (SIGINT) right after this step.
    package var interruptAtStep: Int?
    /// The process stops itself (SIGSTOP, a hung rank) right after this step.
    package var stopAtStep: Int?

    package init(failSavesFromStep: Int? = nil, killAtStep: Int? = nil, interruptAtStep: Int? = nil, stopAtStep: Int? = nil) {
        self.failSavesFromStep = failSavesFromStep
        self.killAtStep = killAtStep
        self.interruptAtStep = interruptAtStep
        self.stopAtStep = stopAtStep
    }

    /// No fault.
    package static let none = FaultInjection()

    /// The faults `IWAE_FAULT_FAIL_SAVE_AT_STEP`, `…_KILL_AT_STEP`,
    /// `…_INTERRUPT_AT_STEP` and `…_STOP_AT_STEP` name, for rank `rank`:
    /// under mpirun `IWAE_FAULT_RANK` picks the faulty rank (default: all).
    package static func fromEnvironment(rank: Int) -> FaultInjection {
        let environment = ProcessInfo.processInfo.environment
        let faulty = environment["IWAE_FAULT_RANK"].flatMap(Int.init).map { $0 == rank } ?? true
        guard faulty else { return .none }
        func step(_ name: String) -> Int? { environment["IWAE_FAULT_" + name].flatMap(Int.init) }
        return FaultInjection(failSavesFromStep: step("FAIL_SAVE_AT_STEP"), killAtStep: step("KILL_AT_STEP"),
                              interruptAtStep: step("INTERRUPT_AT_STEP"), stopAtStep: step("STOP_AT_STEP"))
    }

    /// What happens right after `step`: a signal sent to this process, as from outside.
    func afterStep(_ step: Int) {
        if step == killAtStep { kill(getpid(), SIGKILL) }
        if step == interruptAtStep { kill(getpid(), SIGINT) }
        if step == stopAtStep { kill(getpid(), SIGSTOP) }
    }

    /// Throws the injected write failure at `step`, if any.
    func checkSave(at step: Int) throws {
        if let from = failSavesFromStep, step >= from {
            throw IWAEError.writeFailed("cannot write the checkpoint at step \(step) (injected fault)")
        }
    }
}

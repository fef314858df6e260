import Foundation
import IWAE

/// Starts this process again, same arguments, with `OPENBLAS_CORETYPE` set,
/// when OpenBLAS loaded a generic fallback kernel on a CPU that has better
/// (`BLASLibrary.relaunchCoreType`). Called first thing by `iwae` and
/// `iwae-bench`, before MPI or any product; OpenBLAS reads the variable only
/// as it loads. If the exec fails the process goes on, with one warning line.
/// Then OpenBLAS's threads are made to flush subnormals (`BLASLibrary.flushSubnormalsInThreads`).
///
/// `IWAE_FAULT_FALLBACK_KERNEL=1` makes the current kernel count as a
/// fallback, so that tests can follow the relaunch on any CPU.
public func relaunchWithBestBLASKernels() {
    defer { BLASLibrary.flushSubnormalsInThreads() }
    var choice = BLASLibrary.kernels
    if ProcessInfo.processInfo.environment["IWAE_FAULT_FALLBACK_KERNEL"] == "1" { choice.coreName = "Prescott" }
    guard let coreType = BLASLibrary.relaunchCoreType(choice: choice) else { return }
    setenv("OPENBLAS_CORETYPE", coreType, 1)
    execv("/proc/self/exe", CommandLine.unsafeArgv)
    unsetenv("OPENBLAS_CORETYPE")
    BLASLibrary.warnIfFallback()
}

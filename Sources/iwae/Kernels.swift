import ArgumentParser
import Foundation
import IWAE
import IWAEConsole

/// Which kernels this process computes with: the CPU, OpenBLAS's kernel
/// family (and whether `iwae` relaunched itself to get it), the GEMM
/// backends, and the subnormal mode of the computing threads.
struct Kernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the CPU, the OpenBLAS kernels and the GEMM backends this machine computes with.")

    @Flag(help: "One JSON object instead of text.") var json = false

    func run() throws {
        let processor = Processor.current, choice = BLASLibrary.kernels
        let coreType = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"]
        let flushed = withSubnormalsFlushed { subnormalsAreFlushed }
        if json {
            print(jsonLine([
                ("cpu", Processor.modelName ?? processor.vendor.rawValue), ("family", processor.family),
                ("model", processor.model), ("avx2", processor.hasAVX2), ("avx512", processor.hasAVX512),
                ("avx512_bf16", processor.hasAVX512BF16), ("amx_bf16", processor.hasAMXBF16),
                ("openblas_core", choice.coreName), ("openblas_fallback", choice.isFallback),
                ("recommended_core", choice.recommendedCoreType), ("openblas_coretype_env", coreType),
                ("workers_flush_subnormals", flushed),
            ]))
        } else {
            print("CPU                 \(processor.summary)")
            print("OpenBLAS kernels    \(choice.coreName)" + (choice.isFallback ? " (a generic fallback: set OPENBLAS_CORETYPE=\(choice.recommendedCoreType ?? "?"))" : "")
                  + (coreType.map { " (OPENBLAS_CORETYPE=\($0))" } ?? ""))
            print("subnormals          flushed to zero in every computing thread (FTZ and DAZ): \(flushed ? "yes" : "no")")
        }
    }
}

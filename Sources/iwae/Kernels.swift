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
            let fields: [(String, String)] = [
                ("cpu", jsonString(Processor.modelName ?? processor.vendor.rawValue)), ("family", String(processor.family)),
                ("model", String(processor.model)), ("avx2", String(processor.hasAVX2)), ("avx512", String(processor.hasAVX512)),
                ("avx512_bf16", String(processor.hasAVX512BF16)), ("amx_bf16", String(processor.hasAMXBF16)),
                ("openblas_core", jsonString(choice.coreName)), ("openblas_fallback", String(choice.isFallback)),
                ("recommended_core", choice.recommendedCoreType.map(jsonString) ?? "null"),
                ("openblas_coretype_env", coreType.map(jsonString) ?? "null"),
                ("workers_flush_subnormals", String(flushed)),
            ]
            print("{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}")
        } else {
            print("CPU                 \(processor.summary)")
            print("OpenBLAS kernels    \(choice.coreName)" + (choice.isFallback ? " (a generic fallback: set OPENBLAS_CORETYPE=\(choice.recommendedCoreType ?? "?"))" : "")
                  + (coreType.map { " (OPENBLAS_CORETYPE=\($0))" } ?? ""))
            print("subnormals          flushed to zero in every computing thread (FTZ and DAZ): \(flushed ? "yes" : "no")")
        }
    }
}

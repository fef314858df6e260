import CBLAS
import Foundation

/// The BLAS library behind the engine, as OpenBLAS reports it, and the
/// choice of its kernels.
///
/// Debian's OpenBLAS 0.3.21 picks its kernels from a list of CPU models when
/// it loads. A CPU newer than that list (the Intel Xeon of family 6, model
/// 207) gets the generic Prescott (SSE3) kernels: sgemm at a tenth of what
/// the CPU does with the Cooperlake ones. OpenBLAS reads
/// `OPENBLAS_CORETYPE` only when it loads, so a process that finds itself
/// on a fallback kernel can only start again with the variable set:
/// `iwae` and `iwae-bench` do so before anything else (`relaunchArguments`),
/// and a library user's process gets one warning line (`warnIfFallback`).
@usableFromInline package enum BLASLibrary {
    /// Threads OpenBLAS uses inside one call. The engine's own workers set
    /// this to 1 while they run products concurrently (one core each).
    @usableFromInline package static var threads: Int {
        get { Int(openblas_get_num_threads()) }
        set { openblas_set_num_threads(Int32(max(1, newValue))) }
    }

    /// The kernel family OpenBLAS chose for this CPU (e.g. `Cooperlake`).
    package static var coreName: String { openblas_get_corename().map { String(cString: $0) } ?? "unknown" }

    /// Restarts OpenBLAS's thread pool from a thread with flush-to-zero and
    /// denormals-are-zero set, so that its threads, which keep the mode they
    /// were created with (Debian's build does not pass the caller's MXCSR
    /// to them), flush subnormals too. Process-wide and permanent; the
    /// executables call it at start. A library user calls it once, while no
    /// other thread runs BLAS, if it runs OpenBLAS with several threads (the
    /// engine's workers run it with one thread each, in their own flushed threads).
    package static func flushSubnormalsInThreads() {
        withSubnormalsFlushed {
            blas_thread_shutdown_()
            _ = blas_thread_init()
        }
    }

    /// The kernels running and what this CPU could run instead.
    package static var kernels: KernelChoice { KernelChoice(coreName: coreName, processor: .current) }

    /// The one line a process on a fallback kernel prints to stderr, once
    /// (nil, and nothing printed, when the kernels fit the CPU).
    @discardableResult
    package static func warnIfFallback() -> String? { fallbackWarning }

    private static let fallbackWarning: String? = {
        let choice = kernels
        guard choice.isFallback, let better = choice.recommendedCoreType else { return nil }
        let line = "iwae: warning: OpenBLAS runs its generic \(choice.coreName) kernels on this CPU, about 10× slower than it can; "
            + "set OPENBLAS_CORETYPE=\(better) in the environment before the process starts"
        FileHandle.standardError.write(Data((line + "\n").utf8))
        return line
    }()

    /// The environment variable that, set before the process starts, gives
    /// this CPU its kernels: nil when OpenBLAS already runs them, when the
    /// user set `OPENBLAS_CORETYPE` (an explicit choice is respected), or
    /// when `environment` already holds the variable.
    package static func relaunchCoreType(environment: [String: String] = ProcessInfo.processInfo.environment,
                                        choice: KernelChoice = kernels) -> String? {
        guard environment["OPENBLAS_CORETYPE"] == nil, choice.isFallback else { return nil }
        return choice.recommendedCoreType
    }
}

/// Which OpenBLAS kernels run, and which this CPU should run.
package struct KernelChoice: Sendable, Equatable {
    /// What `openblas_get_corename()` says, e.g. `Prescott` or `Haswell`.
    package var coreName: String
    package var processor: Processor

    package init(coreName: String, processor: Processor) {
        self.coreName = coreName
        self.processor = processor
    }

    /// The widest vector ISA of a kernel family: 2 AVX-512, 1 AVX2, 0 neither.
    static func level(ofCore name: String) -> Int {
        switch name.lowercased() {
        case "skylakex", "cooperlake", "sapphirerapids": return 2
        case "haswell", "zen": return 1
        default: return 0
        }
    }

    /// The best kernel family for this CPU by its features (not its model):
    /// Cooperlake with AVX512-BF16, SkylakeX with AVX-512, Haswell with
    /// AVX2 and FMA, nil on anything older.
    package var recommendedCoreType: String? {
        processor.hasAVX512BF16 ? "Cooperlake" : processor.hasAVX512 ? "SkylakeX" : processor.hasAVX2 ? "Haswell" : nil
    }

    /// True when OpenBLAS runs a generic pre-AVX2 kernel on a CPU with AVX2
    /// or AVX-512. (OpenBLAS's own choice of an AVX2 family on an AVX-512 CPU,
    /// as on AMD's Zen 4, is its tuning, not a fallback, and is kept.)
    package var isFallback: Bool {
        KernelChoice.level(ofCore: coreName) == 0 && recommendedCoreType != nil
    }
}

import CIWAEKernels
import Foundation

/// The CPU the engine runs on, as CPUID reports it.
public struct Processor: Sendable, Equatable {
    public enum Vendor: String, Sendable { case intel, amd, other }

    public var vendor: Vendor
    /// Display family and model (base plus extended), e.g. 6 and 207 for Emerald Rapids.
    public var family: Int
    public var model: Int
    /// AVX2 with FMA.
    public var hasAVX2: Bool
    /// AVX-512 F, DQ, CD, BW and VL.
    public var hasAVX512: Bool
    /// AVX512-BF16 dot products.
    public var hasAVX512BF16: Bool
    /// AMX tiles with BF16.
    public var hasAMXBF16: Bool

    package init(vendor: Vendor, family: Int, model: Int, hasAVX2: Bool, hasAVX512: Bool,
                hasAVX512BF16: Bool = false, hasAMXBF16: Bool = false) {
        self.vendor = vendor
        self.family = family
        self.model = model
        self.hasAVX2 = hasAVX2
        self.hasAVX512 = hasAVX512
        self.hasAVX512BF16 = hasAVX512BF16
        self.hasAMXBF16 = hasAMXBF16
    }

    /// This machine's CPU.
    public static let current: Processor = {
        let f = iwae_cpu_probe()
        return Processor(vendor: f.vendor == 1 ? .intel : f.vendor == 2 ? .amd : .other,
                         family: Int(f.family), model: Int(f.model), hasAVX2: f.avx2_fma != 0, hasAVX512: f.avx512 != 0,
                         hasAVX512BF16: f.avx512_bf16 != 0, hasAMXBF16: f.amx_bf16 != 0)
    }()

    /// The kernel's name from /proc/cpuinfo ("AMD EPYC", "Intel(R) Xeon(R) …"), or nil.
    package static var modelName: String? {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("model name") {
            return line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) }
        }
        return nil
    }

    /// The widest vector ISA with fp32 FMAs: 512, 256, or 128 (SSE multiply and add).
    package var vectorBits: Int { hasAVX512 ? 512 : hasAVX2 ? 256 : 128 }

    /// "AMD EPYC (family 25, model 1; AVX2)" and the like.
    public var summary: String {
        let isa = hasAMXBF16 ? "AVX-512, AVX512-BF16, AMX-BF16" : hasAVX512BF16 ? "AVX-512, AVX512-BF16"
            : hasAVX512 ? "AVX-512" : hasAVX2 ? "AVX2" : "SSE"
        return "\(Processor.modelName ?? vendor.rawValue) (family \(family), model \(model); \(isa))"
    }
}

// MARK: - Subnormal numbers

/// Flush-to-zero and denormals-are-zero in this thread's MXCSR, from
/// `begin()` until `end()`, which restores the caller's mode:
///
///     let flushing = SubnormalFlushing.begin()
///     defer { flushing.end() }
///
/// Subnormal floats take a slow microcoded path on Intel cores: once
/// training makes the importance weights peaky, the products with the
/// tiniest normalized weights go subnormal and a K = 50 step ran 7× slower.
/// Every thread that computes (the workers, and the thread a library user
/// calls the engine from) runs its work between the two; OpenBLAS's own
/// threads take the caller's MXCSR with each call (`SubnormalTests` checks
/// it). Subnormal results become 0 and subnormal inputs read as 0: the
/// smallest normal float is 1.2·10⁻³⁸, far below anything a bound or a
/// gradient the engine reports can resolve.
package struct SubnormalFlushing {
    private let previous: UInt32

    private init(previous: UInt32) { self.previous = previous }

    /// Sets FTZ and DAZ in this thread.
    package static func begin() -> SubnormalFlushing { SubnormalFlushing(previous: iwae_flush_subnormals_begin()) }

    /// Restores the mode this thread had before `begin()`.
    package func end() { iwae_flush_subnormals_end(previous) }
}

/// Runs `body` between `SubnormalFlushing.begin()` and `end()`.
package func withSubnormalsFlushed<T>(_ body: () throws -> T) rethrows -> T {
    let flushing = SubnormalFlushing.begin()
    defer { flushing.end() }
    return try body()
}

/// Whether the calling thread flushes subnormal numbers to zero (FTZ and DAZ).
package var subnormalsAreFlushed: Bool { iwae_flushes_subnormals() != 0 }

// MARK: - The hardware's fp32 peak

/// The hardware's fp32 peak in GFLOP/s: a tight loop of independent FMAs on
/// the widest vector ISA present, on `threads` threads at once (default:
/// every active core). This is what "100 % of the machine" means; the best
/// sgemm is a fraction of it.
package func measureHardwarePeak(threads: Int? = nil, seconds: Double = 0.3) -> Double {
    let count = Swift.max(1, threads ?? ProcessInfo.processInfo.activeProcessorCount)
    let width = Processor.current.vectorBits
    var sink: Float = 0
    // Calibrate the rounds on one thread so that each thread runs about `seconds`.
    var rounds = 1 << 16
    while true {
        let start = DispatchTime.now().uptimeNanoseconds
        _ = iwae_fma_peak_loop(rounds, Int32(width), &sink)
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        if elapsed > seconds / 4 { rounds = Int(Double(rounds) * seconds / elapsed); break }
        rounds *= 4
    }
    var best = 0.0
    for _ in 0..<3 {
        let start = DispatchTime.now().uptimeNanoseconds
        let flops = UnsafeMutableBufferPointer<Double>.allocate(capacity: count)
        defer { flops.deallocate() }
        DispatchQueue.concurrentPerform(iterations: count) { i in
            var s: Float = 0
            flops[i] = iwae_fma_peak_loop(rounds, Int32(width), &s)
        }
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        best = Swift.max(best, flops.reduce(0, +) / elapsed / 1e9)
    }
    return best
}

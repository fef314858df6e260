import Foundation
import IWAE
import XCTest

/// The kernels a process computes with: OpenBLAS's choice checked against
/// the CPU's features, the relaunch that fixes a fallback, and flush-to-zero
/// in every thread that computes.
final class ProcessorTests: XCTestCase {
    let xeon = Processor(vendor: .intel, family: 6, model: 207, hasAVX2: true, hasAVX512: true, hasAVX512BF16: true, hasAMXBF16: true)
    let skylake = Processor(vendor: .intel, family: 6, model: 85, hasAVX2: true, hasAVX512: true)
    let zen3 = Processor(vendor: .amd, family: 25, model: 1, hasAVX2: true, hasAVX512: false)
    let zen4 = Processor(vendor: .amd, family: 25, model: 17, hasAVX2: true, hasAVX512: true, hasAVX512BF16: true)
    let old = Processor(vendor: .intel, family: 6, model: 23, hasAVX2: false, hasAVX512: false)

    func testFallbackKernelsAreRecognizedAndReplacedByFeatures() {
        // (core OpenBLAS loaded, CPU) → the core type to relaunch with, or nil.
        let cases: [(String, Processor, String?)] = [
            ("Prescott", xeon, "Cooperlake"),    // the Xeon of this machine kind, unknown to OpenBLAS 0.3.21
            ("Core2", skylake, "SkylakeX"),
            ("Prescott", zen3, "Haswell"),
            ("Cooperlake", xeon, nil),           // already right
            ("Zen", zen3, nil),
            ("Haswell", zen4, nil),              // OpenBLAS's own tuning on an AVX-512 CPU is kept
            ("Prescott", old, nil),              // nothing better to have
        ]
        for (core, processor, expected) in cases {
            let choice = KernelChoice(coreName: core, processor: processor)
            XCTAssertEqual(BLASLibrary.relaunchCoreType(environment: [:], choice: choice), expected, "\(core) on \(processor)")
            XCTAssertEqual(choice.isFallback, expected != nil, "\(core) on \(processor)")
        }
        // A user's own OPENBLAS_CORETYPE, even an empty one, is respected.
        let fallback = KernelChoice(coreName: "Prescott", processor: xeon)
        XCTAssertNil(BLASLibrary.relaunchCoreType(environment: ["OPENBLAS_CORETYPE": "Prescott"], choice: fallback))
        XCTAssertNil(BLASLibrary.relaunchCoreType(environment: ["OPENBLAS_CORETYPE": ""], choice: fallback))
    }

    /// The CPUID probe against the kernel's own reading of the CPU
    /// (/proc/cpuinfo: family, model and feature flags).
    func testProcessorProbeAgreesWithProcCPUInfo() throws {
        let text = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        func field(_ name: String) -> String? {
            text.split(separator: "\n").first { $0.split(separator: ":").first?.trimmingCharacters(in: .whitespaces) == name }
                .map { $0.split(separator: ":", maxSplits: 1)[1].trimmingCharacters(in: .whitespaces) }
        }
        let flags = Set((field("flags") ?? "").split(separator: " ").map(String.init))
        let p = Processor.current
        XCTAssertEqual(p.family, field("cpu family").flatMap(Int.init))
        XCTAssertEqual(p.model, field("model").flatMap(Int.init))
        XCTAssertEqual(p.hasAVX2, flags.isSuperset(of: ["avx2", "fma"]))
        XCTAssertEqual(p.hasAVX512, flags.isSuperset(of: ["avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl"]))
        XCTAssertEqual(p.hasAVX512BF16, p.hasAVX512 && flags.contains("avx512_bf16"))
        XCTAssertEqual(p.hasAMXBF16, flags.isSuperset(of: ["amx_bf16", "amx_tile"]))
        XCTAssertEqual(p.vendor, field("vendor_id") == "GenuineIntel" ? .intel : field("vendor_id") == "AuthenticAMD" ? .amd : .other)
        if ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil {
            // The test process is a library user (no relaunch): it warns exactly when it runs a fallback.
            XCTAssertEqual(BLASLibrary.warnIfFallback() != nil, BLASLibrary.kernels.isFallback)
        }
    }

    /// `iwae` relaunches itself with OPENBLAS_CORETYPE set when OpenBLAS
    /// loaded a fallback, unless the variable is set already; the fault
    /// variable makes any kernel count as one.
    func testIWAERelaunchesItselfOnAFallbackKernel() throws {
        guard let recommended = BLASLibrary.kernels.recommendedCoreType else { throw XCTSkip("no AVX2 on this CPU") }
        let plain = try runIWAE(["kernels", "--json"])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        let relaunched = try runIWAE(["kernels", "--json"], environment: ["IWAE_FAULT_FALLBACK_KERNEL": "1"])
        XCTAssertEqual(relaunched.status, 0, relaunched.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(relaunched.stdout.utf8)) as! [String: Any]
        // A machine whose environment already names the kernels (some set OPENBLAS_CORETYPE for every
        // process) keeps them: an explicit choice is respected, and nothing is relaunched.
        let expected = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] ?? recommended
        XCTAssertEqual(json["openblas_coretype_env"] as? String, expected)
        XCTAssertEqual((json["openblas_core"] as? String)?.lowercased(), expected.lowercased())
        XCTAssertEqual(json["workers_flush_subnormals"] as? Bool, true)
        XCTAssertEqual(relaunched.stderr, "", "a relaunch is silent")
    }

    /// FTZ/DAZ between begin and end, restored after; and OpenBLAS's own
    /// threads once their pool is restarted from a flushing thread: a
    /// 2-thread sgemm whose inputs are subnormal gives subnormal products
    /// without it and exact zeros with it, in every row (each thread's share).
    func testSubnormalsAreFlushedInTheCallerAndInOpenBLASThreads() {
        XCTAssertFalse(subnormalsAreFlushed, "the test thread starts in the default mode")
        withSubnormalsFlushed { XCTAssertTrue(subnormalsAreFlushed) }
        XCTAssertFalse(subnormalsAreFlushed, "the caller's mode is restored")

        let saved = BLASLibrary.threads
        defer { BLASLibrary.threads = saved }
        BLASLibrary.threads = 2
        let n = 512
        let a = Tensor<Float>(shape: [n, n]), b = Tensor<Float>(shape: [n, n]), c = Tensor<Float>(shape: [n, n])
        a.fill(Float.leastNormalMagnitude / 4)   // subnormal
        b.fill(1)
        gemm(c.matrix, a.matrix, .none, b.matrix, .none)
        XCTAssertEqual(c[0], Float.leastNormalMagnitude / 4 * Float(n), "without flushing the subnormal inputs count")
        withSubnormalsFlushed { gemm(c.matrix, a.matrix, .none, b.matrix, .none) }
        let unflushed = c.array.filter { $0 != 0 }.count
        XCTAssert(unflushed < c.count, "the calling thread's share is flushed")
        // OpenBLAS's pool keeps the mode its threads were made with; restarted from a flushing thread, it flushes.
        BLASLibrary.flushSubnormalsInThreads()
        withSubnormalsFlushed { gemm(c.matrix, a.matrix, .none, b.matrix, .none) }
        XCTAssertEqual(c.array.filter { $0 != 0 }.count, 0, "with FTZ/DAZ every row, whichever thread computed it, is 0")

        // oneDNN's OpenMP team (its threads keep the mode they were made with; the engine sets theirs).
        c.fill(1)
        withSubnormalsFlushed { gemm(c.matrix, a.matrix, .none, b.matrix, .none, kernel: .onednn) }
        XCTAssertEqual(c.array.filter { $0 != 0 }.count, 0, "oneDNN with FTZ/DAZ: every row is 0")
    }
}

import Foundation

/// How much memory this process may still take: the least of what the
/// machine has, what its cgroup allows, and what its address-space limit
/// (`ulimit -v`, RLIMIT_AS) leaves beside what is already mapped. Sizes that
/// come from a user or a file are checked against it before anything is
/// allocated, so that a model too large is one line instead of a trap.
package enum MemoryBudget {
    /// Bytes the process may still allocate (an estimate, from the limits in force now).
    package static var available: Int {
        var limit = Int(ProcessInfo.processInfo.physicalMemory)
        if let cgroup = cgroupLimit { limit = Swift.min(limit, cgroup) }
        var rl = rlimit()
        if getrlimit(Int32(RLIMIT_AS.rawValue), &rl) == 0, rl.rlim_cur != rlim_t.max, rl.rlim_cur < rlim_t(Int.max) {
            limit = Swift.min(limit, Swift.max(0, Int(rl.rlim_cur) - mappedBytes))
        }
        return limit
    }

    /// The cgroup's memory limit (v2 `memory.max`, else v1 `memory.limit_in_bytes`), or nil.
    static var cgroupLimit: Int? {
        for path in ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"] {
            if let text = try? String(contentsOfFile: path, encoding: .utf8),
               let value = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), value > 0 { return value }
        }
        return nil
    }

    /// The process's mapped address space now (`/proc/self/statm`, first field, in pages).
    static var mappedBytes: Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
              let pages = text.split(separator: " ").first.flatMap({ Int($0) }) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Throws one line when `bytes` (nil: beyond any count) is more than
    /// `fraction` of what is available; `what` names what would need them.
    package static func check(_ bytes: Int?, for what: String, fraction: Double = 0.8) throws {
        let free = available
        guard let bytes, Double(bytes) <= fraction * Double(free) else {
            let need = bytes.map { "\($0 / (1 << 20)) MiB" } ?? "more than 2^63 bytes"
            throw MemoryBudgetError(message: "\(what) would need \(need); this process may use about \(free / (1 << 20)) MiB (the machine's memory, its cgroup's limit and ulimit -v)")
        }
    }
}

/// A size refused by `MemoryBudget.check`.
package struct MemoryBudgetError: Error, CustomStringConvertible {
    package var message: String
    package var description: String { message }
}

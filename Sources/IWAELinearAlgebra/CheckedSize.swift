/// Sizes computed from numbers that came from outside (files, command
/// lines, checkpoints): the one place where they are multiplied and added,
/// with overflow reported as nil instead of a trap.
package enum CheckedSize {
    /// Π values, or nil when a value is negative or the product overflows.
    package static func product(_ values: [Int]) -> Int? {
        var result = 1
        for v in values {
            guard v >= 0 else { return nil }
            let (p, overflow) = result.multipliedReportingOverflow(by: v)
            if overflow { return nil }
            result = p
        }
        return result
    }

    /// Σ values, or nil when a value is negative or the sum overflows.
    package static func sum(_ values: [Int]) -> Int? {
        var result = 0
        for v in values {
            guard v >= 0 else { return nil }
            let (s, overflow) = result.addingReportingOverflow(v)
            if overflow { return nil }
            result = s
        }
        return result
    }

    /// Σ_i Π factors[i], or nil on overflow.
    package static func sumOfProducts(_ factors: [[Int]]) -> Int? {
        var terms = [Int]()
        for f in factors {
            guard let p = product(f) else { return nil }
            terms.append(p)
        }
        return sum(terms)
    }
}

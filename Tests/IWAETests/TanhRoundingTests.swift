import IWAE
import XCTest

/// The bias-and-tanh pass rounds its outputs to bfloat16 by Veltkamp's
/// split, which equals the integer rounding (nearest, ties to even) only on
/// [−1, 1]: checked on every float there (2.1 billion; every 13th bit
/// pattern in a debug build, whose C is unoptimized).
final class TanhRoundingTests: XCTestCase {
    func testTanhOutputsRoundAsEveryOtherPass() {
        #if DEBUG
        let stride = 13
        #else
        let stride = 1
        #endif
        XCTAssertEqual(tanhOutputRoundingMismatches(stride: stride), 0)
    }
}

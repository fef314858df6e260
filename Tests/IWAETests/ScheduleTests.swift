import IWAE
import RealModule
import XCTest

/// The learning-rate schedules: constant, and the IWAE paper's 3^i passes at 10^(−i/7).
final class ScheduleTests: XCTestCase {
    func testPaperLearningRateSchedule() {
        let s = LearningRateSchedule.paper
        XCTAssertEqual(s.learningRate(epoch: 1, base: 1e-3), 1e-3)
        for epoch in 2...4 { assertClose(s.learningRate(epoch: epoch, base: 1e-3), 1e-3 * Double.pow(10, -1.0 / 7), rtol: 1e-12) }
        assertClose(s.learningRate(epoch: 5, base: 1e-3), 1e-3 * Double.pow(10, -2.0 / 7), rtol: 1e-12)
        assertClose(s.learningRate(epoch: 3280, base: 1e-3), 1e-4, rtol: 1e-12)
        // Stages end at epochs 1, 4, 13, 40, 121, 364, 1093, 3280.
        assertClose(s.learningRate(epoch: 1093, base: 1e-3), 1e-3 * Double.pow(10, -6.0 / 7), rtol: 1e-12)
        assertClose(s.learningRate(epoch: 1094, base: 1e-3), 1e-4, rtol: 1e-12)
        assertClose(s.learningRate(epoch: 364, base: 1e-3), 1e-3 * Double.pow(10, -5.0 / 7), rtol: 1e-12)
        XCTAssertEqual(s.totalEpochs, 3280)
        XCTAssertEqual(LearningRateSchedule.constant.learningRate(epoch: 77, base: 0.5), 0.5)
    }
}

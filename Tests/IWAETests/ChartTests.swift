import IWAE
import XCTest

/// The PNG line charts of iwae-bench and grad-stats.
final class ChartTests: XCTestCase {
    func testChartRendersSeries() throws {
        let chart = LineChart(title: "T", xLabel: "K", yLabel: "Y", logX: true,
                              series: [ChartSeries(name: "A", points: [(1, 2), (10, 3), (100, 1)], color: (255, 0, 0))])
        let image = chart.render(width: 200, height: 150)
        XCTAssertEqual(image.pixels.count, 200 * 150 * 3)
        // The series' color appears (its markers and line).
        let red = stride(from: 0, to: image.pixels.count, by: 3).filter { image.pixels[$0] == 255 && image.pixels[$0 + 1] == 0 }.count
        XCTAssertGreaterThan(red, 50)
        let png = try image.png()
        XCTAssertEqual(png[25], 2)   // color type RGB
    }
}

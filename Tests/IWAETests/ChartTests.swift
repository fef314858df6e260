import Foundation
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

        // Each point's 7×7 marker sits where the layout puts it: margins 70
        // left, 20 right, 34 top, 50 bottom (a 110 × 66 plot), log10 x padded
        // by 4 % of its range, y by 8 %, y up.
        func isRed(_ x: Int, _ y: Int) -> Bool {
            let i = 3 * (y * image.width + x)
            return image.pixels[i] == 255 && image.pixels[i + 1] == 0 && image.pixels[i + 2] == 0
        }
        let (x0, x1) = (0 - 0.08, 2 + 0.08), (y0, y1) = (1 - 0.16, 3 + 0.16)
        func center(_ x: Double, _ y: Double) -> (Int, Int) {
            (70 + Int((log10(x) - x0) / (x1 - x0) * 110), 34 + 66 - Int((y - y0) / (y1 - y0) * 66))
        }
        let centers = [center(1, 2), center(10, 3), center(100, 1)]
        XCTAssertEqual(centers.map { [$0.0, $0.1] }, [[74, 67], [125, 39], [175, 96]])
        for (cx, cy) in centers {
            for dy in -3...3 { for dx in -3...3 { XCTAssertTrue(isRed(cx + dx, cy + dy), "marker at (\(cx), \(cy))") } }
        }
        // The line between the first two points passes through their midpoint; the
        // plot's empty corner (above the first point) is not red.
        XCTAssertTrue(isRed((74 + 125) / 2, (67 + 39) / 2) || isRed((74 + 125) / 2, (67 + 39) / 2 + 1))
        XCTAssertFalse(isRed(80, 36))
        XCTAssertFalse(isRed(170, 50))
    }
}

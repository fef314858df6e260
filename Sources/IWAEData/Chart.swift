import Foundation

/// An RGB raster for charts, with lines, rectangles and a 5×7 bitmap font.
package struct RGBImage: Sendable {
    package let width: Int
    package let height: Int
    package var pixels: [UInt8]

    package init(width: Int, height: Int, background: (UInt8, UInt8, UInt8) = (255, 255, 255)) {
        self.width = width
        self.height = height
        pixels = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<width * height { pixels[3 * i] = background.0; pixels[3 * i + 1] = background.1; pixels[3 * i + 2] = background.2 }
    }

    package mutating func set(_ x: Int, _ y: Int, _ c: (UInt8, UInt8, UInt8)) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        let i = 3 * (y * width + x)
        pixels[i] = c.0; pixels[i + 1] = c.1; pixels[i + 2] = c.2
    }

    /// A line `thickness` pixels wide (Bresenham with a square pen).
    package mutating func line(_ x0: Int, _ y0: Int, _ x1: Int, _ y1: Int, _ c: (UInt8, UInt8, UInt8), thickness: Int = 1) {
        var x = x0, y = y0
        let dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1
        var err = dx + dy
        while true {
            for ox in 0..<thickness { for oy in 0..<thickness { set(x + ox - thickness / 2, y + oy - thickness / 2, c) } }
            if x == x1 && y == y1 { break }
            let e2 = 2 * err
            if e2 >= dy { err += dy; x += sx }
            if e2 <= dx { err += dx; y += sy }
        }
    }

    package mutating func fill(_ x: Int, _ y: Int, _ w: Int, _ h: Int, _ c: (UInt8, UInt8, UInt8)) {
        for yy in y..<y + h { for xx in x..<x + w { set(xx, yy, c) } }
    }

    /// Text in the 5×7 font at (x, y) (top left), `scale` pixels per dot.
    package mutating func text(_ s: String, _ x: Int, _ y: Int, _ c: (UInt8, UInt8, UInt8) = (0, 0, 0), scale: Int = 1) {
        var cx = x
        for ch in s.uppercased() {
            if let rows = glyphs[ch] {
                for (r, bits) in rows.enumerated() {
                    for col in 0..<5 where bits & (1 << (4 - col)) != 0 {
                        fill(cx + col * scale, y + r * scale, scale, scale, c)
                    }
                }
            }
            cx += 6 * scale
        }
    }

    package static func textWidth(_ s: String, scale: Int = 1) -> Int { s.count * 6 * scale }

    /// Copies `other` with its top left at (x, y).
    package mutating func draw(_ other: RGBImage, at x: Int, _ y: Int) {
        for yy in 0..<other.height { for xx in 0..<other.width {
            let i = 3 * (yy * other.width + xx)
            set(x + xx, y + yy, (other.pixels[i], other.pixels[i + 1], other.pixels[i + 2]))
        } }
    }

    package func png() throws -> [UInt8] { try encodePNG(width: width, height: height, channels: 3, pixels: pixels) }
}

/// One line of a chart.
package struct ChartSeries: Sendable {
    package var name: String
    package var points: [(x: Double, y: Double)]
    package var color: (UInt8, UInt8, UInt8)

    package init(name: String, points: [(x: Double, y: Double)], color: (UInt8, UInt8, UInt8)) {
        self.name = name
        self.points = points
        self.color = color
    }
}

/// A line chart with optional log axes, ticks, labels and a legend.
package struct LineChart: Sendable {
    package var title: String
    package var xLabel: String
    package var yLabel: String
    package var logX: Bool
    package var logY: Bool
    package var series: [ChartSeries]

    package init(title: String, xLabel: String, yLabel: String, logX: Bool = false, logY: Bool = false, series: [ChartSeries]) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.logX = logX
        self.logY = logY
        self.series = series
    }

    /// Distinct colors for up to six series.
    package static let palette: [(UInt8, UInt8, UInt8)] = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)]

    package func render(width: Int = 520, height: Int = 380) -> RGBImage {
        var image = RGBImage(width: width, height: height)
        let left = 70, right = 20, top = 34, bottom = 50
        let plotW = width - left - right, plotH = height - top - bottom
        let finite = series.flatMap { $0.points }.filter { $0.x.isFinite && $0.y.isFinite && (!logX || $0.x > 0) && (!logY || $0.y > 0) }
        image.text(title, left, 10, scale: 2)
        guard !finite.isEmpty else { return image }
        func tx(_ v: Double) -> Double { logX ? log10(v) : v }
        func ty(_ v: Double) -> Double { logY ? log10(v) : v }
        var (x0, x1) = (finite.map { tx($0.x) }.min()!, finite.map { tx($0.x) }.max()!)
        var (y0, y1) = (finite.map { ty($0.y) }.min()!, finite.map { ty($0.y) }.max()!)
        if x1 - x0 < 1e-12 { x0 -= 0.5; x1 += 0.5 }
        if y1 - y0 < 1e-12 { y0 -= 0.5; y1 += 0.5 }
        let padY = (y1 - y0) * 0.08
        y0 -= padY; y1 += padY
        let padX = (x1 - x0) * 0.04
        x0 -= padX; x1 += padX
        func px(_ v: Double) -> Int { left + Int((tx(v) - x0) / (x1 - x0) * Double(plotW)) }
        func py(_ v: Double) -> Int { top + plotH - Int((ty(v) - y0) / (y1 - y0) * Double(plotH)) }
        let axis: (UInt8, UInt8, UInt8) = (60, 60, 60), grid: (UInt8, UInt8, UInt8) = (225, 225, 225)
        // Ticks: decades on log axes, five steps on linear ones.
        func ticks(_ lo: Double, _ hi: Double, log: Bool) -> [Double] {
            if log {
                // Decades; with fewer than two in range, 1-2-5 steps as well.
                let decades = (Int(floor(lo))...Int(ceil(hi))).map { pow(10, Double($0)) }
                let inRange = decades.filter { (lo...hi).contains(log10($0)) }
                if inRange.count >= 2 { return inRange }
                return decades.flatMap { [$0, 2 * $0, 5 * $0] }.filter { (lo...hi).contains(log10($0)) }
            }
            let step = niceStep((hi - lo) / 5)
            return stride(from: ceil(lo / step) * step, through: hi, by: step).map { $0 }
        }
        for t in ticks(x0, x1, log: logX) {
            let x = px(t)
            image.line(x, top, x, top + plotH, grid)
            let label = format(t)
            image.text(label, x - RGBImage.textWidth(label) / 2, top + plotH + 6)
        }
        for t in ticks(y0, y1, log: logY) {
            let y = py(t)
            image.line(left, y, left + plotW, y, grid)
            let label = format(t)
            image.text(label, left - 6 - RGBImage.textWidth(label), y - 3)
        }
        image.line(left, top, left, top + plotH, axis)
        image.line(left, top + plotH, left + plotW, top + plotH, axis)
        image.text(xLabel, left + plotW / 2 - RGBImage.textWidth(xLabel) / 2, top + plotH + 22)
        image.text(yLabel, 4, top - 14)
        for (i, s) in series.enumerated() {
            let pts = s.points.filter { $0.x.isFinite && $0.y.isFinite && (!logX || $0.x > 0) && (!logY || $0.y > 0) }
            for (a, b) in zip(pts, pts.dropFirst()) { image.line(px(a.x), py(a.y), px(b.x), py(b.y), s.color, thickness: 2) }
            for p in pts { image.fill(px(p.x) - 3, py(p.y) - 3, 7, 7, s.color) }
            let ly = top + 8 + 14 * i
            image.fill(left + plotW - 110, ly, 12, 7, s.color)
            image.text(s.name, left + plotW - 94, ly)
        }
        return image
    }

    private func niceStep(_ raw: Double) -> Double {
        let magnitude = pow(10, floor(log10(raw)))
        for m in [1.0, 2, 5, 10] where m * magnitude >= raw { return m * magnitude }
        return 10 * magnitude
    }

    private func format(_ v: Double) -> String {
        if abs(v) >= 1000 || (abs(v) < 0.01 && v != 0) { return String(format: "%.0E", v) }
        if v == v.rounded() { return String(Int(v)) }
        return String(format: "%.2G", v)
    }
}

/// A 5×7 font: each glyph is 7 rows of 5 bits (most significant bit left).
private let glyphs: [Character: [UInt8]] = [
    "0": [14, 17, 19, 21, 25, 17, 14], "1": [4, 12, 4, 4, 4, 4, 14], "2": [14, 17, 1, 2, 4, 8, 31],
    "3": [31, 2, 4, 2, 1, 17, 14], "4": [2, 6, 10, 18, 31, 2, 2], "5": [31, 16, 30, 1, 1, 17, 14],
    "6": [6, 8, 16, 30, 17, 17, 14], "7": [31, 1, 2, 4, 8, 8, 8], "8": [14, 17, 17, 14, 17, 17, 14],
    "9": [14, 17, 17, 15, 1, 2, 12], "A": [14, 17, 17, 31, 17, 17, 17], "B": [30, 17, 17, 30, 17, 17, 30],
    "C": [14, 17, 16, 16, 16, 17, 14], "D": [28, 18, 17, 17, 17, 18, 28], "E": [31, 16, 16, 30, 16, 16, 31],
    "F": [31, 16, 16, 30, 16, 16, 16], "G": [14, 17, 16, 23, 17, 17, 15], "H": [17, 17, 17, 31, 17, 17, 17],
    "I": [14, 4, 4, 4, 4, 4, 14], "J": [7, 2, 2, 2, 2, 18, 12], "K": [17, 18, 20, 24, 20, 18, 17],
    "L": [16, 16, 16, 16, 16, 16, 31], "M": [17, 27, 21, 21, 17, 17, 17], "N": [17, 17, 25, 21, 19, 17, 17],
    "O": [14, 17, 17, 17, 17, 17, 14], "P": [30, 17, 17, 30, 16, 16, 16], "Q": [14, 17, 17, 17, 21, 18, 13],
    "R": [30, 17, 17, 30, 20, 18, 17], "S": [15, 16, 16, 14, 1, 1, 30], "T": [31, 4, 4, 4, 4, 4, 4],
    "U": [17, 17, 17, 17, 17, 17, 14], "V": [17, 17, 17, 17, 17, 10, 4], "W": [17, 17, 17, 21, 21, 21, 10],
    "X": [17, 17, 10, 4, 10, 17, 17], "Y": [17, 17, 10, 4, 4, 4, 4], "Z": [31, 1, 2, 4, 8, 16, 31],
    ".": [0, 0, 0, 0, 0, 12, 12], "-": [0, 0, 0, 31, 0, 0, 0], "+": [0, 4, 4, 31, 4, 4, 0],
    "/": [1, 1, 2, 4, 8, 16, 16], "=": [0, 0, 31, 0, 31, 0, 0], "(": [2, 4, 8, 8, 8, 4, 2],
    ")": [8, 4, 2, 2, 2, 4, 8], ",": [0, 0, 0, 0, 12, 4, 8], ":": [0, 12, 12, 0, 12, 12, 0],
    "|": [4, 4, 4, 4, 4, 4, 4], "%": [24, 25, 2, 4, 8, 19, 3], " ": [0, 0, 0, 0, 0, 0, 0],
]

import Foundation
import IWAEConsole
import XCTest

/// The one writer of the tools' JSON rows, read back by Foundation's parser:
/// every value comes back as it went in (Doubles to the last bit), strings
/// with quotes, backslashes and control characters included, and the keys
/// in the order given.
final class JSONOutputTests: XCTestCase {
    func testRowsReadBackExactly() throws {
        let awkward = "a \"quoted\" \\path\\\n\ttab \u{1} é ✓"
        let values: [Double] = [0.1, -243.41234567891234, 1e-300, 6.02214076e23, .leastNonzeroMagnitude, -0.0]
        let line = jsonLine([("text", awkward), ("doubles", values), ("int", Int.min), ("flag", true),
                             ("missing", String?.none), ("nan", Double.nan), ("inf", -Double.infinity), ("nested", [[1, 2], [3]])])
        XCTAssertFalse(line.contains("\n"), "one line")
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        XCTAssertEqual(object["text"] as? String, awkward)
        XCTAssertEqual((object["doubles"] as? [NSNumber])?.map(\.doubleValue).map(\.bitPattern), values.map(\.bitPattern))
        XCTAssertEqual((object["int"] as? NSNumber)?.int64Value, Int64.min)
        XCTAssertEqual(object["flag"] as? Bool, true)
        for key in ["missing", "nan", "inf"] { XCTAssertTrue(object[key] is NSNull, key) }
        XCTAssertEqual(object["nested"] as? [[Int]], [[1, 2], [3]])
        let keys = ["text", "doubles", "int", "flag", "missing", "nan", "inf", "nested"]
        XCTAssertEqual(keys.map { line.range(of: "\"\($0)\":")!.lowerBound }, keys.map { line.range(of: "\"\($0)\":")!.lowerBound }.sorted())
    }
}

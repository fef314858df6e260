import Foundation
import XCTest

/// docs/GUIDE.md cannot drift from the tools: every subcommand and every
/// option their `--help` shows is in the guide, and every option the guide
/// names is one a tool accepts. The tools describe themselves through the
/// argument parser (`--experimental-dump-help`), not through their help text.
final class GuideTests: XCTestCase {
    /// What a tool accepts: its commands ("iwae train", …), and for each
    /// long option whether `--help` shows it.
    struct ToolInterface {
        var commands: [String] = []
        var options: [(command: String, name: String, shown: Bool)] = []
    }

    /// SwiftPM's own flags, which the guide's build and test commands use.
    static let swiftPMFlags: Set<String> = ["disable-swift-testing", "sanitize", "scratch-path", "traits"]

    static func interface(of tools: [String]) throws -> ToolInterface {
        var result = ToolInterface()
        for tool in tools {
            let path = productsDirectory.appendingPathComponent(tool).path
            guard FileManager.default.isExecutableFile(atPath: path) else { throw XCTSkip("\(tool) is not built") }
            let dump = try runProcess(path, ["--experimental-dump-help"])
            XCTAssertEqual(dump.status, 0, dump.stderr)
            let root = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(dump.stdout.utf8)) as? [String: Any])
            func walk(_ command: [String: Any], _ name: String) {
                result.commands.append(name)
                for argument in command["arguments"] as? [[String: Any]] ?? [] {
                    let shown = argument["shouldDisplay"] as? Bool ?? true
                    for n in argument["names"] as? [[String: Any]] ?? [] where n["kind"] as? String == "long" {
                        result.options.append((name, n["name"] as! String, shown))
                    }
                }
                for sub in command["subcommands"] as? [[String: Any]] ?? [] { walk(sub, name + " " + (sub["commandName"] as! String)) }
            }
            walk(try XCTUnwrap(root["command"] as? [String: Any]), tool)
        }
        return result
    }

    /// The long options a text names (`--name`).
    static func optionsNamed(in text: String) -> Set<String> {
        let pattern = try! NSRegularExpression(pattern: "(?<![\\w-])--([a-z](?:[a-z0-9-]*[a-z0-9])?)")
        let range = NSRange(text.startIndex..., in: text)
        return Set(pattern.matches(in: text, range: range).map { String(text[Range($0.range(at: 1), in: text)!]) })
    }

    /// What is wrong between `guide` and the tools, one line each.
    static func problems(guide: String, tools: ToolInterface) -> [String] {
        let named = optionsNamed(in: guide)
        var problems = [String]()
        for command in tools.commands where !command.hasSuffix(" help") && command.contains(" ") {
            if !guide.contains(command) { problems.append("the guide does not name the command '\(command)'") }
        }
        for (command, name, shown) in tools.options where shown && name != "help" && !named.contains(name) {
            problems.append("the guide does not name '\(command)' option --\(name)")
        }
        let accepted = Set(tools.options.map(\.name)).union(swiftPMFlags)
        for name in named.subtracting(accepted).sorted() {
            problems.append("the guide names --\(name), which no tool accepts")
        }
        return problems
    }

    static var guide: String {
        get throws { try String(contentsOf: ExamplesTests.repository.appendingPathComponent("docs/GUIDE.md"), encoding: .utf8) }
    }

    func testTheGuideNamesEveryCommandAndOptionAndNothingElse() throws {
        let tools = try GuideTests.interface(of: ["iwae", "iwae-bench"])
        XCTAssertGreaterThan(tools.options.count, 100)
        XCTAssertEqual(GuideTests.problems(guide: try GuideTests.guide, tools: tools), [])
    }

    /// The check fails when an option leaves the guide, when a command does,
    /// and when the guide names an option no tool has.
    func testTheCheckFailsWhenTheGuideDrifts() throws {
        let tools = try GuideTests.interface(of: ["iwae", "iwae-bench"])
        let guide = try GuideTests.guide
        let withoutPlot = guide.replacingOccurrences(of: "--plot", with: "")
        XCTAssertEqual(GuideTests.problems(guide: withoutPlot, tools: tools), ["the guide does not name 'iwae grad-stats' option --plot"])
        let withoutBDMC = guide.replacingOccurrences(of: "iwae bdmc", with: "iwae")
        XCTAssertEqual(GuideTests.problems(guide: withoutBDMC, tools: tools), ["the guide does not name the command 'iwae bdmc'"])
        XCTAssertEqual(GuideTests.problems(guide: guide + "\n`iwae train --no-such-option`\n", tools: tools),
                       ["the guide names --no-such-option, which no tool accepts"])
    }
}

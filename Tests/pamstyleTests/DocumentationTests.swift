import Foundation
import XCTest

/// The manual and the README document every option the command accepts, with the defaults it uses.
final class DocumentationTests: XCTestCase {
    /// The options `pamstyle -help` lists, e.g. "-style-weight".
    func helpOptions() throws -> [String] {
        let help = try pamstyle(["-help"])
        XCTAssertEqual(help.status, 0)
        let text = String(decoding: help.stdout, as: UTF8.self)
        let pattern = try NSRegularExpression(pattern: "^  (-[a-z-]+),", options: [.anchorsMatchLines])
        let range = NSRange(text.startIndex..., in: text)
        return pattern.matches(in: text, range: range).map { String(text[Range($0.range(at: 1), in: text)!]) }
            .filter { $0.count > 2 }
    }

    func testTheManualDocumentsEveryOption() throws {
        let manual = try String(contentsOf: packageRoot.appendingPathComponent("man/pamstyle.1"), encoding: .utf8)
            .replacingOccurrences(of: "\\-", with: "-")
        let options = try helpOptions()
        XCTAssertGreaterThan(options.count, 25)
        for option in options {
            XCTAssertTrue(manual.contains(".BI \(option) ") || manual.contains(".B \(option)\n"),
                          "man/pamstyle.1 has an entry for \(option)")
        }
    }

    func testTheDefaultsInTheManualAreTheCommandsDefaults() throws {
        let help = String(decoding: try pamstyle(["-help"]).stdout, as: UTF8.self)
            .split(whereSeparator: { $0 == " " || $0 == "\n" }).joined(separator: " ")
        let manual = try String(contentsOf: packageRoot.appendingPathComponent("man/pamstyle.1"), encoding: .utf8)
            .replacingOccurrences(of: "\\-", with: "-")
        // The style weight's default depends on -style-loss.
        XCTAssertTrue(help.contains("Weight of the style loss (default: 3 with -style-loss gram, 1000 with w2)."))
        XCTAssertTrue(manual.contains("Default: 3 with\n.BR \"-style-loss gram\" ,\n1000 with\n.BR w2 ."))
        for (option, value) in [("-content-weight", "3.0"), ("-tv-weight", "1.0"), ("-layout-weight", "3000.0"),
                                ("-iterations", "135"), ("-scale-iterations", "60"), ("-memory", "1900"),
                                ("-size", "512"), ("-history", "5"), ("-learning-rate", "2.0"),
                                ("-checkpoint-every", "50"), ("-max-pixels", "16777216"),
                                ("-margin", "16"), ("-temporal-weight", "3000"), ("-colors", "style")] {
            let entry = try XCTUnwrap(help.range(of: " \(option), --\(option.dropFirst()) "), option)
            let rest = help[entry.upperBound...]
            let defaultText = try XCTUnwrap(rest.range(of: "(default: "), option)
            XCTAssertTrue(rest[defaultText.upperBound...].hasPrefix(value + ")"), "\(option) defaults to \(value) in -help")
            let manualEntry = try XCTUnwrap(manual.range(of: ".BI \(option) "), option)
            let manualText = manual[manualEntry.upperBound...].prefix(600)
            let number = value.hasSuffix(".0") ? String(value.dropLast(2)) : value
            XCTAssertTrue(manualText.contains("Default: \(number)"), "man: \(option) defaults to \(number)")
        }
    }

    func testTheReadmeListsEveryOption() throws {
        let readme = try String(contentsOf: packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        for option in try helpOptions() where !["-help", "-version", "-checkpoint-every"].contains(option) {
            XCTAssertTrue(readme.contains("`\(option)"), "README mentions \(option)")
        }
    }
}

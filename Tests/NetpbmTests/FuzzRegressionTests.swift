import Netpbm
import XCTest

/// Inputs found by `make fuzz` (fuzz/README.md) that broke a property of the reader, kept byte for byte.
final class FuzzRegressionTests: XCTestCase {
    private let refusal = "is not an image pamstyle can read (it reads BLACKANDWHITE, GRAYSCALE, RGB and their _ALPHA forms)"

    /// Found by fuzz-netpbm: a PAM whose TUPLTYPE holds a form feed (and bytes that are not UTF-8) gave an
    /// error description of two lines. Errors are one line, so the tuple type is shown escaped.
    func testControlCharactersOfATupleTypeAreEscapedInTheError() {
        let input = netpbm("P7\n# a PAM\nWIDTH 3\nHEIGHT 3\nDEPTH 4\nMAXVAL 1\nTUPLTYPE RGB_")
            + [UInt8](repeating: 0xFF, count: 23) + netpbm("A\u{0C}PHA\nENDHDR\n")
            + [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1]
        XCTAssertEqual(input.count, 127)
        let (error, images) = readError(input)
        XCTAssertTrue(images.isEmpty)
        let tupleType = "RGB_" + String(repeating: "\u{FFFD}", count: 23) + "A\u{0C}PHA"
        XCTAssertEqual(error, .unsupportedTupleType(source: "test", image: 1, tupleType: tupleType, depth: 4))
        XCTAssertEqual(error?.errorDescription,
                       "test: PAM tuple type \"RGB_" + String(repeating: "\\u{fffd}", count: 23) + "A\\x0cPHA\" with depth 4 "
                       + refusal)
    }

    /// The same for the other characters that would break the line or drive a terminal, in a later image.
    func testEveryNonPrintableCharacterOfATupleTypeIsEscaped() {
        let first = netpbm("P5\n1 1\n255\n", [7])
        let cases: [(tupleType: String, shown: String)] = [
            ("A\u{0B}B", "A\\x0bB"),
            ("A\rB", "A\\x0dB"),
            ("\u{1B}[31mRED", "\\x1b[31mRED"),
            ("DEL\u{7F}", "DEL\\x7f"),
            ("caf\u{E9}", "caf\\u{e9}"),
            ("LINE\u{2028}SEP\u{85}", "LINE\\u{2028}SEP\\u{85}"),
        ]
        for (tupleType, shown) in cases {
            let pam = netpbm("P7\nWIDTH 1\nHEIGHT 1\nDEPTH 2\nMAXVAL 255\nTUPLTYPE \(tupleType)\nENDHDR\n", [1, 2])
            let (error, images) = readError(first + pam)
            XCTAssertEqual(images.count, 1, shown)
            XCTAssertEqual(error, .unsupportedTupleType(source: "test", image: 2, tupleType: tupleType, depth: 2), shown)
            let description = error?.errorDescription ?? ""
            XCTAssertEqual(description, "test: image 2: PAM tuple type \"\(shown)\" with depth 2 " + refusal)
            XCTAssertFalse(description.contains(where: \.isNewline), shown)
            XCTAssertTrue(description.unicodeScalars.allSatisfy { (0x20..<0x7F).contains($0.value) }, shown)
        }
    }
}

import Testing
@testable import DeltacastJSON

/// RFC 8785 (JSON Canonicalization Scheme), against the RFC's own examples: the IEEE 754 table
/// of Appendix B, the sorting example of §3.2.3 and the whole-document example of §3.2.4. The
/// node suite checks the same digests against the client library's independent canonicalizer.
@Suite struct JSONCanonicalTests {
    @Test(arguments: [
        (0x0000000000000000, "0"), (0x8000000000000000, "0"),
        (0x0000000000000001, "5e-324"), (0x8000000000000001, "-5e-324"),
        (0x7fefffffffffffff, "1.7976931348623157e+308"), (0xffefffffffffffff, "-1.7976931348623157e+308"),
        (0x4340000000000000, "9007199254740992"), (0xc340000000000000, "-9007199254740992"),
        (0x4430000000000000, "295147905179352830000"),
        (0x44b52d02c7e14af5, "9.999999999999997e+22"), (0x44b52d02c7e14af6, "1e+23"),
        (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
        (0x444b1ae4d6e2ef4e, "999999999999999700000"), (0x444b1ae4d6e2ef4f, "999999999999999900000"),
        (0x444b1ae4d6e2ef50, "1e+21"),
        (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"), (0x3eb0c6f7a0b5ed8d, "0.000001"),
        (0x41b3de4355555553, "333333333.3333332"), (0x41b3de4355555554, "333333333.33333325"),
        (0x41b3de4355555555, "333333333.3333333"), (0x41b3de4355555556, "333333333.3333334"),
        (0x41b3de4355555557, "333333333.33333343"),
        (0xbecbf647612f3696, "-0.0000033333333333333333"), (0x43143ff3c1cb0959, "1424953923781206.2"),
    ] as [(UInt64, String)])
    func numbersAsECMAScriptWritesThem(_ bits: UInt64, _ expected: String) throws {
        let value = Double(bitPattern: bits)
        #expect(JSONCanonical.ecmaScriptText(value) == expected)
        // And from the shortest text that denotes the same double, as a parser would keep it.
        #expect(JSONValue.number(JSONNumber(unchecked: value.description)).canonicalized() == Array(expected.utf8))
    }

    @Test func numbersKeepTheirValueNotTheirSpelling() throws {
        let parsed = try JSONParser.parse(#"[1.0, 1E2, -0, 0.0, 12345678901234567890, 1e999, 2e-3, 100]"#)
        #expect(String(decoding: parsed.canonicalized(), as: UTF8.self) == "[1,100,0,0,12345678901234567000,null,0.002,100]")
    }

    /// The shortcut for plain decimals agrees with the conversion wherever it applies.
    @Test func plainDecimalsTakeTheShortcutOnlyWhenTheyAreCanonical() {
        for text in ["101.25", "-0.5", "0.000001", "0.1", "123456789.012345", "-99.99"] {
            #expect(JSONCanonical.isAlreadyCanonical(text), "\(text)")
            #expect(JSONCanonical.ecmaScriptText(JSONNumber(unchecked: text)) == JSONCanonical.ecmaScriptText(Double(text)!), "\(text)")
        }
        for text in ["1.50", "0.0000001", "1234567890.1234567", "00.5", "1e5", "1.", ".5", "-0.0", "333333333.33333329"] {
            #expect(!JSONCanonical.isAlreadyCanonical(text), "\(text)")
        }
    }

    @Test func membersSortByUTF16CodeUnits() throws {
        let parsed = try JSONParser.parse(#"{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}"#)
        let keys = ["\r", "1", "\u{80}", "\u{f6}", "\u{20ac}", "\u{1F600}", "\u{fb33}"]
        guard case .object(let object) = try JSONParser.parse(parsed.canonicalized()) else { Issue.record("not an object"); return }
        #expect(object.members.map(\.key) == keys)
    }

    @Test func theRFCsDocumentExample() throws {
        let input = #"{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001], "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/", "literals": [null, true, false]}"#
        let expected = #"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        #expect(String(decoding: try JSONParser.parse(input).canonicalized(), as: UTF8.self) == expected)
    }
}

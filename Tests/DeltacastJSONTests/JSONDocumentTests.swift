import DeltacastJSON
import DeltacastTestSupport
import Testing

/// `value` written with whitespace everywhere it may go and members in reverse order: the
/// same JSON in other bytes.
func respelled(_ value: JSONValue) -> String {
    switch value {
    case .array(let elements): return "[ " + elements.map(respelled).joined(separator: " ,\n ") + " ]"
    case .object(let object):
        return "{\t" + object.members.reversed().map { JSONValue.string($0.key).jsonText + " : " + respelled($0.value) }.joined(separator: ", ") + "\r\n}"
    default: return value.jsonText
    }
}

func document(_ text: String) throws -> JSONDocument { try JSONDocument(parsing: Array(text.utf8)) }

/// The error a document gets, as "offset: message".
func refusal(_ bytes: [UInt8], limits: JSONParseLimits = .init()) -> String? {
    do {
        _ = try JSONDocument(parsing: bytes, limits: limits)
        return nil
    } catch {
        return "\(error.offset): \(error.message)"
    }
}

@Suite struct JSONDocumentTests {
    @Test func aDocumentsValueIsWhatTheParserBuilds() throws {
        var generator = DocumentGenerator(random: SeededGenerator(seed: 11))
        for _ in 0..<500 {
            let text = respelled(generator.value(depth: 4))
            #expect(try document(text).value == JSONParser.parse(text), "\(text)")
        }
    }

    @Test func documentDiffsAreTheValueDiffsWhateverTheSpelling() throws {
        var generator = DocumentGenerator(random: SeededGenerator(seed: 12))
        for round in 0..<2000 {
            let keyed = round % 2 == 0
            let a = keyed ? generator.keyedDocument(rows: generator.int(10)) : generator.value(depth: 4)
            var b = keyed ? generator.mutateKeyed(a) : generator.mutate(a)
            if round % 5 == 0 { b = a }
            let options = keyed ? keyedOptions : DiffOptions()
            let expected = JSONDiff.diff(a, b, options: options).operations
            let compact = JSONDiff.diff(try JSONDocument(parsing: a.serialized()), try JSONDocument(parsing: b.serialized()), options: options)
            #expect(compact.operations == expected, "round \(round): \(a.jsonText) → \(b.jsonText)")
            // The new body spelled differently: the same patch (member order does not matter).
            let other = JSONDiff.diff(try JSONDocument(parsing: a.serialized()), try document(respelled(b)), options: options)
            #expect(try applied(other, to: a) == b, "round \(round): \(a.jsonText) → \(respelled(b))")
            #expect(other.isChange == (a != b))
        }
    }

    @Test func aRespelledBodyIsNoChange() throws {
        let old = try document(#"{"a":[1,2],"b":"x","c":{"d":null}}"#)
        let new = try document(#"{ "c" : { "d" : null }, "b" : "\u0078", "a" : [ 1 , 2 ] }"#)
        #expect(JSONDiff.diff(old, new).operations.isEmpty)
        #expect(!JSONDiff.diff(old, try document(#"{"a":[1,2],"b":"x","c":{"d":0}}"#)).operations.isEmpty)
        #expect(!JSONDiff.diff(old, try document(#"{"a":[1,2.0],"b":"x","c":{"d":null}}"#)).operations.isEmpty)
    }

    /// Strings compare by code point (RFC 6902): "é" as one scalar and as "e" plus a combining
    /// accent are different strings, so a client that holds one is told about the other.
    @Test func canonicallyEquivalentSpellingsOfAStringAreAChange() throws {
        let precomposed = try document(#"{"name":"\u00e9"}"#)
        let decomposed = try document(#"{"name":"e\u0301"}"#)
        #expect(JSONDiff.diff(precomposed, decomposed).operations == [.replace(path: try JSONPointer("/name"), value: "e\u{301}")])
        #expect(JSONDiff.diff(precomposed, try document(#"{"name":"é"}"#)).operations.isEmpty)
    }

    @Test func duplicateNamesResolveToTheLastValueInTheFirstsPlace() throws {
        let old = try document(#"{"a":1,"b":3,"a":2}"#)
        #expect(old.value.jsonText == #"{"a":2,"b":3}"#)
        #expect(JSONDiff.diff(old, try document(#"{"b":3,"a":2}"#)).operations.isEmpty)
        #expect(JSONDiff.diff(old, try document(#"{"a":1,"b":3}"#)).operations == [.replace(path: try JSONPointer("/a"), value: 1)])
        // A keyed row's key is its last "id".
        let options = DiffOptions(arrayKeys: [(try JSONPointerPattern("/items"), "id")])
        let rows = try document(#"{"items":[{"id":1,"id":7,"v":0},{"id":8,"v":0}]}"#)
        let moved = try document(#"{"items":[{"id":8,"v":0},{"id":7,"v":0}]}"#)
        let operations = JSONDiff.diff(rows, moved, options: options).operations
        #expect(operations.count == 1)
        guard case .move = operations.first else { Issue.record("\(operations)"); return }
        #expect(try JSONPatch.apply(operations, to: rows.value) == moved.value)
    }

    /// The string scan reads eight bytes at a time: whatever ends or interrupts a string is
    /// found at every offset within those eight bytes, and errors point at it exactly.
    @Test(arguments: 0..<20)
    func theStringScanFindsEveryByteThatMattersAtEveryOffset(_ offset: Int) throws {
        let run = String(repeating: "a", count: offset)
        for (inner, decoded) in [("", ""), ("\\\"", "\""), ("\\\\", "\\"), ("\\n", "\n"), ("\\u00e9", "é"), ("é", "é"), ("😀", "😀"), ("\\ud83d\\ude00", "😀")] {
            let text = "[\"" + run + inner + "bc\"]"
            #expect(try JSONParser.parse(text) == .array([.string(run + decoded + "bc")]), "\(text)")
            #expect(try document(text).value == JSONParser.parse(text))
        }
        let control = Array("[\"\(run)".utf8) + [0x1F] + Array("x\"]".utf8)
        #expect(refusal(control) == "\(2 + offset): control character 0x1F must be escaped in a string")
        for invalid: [UInt8] in [[0xFF], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82]] {
            let bytes = Array("[\"\(run)".utf8) + invalid + Array("x\"]".utf8)
            #expect(refusal(bytes) == "\(2 + offset): string is not valid UTF-8", "\(invalid)")
        }
        #expect(refusal(Array("[\"\(run)".utf8)) == "1: unterminated string")
    }

    /// A tape addresses 2^28 − 1 bytes; a larger document is refused whatever the caller's
    /// limit, before any of it is read.
    @Test func aDocumentPastWhatATapeAddressesIsRefused() {
        let bytes = [UInt8](repeating: 0x20, count: (1 << 28))
        #expect(refusal(bytes, limits: .init(maximumBytes: .max)) == "268435455: document is 268435456 bytes, over the limit of 268435455")
    }
}

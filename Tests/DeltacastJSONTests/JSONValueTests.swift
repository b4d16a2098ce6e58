import DeltacastJSON
import Testing

@Suite struct JSONParserTests {
    @Test func numbersKeepTheirText() throws {
        let value = try JSONParser.parse(#"{"price":1.10,"big":12345678901234567890,"e":-1.5E+3}"#)
        #expect(value.jsonText == #"{"price":1.10,"big":12345678901234567890,"e":-1.5E+3}"#)
    }

    @Test func memberOrderIsKeptAndDuplicatesResolveToTheLast() throws {
        let value = try JSONParser.parse(#"{"b":1,"a":2,"b":3}"#)
        #expect(value.jsonText == #"{"b":3,"a":2}"#)
    }

    @Test func objectsCompareUnordered() throws {
        #expect(try JSONParser.parse(#"{"a":1,"b":[1,2]}"#) == JSONParser.parse(#"{"b":[1,2],"a":1}"#))
        #expect(try JSONParser.parse("[1,2]") != JSONParser.parse("[2,1]"))
        #expect(try JSONParser.parse("1.0") != JSONParser.parse("1"))
        #expect(try JSONParser.parse("1.0").isNumericallyEqual(to: JSONParser.parse("1e0")))
    }

    @Test func largeObjectsLookUpThroughTheirIndex() throws {
        var text = "{"
        for index in 0..<100 { text += "\"k\(index)\":\(index)," }
        text += "\"k50\":\"last\"}"
        guard case .object(let object) = try JSONParser.parse(text) else { Issue.record("not an object"); return }
        #expect(object.count == 100)
        #expect(object["k50"] == .string("last"))
        #expect(object["k99"] == 99)
        #expect(object.position(of: "k50") == 50)
    }

    @Test(arguments: [
        ("[1,2", 1, 5, 4, "expected ',' or ']' after an array element, found the end of the input"),
        ("{\"a\" 1}", 1, 6, 5, "expected ':' after the member name, found '1'"),
        ("[\n  01]", 2, 3, 4, "leading zeros are not allowed in numbers"),
        ("{\"a\":tru}", 1, 6, 5, "expected 'true'"),
        ("[\"a\\x\"]", 1, 4, 3, "invalid escape '\\x' in string; expected one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX"),
        ("[1,]", 1, 4, 3, "expected a value (object, array, string, number, true, false or null), found ']'"),
        ("{} x", 1, 4, 3, "unexpected data after the JSON value"),
        ("[\"\\uD800\"]", 1, 3, 2, "lone high surrogate \\uD800 in string"),
        ("\"abc", 1, 1, 0, "unterminated string"),
        ("", 1, 1, 0, "expected a value, found the end of the input"),
    ])
    func errorsSayWhereAndWhat(_ text: String, _ line: Int, _ column: Int, _ offset: Int, _ message: String) {
        do {
            _ = try JSONParser.parse(text)
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.line == line)
            #expect(error.column == column)
            #expect(error.offset == offset)
            #expect(error.message == message)
        }
    }

    @Test func invalidUTF8IsRejectedWithItsOffset() {
        do {
            _ = try JSONParser.parse([0x5B, 0x22, 0x61, 0xFF, 0x22, 0x5D])
            Issue.record("accepted invalid UTF-8")
        } catch {
            #expect(error.offset == 3)
            #expect(error.message == "string is not valid UTF-8")
        }
    }

    @Test func depthLimitIsAnErrorNotACrash() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        do {
            _ = try JSONParser.parse(deep)
            Issue.record("accepted 100,000 levels")
        } catch {
            #expect(error.offset == 512)
            #expect(error.message == "nesting deeper than 512 levels")
        }
        #expect((try? JSONParser.parse("[[[1]]]", limits: .init(maximumDepth: 3))) != nil)
        #expect((try? JSONParser.parse("[[[[1]]]]", limits: .init(maximumDepth: 3))) == nil)
    }

    @Test func documentSizeLimit() {
        do {
            _ = try JSONParser.parse("[1,2,3,4]", limits: .init(maximumBytes: 4))
            Issue.record("accepted")
        } catch {
            #expect(error.message == "document is 9 bytes, over the limit of 4")
        }
    }

    @Test func serializerEscapes() throws {
        let value: JSONValue = .string("q\"b\\n\nt\tc\u{01}é😀/")
        #expect(value.jsonText == #""q\"b\\n\nt\tc\u0001é😀/""#)
        #expect(try JSONParser.parse(value.serialized()) == value)
    }
}

@Suite struct JSONPointerTests {
    @Test func escapingRoundTrips() throws {
        let pointer = try JSONPointer("/a~1b/m~0n/0")
        #expect(pointer.tokens == ["a/b", "m~n", "0"])
        #expect(pointer.description == "/a~1b/m~0n/0")
        #expect(try JSONPointer("").tokens == [])
        #expect(try JSONPointer("/").tokens == [""])
    }

    @Test func malformedPointersAreRefused() {
        #expect(throws: JSONPatchError("invalid JSON Pointer 'a/b': must be empty or start with '/'")) { try JSONPointer("a/b") }
        #expect(throws: JSONPatchError("invalid JSON Pointer '/a~2': '~' must be followed by 0 or 1")) { try JSONPointer("/a~2") }
    }

    @Test func resolve() throws {
        let document = try JSONParser.parse(#"{"a":[{"b":1},{"b":2}],"":{"x":3}}"#)
        #expect(try JSONPointer("/a/1/b").resolve(in: document) == 2)
        #expect(try JSONPointer("//x").resolve(in: document) == 3)
        #expect(try JSONPointer("/a/01").resolve(in: document) == nil)
        #expect(try JSONPointer("/a/2").resolve(in: document) == nil)
    }

    @Test func patternsMatchWildcards() throws {
        let pattern = try JSONPointerPattern("/groups/*/members")
        #expect(pattern.matches(["groups", "3", "members"]))
        #expect(!pattern.matches(["groups", "3"]))
        #expect(pattern.covers(["groups", "x", "members", "0"]))
    }
}

@Suite struct JSONPatchApplyTests {
    @Test func failingOperationLeavesTheDocumentUnchanged() throws {
        let document = try JSONParser.parse(#"{"a":1,"b":[1,2]}"#)
        let patch = try JSONPatch.operations(from: JSONParser.parse(#"[{"op":"replace","path":"/a","value":9},{"op":"remove","path":"/b/5"}]"#))
        #expect(throws: JSONPatchError("remove: path '/b/5' does not exist", operationIndex: 1)) {
            try JSONPatch.apply(patch, to: document)
        }
        #expect(document.jsonText == #"{"a":1,"b":[1,2]}"#)
    }

    @Test func malformedPatchesSayWhichOperation() throws {
        #expect(throws: JSONPatchError("unknown op 'frob'; expected add, remove, replace, move, copy or test", operationIndex: 0)) {
            try JSONPatch.operations(from: JSONParser.parse(#"[{"op":"frob","path":"/a"}]"#))
        }
        #expect(throws: JSONPatchError("missing 'value'", operationIndex: 1)) {
            try JSONPatch.operations(from: JSONParser.parse(#"[{"op":"remove","path":"/a"},{"op":"add","path":"/a"}]"#))
        }
        #expect(throws: JSONPatchError("a JSON Patch must be an array of operations, found object")) {
            try JSONPatch.operations(from: JSONParser.parse("{}"))
        }
    }
}

@Suite struct JSONMergePatchTests {
    /// RFC 7396 appendix A.
    @Test(arguments: [
        (#"{"a":"b"}"#, #"{"a":"c"}"#, #"{"a":"c"}"#),
        (#"{"a":"b"}"#, #"{"b":"c"}"#, #"{"a":"b","b":"c"}"#),
        (#"{"a":"b"}"#, #"{"a":null}"#, #"{}"#),
        (#"{"a":"b","b":"c"}"#, #"{"a":null}"#, #"{"b":"c"}"#),
        (#"{"a":["b"]}"#, #"{"a":"c"}"#, #"{"a":"c"}"#),
        (#"{"a":"c"}"#, #"{"a":["b"]}"#, #"{"a":["b"]}"#),
        (#"{"a":{"b":"c"}}"#, #"{"a":{"b":"d","c":null}}"#, #"{"a":{"b":"d"}}"#),
        (#"{"a":[{"b":"c"}]}"#, #"{"a":[1]}"#, #"{"a":[1]}"#),
        (#"["a","b"]"#, #"["c","d"]"#, #"["c","d"]"#),
        (#"{"a":"b"}"#, #"["c"]"#, #"["c"]"#),
        (#"{"a":"foo"}"#, "null", "null"),
        (#"{"a":"foo"}"#, #""bar""#, #""bar""#),
        (#"{"e":null}"#, #"{"a":1}"#, #"{"e":null,"a":1}"#),
        (#"[1,2]"#, #"{"a":"b","c":null}"#, #"{"a":"b"}"#),
        (#"{}"#, #"{"a":{"bb":{"ccc":null}}}"#, #"{"a":{"bb":{}}}"#),
    ])
    func rfcExamples(_ target: String, _ patch: String, _ result: String) throws {
        #expect(JSONMergePatch.apply(try JSONParser.parse(patch), to: try JSONParser.parse(target)) == (try JSONParser.parse(result)))
    }

    @Test func diffRefusesWhatMergePatchCannotSay() throws {
        #expect(JSONMergePatch.diff(try JSONParser.parse(#"{"a":1}"#), try JSONParser.parse(#"{"a":null}"#)) == nil)
        let patch = JSONMergePatch.diff(try JSONParser.parse(#"{"a":1,"b":{"c":2,"d":3}}"#), try JSONParser.parse(#"{"b":{"c":2,"d":4},"e":5}"#))
        #expect(patch?.jsonText == #"{"a":null,"b":{"d":4},"e":5}"#)
    }
}

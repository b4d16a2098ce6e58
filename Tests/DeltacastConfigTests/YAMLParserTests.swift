import DeltacastTestSupport
import Foundation
import Testing
@testable import DeltacastConfig

/// The folder holding this file's fixtures.
let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
let repositoryRoot = fixtures.deletingLastPathComponent().deletingLastPathComponent()
let testEnvironment = ["DELTACAST_TEST_VALUE": "v4lue", "DELTACAST_EMPTY": ""]

/// A scalar's text at a path of mapping keys and list indexes.
func scalar(_ node: YAMLNode, _ path: Any...) -> String? {
    var current = node
    for step in path {
        switch (current.content, step) {
        case (.mapping(let entries), let key as String):
            guard let entry = entries.first(where: { $0.key == key }) else { return nil }
            current = entry.value
        case (.sequence(let items), let index as Int):
            guard index < items.count else { return nil }
            current = items[index]
        default: return nil
        }
    }
    if case .scalar(let text, _) = current.content { return text }
    return nil
}

@Suite struct YAMLParserTests {
    let document: YAMLNode

    init() throws {
        let text = try String(contentsOf: fixtures.appendingPathComponent("Valid/every-construct.yaml"), encoding: .utf8)
        document = try YAMLParser.parse(text, file: "every-construct.yaml", environment: testEnvironment)
    }

    @Test func plainScalarsStopAtCommentsAndKeepInnerColons() {
        #expect(scalar(document, "plain") == "hello world")
        #expect(scalar(document, "colon_inside") == "http://a:1/x")
    }

    @Test func quotedScalarsUnescape() {
        #expect(scalar(document, "single") == "it's # not a comment")
        #expect(scalar(document, "double") == "tab\tnewline\nquote\"slash/uéU😀xA")
        #expect(scalar(document, "quoted key") == "1")
        #expect(scalar(document, "unicode") == "café ☕")
    }

    @Test func emptyAndTildeAreNull() throws {
        guard case .mapping(let entries) = document.content else { Issue.record("root is not a mapping"); return }
        let empty = try #require(entries.first { $0.key == "empty" })
        let tilde = try #require(entries.first { $0.key == "tilde" })
        #expect(empty.value.isNull)
        #expect(tilde.value.isNull)
    }

    @Test func blockCollectionsNest() {
        #expect(scalar(document, "nested", "deeper", "deepest") == "1")
        #expect(scalar(document, "list", 0) == "a")
        #expect(scalar(document, "list", 1) == "b")
        #expect(scalar(document, "list", 2, "nested") == "true")
        #expect(scalar(document, "list", 3, 0) == "x")
        #expect(scalar(document, "list", 3, 1) == "y")
        #expect(scalar(document, "list", 4, "key") == "v")
        #expect(scalar(document, "list", 4, "other") == "w")
        #expect(scalar(document, "same_indent_list", 1) == "q")
    }

    @Test func flowCollections() {
        #expect(scalar(document, "flow_seq", 0) == "1")
        #expect(scalar(document, "flow_seq", 1) == "two")
        #expect(scalar(document, "flow_seq", 2) == "three")
        #expect(scalar(document, "flow_seq", 3, 1) == "5")
        #expect(scalar(document, "flow_seq", 4, "six") == "6")
        #expect(scalar(document, "flow_map", "b", 1) == "y")
        #expect(scalar(document, "flow_map", "c d") == "e")
        #expect(scalar(document, "flow_map", "empty") == "")
        #expect(scalar(document, "multiline_flow", 1) == "two")
    }

    @Test func environmentInterpolation() {
        #expect(scalar(document, "env_plain") == "v4lue")
        #expect(scalar(document, "env_default") == "fallback value")
        #expect(scalar(document, "env_empty_default") == "used")
        #expect(scalar(document, "env_quoted") == "pre-v4lue-post")
        #expect(scalar(document, "env_single") == "${NOT_INTERPOLATED}")
        #expect(scalar(document, "env_literal") == "${LITERAL}")
    }

    @Test func locationsPointAtNodes() throws {
        guard case .mapping(let entries) = document.content else { Issue.record("root is not a mapping"); return }
        let nested = try #require(entries.first { $0.key == "nested" })
        #expect(nested.keyLocation.line == 9)
        #expect(nested.keyLocation.column == 1)
        #expect(nested.value.location == SourceLocation(file: "every-construct.yaml", line: 10, column: 3))
    }

    @Test func crlfLineEndingsAndByteOrderMarkAreAccepted() throws {
        let node = try YAMLParser.parse("\u{FEFF}a: 1\r\nb:\r\n  - x\r\n", file: "f", environment: [:])
        #expect(scalar(node, "a") == "1")
        #expect(scalar(node, "b", 0) == "x")
    }

    @Test func emptyDocumentIsAnEmptyMapping() throws {
        let node = try YAMLParser.parse("# only a comment\n\n", file: "f", environment: [:])
        #expect(node.content == .mapping([]))
    }

    @Test func errorDescriptionShowsLineAndCaret() {
        do {
            _ = try YAMLParser.parse("a: 1\nb: \"oops\n", file: "x.yaml", environment: [:])
            Issue.record("no error")
        } catch {
            #expect(error.description == "x.yaml:2:4: unterminated double-quoted string; expected a closing \" on the same line\nb: \"oops\n   ^")
        }
    }

    /// Arbitrary bytes never crash or hang the parser (the fuzz target explores further).
    @Test func randomBytesNeverCrash() {
        var generator = SeededGenerator(seed: 42)
        let alphabet = Array("ab:- \n\t#'\"[]{},${}\\|&*!?%@`~.0123456789".unicodeScalars)
        for _ in 0..<3000 {
            var text = String.UnicodeScalarView()
            for _ in 0..<Int(generator.next() % 80) {
                text.append(alphabet[Int(generator.next() % UInt64(alphabet.count))])
            }
            _ = try? YAMLParser.parse(String(text), file: "r", environment: [:])
            _ = try? Configuration.load(text: String(text), file: "r", environment: [:])
        }
    }
}

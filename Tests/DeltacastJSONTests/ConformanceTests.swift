import DeltacastJSON
import Foundation
import Testing

let jsonFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

func fixtureBytes(_ relativePath: String) throws -> [UInt8] {
    Array(try Data(contentsOf: jsonFixtures.appendingPathComponent(relativePath)))
}

/// JSONTestSuite ("Parsing JSON is a Minefield", MIT, Fixtures/JSONTestSuite/LICENSE).
let parsingFiles: [String] = (try? FileManager.default.contentsOfDirectory(
    atPath: jsonFixtures.appendingPathComponent("JSONTestSuite/test_parsing").path))?.sorted() ?? []

@Suite struct JSONTestSuiteConformance {
    @Test func suiteIsPresent() {
        #expect(parsingFiles.count == 318)
    }

    @Test(arguments: parsingFiles)
    func parserVerdictMatchesTheSuite(_ name: String) throws {
        let bytes = try fixtureBytes("JSONTestSuite/test_parsing/\(name)")
        let result = Result { () throws(JSONParseError) in try JSONParser.parse(bytes) }
        switch name.first {
        case "y":
            let value = try result.get()
            // Byte-stable: serializing the parse of the serialization gives the same bytes.
            let once = value.serialized()
            #expect(try JSONParser.parse(once).serialized() == once)
            #expect(try JSONParser.parse(once) == value)
        case "n":
            if case .success = result { Issue.record("\(name) must be rejected") }
        default:
            break // i_: either verdict, reaching here means no crash and no hang.
        }
    }
}

/// The json-patch test suite (Apache-2.0, Fixtures/json-patch-tests/README.md).
struct PatchCase: CustomTestStringConvertible, Sendable {
    var file: String
    var index: Int
    var record: JSONValue
    var testDescription: String {
        if case .object(let o) = record, case .string(let comment)? = o["comment"] { return "\(file)#\(index) \(comment)" }
        return "\(file)#\(index)"
    }
}

let patchCases: [PatchCase] = ["tests.json", "spec_tests.json"].flatMap { file -> [PatchCase] in
    guard let bytes = try? fixtureBytes("json-patch-tests/\(file)"),
          case .array(let records) = (try? JSONParser.parse(bytes)) ?? .null else { return [] }
    return records.enumerated().compactMap { index, record in
        guard case .object(let object) = record, object["doc"] != nil, object["patch"] != nil,
              object["disabled"] != .bool(true) else { return nil }
        return PatchCase(file: file, index: index, record: record)
    }
}

@Suite struct JSONPatchConformance {
    @Test func suiteIsPresent() {
        #expect(patchCases.count > 100)
    }

    @Test(arguments: patchCases)
    func patchCase(_ testCase: PatchCase) throws {
        guard case .object(let record) = testCase.record else { return }
        let document = record["doc"]!
        let outcome = Result { () throws(JSONPatchError) -> JSONValue in
            try JSONPatch.apply(try JSONPatch.operations(from: record["patch"]!), to: document)
        }
        if let expected = record["expected"] {
            let result = try outcome.get()
            #expect(result == expected)
        } else if record["error"] != nil {
            if case .success(let value) = outcome { Issue.record("expected an error, got \(value.jsonText)") }
        }
    }
}

import DeltacastJSON
import DeltacastTestSupport
import Testing

/// Random documents and mutations of them.
struct DocumentGenerator {
    var random: SeededGenerator
    var nextKey = 1000

    static let strings = ["", "a", "plain", "é ü ß", "emoji 😀", "quote \" back \\ slash", "tab\tnew\nline", "\u{01}ctl", "~0/1~", "long " + String(repeating: "x", count: 40)]
    static let numbers = ["0", "-1", "1.10", "3.14159", "12345678901234567890", "-0.5e-7", "1E+300", "42"]

    mutating func int(_ bound: Int) -> Int { Int(random.next() % UInt64(max(bound, 1))) }

    mutating func scalar() -> JSONValue {
        switch int(5) {
        case 0: return .null
        case 1: return .bool(int(2) == 0)
        case 2: return .number(JSONNumber(unchecked: Self.numbers[int(Self.numbers.count)]))
        default: return .string(Self.strings[int(Self.strings.count)])
        }
    }

    mutating func value(depth: Int) -> JSONValue {
        guard depth > 0, int(3) > 0 else { return scalar() }
        if int(2) == 0 {
            return .array((0..<int(6)).map { _ in value(depth: depth - 1) })
        }
        var object = JSONObject()
        for _ in 0..<int(6) { object["m\(int(8))"] = value(depth: depth - 1) }
        return .object(object)
    }

    /// Mutates anything anywhere: replace, insert, delete, change type.
    mutating func mutate(_ value: JSONValue, depth: Int = 0) -> JSONValue {
        switch value {
        case .array(var elements) where int(4) > 0:
            switch int(4) {
            case 0: elements.insert(self.value(depth: 2), at: int(elements.count + 1))
            case 1 where !elements.isEmpty: elements.remove(at: int(elements.count))
            case 2 where elements.count > 1: elements.swapAt(int(elements.count), int(elements.count))
            default:
                if !elements.isEmpty { let i = int(elements.count); elements[i] = mutate(elements[i], depth: depth + 1) }
            }
            return .array(elements)
        case .object(var object) where int(4) > 0:
            switch int(3) {
            case 0: object["m\(int(10))"] = self.value(depth: 2)
            case 1 where !object.isEmpty: object[object.keys[int(object.count)]] = nil
            default:
                if !object.isEmpty { let key = object.keys[int(object.count)]; object[key] = mutate(object[key]!, depth: depth + 1) }
            }
            return .object(object)
        default:
            return int(2) == 0 ? scalar() : self.value(depth: 2)
        }
    }

    mutating func row() -> JSONValue {
        nextKey += 1
        return ["id": .number(JSONNumber(nextKey)), "name": .string(Self.strings[int(Self.strings.count)]),
                "price": .number(JSONNumber(unchecked: Self.numbers[int(Self.numbers.count)])),
                "tags": .array((0..<int(3)).map { _ in scalar() }), "detail": value(depth: 2)]
    }

    /// A document with a keyed array at /items and nested keyed arrays at /groups/*/members.
    mutating func keyedDocument(rows: Int) -> JSONValue {
        let groups: [JSONValue] = (0..<2).map { index in
            ["name": .string("g\(index)"), "members": .array((0..<int(5)).map { _ in
                nextKey += 1
                return ["uid": .string("u\(nextKey)"), "role": scalar()]
            })]
        }
        return ["generatedAt": "t0", "items": .array((0..<rows).map { _ in row() }), "groups": .array(groups)]
    }

    /// Inserts, deletes, moves and modifies keyed rows, by key and by position.
    mutating func mutateKeyed(_ document: JSONValue) -> JSONValue {
        guard case .object(var object) = document, case .array(var items)? = object["items"] else { return document }
        for _ in 0..<(1 + int(4)) {
            switch int(5) {
            case 0: items.insert(row(), at: int(items.count + 1))
            case 1 where !items.isEmpty: items.remove(at: int(items.count))
            case 2 where items.count > 1:
                let moved = items.remove(at: int(items.count))
                items.insert(moved, at: int(items.count + 1))
            case 3 where !items.isEmpty:
                let index = int(items.count)
                guard case .object(var row) = items[index] else { break }
                row["price"] = .number(JSONNumber(unchecked: Self.numbers[int(Self.numbers.count)]))
                if int(2) == 0 { row["detail"] = mutate(row["detail"] ?? .null) }
                items[index] = .object(row)
            default:
                if !items.isEmpty { items.shuffle(using: &random) }
            }
        }
        object["items"] = .array(items)
        if int(3) == 0, case .array(var groups)? = object["groups"], !groups.isEmpty,
           case .object(var group) = groups[0], case .array(var members)? = group["members"] {
            if !members.isEmpty { members.remove(at: int(members.count)) }
            nextKey += 1
            members.insert(["uid": .string("u\(nextKey)"), "role": "new"], at: int(members.count + 1))
            group["members"] = .array(members)
            groups[0] = .object(group)
            object["groups"] = .array(groups)
        }
        if int(2) == 0 { object["generatedAt"] = .string("t\(int(1000))") }
        return .object(object)
    }
}

let keyedOptions = DiffOptions(arrayKeys: [
    (try! JSONPointerPattern("/items"), "id"), (try! JSONPointerPattern("/groups/*/members"), "uid"),
])

func applied(_ result: DiffResult, to document: JSONValue) throws -> JSONValue {
    // Round-trip the patch through its wire form, as a client receives it.
    let wire = try JSONParser.parse(JSONPatch.serialized(result.operations))
    return try JSONPatch.apply(try JSONPatch.operations(from: wire), to: document)
}

@Suite struct JSONDiffPropertyTests {
    @Test func unkeyedDiffsApplyExactly() throws {
        var generator = DocumentGenerator(random: SeededGenerator(seed: 1))
        for round in 0..<4000 {
            let a = generator.value(depth: 4)
            var b = a
            for _ in 0..<(1 + generator.int(3)) { b = generator.mutate(b) }
            let result = JSONDiff.diff(a, b)
            let patched = try applied(result, to: a)
            #expect(patched == b, "round \(round): \(a.jsonText) → \(b.jsonText) via \(JSONPatch.json(result.operations).jsonText)")
            if patched != b { return }
            #expect(result.isChange == (a != b))
        }
    }

    @Test func keyedDiffsApplyExactly() throws {
        var generator = DocumentGenerator(random: SeededGenerator(seed: 2))
        for round in 0..<4000 {
            let a = generator.keyedDocument(rows: generator.int(12))
            let b = generator.mutateKeyed(a)
            let result = JSONDiff.diff(a, b, options: keyedOptions)
            let patched = try applied(result, to: a)
            #expect(patched == b, "round \(round): \(a.jsonText) → \(b.jsonText) via \(JSONPatch.json(result.operations).jsonText)")
            if patched != b { return }
        }
    }

    @Test func mergePatchesApplyExactlyOnObjectDocuments() throws {
        var generator = DocumentGenerator(random: SeededGenerator(seed: 3))
        var produced = 0
        var round = 0
        while produced < 2000 && round < 50_000 {
            round += 1
            var a: JSONValue = .object(JSONObject())
            for _ in 0..<3 { a = generator.mutate(a) }
            var b = a
            for _ in 0..<(1 + generator.int(3)) { b = generator.mutate(b) }
            // Merge patch cannot express null members (null means "remove"): object-only,
            // null-free documents are its domain.
            a = withoutNullMembers(a)
            b = withoutNullMembers(b)
            guard case .object = a, case .object = b else { continue }
            guard let patch = JSONMergePatch.diff(a, b) else { continue }
            produced += 1
            let wire = try JSONParser.parse(patch.serialized())
            #expect(JSONMergePatch.apply(wire, to: a) == b, "round \(round): \(a.jsonText) → \(b.jsonText) via \(patch.jsonText)")
        }
        #expect(produced == 2000)
    }
}

func withoutNullMembers(_ value: JSONValue) -> JSONValue {
    switch value {
    case .object(let object):
        return .object(JSONObject(object.members.compactMap { $0.value == .null ? nil : ($0.key, withoutNullMembers($0.value)) }))
    case .array(let elements): return .array(elements.map(withoutNullMembers))
    default: return value
    }
}

@Suite struct JSONDiffBehaviourTests {
    /// A member name that starts with a combining mark (U+05AE): "/" and the mark are one
    /// Character, so a pointer check by Character refused the diff's own patch when it was
    /// read back (found by FuzzPatch in CI).
    @Test func aMemberNameStartingWithACombiningMarkRoundTrips() throws {
        let old = try JSONParser.parse(#"{"foo":["bar"]}"#)
        let new = try JSONParser.parse(#"{"\u05aebarfoo":["bar",["abc","def"]]}"#)
        let operations = JSONDiff.diff(old, new).operations
        let reread = try JSONPatch.operations(from: try JSONParser.parse(JSONPatch.serialized(operations)))
        #expect(reread == operations)
        #expect(try JSONPatch.apply(reread, to: old) == new)
        #expect(try JSONPointer("/\u{05AE}x").tokens == ["\u{05AE}x"])
        // And a name that is "/" plus a combining mark escapes its slash (the second finding).
        #expect(JSONPointer(tokens: ["/\u{05AE}", "~\u{0301}"]).description == "/~1\u{05AE}/~0\u{0301}")
        #expect(try JSONPointer(JSONPointer(tokens: ["/\u{05AE}"]).description).tokens == ["/\u{05AE}"])
    }

    func rows(_ ids: [Int]) -> JSONValue {
        ["items": .array(ids.map { ["id": .number(JSONNumber($0)), "name": .string("row \($0)"), "price": 100] })]
    }

    @Test func insertionAtTheHeadOfAKeyedArrayIsOneAdd() {
        let result = JSONDiff.diff(rows(Array(1...5000)), rows([0] + Array(1...5000)), options: keyedOptions)
        #expect(result.operations == [.add(path: JSONPointer(tokens: ["items", "0"]), value: ["id": 0, "name": "row 0", "price": 100])])
    }

    @Test func insertionAtTheHeadOfAnUnkeyedArrayIsOneAdd() {
        let result = JSONDiff.diff(rows(Array(1...2000)), rows([0] + Array(1...2000)))
        #expect(result.operations.count == 1)
    }

    @Test func reRankingTenRowsIsAtMostTenMoves() throws {
        var order = Array(1...1000)
        for (from, to) in [(500, 3), (10, 900), (42, 41), (700, 100), (999, 0), (1, 998), (300, 301), (250, 600), (60, 20), (800, 799)] {
            order.insert(order.remove(at: from), at: to)
        }
        let a = rows(Array(1...1000)), b = rows(order)
        let result = JSONDiff.diff(a, b, options: keyedOptions)
        #expect(result.operations.count <= 10)
        #expect(result.operations.allSatisfy { if case .move = $0 { true } else { false } })
        #expect(try applied(result, to: a) == b)
    }

    @Test func modifiedKeyedRowIsPatchedInPlace() {
        guard case .object(var object) = rows(Array(1...100)), case .array(var items)? = object["items"],
              case .object(var row) = items[57] else { Issue.record("bad fixture"); return }
        row["price"] = .number(JSONNumber(unchecked: "101.2"))
        items[57] = .object(row)
        object["items"] = .array(items)
        let result = JSONDiff.diff(rows(Array(1...100)), .object(object), options: keyedOptions)
        #expect(JSONPatch.json(result.operations).jsonText == #"[{"op":"replace","path":"/items/57/price","value":101.2}]"#)
    }

    @Test func aChangeConfinedToIgnoredPathsIsNoChange() throws {
        let options = DiffOptions(ignore: [try JSONPointerPattern("/generatedAt"), try JSONPointerPattern("/items/*/seen")])
        let a = try JSONParser.parse(#"{"generatedAt":"t1","items":[{"seen":1,"v":1}]}"#)
        let b = try JSONParser.parse(#"{"generatedAt":"t2","items":[{"seen":2,"v":1}]}"#)
        let unchanged = JSONDiff.diff(a, b, options: options)
        #expect(!unchanged.isChange)
        #expect(unchanged.operations.isEmpty)
        #expect(unchanged.serializedSize == 2)
        // A real change brings the ignored fields up to date in the same patch.
        let c = try JSONParser.parse(#"{"generatedAt":"t3","items":[{"seen":3,"v":2}]}"#)
        let changed = JSONDiff.diff(a, c, options: options)
        #expect(changed.isChange)
        #expect(try applied(changed, to: a) == c)
    }

    @Test func serializedSizeIsThePatchWireSize() throws {
        let result = JSONDiff.diff(try JSONParser.parse(#"{"a":1}"#), try JSONParser.parse(#"{"a":2}"#))
        #expect(result.serializedSize == JSONPatch.serialized(result.operations).count)
        #expect(result.serializedSize == #"[{"op":"replace","path":"/a","value":2}]"#.utf8.count)
    }

    @Test func identicalDocumentsGiveAnEmptyPatch() throws {
        let document = try JSONParser.parse(#"{"b":[1,{"c":null}],"a":"x"}"#)
        let reordered = try JSONParser.parse(#"{"a":"x","b":[1,{"c":null}]}"#)
        #expect(JSONDiff.diff(document, reordered).operations.isEmpty)
    }
}

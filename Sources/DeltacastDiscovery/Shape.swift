public import DeltacastJSON

/// What an endpoint's samples say about the shape of its answers, merged place by place: which
/// kinds of value appeared there and in which samples, the strings seen (a small closed set
/// becomes an `enum`), the array items' shape, and each object member with where it was present.
///
/// From it come a JSON Schema (2020-12, ``jsonSchema(title:)``) and a TypeScript type
/// (``typeScript(indent:)``). Where samples disagree the type is a union, or the member is
/// optional, and a note says which samples showed what.
public final class Shape {
    /// The kinds of JSON value, with integers apart from other numbers.
    public enum Kind: String, CaseIterable, Sendable {
        case null, boolean, integer, number, string, array, object
    }

    /// The samples (0-based) in which each kind appeared here.
    private(set) var samples: [Kind: Set<Int>] = [:]
    /// How many values were merged here (every element of every array instance counts).
    private(set) var occurrences = 0
    /// Strings seen and how often, until more than ``maximumDistinctStrings`` distinct ones.
    private var strings: [String: Int] = [:]
    private var stringCount = 0
    /// Strings seen here in each sample (more than one only inside arrays), and how many of
    /// them were distinct.
    private var stringsPerSample: [Int: (count: Int, distinct: Set<String>)] = [:]
    private var openStrings = false
    /// The shape of array elements, every instance together.
    private var items: Shape?
    /// Object members in order of first appearance: their shape, how many objects held them,
    /// and how many in each sample.
    private var members: [(name: String, shape: Shape, present: Int, perSample: [Int: Int])] = []
    private var memberIndex: [String: Int] = [:]
    private var objects = 0
    private var objectsPerSample: [Int: Int] = [:]

    /// More distinct strings than this make a field free text, not an enumeration.
    public static let maximumDistinctStrings = 8
    /// An enumeration needs its values seen this many times in one sample, each about twice or more.
    public static let minimumStringsForEnum = 4
    /// How deep the shape is followed (deeper values are `unknown`).
    public static let maximumDepth = 32

    init() {}

    /// The shape of `samples` (the answers of one endpoint, oldest first).
    public convenience init(samples: [JSONValue]) {
        self.init()
        for (index, sample) in samples.enumerated() { merge(sample, sample: index, depth: 0) }
    }

    func merge(_ value: JSONValue, sample: Int, depth: Int) {
        occurrences += 1
        guard depth < Self.maximumDepth else { return }
        switch value {
        case .null:
            samples[.null, default: []].insert(sample)
        case .bool:
            samples[.boolean, default: []].insert(sample)
        case .number(let number):
            let integral = !number.text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" })
            samples[integral ? .integer : .number, default: []].insert(sample)
        case .string(let text):
            samples[.string, default: []].insert(sample)
            stringCount += 1
            if !openStrings {
                stringsPerSample[sample, default: (0, [])].count += 1
                stringsPerSample[sample, default: (0, [])].distinct.insert(text)
                strings[text, default: 0] += 1
                if strings.count > Self.maximumDistinctStrings { openStrings = true; strings = [:]; stringsPerSample = [:] }
            }
        case .array(let elements):
            samples[.array, default: []].insert(sample)
            let shape = items ?? Shape()
            items = shape
            for element in elements { shape.merge(element, sample: sample, depth: depth + 1) }
        case .object(let object):
            samples[.object, default: []].insert(sample)
            objects += 1
            objectsPerSample[sample, default: 0] += 1
            for (name, member) in object.members {
                let index: Int
                if let known = memberIndex[name] {
                    index = known
                } else {
                    index = members.count
                    memberIndex[name] = index
                    members.append((name, Shape(), 0, [:]))
                }
                members[index].present += 1
                members[index].perSample[sample, default: 0] += 1
                members[index].shape.merge(member, sample: sample, depth: depth + 1)
            }
        }
    }

    /// The kinds seen, integers folded into numbers when both appear.
    var kinds: [Kind] {
        var kinds = Kind.allCases.filter { samples[$0] != nil }
        if kinds.contains(.number) { kinds.removeAll { $0 == .integer } }
        return kinds
    }

    /// A small closed set of strings: two to ``maximumDistinctStrings`` values, with one
    /// sample that holds at least ``minimumStringsForEnum`` of them, each value about twice
    /// (the elements of an array sharing a few values). The same document fetched again
    /// repeats its values and proves nothing; a column of unique names is no closed set.
    var enumeration: [String]? {
        guard !openStrings, strings.count >= 2,
              stringsPerSample.values.contains(where: { $0.count >= Self.minimumStringsForEnum && $0.count >= 2 * $0.distinct.count }) else { return nil }
        return strings.keys.sorted()
    }

    /// Whether its TypeScript type is a union (an array of it needs parentheses).
    var isUnion: Bool { kinds.count > 1 || (kinds == [.string] && (enumeration?.count ?? 0) > 1) }

    /// Members present in every object here.
    var required: [String] { members.filter { $0.present == objects }.map(\.name) }

    // MARK: Notes

    /// `samples 1–3, 5` (1-based), or `sample 2`.
    static func describe(_ samples: Set<Int>) -> String {
        let sorted = samples.sorted()
        var ranges: [String] = []
        var start = sorted.first ?? 0, previous = start
        for value in sorted.dropFirst() + [Int.max] {
            if value == previous + 1 { previous = value; continue }
            ranges.append(start == previous ? "\(start + 1)" : "\(start + 1)–\(previous + 1)")
            start = value
            previous = value
        }
        return (sorted.count == 1 ? "sample " : "samples ") + ranges.joined(separator: ", ")
    }

    /// What the samples disagreed on here: the kinds, each with its samples.
    /// Integers and other numbers are both numbers, and a null only makes a value nullable:
    /// neither is a disagreement.
    var kindNote: String? {
        var bySamples = samples
        bySamples[.null] = nil
        if let integers = bySamples.removeValue(forKey: .integer) { bySamples[.number, default: []].formUnion(integers) }
        let kinds = Kind.allCases.filter { bySamples[$0] != nil }
        guard kinds.count > 1 else { return nil }
        return kinds.map { "\($0.rawValue) in \(Self.describe(bySamples[$0]!))" }.joined(separator: "; ")
    }

    /// Why a member is optional.
    func memberNote(_ member: (name: String, shape: Shape, present: Int, perSample: [Int: Int])) -> String? {
        guard member.present < objects else { return nil }
        let absent = Set(objectsPerSample.filter { sample, count in member.perSample[sample, default: 0] < count }.keys)
        return "in \(member.present) of \(objects) objects" + (absent.isEmpty ? "" : ": absent in \(Self.describe(absent))")
    }

    // MARK: JSON Schema

    /// A JSON Schema (2020-12) for the samples' answers.
    public func jsonSchema(title: String, description: String? = nil) -> JSONValue {
        var root: [(String, JSONValue)] = [("$schema", "https://json-schema.org/draft/2020-12/schema"), ("title", .string(title))]
        if let description { root.append(("description", .string(description))) }
        root += schemaMembers()
        return .object(JSONObject(root))
    }

    private func schemaMembers() -> [(String, JSONValue)] {
        var result: [(String, JSONValue)] = []
        if let note = kindNote { result.append(("$comment", .string(note))) }
        let kinds = self.kinds
        if kinds.isEmpty { return result }   // nothing seen (an empty array's items): any value
        let structured = kinds.filter { $0 == .array || $0 == .object }
        if structured.count > 1 || (structured.count == 1 && kinds.count > 2) || (structured.count == 1 && kinds.count == 2 && !kinds.contains(.null)) {
            // A union with a structured branch: one schema per kind.
            result.append(("anyOf", .array(kinds.map { .object(JSONObject(branch($0))) })))
            return result
        }
        result.append(("type", kinds.count == 1 ? .string(typeName(kinds[0])) : .array(kinds.map { .string(typeName($0)) })))
        for kind in kinds where kind != .null { result += details(kind) }
        return result
    }

    private func branch(_ kind: Kind) -> [(String, JSONValue)] {
        [("type", .string(typeName(kind)))] + details(kind)
    }

    private func typeName(_ kind: Kind) -> String { kind.rawValue }

    private func details(_ kind: Kind) -> [(String, JSONValue)] {
        switch kind {
        case .string:
            return enumeration.map { [("enum", .array($0.map { .string($0) }))] } ?? []
        case .array:
            return [("items", .object(JSONObject(items?.schemaMembers() ?? [])))]
        case .object:
            var properties: [(String, JSONValue)] = []
            for member in members {
                var schema = member.shape.schemaMembers()
                if let note = memberNote(member) { schema.insert(("description", .string(note)), at: 0) }
                properties.append((member.name, .object(JSONObject(schema))))
            }
            return [("properties", .object(JSONObject(properties))), ("required", .array(required.map { .string($0) }))]
        default:
            return []
        }
    }

    // MARK: TypeScript

    /// A TypeScript type for the samples' answers; nested objects are written inline.
    public func typeScript(indent: String = "") -> String {
        let kinds = self.kinds
        if kinds.isEmpty { return "unknown" }
        let parts = kinds.map { kind -> String in
            switch kind {
            case .null: return "null"
            case .boolean: return "boolean"
            case .integer, .number: return "number"
            case .string: return enumeration.map { $0.map(Self.quoted).joined(separator: " | ") } ?? "string"
            case .array:
                let element = items?.typeScript(indent: indent) ?? "unknown"
                return items?.isUnion == true ? "(\(element))[]" : "\(element)[]"
            case .object: return objectType(indent: indent)
            }
        }
        return parts.joined(separator: " | ")
    }

    private func objectType(indent: String) -> String {
        guard !members.isEmpty else { return "Record<string, unknown>" }
        let inner = indent + "    "
        var lines = ["{"]
        for member in members {
            var notes: [String] = []
            if let note = memberNote(member) { notes.append(note) }
            if let note = member.shape.kindNote { notes.append(note) }
            if !notes.isEmpty { lines.append("\(inner)/** \(notes.joined(separator: "; ")) */") }
            let optional = member.present < objects ? "?" : ""
            lines.append("\(inner)\(Self.propertyName(member.name))\(optional): \(member.shape.typeScript(indent: inner));")
        }
        lines.append("\(indent)}")
        return lines.joined(separator: "\n")
    }

    /// A single-quoted TypeScript string: JSON's escapes, and `'` escaped.
    static func quoted(_ text: String) -> String {
        var output: [UInt8] = []
        JSONValue.writeString(text, to: &output)
        let inner = String(decoding: output.dropFirst().dropLast(), as: UTF8.self)
        return "'" + inner.replacing("'", with: "\\'") + "'"
    }

    static func propertyName(_ name: String) -> String {
        let isIdentifier = !name.isEmpty && !(name.first!.isNumber) && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "$") }
        return isIdentifier ? name : quoted(name)
    }
}

/// A JSON value. Numbers keep their original text, so an upstream `1.10` is pushed as `1.10`
/// and `12345678901234567890` survives; objects keep their member order.
///
/// Equality is JSON's: objects compare as unordered maps; numbers compare by their text (so a
/// change from `1.0` to `1` is a change the proxy pushes), except in a patch's `test`
/// operation, which compares numbers by value (``JSONValue/isNumericallyEqual(to:)``).
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case number(JSONNumber)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    /// A short name of the value's type ("object", "array", ...), for messages.
    public var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .number: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }

    /// JSON equality that compares numbers by value: `1`, `1.0` and `1e0` are equal.
    public func isNumericallyEqual(to other: JSONValue) -> Bool {
        switch (self, other) {
        case (.number(let a), .number(let b)): return a.text == b.text || a.doubleValue == b.doubleValue
        case (.array(let a), .array(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.isNumericallyEqual(to: $1) }
        case (.object(let a), .object(let b)):
            return a.count == b.count && a.allSatisfy { key, value in
                b[key].map { value.isNumericallyEqual(to: $0) } ?? false
            }
        default: return self == other
        }
    }
}

/// A JSON number as written. Its text is valid RFC 8259 number syntax.
public struct JSONNumber: Sendable, Hashable, CustomStringConvertible {
    /// The number's text.
    public let text: String
    /// Wraps text that is already valid number syntax (the parser's output, or a literal).
    public init(unchecked text: String) { self.text = text }
    /// An integer.
    public init(_ value: Int) { self.text = String(value) }
    /// The value as a Double (rounded, or ±infinity when out of range).
    public var doubleValue: Double { Double(text) ?? .nan }
    /// The value as an Int, when it is an integer in range.
    public var intValue: Int? { Int(text) }
    /// The text.
    public var description: String { text }
}

/// A JSON object: members in order, unique names (a duplicate name in parsed input resolves to
/// the last value, in the position of the first), with a hash index once it is large.
public struct JSONObject: Sendable, Sequence {
    /// Members in order.
    public private(set) var members: [(key: String, value: JSONValue)] = []
    private var index: [String: Int]?
    private static let indexThreshold = 12

    /// An empty object.
    public init() {}

    /// An object from members in order; a later duplicate replaces the earlier value.
    public init(_ members: [(String, JSONValue)]) {
        self.members.reserveCapacity(members.count)
        for (key, value) in members { self[key] = value }
    }

    /// The number of members.
    public var count: Int { members.count }
    /// Whether there are no members.
    public var isEmpty: Bool { members.isEmpty }
    /// The member names in order.
    public var keys: [String] { members.map(\.key) }

    /// The position of a member.
    public func position(of key: String) -> Int? {
        if let index { return index[key] }
        return members.firstIndex { $0.key == key }
    }

    /// A member's value; assigning nil removes it, assigning a new name appends it.
    public subscript(key: String) -> JSONValue? {
        get { position(of: key).map { members[$0].value } }
        set {
            if let position = position(of: key) {
                if let newValue {
                    members[position].value = newValue
                } else {
                    members.remove(at: position)
                    if index != nil { rebuildIndex() }
                }
            } else if let newValue {
                members.append((key, newValue))
                if index != nil {
                    index![key] = members.count - 1
                } else if members.count > Self.indexThreshold {
                    rebuildIndex()
                }
            }
        }
    }

    private mutating func rebuildIndex() {
        guard members.count > Self.indexThreshold else { index = nil; return }
        var built = [String: Int](minimumCapacity: members.count)
        for (position, member) in members.enumerated() { built[member.key] = position }
        index = built
    }

    /// Iterates members in order.
    public func makeIterator() -> IndexingIterator<[(key: String, value: JSONValue)]> { members.makeIterator() }
}

extension JSONObject: Hashable {
    /// Objects are equal when they have the same names with equal values, in any order.
    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        guard lhs.count == rhs.count else { return false }
        for (key, value) in lhs.members {
            guard let other = rhs[key], other == value else { return false }
        }
        return true
    }

    /// Order-independent: combines each member's hash commutatively.
    public func hash(into hasher: inout Hasher) {
        Self.hashMembers(members, into: &hasher)
    }

    /// Members' hash, whatever their order: each member hashed alone, the hashes summed.
    static func hashMembers<Value: Hashable>(_ members: [(key: String, value: Value)], into hasher: inout Hasher) {
        var combined = 0
        for (key, value) in members {
            var memberHasher = Hasher()
            memberHasher.combine(key)
            memberHasher.combine(value)
            combined = combined &+ memberHasher.finalize()
        }
        hasher.combine(members.count)
        hasher.combine(combined)
    }
}

extension JSONValue: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByStringLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral {
    public init(nilLiteral: ()) { self = .null }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int) { self = .number(JSONNumber(value)) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) { self = .object(JSONObject(elements)) }
}

/// HTTP header fields in arrival order. Repeated fields are kept; lookups ignore case.
public struct HTTPHeaders: Sendable, Sequence, ExpressibleByDictionaryLiteral {
    /// The fields, as received (names keep their original case).
    public private(set) var fields: [(name: String, value: String)] = []

    /// No fields.
    public init() {}

    /// Fields from a literal, in order.
    public init(dictionaryLiteral elements: (String, String)...) {
        fields = elements.map { ($0.0, $0.1) }
    }

    /// Appends a field.
    public mutating func add(name: String, value: String) { fields.append((name, value)) }

    /// Removes every field called `name`.
    public mutating func remove(name: String) {
        fields.removeAll { equalIgnoringASCIICase($0.name, name) }
    }

    /// The first value of `name`, compared without regard to case.
    public subscript(name: String) -> String? {
        fields.first { equalIgnoringASCIICase($0.name, name) }?.value
    }

    /// How many fields are called `name` (no array is made).
    public func count(of name: String) -> Int {
        var count = 0
        for field in fields where equalIgnoringASCIICase(field.name, name) { count += 1 }
        return count
    }

    /// Every value of `name`, in order.
    public func values(_ name: String) -> [String] {
        fields.filter { equalIgnoringASCIICase($0.name, name) }.map(\.value)
    }

    /// Every comma-separated element of every `name` field, trimmed, empty ones dropped.
    public func tokens(_ name: String) -> [String] {
        values(name).flatMap { $0.split(separator: ",") }.map { $0.trimmingOWS }.filter { !$0.isEmpty }
    }

    /// The credential of `Authorization: Bearer TOKEN` (RFC 6750: the scheme in any case,
    /// one or more spaces), or nil.
    public var bearerToken: String? {
        guard let value = self["Authorization"], value.count > 7, value.prefix(7).lowercased() == "bearer " else { return nil }
        let token = value.dropFirst(7).drop { $0 == " " }
        return token.isEmpty ? nil : String(token)
    }

    /// The number of fields.
    public var count: Int { fields.count }

    /// Iterates fields in order.
    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> { fields.makeIterator() }
}

/// ASCII case-insensitive equality without allocating (header names are ASCII tokens).
@inline(__always)
func equalIgnoringASCIICase(_ a: String, _ b: String) -> Bool {
    let x = a.utf8, y = b.utf8
    guard x.count == y.count else { return false }
    for (p, q) in zip(x, y) where p != q {
        guard p | 0x20 == q | 0x20, (p | 0x20) >= 0x61, (p | 0x20) <= 0x7A else { return false }
    }
    return true
}

extension StringProtocol {
    /// ASCII-only lowercasing (header names are ASCII tokens).
    var lowercasedASCII: String {
        String(decoding: utf8.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }, as: UTF8.self)
    }

    /// Trims spaces and tabs (HTTP's optional whitespace) at both ends.
    public var trimmingOWS: String {
        var scalars = Substring(self).unicodeScalars[...]
        while let first = scalars.first, first == " " || first == "\t" { scalars.removeFirst() }
        while let last = scalars.last, last == " " || last == "\t" { scalars.removeLast() }
        return String(scalars)
    }
}

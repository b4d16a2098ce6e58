#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A parsed JSON document kept as its bytes and a tape of its tokens: validated once, with no
/// strings, numbers, arrays or dictionaries built until someone asks (``value``). The hub keeps
/// each topic's current document this way and diffs tapes: a subtree whose bytes did not change
/// is skipped with one comparison of bytes, and only what changed is ever decoded.
///
/// The tape costs 8 bytes per token (2 bytes per byte of `bench json`'s stock table, whose
/// tokens are short) and shares the body's bytes.
public struct JSONDocument: Sendable {
    final class Storage: Sendable {
        let bytes: [UInt8]
        let tape: [UInt64]
        /// ``value``, once built: a merge-patch endpoint needs the tree of each document twice
        /// (as the new one, then as the old one at the next change), and a digest once more.
        let builtValue = Mutex<JSONValue?>(nil)
        init(bytes: [UInt8], tape: [UInt64]) {
            self.bytes = bytes
            self.tape = tape
        }
    }

    let storage: Storage

    /// Parses and validates `bytes` (``JSONParser``'s rules and errors).
    ///
    /// - Throws: ``JSONParseError`` with the byte offset, line and column.
    public init(parsing bytes: [UInt8], limits: JSONParseLimits = .init()) throws(JSONParseError) {
        let result = bytes.withUnsafeBytes { buffer in
            Result { () throws(JSONParseError) -> [UInt64] in try JSONParser.tape(buffer, limits: limits) }
        }
        var tape = try result.get()
        if tape.capacity > tape.count + tape.count / 4 { tape = Array(tape) }   // give back the growth slack
        storage = Storage(bytes: bytes, tape: tape)
    }

    /// The document's bytes.
    public var bytes: [UInt8] { storage.bytes }

    /// Bytes the tape occupies beside the document's own.
    public var tapeBytes: Int { storage.tape.capacity * MemoryLayout<UInt64>.stride }

    /// The document as a value, built on first use and kept with the document.
    public var value: JSONValue {
        if let built = storage.builtValue.withLock({ $0 }) { return built }
        let built = withRoot { $0.value }
        storage.builtValue.withLock { $0 = built }
        return built
    }

    /// Calls `body` with the root node; nodes are valid only inside the call.
    func withRoot<Result>(_ body: (JSONDocumentNode) -> Result) -> Result {
        storage.bytes.withUnsafeBytes { bytes in
            storage.tape.withUnsafeBufferPointer { tape in body(JSONDocumentNode(bytes: bytes, tape: tape, index: 0)) }
        }
    }
}

/// A value inside a ``JSONDocument``: its tape index. Equality is JSON's, as for
/// ``JSONValue``, except that strings are equal when their code points are (RFC 6902's
/// definition), not when they are canonically equivalent.
///
/// A node is pointers into its document's bytes and tape, valid only inside
/// ``JSONDocument/withRoot(_:)``: no reference counting as a diff walks thousands of them.
struct JSONDocumentNode {
    let bytes: UnsafeRawBufferPointer
    let tape: UnsafeBufferPointer<UInt64>
    let index: Int

    private func node(_ index: Int) -> JSONDocumentNode { JSONDocumentNode(bytes: bytes, tape: tape, index: index) }

    var entry: UInt64 { tape[index] }
    var tag: JSONTape.Tag { JSONTape.tag(entry) }

    /// The bytes that spell the value (for a string, its raw content between the quotes).
    func withRawBytes<Result>(_ body: (UnsafeRawBufferPointer) -> Result) -> Result {
        let entry = self.entry
        let range: Range<Int>
        switch JSONTape.tag(entry) {
        case .number: range = JSONTape.a(entry)..<JSONTape.a(entry) + JSONTape.b(entry)
        case .string: range = JSONTape.a(entry)..<JSONTape.a(entry) + JSONTape.stringLength(entry)
        case .arrayStart, .objectStart: range = JSONTape.a(entry)..<JSONTape.a(tape[JSONTape.b(entry)])
        default: range = JSONTape.a(entry)..<JSONTape.a(entry)
        }
        return body(UnsafeRawBufferPointer(rebasing: bytes[range]))
    }

    /// Whether both spell the same bytes (then they are equal; the converse need not hold).
    func hasSameBytes(as other: JSONDocumentNode) -> Bool {
        if tape.baseAddress == other.tape.baseAddress && index == other.index { return true }
        guard tag == other.tag else { return false }
        return withRawBytes { mine in
            other.withRawBytes { theirs in
                mine.count == theirs.count && (mine.count == 0 || memcmp(mine.baseAddress!, theirs.baseAddress!, mine.count) == 0)
            }
        }
    }

    /// A string's UTF-8, escapes decoded.
    func decodedString() -> [UInt8] {
        withRawBytes { raw in
            guard JSONTape.isEscaped(entry) else { return Array(raw) }
            var decoded: [UInt8] = []
            decoded.reserveCapacity(raw.count)
            JSONTapeReader.unescape(raw, into: &decoded)
            return decoded
        }
    }

    /// A string's text.
    func stringValue() -> String { String(decoding: decodedString(), as: UTF8.self) }

    /// Whether this string node (a key) is `name`, without building a String.
    func isString(_ name: String) -> Bool {
        var name = name
        let entry = self.entry
        return name.withUTF8 { wanted in
            guard JSONTape.isEscaped(entry) else {
                guard JSONTape.stringLength(entry) == wanted.count else { return false }
                return wanted.isEmpty || memcmp(bytes.baseAddress! + JSONTape.a(entry), wanted.baseAddress!, wanted.count) == 0
            }
            return decodedString().elementsEqual(wanted)
        }
    }

    /// An array's elements.
    func elements() -> [JSONDocumentNode] {
        let end = JSONTape.b(tape[index])
        var result: [JSONDocumentNode] = []
        result.reserveCapacity(JSONTape.b(tape[end]))
        var cursor = index + 1
        while cursor < end {
            result.append(node(cursor))
            cursor = JSONTapeReader.next(after: cursor, in: tape)
        }
        return result
    }

    /// An object's members in order, each name once: a duplicate's value replaces the earlier
    /// one in the earlier one's place (as ``JSONParser`` resolves them).
    func members() -> [(key: String, value: JSONDocumentNode)] {
        let end = JSONTape.b(tape[index])
        var result: [(key: String, value: JSONDocumentNode)] = []
        result.reserveCapacity(JSONTape.b(tape[end]))
        var positions: [String: Int]?
        var cursor = index + 1
        while cursor < end {
            let key = node(cursor).stringValue()
            let value = node(cursor + 1)
            if result.count == 16 && positions == nil {
                positions = Dictionary(result.enumerated().map { ($0.element.key, $0.offset) }, uniquingKeysWith: { first, _ in first })
            }
            if let existing = positions.map({ $0[key] }) ?? result.firstIndex(where: { $0.key == key }) {
                result[existing].value = value
            } else {
                positions?[key] = result.count
                result.append((key, value))
            }
            cursor = JSONTapeReader.next(after: cursor + 1, in: tape)
        }
        return result
    }

    /// The value of the last member called `name`.
    func member(_ name: String) -> JSONDocumentNode? {
        let end = JSONTape.b(tape[index])
        var found: JSONDocumentNode?
        var cursor = index + 1
        while cursor < end {
            if node(cursor).isString(name) {
                found = node(cursor + 1)
            }
            cursor = JSONTapeReader.next(after: cursor + 1, in: tape)
        }
        return found
    }

    /// The value, built now.
    var value: JSONValue {
        var reader = JSONTapeReader(bytes: bytes, tape: tape)
        return reader.value(at: index)
    }
}

extension JSONDocumentNode: Hashable {
    static func == (lhs: JSONDocumentNode, rhs: JSONDocumentNode) -> Bool {
        if lhs.hasSameBytes(as: rhs) { return true }
        guard lhs.tag == rhs.tag else { return false }
        switch lhs.tag {
        case .null, .false, .true: return true
        case .number: return false
        case .string:
            guard JSONTape.isEscaped(lhs.entry) || JSONTape.isEscaped(rhs.entry) else { return false }
            return lhs.decodedString() == rhs.decodedString()
        case .arrayStart:
            let a = lhs.elements(), b = rhs.elements()
            return a.count == b.count && zip(a, b).allSatisfy { $0 == $1 }
        case .objectStart:
            let a = lhs.members(), b = rhs.members()
            guard a.count == b.count else { return false }
            let lookup = b.count > 16 ? Dictionary(b.map { ($0.key, $0.value) }, uniquingKeysWith: { $1 }) : nil
            return a.allSatisfy { key, value in
                guard let other = lookup.map({ $0[key] }) ?? b.first(where: { $0.key == key })?.value else { return false }
                return value == other
            }
        case .arrayEnd, .objectEnd: return false
        }
    }

    /// Consistent with `==`: decoded strings, member order ignored.
    func hash(into hasher: inout Hasher) {
        hasher.combine(tag.rawValue)
        switch tag {
        case .number: withRawBytes { hasher.combine(bytes: $0) }
        case .string:
            if JSONTape.isEscaped(entry) {
                decodedString().withUnsafeBytes { hasher.combine(bytes: $0) }
            } else {
                withRawBytes { hasher.combine(bytes: $0) }
            }
        case .arrayStart:
            for element in elements() { element.hash(into: &hasher) }
        case .objectStart:
            JSONObject.hashMembers(members(), into: &hasher)
        default: break
        }
    }
}


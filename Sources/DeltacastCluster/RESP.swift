/// A RESP2 value (the Redis serialization protocol, https://redis.io/docs/latest/develop/reference/protocol-spec/).
public enum RESPValue: Equatable, Sendable {
    /// `+OK`
    case simple(String)
    /// `-ERR message`: Redis refused the command (not a protocol failure).
    case error(String)
    /// `:42`
    case integer(Int64)
    /// `$N` bytes, or `$-1` (nil).
    case bulk([UInt8]?)
    /// `*N` values, or `*-1` (nil).
    case array([RESPValue]?)

    /// The bulk or simple string's text.
    public var text: String? {
        switch self {
        case .simple(let text): text
        case .bulk(let bytes?): String(decoding: bytes, as: UTF8.self)
        default: nil
        }
    }

    /// An integer reply, or a bulk or simple string holding a decimal integer.
    public var integer: Int64? {
        switch self {
        case .integer(let value): value
        default: text.flatMap { Int64($0) }
        }
    }

    /// The elements of an array reply (nil for anything else, and for a nil array).
    public var elements: [RESPValue]? { if case .array(let values?) = self { values } else { nil } }

    /// Whether this is the nil bulk string or the nil array.
    public var isNil: Bool {
        switch self {
        case .bulk(nil), .array(nil): true
        default: false
        }
    }
}

/// Encodes commands: every command is an array of bulk strings (what Redis expects from
/// clients).
public enum RESPEncoder {
    public static func command(_ arguments: [String]) -> [UInt8] {
        command(arguments.map { Array($0.utf8) })
    }

    public static func command(_ arguments: [[UInt8]]) -> [UInt8] {
        var out = Array("*\(arguments.count)\r\n".utf8)
        for argument in arguments {
            out += Array("$\(argument.count)\r\n".utf8)
            out += argument
            out += [13, 10]
        }
        return out
    }

    /// Any value, as Redis itself would write it (the tests' scripted server uses this).
    public static func encode(_ value: RESPValue) -> [UInt8] {
        switch value {
        case .simple(let text): return Array("+\(text)\r\n".utf8)
        case .error(let text): return Array("-\(text)\r\n".utf8)
        case .integer(let number): return Array(":\(number)\r\n".utf8)
        case .bulk(nil): return Array("$-1\r\n".utf8)
        case .bulk(let bytes?): return Array("$\(bytes.count)\r\n".utf8) + bytes + [13, 10]
        case .array(nil): return Array("*-1\r\n".utf8)
        case .array(let values?): return Array("*\(values.count)\r\n".utf8) + values.flatMap(encode)
        }
    }
}

/// A reply stream that is not RESP2, or that passes a limit. The connection closes on it.
public struct RESPError: Error, Equatable, Sendable, CustomStringConvertible {
    public let message: String
    public var description: String { message }
    public init(_ message: String) { self.message = message }
}

/// An incremental RESP2 decoder: bytes in, in any split, values out (sans-I/O, like the other
/// codecs). Bounded: a bulk string past `maximumBulk`, an array past `maximumElements`, nesting
/// past `maximumDepth` or a line past `maximumLine` is an error, never an allocation.
public struct RESPDecoder: Sendable {
    public struct Limits: Sendable {
        public var maximumBulk: Int
        public var maximumElements: Int
        public var maximumDepth: Int
        public var maximumLine: Int
        public init(maximumBulk: Int = 512 << 20, maximumElements: Int = 1 << 20, maximumDepth: Int = 8, maximumLine: Int = 64 << 10) {
            self.maximumBulk = maximumBulk
            self.maximumElements = maximumElements
            self.maximumDepth = maximumDepth
            self.maximumLine = maximumLine
        }
    }

    public let limits: Limits
    private var buffer: [UInt8] = []
    private var start = 0
    private var failed: RESPError?

    public init(limits: Limits = Limits()) { self.limits = limits }

    /// Bytes held and not yet decoded.
    public var bufferedByteCount: Int { buffer.count - start }

    public mutating func append(_ bytes: some Collection<UInt8>) {
        if start > 0 && start == buffer.count { buffer.removeAll(keepingCapacity: true); start = 0 }
        buffer += bytes
    }

    /// The next complete value, or nil until more bytes arrive. After an error every call
    /// throws it again.
    public mutating func next() throws(RESPError) -> RESPValue? {
        if let failed { throw failed }
        var position = start
        do {
            guard let value = try parse(at: &position, depth: 0) else { return nil }
            start = position
            if start > 65536 && start * 2 > buffer.count { buffer.removeFirst(start); start = 0 }
            return value
        } catch {
            failed = error
            throw error
        }
    }

    /// A line's content (without CRLF) from `position`, or nil when it is not complete.
    private func line(at position: inout Int) throws(RESPError) -> ArraySlice<UInt8>? {
        var index = position
        while index + 1 < buffer.count {
            if buffer[index] == 13 {
                guard buffer[index + 1] == 10 else { throw RESPError("a CR not followed by LF") }
                let content = buffer[position..<index]
                position = index + 2
                return content
            }
            if index - position >= limits.maximumLine { throw RESPError("a line longer than \(limits.maximumLine) bytes") }
            index += 1
        }
        if buffer.count - position > limits.maximumLine { throw RESPError("a line longer than \(limits.maximumLine) bytes") }
        return nil
    }

    private static func integer(_ bytes: ArraySlice<UInt8>) throws(RESPError) -> Int64 {
        guard let value = Int64(String(decoding: bytes, as: UTF8.self)), !bytes.isEmpty, bytes.first != 0x2B else {
            throw RESPError("'\(String(decoding: bytes.prefix(32), as: UTF8.self))' is not an integer")
        }
        return value
    }

    private func parse(at position: inout Int, depth: Int) throws(RESPError) -> RESPValue? {
        guard position < buffer.count else { return nil }
        let type = buffer[position]
        var cursor = position + 1
        guard let header = try line(at: &cursor) else { return nil }
        switch type {
        case 0x2B:   // +
            position = cursor
            return .simple(String(decoding: header, as: UTF8.self))
        case 0x2D:   // -
            position = cursor
            return .error(String(decoding: header, as: UTF8.self))
        case 0x3A:   // :
            let value = try Self.integer(header)
            position = cursor
            return .integer(value)
        case 0x24:   // $
            let length = try Self.integer(header)
            if length == -1 { position = cursor; return .bulk(nil) }
            guard length >= 0 else { throw RESPError("a bulk length of \(length)") }
            guard length <= limits.maximumBulk else { throw RESPError("a bulk string of \(length) bytes (limit \(limits.maximumBulk))") }
            let end = cursor + Int(length)
            guard end + 2 <= buffer.count else { return nil }
            guard buffer[end] == 13, buffer[end + 1] == 10 else { throw RESPError("a bulk string not ended by CRLF") }
            position = end + 2
            return .bulk(Array(buffer[cursor..<end]))
        case 0x2A:   // *
            let count = try Self.integer(header)
            if count == -1 { position = cursor; return .array(nil) }
            guard count >= 0 else { throw RESPError("an array length of \(count)") }
            guard count <= limits.maximumElements else { throw RESPError("an array of \(count) elements (limit \(limits.maximumElements))") }
            guard depth < limits.maximumDepth else { throw RESPError("arrays nested deeper than \(limits.maximumDepth)") }
            var values: [RESPValue] = []
            values.reserveCapacity(min(Int(count), 1024))
            for _ in 0..<count {
                guard let value = try parse(at: &cursor, depth: depth + 1) else { return nil }
                values.append(value)
            }
            position = cursor
            return .array(values)
        default:
            throw RESPError("unknown type byte 0x\(String(type, radix: 16)) (RESP3 or not Redis?)")
        }
    }
}

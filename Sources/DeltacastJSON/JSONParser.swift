/// A JSON syntax error, with where it is and what was expected.
public struct JSONParseError: Error, Sendable, Hashable, CustomStringConvertible {
    /// 0-based byte offset of the problem.
    public var offset: Int
    /// 1-based line.
    public var line: Int
    /// 1-based column, in bytes.
    public var column: Int
    /// What is wrong and what was expected.
    public var message: String

    /// `line L, column C (byte B): message`.
    public var description: String { "line \(line), column \(column) (byte \(offset)): \(message)" }
}

/// Limits of the JSON parser, each checked as soon as it can be.
public struct JSONParseLimits: Sendable {
    /// Deepest nesting of arrays and objects. Default 512: far beyond real documents, far
    /// below what would exhaust a thread's stack.
    public var maximumDepth = 512
    /// Largest document in bytes. Default 64 MiB.
    public var maximumBytes = 64 * 1024 * 1024
    /// The defaults.
    public init(maximumDepth: Int = 512, maximumBytes: Int = 64 * 1024 * 1024) {
        self.maximumDepth = maximumDepth
        self.maximumBytes = maximumBytes
    }
}

/// A byte-level RFC 8259 parser. Strict: no comments, no trailing commas, no leading zeros,
/// no unescaped control characters, no lone surrogates in `\u` escapes, strings must be valid
/// UTF-8. Whitespace (space, tab, LF, CR) may surround the value. A duplicate member name
/// resolves to the last value.
///
/// It validates the whole document into a tape of tokens (``JSONDocument``), then builds the
/// value from the tape. Strings are scanned eight bytes at a time for their end.
public enum JSONParser {
    /// Parses a whole document.
    ///
    /// - Throws: ``JSONParseError`` with the byte offset, line and column.
    public static func parse(_ bytes: [UInt8], limits: JSONParseLimits = .init()) throws(JSONParseError) -> JSONValue {
        let result = bytes.withUnsafeBytes { buffer in
            Result { () throws(JSONParseError) -> JSONValue in try parse(buffer, limits: limits) }
        }
        return try result.get()
    }

    /// Parses a whole document from a string's UTF-8.
    public static func parse(_ text: String, limits: JSONParseLimits = .init()) throws(JSONParseError) -> JSONValue {
        try parse(Array(text.utf8), limits: limits)
    }

    /// Parses a whole document from raw bytes.
    public static func parse(_ buffer: UnsafeRawBufferPointer, limits: JSONParseLimits = .init()) throws(JSONParseError) -> JSONValue {
        let tape = try tape(buffer, limits: limits)
        return tape.withUnsafeBufferPointer { tape in
            var reader = JSONTapeReader(bytes: buffer, tape: tape)
            return reader.value(at: 0)
        }
    }

    /// Validates `buffer` into its tape.
    static func tape(_ buffer: UnsafeRawBufferPointer, limits: JSONParseLimits) throws(JSONParseError) -> [UInt64] {
        var builder = JSONTapeBuilder(bytes: buffer, limits: limits)
        let limit = min(limits.maximumBytes, JSONTape.maximumBytes)
        if buffer.count > limit {
            throw builder.error("document is \(buffer.count) bytes, over the limit of \(limit)", at: limit)
        }
        try builder.run()
        return builder.tape
    }
}

/// Builds a tape: one pass over the bytes, an explicit stack of open containers (so depth costs
/// no thread stack), every token validated as it is read.
struct JSONTapeBuilder: ~Copyable {
    private let bytes: UnsafeRawBufferPointer
    private let count: Int
    private var position = 0
    private let limits: JSONParseLimits
    private(set) var tape: [UInt64] = []
    /// Open containers: tape index of the start entry, and elements so far.
    private var open: [(start: Int, elements: Int)] = []

    init(bytes: UnsafeRawBufferPointer, limits: JSONParseLimits) {
        self.bytes = bytes
        self.count = bytes.count
        self.limits = limits
        tape.reserveCapacity(bytes.count / 4 + 4)   // a token per 4 bytes is typical of API documents
    }

    func error(_ message: String, at offset: Int? = nil) -> JSONParseError {
        let offset = min(offset ?? position, bytes.count)
        var line = 1
        var lineStart = 0
        for index in 0..<offset where bytes[index] == 0x0A {
            line += 1
            lineStart = index + 1
        }
        return JSONParseError(offset: offset, line: line, column: offset - lineStart + 1, message: message)
    }

    private func describeCurrent() -> String {
        guard position < count else { return "the end of the input" }
        let byte = bytes[position]
        if byte >= 0x21 && byte < 0x7F { return "'\(Character(Unicode.Scalar(byte)))'" }
        return "byte 0x\(String(byte, radix: 16, uppercase: true))"
    }

    @inline(__always)
    private mutating func skipWhitespace() {
        while position < count {
            let byte = bytes[position]
            guard byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 else { return }
            position += 1
        }
    }

    mutating func run() throws(JSONParseError) {
        var needValue = true
        while true {
            if needValue {
                skipWhitespace()
                guard position < count else { throw error("expected a value, found the end of the input") }
                let byte = bytes[position]
                switch byte {
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    let isObject = byte == UInt8(ascii: "{")
                    if open.count >= limits.maximumDepth { throw error("nesting deeper than \(limits.maximumDepth) levels") }
                    open.append((tape.count, 0))
                    tape.append(JSONTape.entry(isObject ? .objectStart : .arrayStart, position, 0))
                    position += 1
                    skipWhitespace()
                    if position < count && bytes[position] == (isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")) {
                        position += 1
                        close(isObject: isObject)
                    } else {
                        if isObject { try memberName() }
                        continue
                    }
                case UInt8(ascii: "\""): try string()
                case UInt8(ascii: "t"): try literal("true", .true)
                case UInt8(ascii: "f"): try literal("false", .false)
                case UInt8(ascii: "n"): try literal("null", .null)
                case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try number()
                default: throw error("expected a value (object, array, string, number, true, false or null), found \(describeCurrent())")
                }
            }
            // A value is complete: what follows it depends on the container it is in.
            guard !open.isEmpty else { break }
            open[open.count - 1].elements += 1
            let isObject = JSONTape.tag(tape[open[open.count - 1].start]) == .objectStart
            skipWhitespace()
            guard position < count else {
                throw error(isObject ? "expected ',' or '}' after an object member, found the end of the input"
                                     : "expected ',' or ']' after an array element, found the end of the input")
            }
            let byte = bytes[position]
            if byte == UInt8(ascii: ",") {
                position += 1
                if isObject {
                    skipWhitespace()
                    try memberName()
                }
                needValue = true
            } else if byte == (isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")) {
                position += 1
                close(isObject: isObject)
                needValue = false
            } else {
                throw error(isObject ? "expected ',' or '}' after an object member, found \(describeCurrent())"
                                     : "expected ',' or ']' after an array element, found \(describeCurrent())")
            }
        }
        skipWhitespace()
        if position < count { throw error("unexpected data after the JSON value") }
    }

    /// Ends the innermost container at `position` (just past its closing bracket).
    private mutating func close(isObject: Bool) {
        let (start, elements) = open.removeLast()
        tape[start] |= UInt64(tape.count)
        tape.append(JSONTape.entry(isObject ? .objectEnd : .arrayEnd, position, UInt64(elements)))
    }

    /// A member name and its colon; leaves `position` before the value.
    private mutating func memberName() throws(JSONParseError) {
        guard position < count, bytes[position] == UInt8(ascii: "\"") else {
            throw error("expected a member name in double quotes, found \(describeCurrent())")
        }
        try string()
        skipWhitespace()
        guard position < count, bytes[position] == UInt8(ascii: ":") else {
            throw error("expected ':' after the member name, found \(describeCurrent())")
        }
        position += 1
    }

    private mutating func literal(_ literal: StaticString, _ tag: JSONTape.Tag) throws(JSONParseError) {
        let start = position
        let length = literal.utf8CodeUnitCount
        guard position + length <= count else { throw error("expected '\(literal)'", at: start) }
        for offset in 0..<length where bytes[position + offset] != literal.utf8Start[offset] {
            throw error("expected '\(literal)'", at: start)
        }
        position += length
        tape.append(JSONTape.entry(tag, start, 0))
    }

    @inline(__always) private func isDigit(_ byte: UInt8) -> Bool { byte &- 0x30 < 10 }

    private mutating func number() throws(JSONParseError) {
        let start = position
        if bytes[position] == UInt8(ascii: "-") { position += 1 }
        guard position < count, isDigit(bytes[position]) else { throw error("expected a digit in number") }
        if bytes[position] == UInt8(ascii: "0") {
            position += 1
            if position < count && isDigit(bytes[position]) { throw error("leading zeros are not allowed in numbers", at: position - 1) }
        } else {
            while position < count && isDigit(bytes[position]) { position += 1 }
        }
        if position < count && bytes[position] == UInt8(ascii: ".") {
            position += 1
            guard position < count, isDigit(bytes[position]) else { throw error("expected a digit after the decimal point") }
            while position < count && isDigit(bytes[position]) { position += 1 }
        }
        if position < count && (bytes[position] == UInt8(ascii: "e") || bytes[position] == UInt8(ascii: "E")) {
            position += 1
            if position < count && (bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-")) { position += 1 }
            guard position < count, isDigit(bytes[position]) else { throw error("expected a digit in the exponent") }
            while position < count && isDigit(bytes[position]) { position += 1 }
        }
        tape.append(JSONTape.entry(.number, start, UInt64(position - start)))
    }

    /// A string at its opening quote: eight bytes at a time to the next byte that needs a look
    /// (a quote, a backslash, a control character or a non-ASCII byte), which it then checks.
    private mutating func string() throws(JSONParseError) {
        let openQuote = position
        position += 1
        let start = position
        var escaped = false
        let base = bytes.baseAddress!
        while true {
            while position + 8 <= count {
                let word = base.loadUnaligned(fromByteOffset: position, as: UInt64.self)
                let high: UInt64 = 0x8080_8080_8080_8080
                let ones: UInt64 = 0x0101_0101_0101_0101
                let quote = word ^ (ones &* 0x22), backslash = word ^ (ones &* 0x5C)
                let special = ((quote &- ones) & ~quote) | ((backslash &- ones) & ~backslash)
                    | ((word &- ones &* 0x20) & ~word) | word
                let mask = special & high
                if mask == 0 { position += 8; continue }
                position += (UInt64(littleEndian: mask).trailingZeroBitCount) / 8
                break
            }
            guard position < count else { throw error("unterminated string", at: openQuote) }
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") {
                position += 1
                tape.append(JSONTape.entry(.string, start, UInt64(position - 1 - start) | (escaped ? JSONTape.escapedFlag : 0)))
                return
            }
            if byte == UInt8(ascii: "\\") {
                escaped = true
                try escape(openQuote: openQuote)
            } else if byte < 0x20 {
                throw error("control character 0x\(String(byte, radix: 16, uppercase: true)) must be escaped in a string")
            } else if byte >= 0x80 {
                try utf8Sequence()
            } else {
                position += 1
            }
        }
    }

    /// One escape at the backslash, checked (surrogates must pair), not decoded.
    private mutating func escape(openQuote: Int) throws(JSONParseError) {
        position += 1
        guard position < count else { throw error("unterminated string", at: openQuote) }
        let escape = bytes[position]
        position += 1
        switch escape {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
             UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
            return
        case UInt8(ascii: "u"):
            let scalar = try hex4()
            if (0xD800..<0xDC00).contains(scalar) {
                guard position + 1 < count, bytes[position] == UInt8(ascii: "\\"), bytes[position + 1] == UInt8(ascii: "u") else {
                    throw error("lone high surrogate \\u\(String(scalar, radix: 16, uppercase: true)) in string", at: position - 6)
                }
                position += 2
                let low = try hex4()
                guard (0xDC00..<0xE000).contains(low) else {
                    throw error("high surrogate not followed by a low surrogate in string", at: position - 6)
                }
            } else if (0xDC00..<0xE000).contains(scalar) {
                throw error("lone low surrogate \\u\(String(scalar, radix: 16, uppercase: true)) in string", at: position - 6)
            }
        default:
            throw error("invalid escape '\\\(Character(Unicode.Scalar(escape)))' in string; expected one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX", at: position - 2)
        }
    }

    private mutating func hex4() throws(JSONParseError) -> UInt32 {
        guard position + 4 <= count, let value = JSONTapeReader.hex4(bytes, at: position) else {
            throw error("expected 4 hexadecimal digits after \\u")
        }
        position += 4
        return value
    }

    /// One UTF-8 sequence at a byte ≥ 0x80 (RFC 3629: no overlong forms, no surrogates,
    /// nothing past U+10FFFF); the error points at its first byte.
    private mutating func utf8Sequence() throws(JSONParseError) {
        guard let (continuations, low, high) = UTF8Validator.sequence(startingWith: bytes[position]),
              position + continuations < count else { throw error("string is not valid UTF-8") }
        let second = bytes[position + 1]
        guard second >= low && second <= high else { throw error("string is not valid UTF-8") }
        for offset in 2..<continuations + 1 where bytes[position + offset] & 0xC0 != 0x80 {
            throw error("string is not valid UTF-8")
        }
        position += continuations + 1
    }
}

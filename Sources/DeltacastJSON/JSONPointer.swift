/// An RFC 6901 JSON Pointer: `""` is the whole document, `/a/0/b~1c` is member `a`, element 0,
/// member `b/c` (`~1` is `/`, `~0` is `~`).
public struct JSONPointer: Sendable, Hashable, CustomStringConvertible {
    /// The unescaped reference tokens.
    public var tokens: [String]

    /// A pointer from unescaped tokens.
    public init(tokens: [String]) { self.tokens = tokens }

    /// Parses a pointer's text.
    /// - Throws: ``JSONPatchError`` when it does not start with `/` or has a `~` not followed by 0 or 1.
    public init(_ text: String) throws(JSONPatchError) {
        guard !text.isEmpty else { tokens = []; return }
        // Bytes, not Characters: a member name that starts with a combining mark makes "/" and
        // that mark one Character, and `hasPrefix("/")` false (FuzzPatch found it).
        guard text.utf8.first == UInt8(ascii: "/") else {
            throw JSONPatchError("invalid JSON Pointer '\(text)': must be empty or start with '/'")
        }
        var tokens: [String] = []
        for raw in text.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).dropFirst() {
            var token = [UInt8]()
            var index = raw.startIndex
            while index < raw.endIndex {
                let byte = raw[index]
                if byte == UInt8(ascii: "~") {
                    let next = raw.index(after: index)
                    guard next < raw.endIndex, raw[next] == UInt8(ascii: "0") || raw[next] == UInt8(ascii: "1") else {
                        throw JSONPatchError("invalid JSON Pointer '\(text)': '~' must be followed by 0 or 1")
                    }
                    token.append(raw[next] == UInt8(ascii: "0") ? UInt8(ascii: "~") : UInt8(ascii: "/"))
                    index = raw.index(after: next)
                } else {
                    token.append(byte)
                    index = raw.index(after: index)
                }
            }
            tokens.append(String(decoding: token, as: UTF8.self))
        }
        self.tokens = tokens
    }

    /// The pointer's text, with `~` and `/` escaped.
    public var description: String {
        var text = ""
        for token in tokens {
            text += "/"
            text += Self.escape(token)
        }
        return text
    }

    /// Escapes one token: `~` → `~0`, `/` → `~1`.
    /// By bytes: `"/"` followed by a combining mark is one Character, which a Character-level
    /// replacement would leave unescaped (FuzzPatch found it).
    public static func escape(_ token: String) -> String {
        guard token.utf8.contains(where: { $0 == UInt8(ascii: "~") || $0 == UInt8(ascii: "/") }) else { return token }
        var out: [UInt8] = []
        out.reserveCapacity(token.utf8.count + 4)
        for byte in token.utf8 {
            switch byte {
            case UInt8(ascii: "~"): out += [UInt8(ascii: "~"), UInt8(ascii: "0")]
            case UInt8(ascii: "/"): out += [UInt8(ascii: "~"), UInt8(ascii: "1")]
            default: out.append(byte)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The value this pointer refers to in `document`, or nil.
    public func resolve(in document: JSONValue) -> JSONValue? {
        var current = document
        for token in tokens {
            switch current {
            case .object(let object):
                guard let next = object[token] else { return nil }
                current = next
            case .array(let elements):
                guard let index = Self.arrayIndex(token), index < elements.count else { return nil }
                current = elements[index]
            default: return nil
            }
        }
        return current
    }

    /// An array index token: decimal digits without leading zeros.
    static func arrayIndex(_ token: String) -> Int? {
        guard !token.isEmpty, token.utf8.allSatisfy({ $0 &- 0x30 < 10 }),
              token == "0" || !token.hasPrefix("0") else { return nil }
        return Int(token)
    }
}

/// A pointer pattern as used by `array_keys` and `ignore`: like a pointer, where a `*` token
/// matches any member name or array index.
public struct JSONPointerPattern: Sendable, Hashable, CustomStringConvertible {
    /// Tokens; `nil` stands for `*`.
    public var tokens: [String?]

    /// Parses a pattern (`/groups/*/members`).
    public init(_ text: String) throws(JSONPatchError) {
        let pointer = try JSONPointer(text)
        tokens = pointer.tokens.map { $0 == "*" ? nil : $0 }
    }

    /// Whether `path` is exactly this pattern.
    public func matches(_ path: [String]) -> Bool {
        path.count == tokens.count && zip(tokens, path).allSatisfy { $0 == nil || $0 == $1 }
    }

    /// Whether this pattern matches `path` or one of its ancestors.
    public func covers(_ path: [String]) -> Bool {
        path.count >= tokens.count && zip(tokens, path).allSatisfy { $0 == nil || $0 == $1 }
    }

    /// The pattern's text.
    public var description: String {
        tokens.map { "/" + ($0.map(JSONPointer.escape) ?? "*") }.joined()
    }
}

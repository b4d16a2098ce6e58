public import DeltacastConfig

/// Maps a request path (and query) to a configured endpoint and a topic name: the concrete
/// path, plus the endpoint's allowed query parameters in a normalised order. Parameter
/// patterns are compiled once, when the matcher is built.
public struct EndpointMatcher: Sendable {
    /// A parameter's pattern, compiled once.
    /// `@unchecked Sendable`: a compiled Regex is immutable and only matched, never mutated.
    struct CompiledPattern: @unchecked Sendable {
        let text: String
        let regex: Regex<AnyRegexOutput>?
        /// The default `[^/]+`: a path piece (never holding a slash) matches it when it is not
        /// empty, so no regex runs (a regex match costs microseconds, and every poll asks).
        let isDefault: Bool
        init(text: String) {
            self.text = text
            self.isDefault = text == EndpointMatcher.defaultPattern
            self.regex = isDefault ? nil : try? Regex(text)
        }
        func matches(_ value: Substring) -> Bool {
            if isDefault { return !value.isEmpty }
            guard let regex else { return false }
            return (try? regex.wholeMatch(in: value)) != nil
        }
    }

    /// A parameter's pattern when `params` names none.
    static let defaultPattern = "[^/]+"

    private let endpoints: [(index: Int, endpoint: Configuration.Endpoint, regexes: [String: CompiledPattern])]

    /// A matcher for `endpoints`.
    public init(endpoints: [Configuration.Endpoint]) {
        self.endpoints = endpoints.enumerated().map { index, endpoint in
            (index, endpoint, Dictionary(uniqueKeysWithValues: endpoint.path.parameterNames.map { name in
                let text = endpoint.params[name] ?? Self.defaultPattern
                return (name, CompiledPattern(text: text))
            }))
        }
    }

    /// The outcome of matching a target.
    public enum Match: Sendable, Equatable {
        /// Endpoint `index`, topic name, and the parameter values by name.
        case matched(index: Int, topic: String, parameters: [String: String])
        /// No endpoint has this path's shape.
        case noMatch
        /// The path has an endpoint's shape but a parameter does not match its pattern.
        case badParameter(name: String, pattern: String)
        /// A parameter that would smuggle structure into the upstream URL once an upstream
        /// decodes it: an encoded slash or backslash, a NUL or control byte, or a dot segment
        /// encoded twice. `reason` says which.
        case unsafeParameter(name: String, reason: String)
    }

    /// Matches a request target or topic (`/path?query`).
    ///
    /// The path is split at every `/` byte: a slash followed by a combining mark is one Swift
    /// Character, but to the upstream it is a slash, so it separates segments here too.
    public func match(_ target: String) -> Match {
        let utf8 = target.utf8
        let pathEnd = utf8.firstIndex(of: UInt8(ascii: "?")) ?? utf8.endIndex
        let path = Substring(utf8[..<pathEnd])
        let query = pathEnd == utf8.endIndex ? Substring() : Substring(utf8[utf8.index(after: pathEnd)...])
        guard path.utf8.first == UInt8(ascii: "/") else { return .noMatch }
        let pieces = path.utf8.dropFirst().split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).map { Substring($0) }
        for (index, endpoint, regexes) in endpoints where endpoint.path.segments.count == pieces.count {
            var parameters: [String: String] = [:]
            var bad: (String, String)?
            var unsafe: (String, String)?
            var literalMismatch = false
            for (piece, segment) in zip(pieces, endpoint.path.segments) {
                switch segment {
                case .literal(let text): if !Self.same(piece, text) { literalMismatch = true }
                case .parameter(let name):
                    parameters[name] = String(piece)
                    if unsafe == nil, let reason = Self.smuggles(piece) { unsafe = (name, reason) }
                    if bad == nil && (piece.isEmpty || Self.isDotSegment(piece) || !regexes[name]!.matches(piece)) { bad = (name, regexes[name]!.text) }
                }
                if literalMismatch { break }
            }
            if literalMismatch { continue }
            if let unsafe { return .unsafeParameter(name: unsafe.0, reason: unsafe.1) }
            if let bad { return .badParameter(name: bad.0, pattern: bad.1) }
            return .matched(index: index, topic: Self.topicName(path: String(path), query: query, allowed: endpoint.query), parameters: parameters)
        }
        return .noMatch
    }

    /// `path`, then `?` and the allowed query parameters sorted by name then value (others
    /// dropped: cache-busters must not split a topic).
    /// `.` or `..`, also percent-encoded: as a parameter it would walk the upstream's path.
    /// String equality (canonical equivalence), without Unicode work when the bytes decide it.
    static func same(_ piece: Substring, _ text: String) -> Bool {
        if piece.utf8.elementsEqual(text.utf8) { return true }
        if piece.utf8.allSatisfy({ $0 < 0x80 }) && text.utf8.allSatisfy({ $0 < 0x80 }) { return false }
        return piece == text
    }

    static func isDotSegment(_ piece: Substring) -> Bool {
        // ".", "..", and their spellings with %2e or %2E: six bytes at most, read as bytes.
        let utf8 = piece.utf8
        guard utf8.count <= 6 else { return false }
        var dots = 0
        var index = utf8.startIndex
        while index != utf8.endIndex {
            if utf8[index] == UInt8(ascii: ".") {
                index = utf8.index(after: index)
            } else if utf8[index] == UInt8(ascii: "%"), utf8.distance(from: index, to: utf8.endIndex) >= 3,
                      utf8[utf8.index(index, offsetBy: 1)] == UInt8(ascii: "2"), utf8[utf8.index(index, offsetBy: 2)] | 0x20 == UInt8(ascii: "e") {
                index = utf8.index(index, offsetBy: 3)
            } else {
                return false
            }
            dots += 1
        }
        return dots == 1 || dots == 2
    }

    /// Why `piece` would change the upstream URL's structure after an upstream decodes it
    /// (once or twice), or nil. The proxy forwards a parameter as the client sent it; an
    /// upstream that decodes before routing would otherwise see `../../admin` or a header break.
    static func smuggles(_ piece: Substring) -> String? {
        // Some upstreams (IIS, anything on Windows paths) take a bare backslash as a separator.
        if piece.utf8.contains(0x5C) { return "a backslash" }
        // A topic named in a query string or a JSON message arrives decoded: a raw NUL or
        // control byte there would reach the upstream request line as it is.
        if piece.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) { return "a NUL or control byte" }
        // Nothing encoded: nothing can hide.
        guard piece.utf8.contains(0x25) else { return nil }
        var text = String(piece)
        for round in 1...2 {
            guard text.contains("%"), let decoded = percentDecoded(text) else { return nil }
            if decoded.contains(where: { $0 == 0x2F }) { return round == 1 ? "an encoded slash (%2F)" : "a slash encoded twice (%252F)" }
            if decoded.contains(where: { $0 == 0x5C }) { return round == 1 ? "an encoded backslash (%5C)" : "a backslash encoded twice (%255C)" }
            if decoded.contains(where: { $0 < 0x20 || $0 == 0x7F }) { return "an encoded NUL or control byte" }
            text = String(decoding: decoded, as: UTF8.self)
            if round == 2, isDotSegment(Substring(text)) { return "a dot segment encoded twice (%252E)" }
        }
        return nil
    }

    /// `%XX` escapes decoded; nil when an escape is malformed (the pattern check refuses it).
    @_spi(Fuzzing) public static func percentDecoded(_ text: String) -> [UInt8]? {
        var out: [UInt8] = []
        var bytes = Array(text.utf8)[...]
        while let byte = bytes.popFirst() {
            guard byte == 0x25 else { out.append(byte); continue }
            guard bytes.count >= 2, let value = UInt8(String(decoding: bytes.prefix(2), as: UTF8.self), radix: 16) else { return nil }
            out.append(value)
            bytes = bytes.dropFirst(2)
        }
        return out
    }

    static func topicName(path: String, query: Substring, allowed: [String]) -> String {
        guard !allowed.isEmpty, !query.isEmpty else { return path }
        let kept = query.split(separator: "&").filter { pair in
            let name = pair.prefix { $0 != "=" }
            return allowed.contains(String(name))
        }.map { String($0) }.sorted()
        return kept.isEmpty ? path : path + "?" + kept.joined(separator: "&")
    }
}

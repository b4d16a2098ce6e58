public import DeltacastConfig

/// Maps a request path (and query) to a configured endpoint and a topic name: the concrete
/// path, plus the endpoint's allowed query parameters in a normalised order. Parameter
/// patterns are compiled once, when the matcher is built.
public struct EndpointMatcher: Sendable {
    /// A parameter's pattern, compiled once.
    /// `@unchecked Sendable`: a compiled Regex is immutable and only matched, never mutated.
    final class CompiledPattern: @unchecked Sendable {
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
        func matches(_ value: UnsafeBufferPointer<UInt8>) -> Bool {
            if isDefault { return !value.isEmpty }
            guard let regex else { return false }
            return (try? regex.wholeMatch(in: String(decoding: value, as: UTF8.self))) != nil
        }
    }

    /// A parameter's pattern when `params` names none.
    static let defaultPattern = "[^/]+"

    /// What matching needs of an endpoint, and nothing else: iterating these copies no
    /// `Configuration.Endpoint` (each copy would retain all of its fields, on every poll).
    private struct Shape: Sendable {
        /// The endpoint's position in the configuration.
        let index: Int
        /// Per path segment: the literal, or the parameter's name and compiled pattern.
        let segments: [ShapeSegment]
        /// The query parameters that are part of the topic.
        let query: [String]
    }

    /// A literal segment (`pattern` nil, `text` the literal) or a parameter (`text` its name).
    /// A struct, not an enum with a class payload: such an enum keeps its case in the
    /// reference's spare bits, and LeakSanitizer then takes a matcher held by a global for a
    /// leak (the FuzzQuery target's did).
    private struct ShapeSegment: Sendable {
        let text: String
        let pattern: CompiledPattern?
    }

    private let shapes: [Shape]

    /// A matcher for `endpoints`.
    public init(endpoints: [Configuration.Endpoint]) {
        self.shapes = endpoints.enumerated().map { index, endpoint in
            Shape(index: index, segments: endpoint.path.segments.map { segment in
                switch segment {
                case .literal(let text): ShapeSegment(text: text, pattern: nil)
                case .parameter(let name): ShapeSegment(text: name, pattern: CompiledPattern(text: endpoint.params[name] ?? Self.defaultPattern))
                }
            }, query: endpoint.query)
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
    ///
    /// With `parameters: false` a match carries no parameter values (its `parameters` are
    /// empty): a caller that needs only the endpoint and the topic's name saves building them.
    public func match(_ target: String, parameters: Bool = true) -> Match {
        var text = target
        return text.withUTF8 { match(bytes: $0, parameters: parameters) }
    }

    private func match(bytes: UnsafeBufferPointer<UInt8>, parameters wanted: Bool) -> Match {
        let pathEnd = bytes.firstIndex(of: UInt8(ascii: "?")) ?? bytes.count
        guard pathEnd > 0, bytes[0] == UInt8(ascii: "/") else { return .noMatch }
        // The segments' ranges, on the stack (one per `/`): this runs on every poll.
        var slashes = 0
        for index in 0..<pathEnd where bytes[index] == UInt8(ascii: "/") { slashes += 1 }
        return withUnsafeTemporaryAllocation(of: Range<Int>.self, capacity: slashes) { storage in
            var count = 0
            var pieceStart = 1
            for index in 1..<pathEnd where bytes[index] == UInt8(ascii: "/") {
                storage[count] = pieceStart..<index
                count += 1
                pieceStart = index + 1
            }
            storage[count] = pieceStart..<pathEnd
            return match(bytes: bytes, pathEnd: pathEnd, pieces: UnsafeBufferPointer(rebasing: storage[0...count]), parameters: wanted)
        }
    }

    /// `match(bytes:)` once the path is cut into `pieces`, the byte ranges of its segments.
    private func match(bytes: UnsafeBufferPointer<UInt8>, pathEnd: Int, pieces: UnsafeBufferPointer<Range<Int>>, parameters wanted: Bool) -> Match {
        for shape in shapes where shape.segments.count == pieces.count {
            var bad: (String, String)?
            var unsafe: (String, String)?
            var literalMismatch = false
            for position in pieces.indices {
                let piece = UnsafeBufferPointer(rebasing: bytes[pieces[position]])
                let segment = shape.segments[position]
                if let pattern = segment.pattern {
                    if unsafe == nil, let reason = Self.smuggles(piece) { unsafe = (segment.text, reason) }
                    if bad == nil && (piece.isEmpty || Self.isDotSegment(piece) || !pattern.matches(piece)) { bad = (segment.text, pattern.text) }
                } else if !Self.same(piece, segment.text) {
                    literalMismatch = true
                }
                if literalMismatch { break }
            }
            if literalMismatch { continue }
            if let unsafe { return .unsafeParameter(name: unsafe.0, reason: unsafe.1) }
            if let bad { return .badParameter(name: bad.0, pattern: bad.1) }
            var parameters: [String: String] = [:]
            for position in pieces.indices where wanted {
                if shape.segments[position].pattern != nil {
                    parameters[shape.segments[position].text] = String(decoding: UnsafeBufferPointer(rebasing: bytes[pieces[position]]), as: UTF8.self)
                }
            }
            let path = String(decoding: UnsafeBufferPointer(rebasing: bytes[..<pathEnd]), as: UTF8.self)
            let query = pathEnd == bytes.count ? Substring() : Substring(String(decoding: UnsafeBufferPointer(rebasing: bytes[(pathEnd + 1)...]), as: UTF8.self))
            return .matched(index: shape.index, topic: Self.topicName(path: path, query: query, allowed: shape.query), parameters: parameters)
        }
        return .noMatch
    }

    /// `path`, then `?` and the allowed query parameters sorted by name then value (others
    /// dropped: cache-busters must not split a topic).
    /// `.` or `..`, also percent-encoded: as a parameter it would walk the upstream's path.
    /// String equality (canonical equivalence), without Unicode work when the bytes decide it.
    static func same(_ piece: UnsafeBufferPointer<UInt8>, _ text: String) -> Bool {
        let equalBytes = piece.count == text.utf8.count
            && (text.utf8.withContiguousStorageIfAvailable { $0.elementsEqual(piece) } ?? text.utf8.elementsEqual(piece))
        if equalBytes { return true }
        if piece.allSatisfy({ $0 < 0x80 }) && text.utf8.allSatisfy({ $0 < 0x80 }) { return false }
        return String(decoding: piece, as: UTF8.self) == text
    }

    static func isDotSegment(_ utf8: UnsafeBufferPointer<UInt8>) -> Bool {
        // ".", "..", and their spellings with %2e or %2E: six bytes at most, read as bytes.
        guard utf8.count <= 6 else { return false }
        var dots = 0
        var index = 0
        while index < utf8.count {
            if utf8[index] == UInt8(ascii: ".") {
                index += 1
            } else if utf8[index] == UInt8(ascii: "%"), utf8.count - index >= 3,
                      utf8[index + 1] == UInt8(ascii: "2"), utf8[index + 2] | 0x20 == UInt8(ascii: "e") {
                index += 3
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
    static func smuggles(_ piece: UnsafeBufferPointer<UInt8>) -> String? {
        var backslash = false, control = false, percent = false
        for byte in piece {
            if byte == 0x5C { backslash = true } else if byte < 0x20 || byte == 0x7F { control = true } else if byte == 0x25 { percent = true }
        }
        // Some upstreams (IIS, anything on Windows paths) take a bare backslash as a separator.
        if backslash { return "a backslash" }
        // A topic named in a query string or a JSON message arrives decoded: a raw NUL or
        // control byte there would reach the upstream request line as it is.
        if control { return "a NUL or control byte" }
        // Nothing encoded: nothing can hide.
        guard percent else { return nil }
        var text = String(decoding: piece, as: UTF8.self)
        for round in 1...2 {
            guard text.contains("%"), let decoded = percentDecoded(text) else { return nil }
            if decoded.contains(where: { $0 == 0x2F }) { return round == 1 ? "an encoded slash (%2F)" : "a slash encoded twice (%252F)" }
            if decoded.contains(where: { $0 == 0x5C }) { return round == 1 ? "an encoded backslash (%5C)" : "a backslash encoded twice (%255C)" }
            if decoded.contains(where: { $0 < 0x20 || $0 == 0x7F }) { return "an encoded NUL or control byte" }
            text = String(decoding: decoded, as: UTF8.self)
            if round == 2, text.withUTF8({ isDotSegment($0) }) { return "a dot segment encoded twice (%252E)" }
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

extension Configuration.Endpoint {
    /// Whether the endpoint polls and knows where: `source: poll` with an absolute `upstream`
    /// URL or a shared `upstream.base`.
    public func polls(base: URLValue?) -> Bool {
        source == .poll && (upstreamOrigin ?? base) != nil
    }

    /// The URL this endpoint polls for one topic, or nil when it has no origin.
    ///
    /// In order: the origin (``upstreamOrigin``, else `base` with its path prefix); the
    /// `upstream` path with each `{param}` replaced by the client's (already URL-encoded)
    /// segment; then the template's fixed query pairs in file order, `{param}`s in values
    /// replaced with the parameter re-encoded so that `&`, `=`, `#` and `+` cannot add a pair;
    /// then the client's allowed query pairs as the topic name holds them (sorted).
    ///
    /// - Parameters:
    ///   - base: `upstream.base`.
    ///   - parameters: the path parameters of the request, by name, as they appear in its path.
    ///   - topic: the topic name (`/path` or `/path?allowed=pairs`).
    public func upstreamURL(base: URLValue?, parameters: [String: String], topic: String) -> String? {
        guard let origin = upstreamOrigin ?? base else { return nil }
        var url = origin.description
        for segment in upstream.segments {
            switch segment {
            case .literal(let text): url += "/" + text
            case .parameter(let name): url += "/" + (parameters[name] ?? "")
            }
        }
        var pairs = upstreamQuery.map { $0.name + "=" + Self.substitute($0.value, parameters) }
        if let question = topic.firstIndex(of: "?") {
            pairs += topic[topic.index(after: question)...].split(separator: "&").map(String.init)
        }
        if !pairs.isEmpty { url += "?" + pairs.joined(separator: "&") }
        return url
    }

    /// `value` with every `{name}` replaced by the parameter, query-encoded.
    static func substitute(_ value: String, _ parameters: [String: String]) -> String {
        guard value.contains("{") else { return value }
        var result = ""
        var rest = Substring(value)
        while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
            result += rest[..<open]
            result += queryEncoded(parameters[String(rest[rest.index(after: open)..<close])] ?? "")
            rest = rest[rest.index(after: close)...]
        }
        return result + rest
    }

    /// A path segment as a query value: characters that delimit or mean something in a query
    /// are percent-encoded; existing `%XX` escapes and other characters stay.
    static func queryEncoded(_ segment: String) -> String {
        var result = ""
        for scalar in segment.unicodeScalars {
            if scalar.isASCII, scalar.value > 0x20, scalar.value < 0x7F, !"&=#+?\"<>\\^`{|}[]".unicodeScalars.contains(scalar) {
                result.unicodeScalars.append(scalar)
            } else {
                for byte in String(scalar).utf8 { result += "%" + String(byte, radix: 16, uppercase: true).leftPadded() }
            }
        }
        return result
    }
}

extension String {
    fileprivate func leftPadded() -> String { count == 1 ? "0" + self : self }
}

extension Configuration.Endpoint {
    /// Whether a reload must replace this endpoint's topics rather than keep them: its `source`,
    /// `auth` mode or forwarded headers differ, which changes what a topic is (its key or where
    /// its state comes from).
    public func changesTopicIdentity(from old: Configuration.Endpoint) -> Bool {
        source != old.source || auth != old.auth || forwardHeaders.map { $0.lowercased() } != old.forwardHeaders.map { $0.lowercased() }
    }

    /// Whether every setting equals `other`'s (the declaration's place in the file aside).
    public func hasSameSettings(as other: Configuration.Endpoint) -> Bool {
        path == other.path && upstream == other.upstream && upstreamOrigin == other.upstreamOrigin
            && upstreamQuery.map { [$0.name, $0.value] } == other.upstreamQuery.map { [$0.name, $0.value] }
            && headers.map { [$0.name, $0.value] } == other.headers.map { [$0.name, $0.value] }
            && source == other.source && interval == other.interval && jitter == other.jitter && diff == other.diff
            && arrayKeys.map { [$0.path, $0.field] } == other.arrayKeys.map { [$0.path, $0.field] } && ignore == other.ignore
            && params == other.params && query == other.query && auth == other.auth && allow == other.allow
            && scopes == other.scopes && forwardHeaders == other.forwardHeaders && linger == other.linger && maxBody == other.maxBody
            && digest == other.digest
    }
}

extension Duration {
    /// Whole milliseconds (truncated), the unit every timer and deadline of the proxy counts in.
    public var wholeMilliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}

extension Configuration.CORS {
    /// The `Access-Control-Allow-Origin` value for a request from `origin`, or nil when the
    /// origin is not allowed: `*` when any is, else the origin itself when it is listed.
    public func allowOriginHeader(for origin: String) -> String? {
        origins.contains("*") ? "*" : origins.contains(origin) ? origin : nil
    }
}

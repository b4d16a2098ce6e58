/// The `endpoints` list: each endpoint's keys, its path pattern and upstream template.
extension ConfigurationDecoder {
    private static let reservedPaths = ["/deltacast", "/metrics", "/healthz", "/readyz", "/deltacast.js", "/deltacast.mjs", "/deltacast.d.ts"]

    mutating func endpoints(_ node: YAMLNode, upstream: Configuration.Upstream, authEnabled: Bool, authLocation: SourceLocation?) -> [Configuration.Endpoint] {
        guard case .sequence(let items) = node.content else {
            fail("expected a list of endpoints ('- path: ...'), found \(node.kindDescription)", at: node.location)
            return []
        }
        if items.isEmpty { fail("endpoints is empty; declare at least one endpoint", at: node.location) }
        var result: [Configuration.Endpoint] = []
        var claimed: [String: Int] = [:]
        for item in items {
            guard let section = mapping(item, section: "endpoints[]", what: "an endpoint") else { continue }
            guard let pathEntry = section["path"] else {
                fail("missing required key 'path' in endpoint", at: item.location)
                continue
            }
            guard let path = pathPattern(pathEntry.value) else { continue }
            if let line = claimed[path.shape] {
                fail("path '\(path)' is already claimed by the endpoint on line \(line)", at: pathEntry.value.location)
            }
            claimed[path.shape] = pathEntry.value.location.line
            if let literal = path.segments.first, case .literal(let first) = literal,
               Self.reservedPaths.contains("/" + first) || path.text == "/" {
                fail("path '\(path)' is reserved by the proxy", at: pathEntry.value.location)
            }
            var endpoint = Configuration.Endpoint(path: path, upstream: path, location: pathEntry.keyLocation)
            if let entry = section["source"] { endpoint.source = enumeration(entry.value, Source.self) ?? .poll }
            if let entry = section["upstream"] {
                if endpoint.source == .publish {
                    fail("an endpoint with 'source: publish' has no upstream; remove 'upstream'", at: entry.keyLocation)
                } else {
                    upstreamTemplate(entry.value, path: path, into: &endpoint)
                }
            }
            if let entry = section["headers"] {
                if endpoint.source == .publish { fail("an endpoint with 'source: publish' has no upstream; remove 'headers'", at: entry.keyLocation) }
                endpoint.headers = headers(entry.value)
            }
            if let entry = section["interval"] {
                if endpoint.source == .publish {
                    fail("'interval' has no meaning for 'source: publish'; remove it", at: entry.keyLocation)
                } else if case .mapping = entry.value.content {
                    // `{ min: 250ms, max: 60s }`: adaptive.
                    if let bounds = mapping(entry.value, section: "endpoints[].interval", what: "interval"),
                       let minimum = bounds["min"].flatMap({ duration($0.value, positive: true) }),
                       let maximum = bounds["max"].flatMap({ duration($0.value, positive: true) }) {
                        if minimum < .milliseconds(100) || maximum > .seconds(3600) || maximum < minimum {
                            fail("interval { min: \(formatDuration(minimum)), max: \(formatDuration(maximum)) }: use 100ms <= min <= max <= 1h", at: entry.value.location)
                        } else {
                            endpoint.interval = minimum
                            endpoint.adaptiveInterval = (minimum, maximum)
                        }
                    } else if mapping(entry.value)?["min"] == nil || mapping(entry.value)?["max"] == nil {
                        fail("an adaptive interval needs both 'min' and 'max' (e.g. { min: 250ms, max: 60s })", at: entry.value.location)
                    }
                } else {
                    endpoint.interval = duration(entry.value, positive: true) ?? endpoint.interval
                }
            }
            if let entry = section["jitter"] { endpoint.jitter = duration(entry.value, positive: false) }
            if let entry = section["diff"] { endpoint.diff = enumeration(entry.value, DiffMode.self) ?? .jsonPatch }
            if let entry = section["array_keys"], let pairs = stringMapping(entry.value) {
                for (pointer, field, location) in pairs {
                    if !pointer.isEmpty && pointer.utf8.first != UInt8(ascii: "/") {
                        fail("array key path '\(pointer)' must be a JSON Pointer: \"\" for a root array, or starting with '/'", at: location)
                    }
                    endpoint.arrayKeys.append((pointer, field))
                }
            }
            if let entry = section["ignore"], let list = stringList(entry.value) {
                for (pointer, location) in list where pointer.utf8.first != UInt8(ascii: "/") {
                    fail(pointer.isEmpty ? "ignore path '' is the whole document: nothing would ever count as a change"
                                         : "ignore path '\(pointer)' must be a JSON Pointer starting with '/'", at: location)
                }
                endpoint.ignore = list.map(\.0)
            }
            if let entry = section["params"], let pairs = stringMapping(entry.value) {
                for (name, pattern, location) in pairs {
                    if !path.parameterNames.contains(name) {
                        fail("params names '\(name)', but the path '\(path)' has no {\(name)}", at: location)
                    }
                    do {
                        _ = try Regex(pattern)
                        endpoint.params[name] = pattern
                    } catch {
                        fail("invalid regular expression for parameter '\(name)': \(error)", at: location)
                    }
                }
            }
            if let entry = section["query"], let list = stringList(entry.value) {
                for (name, location) in list where endpoint.upstreamQuery.contains(where: { $0.name == name }) {
                    fail("query parameter '\(name)' is fixed by the upstream template; a client cannot also set it", at: location)
                }
                endpoint.query = list.map(\.0)
            }
            endpoint.auth = authEnabled ? .token : .none
            if let entry = section["auth"] {
                endpoint.auth = enumeration(entry.value, AuthMode.self) ?? endpoint.auth
                if endpoint.auth == .token && !authEnabled {
                    fail("'auth: token' needs a credential to check: configure auth.jwt or auth.api_keys", at: entry.value.location)
                }
            }
            if let entry = section["allow"], let text = string(entry.value) {
                do {
                    let rule = try AuthorizationRule.parse(text)
                    for name in rule.parameterNames where !path.parameterNames.contains(name) {
                        fail("allow reads params.\(name), but the path '\(path)' has no {\(name)}", at: entry.value.location)
                    }
                    endpoint.allow = rule
                } catch {
                    // Point at the character: past the opening quote when the scalar is quoted.
                    var location = entry.value.location
                    if case .scalar(_, let style) = entry.value.content, style != .plain { location.column += 1 }
                    location.column += error.offset
                    fail("invalid allow expression: \(error.message)", at: location)
                }
            }
            if let entry = section["scopes"], let list = stringList(entry.value) { endpoint.scopes = list.map(\.0) }
            if endpoint.auth != .token, let entry = section["allow"] ?? section["scopes"] {
                fail("'\(entry.key)' needs 'auth: token' (this endpoint is 'auth: \(endpoint.auth.rawValue)')", at: entry.keyLocation)
            }
            if let entry = section["forward_headers"], let list = stringList(entry.value) {
                for (name, location) in list where !isToken(name) {
                    fail("invalid header name '\(name)'", at: location)
                }
                endpoint.forwardHeaders = list.map(\.0)
            }
            if let entry = section["linger"] { endpoint.linger = duration(entry.value, positive: false) ?? endpoint.linger }
            if let entry = section["changes"] { endpoint.changes = changeIndex(entry.value, endpoint: endpoint) }
            if let entry = section["max_body"] { endpoint.maxBody = size(entry.value) }
            if let entry = section["digest"] { endpoint.digest = boolean(entry.value) ?? false }
            result.append(endpoint)
        }
        return result
    }

    mutating func pathPattern(_ node: YAMLNode) -> PathPattern? {
        guard let text = string(node) else { return nil }
        return pathPattern(text, at: node.location)
    }

    /// An endpoint's `upstream`: `[http(s)://host[:port]]/path[?name=value&...]`, where `{param}`
    /// may stand for a whole path segment or inside a query value. Every parameter it uses is
    /// one of the path's, and every one of the path's is used (else two topics would poll the
    /// same URL).
    mutating func upstreamTemplate(_ node: YAMLNode, path: PathPattern, into endpoint: inout Configuration.Endpoint) {
        guard var text = string(node) else { return }
        let location = node.location
        if text.contains("#") { return fail("upstream '\(text)' has a fragment ('#'); an upstream URL never sends one", at: location) }
        if text.hasPrefix("http://") || text.hasPrefix("https://") {
            let schemeEnd = text.index(text.startIndex, offsetBy: text.hasPrefix("https") ? 8 : 7)
            let pathStart = text[schemeEnd...].firstIndex { $0 == "/" || $0 == "?" } ?? text.endIndex
            guard let origin = parseURL(String(text[..<pathStart])) else {
                return fail("invalid upstream URL '\(text)'; expected http(s)://host[:port]/path", at: location)
            }
            endpoint.upstreamOrigin = origin
            text = String(text[pathStart...])
            if text.isEmpty || text.hasPrefix("?") { text = "/" + text }
        } else if !text.hasPrefix("/") {
            return fail("upstream '\(text)' must be a path starting with '/' or an absolute http(s):// URL", at: location)
        }
        let pathText = String(text.prefix { $0 != "?" })
        guard let template = pathPattern(pathText, at: location) else { return }
        var used = template.parameterNames
        var query: [(name: String, value: String)] = []
        if pathText.count < text.count {
            for pair in text.dropFirst(pathText.count + 1).split(separator: "&", omittingEmptySubsequences: true) {
                let name = String(pair.prefix { $0 != "=" })
                let value = String(pair.dropFirst(name.count + 1))
                if name.isEmpty || name.contains("{") || name.contains("}") || name.contains(" ") {
                    return fail("invalid query parameter '\(pair)' in upstream '\(text)'; expected name=value, with {param} only in the value", at: location)
                }
                guard let names = Self.templateParameters(value) else {
                    return fail("invalid query value '\(value)' in upstream '\(text)'; a parameter is written {name}, and a space is %20", at: location)
                }
                used += names
                query.append((name, value))
            }
        }
        let declared = Set(path.parameterNames)
        if let unknown = used.first(where: { !declared.contains($0) }) {
            return fail("upstream template uses {\(unknown)}, but the path '\(path)' has no {\(unknown)}", at: location)
        }
        if let unused = path.parameterNames.first(where: { !used.contains($0) }) {
            return fail("upstream template does not use the path's {\(unused)}; every topic would poll the same URL", at: location)
        }
        endpoint.upstream = template
        endpoint.upstreamQuery = query
    }

    /// The `{name}` parameters in a query value, or nil when a brace is unbalanced or a name is
    /// not letters, digits and '_'.
    static func templateParameters(_ value: String) -> [String]? {
        var names: [String] = []
        var rest = Substring(value)
        while let open = rest.firstIndex(where: { $0 == "{" || $0 == "}" }) {
            guard rest[open] == "{", let close = rest[open...].firstIndex(of: "}") else { return nil }
            let name = rest[rest.index(after: open)..<close]
            guard !name.isEmpty, name.unicodeScalars.allSatisfy({ $0 == "_" || ($0.isASCII && ($0.properties.isAlphabetic || $0.properties.numericType != nil)) }) else { return nil }
            names.append(String(name))
            rest = rest[rest.index(after: close)...]
        }
        return value.contains(" ") ? nil : names
    }

    mutating func pathPattern(_ text: String, at location: SourceLocation) -> PathPattern? {
        guard text.hasPrefix("/") else {
            fail("path '\(text)' must start with '/'", at: location)
            return nil
        }
        var segments: [PathPattern.Segment] = []
        var names: Set<String> = []
        for piece in text.dropFirst().split(separator: "/", omittingEmptySubsequences: false) {
            if piece.hasPrefix("{") && piece.hasSuffix("}") && piece.count > 2 {
                let name = String(piece.dropFirst().dropLast())
                guard name.unicodeScalars.allSatisfy({ $0 == "_" || ($0.isASCII && ($0.properties.isAlphabetic || $0.properties.numericType != nil)) }) else {
                    fail("invalid parameter name '{\(name)}' in path '\(text)'; use letters, digits and '_'", at: location)
                    return nil
                }
                if !names.insert(name).inserted {
                    fail("parameter '{\(name)}' appears twice in path '\(text)'", at: location)
                    return nil
                }
                segments.append(.parameter(name))
            } else if piece.contains("{") || piece.contains("}") || piece.contains("?") || piece.contains("#") || piece.contains(" ") {
                fail("invalid path segment '\(piece)' in '\(text)'; a parameter is a whole segment like '{name}'", at: location)
                return nil
            } else {
                segments.append(.literal(String(piece)))
            }
        }
        return PathPattern(text: text, segments: segments)
    }
}

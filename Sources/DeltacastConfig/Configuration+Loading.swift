#if canImport(Glibc)
import Glibc
#endif

extension Configuration {
    /// Parses and validates a configuration file's text.
    ///
    /// - Parameters:
    ///   - text: the file's contents.
    ///   - file: the name errors report.
    ///   - environment: variables for `${VAR}` interpolation.
    /// - Returns: the typed configuration.
    /// - Throws: ``ConfigurationErrors`` with the first syntax error, or every validation error.
    public static func load(
        text: String, file: String, environment: [String: String]
    ) throws(ConfigurationErrors) -> Configuration {
        let root: YAMLNode
        do {
            root = try YAMLParser.parse(text, file: file, environment: environment)
        } catch {
            throw ConfigurationErrors([error])
        }
        var decoder = ConfigurationDecoder(text: text)
        let configuration = decoder.decode(root)
        if !decoder.errors.isEmpty {
            throw ConfigurationErrors(decoder.errors.sorted {
                ($0.location.line, $0.location.column) < ($1.location.line, $1.location.column)
            })
        }
        return configuration
    }
}

/// Turns a parsed document into a ``Configuration``, collecting every error it finds.
struct ConfigurationDecoder {
    private(set) var errors: [ConfigurationError] = []
    private let lines: [String]

    init(text: String) {
        lines = text.split(separator: "\n", omittingEmptySubsequences: false).map {
            var line = String($0)
            if line.hasSuffix("\r") { line.removeLast() }
            return line
        }
    }

    mutating func fail(_ message: String, at location: SourceLocation) {
        let line = location.line - 1 < lines.count && location.line >= 1 ? lines[location.line - 1] : ""
        errors.append(ConfigurationError(location: location, message: message, sourceLine: line))
    }

    // MARK: Sections

    mutating func decode(_ root: YAMLNode) -> Configuration {
        var c = Configuration()
        var budgetEntries: [(origin: String, rate: Rate, location: SourceLocation)] = []
        guard let top = mapping(root, section: "", what: "the configuration") else { return c }
        if let node = top["listen"] { c.listen = hostPort(node.value) ?? c.listen }
        if let node = top["upstream"], let m = mapping(node.value, section: "upstream", what: "upstream") {
            if let e = m["base"] { c.upstream.base = url(e.value) }
            if let e = m["timeout"] { c.upstream.timeout = duration(e.value, positive: true) ?? c.upstream.timeout }
            if let e = m["max_concurrent"] { c.upstream.maxConcurrent = integer(e.value, range: 1...10_000) ?? c.upstream.maxConcurrent }
            if let e = m["headers"] { c.upstream.headers = headers(e.value) }
            if let e = m["max_body"] { c.upstream.maxBody = size(e.value) ?? c.upstream.maxBody }
            if let e = m["follow_redirects"] { c.upstream.followRedirects = boolean(e.value) ?? false }
            if let e = m["budget"] { c.upstream.budget = budgetRate(e.value) }
            if let e = m["budgets"] { budgetEntries = decodeBudgets(e.value) }
            if let e = m["oauth2"] { c.upstream.oauth2 = decodeOAuth2(e.value, what: "upstream.oauth2") }
            if let e = m["oauth2_origins"] {
                if case .mapping(let entries) = e.value.content {
                    for entry in entries {
                        guard let url = parseURL(entry.key), url.path.isEmpty else {
                            fail("invalid origin '\(entry.key)' in upstream.oauth2_origins; expected http(s)://host[:port] with no path", at: entry.keyLocation)
                            continue
                        }
                        if let settings = decodeOAuth2(entry.value, what: "upstream.oauth2_origins['\(entry.key)']") {
                            c.upstream.oauth2ByOrigin.append((url.origin, settings))
                        }
                    }
                } else {
                    fail("upstream.oauth2_origins is \(e.value.kindDescription); expected a mapping of origin to an oauth2 block", at: e.value.location)
                }
            }
        }
        if let node = top["transports"] {
            if let list = enumList(node.value, Transport.self) {
                if list.isEmpty { fail("transports is empty; enable at least one of websocket, sse, longpoll", at: node.value.location) }
                c.transports = list
            }
        }
        if let node = top["cors"], let m = mapping(node.value, section: "cors", what: "cors") {
            if let e = m["origins"], let origins = stringList(e.value) {
                for (origin, location) in origins where !isValidOrigin(origin) {
                    fail("invalid origin '\(origin)'; expected scheme://host[:port] without a path, or '*'", at: location)
                }
                c.cors.origins = origins.map(\.0)
            }
        }
        if let node = top["admin"], let m = mapping(node.value, section: "admin", what: "admin") {
            if let e = m["token"], let token = string(e.value) {
                if token.count < 16 {
                    fail("admin token is \(token.count) characters long; use at least 16", at: e.value.location)
                }
                c.admin.token = token
            }
            if let e = m["listen"] { c.admin.listen = hostPort(e.value) }
        }
        if let node = top["auth"], let m = mapping(node.value, section: "auth", what: "auth") {
            decodeAuth(m, into: &c.auth)
        }
        if let node = top["tls"], let m = mapping(node.value, section: "tls", what: "tls") {
            let certificate = m["certificate"].flatMap { string($0.value) }
            let key = m["key"].flatMap { string($0.value) }
            if certificate == nil && m["certificate"] == nil { fail("missing required key 'tls.certificate' (a PEM certificate chain file)", at: node.keyLocation) }
            if key == nil && m["key"] == nil { fail("missing required key 'tls.key' (a PEM private key file)", at: node.keyLocation) }
            if let certificate, let key {
                var tls = Configuration.TLS(certificate: certificate, key: key)
                if let e = m["handshake_timeout"] { tls.handshakeTimeout = duration(e.value, positive: true) ?? tls.handshakeTimeout }
                c.tls = tls
            }
        }
        if let node = top["limits"], let m = mapping(node.value, section: "limits", what: "limits") {
            decodeLimits(m, into: &c.limits)
        }
        if let node = top["server"], let m = mapping(node.value, section: "server", what: "server") {
            decodeServer(m, into: &c.server)
        }
        if let node = top["logging"], let m = mapping(node.value, section: "logging", what: "logging") {
            if let e = m["level"] { c.logging.level = enumeration(e.value, LogLevel.self) ?? c.logging.level }
            if let e = m["access"] { c.logging.access = boolean(e.value) ?? false }
        }
        if let node = top["diagnostics"], let m = mapping(node.value, section: "diagnostics", what: "diagnostics") {
            if let e = m["echo"] { c.diagnostics.echo = boolean(e.value) ?? false }
        }
        if let node = top["cluster"], let m = mapping(node.value, section: "cluster", what: "cluster") {
            decodeCluster(m, at: node.keyLocation, into: &c)
        }
        if let node = top["endpoints"] {
            c.endpoints = endpoints(node.value, upstream: c.upstream, authEnabled: c.auth.isEnabled, authLocation: top["auth"]?.keyLocation)
        } else {
            fail("missing required key 'endpoints'; declare at least one endpoint", at: root.location)
        }
        // A budget names an origin some endpoint polls; anything else is a typo that would
        // leave the real origin unbounded.
        let used = Set(c.endpoints.filter { $0.source == .poll }.compactMap { ($0.upstreamOrigin ?? c.upstream.base)?.origin })
        if let base = c.upstream.base?.origin, c.upstream.budget != nil, !used.contains(base), c.endpoints.contains(where: { $0.source == .poll }) {
            if let e = top["upstream"].flatMap({ mapping($0.value)?["budget"] }) {
                fail("upstream.budget limits \(base), which no polled endpoint uses", at: e.value.location)
            }
        }
        for entry in budgetEntries {
            if c.upstream.budgets.contains(where: { $0.origin == entry.origin }) {
                fail("upstream.budgets names \(entry.origin) twice", at: entry.location)
            } else if used.contains(entry.origin) {
                c.upstream.budgets.append((entry.origin, entry.rate))
            } else {
                let origins = used.sorted().joined(separator: ", ")
                fail("upstream.budgets names \(entry.origin), which no polled endpoint uses" + (origins.isEmpty ? "" : " (the polled origins: \(origins))"), at: entry.location)
            }
        }
        if c.upstream.base == nil, top["upstream"].map({ mapping($0.value)?["base"] == nil }) ?? true,
           let polling = c.endpoints.first(where: { $0.source == .poll && $0.upstreamOrigin == nil }) {
            fail("missing required key 'upstream.base': endpoint '\(polling.path)' polls an upstream", at: top["upstream"]?.keyLocation ?? polling.location)
        }
        return c
    }

    private mutating func decodeCluster(_ m: [String: YAMLNode.Entry], at location: SourceLocation, into c: inout Configuration) {
        guard let e = m["redis"] else {
            fail("missing required key 'cluster.redis' (redis://[:password@]host:port[/db])", at: location)
            return
        }
        guard let text = string(e.value) else { return }
        let redis: Configuration.RedisURL
        switch Configuration.RedisURL.parse(text) {
        case .success(let parsed): redis = parsed
        case .failure(let message): fail("invalid cluster.redis: \(message.text)", at: e.value.location); return
        }
        var cluster = Configuration.Cluster(redis: redis, node: Configuration.Cluster.defaultNodeName())
        if let e = m["node"], let node = string(e.value) {
            if node.isEmpty || node.count > 64 || !node.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }) {
                fail("invalid cluster.node '\(node)'; use 1-64 letters, digits, '.', '_' or '-'", at: e.value.location)
            } else {
                cluster.node = node
            }
        }
        if let e = m["lease"], let lease = duration(e.value, positive: true) {
            if lease < .seconds(1) || lease > .seconds(600) {
                fail("cluster.lease is \(lease); use 1s to 10m (each node heartbeats at least every sixth of it)", at: e.value.location)
            } else {
                cluster.lease = lease
            }
        }
        if let e = m["key_prefix"], let prefix = string(e.value) {
            if prefix.isEmpty || prefix.count > 64 || !prefix.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || ":._-".contains($0)) }) {
                fail("invalid cluster.key_prefix '\(prefix)'; use 1-64 letters, digits, ':', '.', '_' or '-' (no braces: they are the hash tags)", at: e.value.location)
            } else {
                cluster.keyPrefix = prefix
            }
        }
        c.cluster = cluster
    }

    private mutating func decodeLimits(_ m: [String: YAMLNode.Entry], into l: inout Configuration.Limits) {
        if let e = m["max_connections"] { l.maxConnections = integer(e.value, range: 1...10_000_000) ?? l.maxConnections }
        if let e = m["max_connections_per_ip"] { l.maxConnectionsPerIP = integer(e.value, range: 1...10_000_000) ?? l.maxConnectionsPerIP }
        if let e = m["max_message"] { l.maxMessage = size(e.value) ?? l.maxMessage }
        if let e = m["max_topics"] { l.maxTopics = integer(e.value, range: 1...10_000_000) ?? l.maxTopics }
        if let e = m["max_topics_per_connection"] { l.maxTopicsPerConnection = integer(e.value, range: 1...100_000) ?? l.maxTopicsPerConnection }
        if let e = m["max_request_line"] { l.maxRequestLine = size(e.value) ?? l.maxRequestLine }
        if let e = m["max_header_bytes"] { l.maxHeaderBytes = size(e.value) ?? l.maxHeaderBytes }
        if let e = m["max_headers"] { l.maxHeaders = integer(e.value, range: 1...10_000) ?? l.maxHeaders }
        if let e = m["send_buffer"] { l.sendBuffer = size(e.value) ?? l.sendBuffer }
        if let e = m["slow_consumer_timeout"] { l.slowConsumerTimeout = duration(e.value, positive: true) ?? l.slowConsumerTimeout }
        if let e = m["journal_entries"] { l.journalEntries = integer(e.value, range: 1...1_000_000) ?? l.journalEntries }
        if let e = m["journal_bytes"] { l.journalBytes = size(e.value) ?? l.journalBytes }
        if let e = m["max_connections_per_user"] { l.maxConnectionsPerUser = integer(e.value, range: 1...10_000_000) ?? l.maxConnectionsPerUser }
        if let e = m["subscribe_rate"] { l.subscribeRate = rate(e.value) ?? l.subscribeRate }
        if let e = m["message_rate"] { l.messageRate = rate(e.value) ?? l.messageRate }
        if let e = m["publish_rate"] { l.publishRate = rate(e.value) ?? l.publishRate }
        if let e = m["ticket_rate"] { l.ticketRate = rate(e.value) ?? l.ticketRate }
    }

    private mutating func decodeAuth(_ m: [String: YAMLNode.Entry], into a: inout Configuration.Auth) {
        if let node = m["jwt"], let j = mapping(node.value, section: "auth.jwt", what: "auth.jwt") {
            guard let algorithmEntry = j["algorithm"] else {
                fail("missing required key 'auth.jwt.algorithm'; expected one of: \(JWTAlgorithm.allCases.map(\.rawValue).joined(separator: ", "))", at: node.keyLocation)
                return
            }
            guard let algorithm = enumeration(algorithmEntry.value, JWTAlgorithm.self) else { return }
            var jwt = Configuration.JWT(algorithm: algorithm)
            if let e = j["secret"], let secret = string(e.value) {
                if algorithm != .hs256 {
                    fail("'secret' is for HS256; \(algorithm.rawValue) verifies with 'public_key'", at: e.keyLocation)
                } else if secret.utf8.count < 32 {
                    fail("HS256 secret is \(secret.utf8.count) bytes long; use at least 32 (RFC 7518 section 3.2)", at: e.value.location)
                }
                jwt.secret = secret
            }
            if let e = j["public_key"], let key = string(e.value) {
                if algorithm == .hs256 {
                    fail("'public_key' is for RS256 and ES256; HS256 verifies with 'secret'", at: e.keyLocation)
                }
                jwt.publicKey = key
            }
            if algorithm == .hs256 && j["secret"] == nil {
                fail("missing required key 'auth.jwt.secret' for HS256", at: algorithmEntry.value.location)
            }
            if algorithm != .hs256 && j["public_key"] == nil {
                fail("missing required key 'auth.jwt.public_key' for \(algorithm.rawValue) (a PEM file or PEM text)", at: algorithmEntry.value.location)
            }
            if let e = j["issuer"] { jwt.issuer = string(e.value) }
            if let e = j["audience"] { jwt.audience = string(e.value) }
            if let e = j["leeway"] {
                jwt.leeway = duration(e.value, positive: false) ?? jwt.leeway
                if jwt.leeway > .seconds(300) { fail("leeway \(formatDuration(jwt.leeway)) is more than 5m; a clock that far off needs fixing, not tolerating", at: e.value.location) }
            }
            a.jwt = jwt
        }
        if let node = m["api_keys"] {
            guard case .sequence(let items) = node.value.content else {
                return fail("expected a list of API keys ('- { key: ..., subject: ... }'), found \(node.value.kindDescription)", at: node.value.location)
            }
            var seen: Set<String> = []
            for item in items {
                guard let k = mapping(item, section: "auth.api_keys[]", what: "an API key") else { continue }
                guard let keyEntry = k["key"], let key = string(keyEntry.value) else {
                    if k["key"] == nil { fail("missing required key 'key' in API key", at: item.location) }
                    continue
                }
                guard let subjectEntry = k["subject"], let subject = string(subjectEntry.value) else {
                    if k["subject"] == nil { fail("missing required key 'subject' in API key", at: item.location) }
                    continue
                }
                if key.count < 16 { fail("API key is \(key.count) characters long; use at least 16", at: keyEntry.value.location) }
                if !seen.insert(key).inserted { fail("this API key is listed twice", at: keyEntry.value.location) }
                let scopes = k["scopes"].flatMap { stringList($0.value) }?.map(\.0) ?? []
                a.apiKeys.append(Configuration.APIKey(key: key, subject: subject, scopes: scopes))
            }
        }
        if let e = m["ticket_ttl"] { a.ticketTTL = duration(e.value, positive: true) ?? a.ticketTTL }
        if let e = m["expiry_grace"] { a.expiryGrace = duration(e.value, positive: false) ?? a.expiryGrace }
        if let e = m["max_tickets"] { a.maxTickets = integer(e.value, range: 1...10_000_000) ?? a.maxTickets }
    }

    /// An endpoint's `changes` block: `upstream` and `topics` required.
    mutating func changeIndex(_ node: YAMLNode, endpoint: Configuration.Endpoint) -> Configuration.ChangeIndex? {
        guard let m = mapping(node, section: "endpoints[].changes", what: "changes") else { return nil }
        for required in ["upstream", "topics"] where m[required] == nil { fail("missing required key 'changes.\(required)'", at: node.location) }
        guard let upstreamEntry = m["upstream"], let upstream = string(upstreamEntry.value),
              let topicsEntry = m["topics"], let topics = string(topicsEntry.value) else { return nil }
        guard upstream.hasPrefix("/") || upstream.hasPrefix("http://") || upstream.hasPrefix("https://") else {
            fail("invalid changes.upstream '\(upstream)'; expected a path such as /api/changes?since={cursor}, or an http(s):// URL", at: upstreamEntry.value.location)
            return nil
        }
        guard topics.hasPrefix("/") else {
            fail("invalid changes.topics '\(topics)'; expected a JSON pointer pattern such as /changed/*/path", at: topicsEntry.value.location)
            return nil
        }
        var index = Configuration.ChangeIndex(upstream: upstream, topics: topics)
        if let e = m["every"], let every = duration(e.value, positive: true) {
            if every < .milliseconds(100) { fail("changes.every is \(formatDuration(every)); use at least 100ms", at: e.value.location) }
            index.every = every
        }
        if let e = m["cursor"], let cursor = string(e.value) {
            guard cursor.isEmpty || cursor.hasPrefix("/") else {
                fail("invalid changes.cursor '\(cursor)'; expected a JSON pointer such as /next", at: e.value.location)
                return nil
            }
            guard upstream.contains("{cursor}") else {
                fail("changes.upstream has no {cursor} to carry the cursor back (e.g. /api/changes?since={cursor})", at: upstreamEntry.value.location)
                return nil
            }
            index.cursor = cursor
        }
        if endpoint.source != .poll { fail("'changes' needs a polled endpoint (this one is 'source: publish')", at: node.location) }
        return index
    }

    /// An `oauth2` block: `token_url`, `client_id` and `client_secret` required; `scope` and
    /// `audience` optional. A secret written `file:/path` is read from that file (trailing
    /// newlines dropped).
    mutating func decodeOAuth2(_ node: YAMLNode, what: String) -> Configuration.Upstream.OAuth2? {
        guard let m = mapping(node, section: "upstream.oauth2", what: what) else { return nil }
        for required in ["token_url", "client_id", "client_secret"] where m[required] == nil {
            fail("missing required key '\(what).\(required)'", at: node.location)
        }
        guard let urlEntry = m["token_url"], let tokenURL = url(urlEntry.value),
              let idEntry = m["client_id"], let clientID = string(idEntry.value),
              let secretEntry = m["client_secret"], var secret = string(secretEntry.value) else { return nil }
        if secret.hasPrefix("file:") {
            let path = String(secret.dropFirst("file:".count))
            guard let file = fopen(path, "r") else {
                fail("cannot read \(what).client_secret from '\(path)': \(String(cString: strerror(errno)))", at: secretEntry.value.location)
                return nil
            }
            defer { fclose(file) }
            var bytes: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while bytes.count <= 65536 {
                let count = fread(&buffer, 1, buffer.count, file)
                if count <= 0 { break }
                bytes += buffer[0..<count]
            }
            secret = String(decoding: bytes, as: UTF8.self)
            while secret.hasSuffix("\n") || secret.hasSuffix("\r") { secret.removeLast() }
        }
        if secret.isEmpty { fail("\(what).client_secret is empty", at: secretEntry.value.location); return nil }
        return .init(tokenURL: tokenURL, clientID: clientID, clientSecret: secret,
                     scope: m["scope"].flatMap { string($0.value) }, audience: m["audience"].flatMap { string($0.value) })
    }

    /// A request budget: `N/s`, `N/m` or `N/h`, at least one request per hour.
    mutating func budgetRate(_ node: YAMLNode) -> Rate? {
        guard case .scalar(let text, _) = node.content, !node.isNull, let value = parseRate(text) else {
            fail("invalid budget \(describe(node)); expected a positive number of requests per second, minute or hour (e.g. 500/s, 600/m)", at: node.location)
            return nil
        }
        return value
    }

    /// `budgets: { "https://host:port": 50/s, ... }`: the origins normalized, with where each is
    /// written (checked against the endpoints once they are read).
    mutating func decodeBudgets(_ node: YAMLNode) -> [(origin: String, rate: Rate, location: SourceLocation)] {
        guard case .mapping(let entries) = node.content else {
            fail("upstream.budgets is \(node.kindDescription); expected a mapping of origin to rate, e.g. { \"https://billing.internal:8443\": 50/s }", at: node.location)
            return []
        }
        var found: [(origin: String, rate: Rate, location: SourceLocation)] = []
        for entry in entries {
            guard let url = parseURL(entry.key), url.path.isEmpty else {
                fail("invalid origin '\(entry.key)' in upstream.budgets; expected http(s)://host[:port] with no path", at: entry.keyLocation)
                continue
            }
            if let rate = budgetRate(entry.value) { found.append((url.origin, rate, entry.keyLocation)) }
        }
        return found
    }

    mutating func rate(_ node: YAMLNode) -> Rate? {
        guard case .scalar(let text, _) = node.content, !node.isNull, let value = parseRate(text) else {
            fail("invalid rate \(describe(node)); expected a positive count per second, minute or hour (e.g. 20/s, 30/m, 100/h)", at: node.location)
            return nil
        }
        return value
    }

    private mutating func decodeServer(_ m: [String: YAMLNode.Entry], into s: inout Configuration.Server) {
        if let e = m["event_loops"] {
            if case .scalar("auto", _) = e.value.content { s.eventLoops = nil } else { s.eventLoops = integer(e.value, range: 1...256) }
        }
        if let e = m["header_timeout"] { s.headerTimeout = duration(e.value, positive: true) ?? s.headerTimeout }
        if let e = m["idle_timeout"] { s.idleTimeout = duration(e.value, positive: true) ?? s.idleTimeout }
        if let e = m["shutdown_timeout"] { s.shutdownTimeout = duration(e.value, positive: true) ?? s.shutdownTimeout }
        if let e = m["sse_heartbeat"] { s.sseHeartbeat = duration(e.value, positive: true) ?? s.sseHeartbeat }
        if let e = m["sse_retry"] { s.sseRetry = duration(e.value, positive: true) ?? s.sseRetry }
        if let e = m["websocket_ping"] { s.websocketPing = duration(e.value, positive: true) ?? s.websocketPing }
        if let e = m["max_wait"] { s.maxWait = duration(e.value, positive: true) ?? s.maxWait }
    }

    // MARK: Endpoints

    private static let reservedPaths = ["/deltacast", "/metrics", "/healthz", "/readyz", "/deltacast.js"]

    private mutating func endpoints(_ node: YAMLNode, upstream: Configuration.Upstream, authEnabled: Bool, authLocation: SourceLocation?) -> [Configuration.Endpoint] {
        guard case .sequence(let items) = node.content else {
            fail("expected a list of endpoints ('- path: ...'), found \(node.kindDescription)", at: node.location)
            return []
        }
        if items.isEmpty { fail("endpoints is empty; declare at least one endpoint", at: node.location) }
        var result: [Configuration.Endpoint] = []
        var claimed: [String: Int] = [:]
        for item in items {
            guard let m = mapping(item, section: "endpoints[]", what: "an endpoint") else { continue }
            guard let pathEntry = m["path"] else {
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
            if let e = m["source"] { endpoint.source = enumeration(e.value, Source.self) ?? .poll }
            if let e = m["upstream"] {
                if endpoint.source == .publish {
                    fail("an endpoint with 'source: publish' has no upstream; remove 'upstream'", at: e.keyLocation)
                } else {
                    upstreamTemplate(e.value, path: path, into: &endpoint)
                }
            }
            if let e = m["headers"] {
                if endpoint.source == .publish { fail("an endpoint with 'source: publish' has no upstream; remove 'headers'", at: e.keyLocation) }
                endpoint.headers = headers(e.value)
            }
            if let e = m["interval"] {
                if endpoint.source == .publish {
                    fail("'interval' has no meaning for 'source: publish'; remove it", at: e.keyLocation)
                } else if case .mapping = e.value.content {
                    // `{ min: 250ms, max: 60s }`: adaptive.
                    if let bounds = mapping(e.value, section: "endpoints[].interval", what: "interval"),
                       let minimum = bounds["min"].flatMap({ duration($0.value, positive: true) }),
                       let maximum = bounds["max"].flatMap({ duration($0.value, positive: true) }) {
                        if minimum < .milliseconds(100) || maximum > .seconds(3600) || maximum < minimum {
                            fail("interval { min: \(formatDuration(minimum)), max: \(formatDuration(maximum)) }: use 100ms <= min <= max <= 1h", at: e.value.location)
                        } else {
                            endpoint.interval = minimum
                            endpoint.adaptiveInterval = (minimum, maximum)
                        }
                    } else if mapping(e.value)?["min"] == nil || mapping(e.value)?["max"] == nil {
                        fail("an adaptive interval needs both 'min' and 'max' (e.g. { min: 250ms, max: 60s })", at: e.value.location)
                    }
                } else {
                    endpoint.interval = duration(e.value, positive: true) ?? endpoint.interval
                }
            }
            if let e = m["jitter"] { endpoint.jitter = duration(e.value, positive: false) }
            if let e = m["diff"] { endpoint.diff = enumeration(e.value, DiffMode.self) ?? .jsonPatch }
            if let e = m["array_keys"], let pairs = stringMapping(e.value) {
                for (pointer, field, location) in pairs {
                    if !pointer.isEmpty && pointer.utf8.first != UInt8(ascii: "/") {
                        fail("array key path '\(pointer)' must be a JSON Pointer: \"\" for a root array, or starting with '/'", at: location)
                    }
                    endpoint.arrayKeys.append((pointer, field))
                }
            }
            if let e = m["ignore"], let list = stringList(e.value) {
                for (pointer, location) in list where pointer.utf8.first != UInt8(ascii: "/") {
                    fail(pointer.isEmpty ? "ignore path '' is the whole document: nothing would ever count as a change"
                                         : "ignore path '\(pointer)' must be a JSON Pointer starting with '/'", at: location)
                }
                endpoint.ignore = list.map(\.0)
            }
            if let e = m["params"], let pairs = stringMapping(e.value) {
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
            if let e = m["query"], let list = stringList(e.value) {
                for (name, location) in list where endpoint.upstreamQuery.contains(where: { $0.name == name }) {
                    fail("query parameter '\(name)' is fixed by the upstream template; a client cannot also set it", at: location)
                }
                endpoint.query = list.map(\.0)
            }
            endpoint.auth = authEnabled ? .token : .none
            if let e = m["auth"] {
                endpoint.auth = enumeration(e.value, AuthMode.self) ?? endpoint.auth
                if endpoint.auth == .token && !authEnabled {
                    fail("'auth: token' needs a credential to check: configure auth.jwt or auth.api_keys", at: e.value.location)
                }
            }
            if let e = m["allow"], let text = string(e.value) {
                do {
                    let rule = try AuthorizationRule.parse(text)
                    for name in rule.parameterNames where !path.parameterNames.contains(name) {
                        fail("allow reads params.\(name), but the path '\(path)' has no {\(name)}", at: e.value.location)
                    }
                    endpoint.allow = rule
                } catch {
                    // Point at the character: past the opening quote when the scalar is quoted.
                    var location = e.value.location
                    if case .scalar(_, let style) = e.value.content, style != .plain { location.column += 1 }
                    location.column += error.offset
                    fail("invalid allow expression: \(error.message)", at: location)
                }
            }
            if let e = m["scopes"], let list = stringList(e.value) { endpoint.scopes = list.map(\.0) }
            if endpoint.auth != .token, let e = m["allow"] ?? m["scopes"] {
                fail("'\(e.key)' needs 'auth: token' (this endpoint is 'auth: \(endpoint.auth.rawValue)')", at: e.keyLocation)
            }
            if let e = m["forward_headers"], let list = stringList(e.value) {
                for (name, location) in list where !isToken(name) {
                    fail("invalid header name '\(name)'", at: location)
                }
                endpoint.forwardHeaders = list.map(\.0)
            }
            if let e = m["linger"] { endpoint.linger = duration(e.value, positive: false) ?? endpoint.linger }
            if let e = m["changes"] { endpoint.changes = changeIndex(e.value, endpoint: endpoint) }
            if let e = m["max_body"] { endpoint.maxBody = size(e.value) }
            if let e = m["digest"] { endpoint.digest = boolean(e.value) ?? false }
            result.append(endpoint)
        }
        return result
    }

    private mutating func pathPattern(_ node: YAMLNode) -> PathPattern? {
        guard let text = string(node) else { return nil }
        return pathPattern(text, at: node.location)
    }

    /// An endpoint's `upstream`: `[http(s)://host[:port]]/path[?name=value&...]`, where `{param}`
    /// may stand for a whole path segment or inside a query value. Every parameter it uses is
    /// one of the path's, and every one of the path's is used (else two topics would poll the
    /// same URL).
    private mutating func upstreamTemplate(_ node: YAMLNode, path: PathPattern, into endpoint: inout Configuration.Endpoint) {
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

    private mutating func pathPattern(_ text: String, at location: SourceLocation) -> PathPattern? {
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

    // MARK: Typed values

    /// A mapping's entries by key, after refusing keys the section does not have.
    mutating func mapping(_ node: YAMLNode, section: String, what: String) -> [String: YAMLNode.Entry]? {
        guard case .mapping(let entries) = node.content else {
            fail("expected a mapping for \(what), found \(node.kindDescription)", at: node.location)
            return nil
        }
        let allowed = ConfigurationReference.keyNames(in: section)
        var result: [String: YAMLNode.Entry] = [:]
        for entry in entries {
            if allowed.contains(entry.key) {
                result[entry.key] = entry
            } else {
                let place = section.isEmpty ? "at the top level" : section == "endpoints[]" ? "in endpoint" : "in '\(section)'"
                var message = "unknown key '\(entry.key)' \(place)"
                if let suggestion = closest(entry.key, among: allowed) { message += "; did you mean '\(suggestion)'?" }
                fail(message, at: entry.keyLocation)
            }
        }
        return result
    }

    private func mapping(_ node: YAMLNode) -> [String: YAMLNode.Entry]? {
        guard case .mapping(let entries) = node.content else { return nil }
        return Dictionary(entries.map { ($0.key, $0) }, uniquingKeysWith: { $1 })
    }

    mutating func string(_ node: YAMLNode) -> String? {
        guard case .scalar(let text, _) = node.content, !node.isNull else {
            fail("expected a string, found \(node.kindDescription)", at: node.location)
            return nil
        }
        return text
    }

    mutating func integer(_ node: YAMLNode, range: ClosedRange<Int>) -> Int? {
        guard case .scalar(let text, _) = node.content, !node.isNull else {
            fail("expected an integer, found \(node.kindDescription)", at: node.location)
            return nil
        }
        guard let value = Int(text.replacingUnderscores()) else {
            fail("expected an integer, found '\(text)'", at: node.location)
            return nil
        }
        guard range.contains(value) else {
            fail("\(value) is out of range; expected \(range.lowerBound)...\(range.upperBound)", at: node.location)
            return nil
        }
        return value
    }

    mutating func boolean(_ node: YAMLNode) -> Bool? {
        if case .scalar(let text, _) = node.content {
            switch text {
            case "true", "yes", "on": return true
            case "false", "no", "off": return false
            default: break
            }
        }
        fail("expected true or false, found \(describe(node))", at: node.location)
        return nil
    }

    mutating func duration(_ node: YAMLNode, positive: Bool) -> Duration? {
        guard case .scalar(let text, _) = node.content, !node.isNull, let value = parseDuration(text) else {
            fail("invalid duration \(describe(node)); expected a number and a unit: ms, s, m or h (e.g. 250ms, 5s, 2m, 1h)", at: node.location)
            return nil
        }
        if positive && value == .zero {
            fail("duration must be greater than zero", at: node.location)
            return nil
        }
        return value
    }

    mutating func size(_ node: YAMLNode) -> Int? {
        guard case .scalar(let text, _) = node.content, !node.isNull, let value = parseSize(text) else {
            fail("invalid size \(describe(node)); expected a number and a unit: B, KiB, MiB or GiB (e.g. 512B, 64KiB, 8MiB)", at: node.location)
            return nil
        }
        if value == 0 {
            fail("size must be greater than zero", at: node.location)
            return nil
        }
        return value
    }

    mutating func enumeration<E: RawRepresentable & CaseIterable>(_ node: YAMLNode, _ type: E.Type) -> E? where E.RawValue == String {
        let names = E.allCases.map(\.rawValue)
        if case .scalar(let text, _) = node.content, let value = E(rawValue: text) { return value }
        var message = "invalid value \(describe(node)); expected one of: \(names.joined(separator: ", "))"
        if case .scalar(let text, _) = node.content, let suggestion = closest(text, among: names) {
            message += "; did you mean '\(suggestion)'?"
        }
        fail(message, at: node.location)
        return nil
    }

    mutating func enumList<E: RawRepresentable & CaseIterable & Equatable>(_ node: YAMLNode, _ type: E.Type) -> [E]? where E.RawValue == String {
        guard case .sequence(let items) = node.content else {
            fail("expected a list such as [\(E.allCases.map(\.rawValue).joined(separator: ", "))], found \(node.kindDescription)", at: node.location)
            return nil
        }
        var result: [E] = []
        for item in items {
            guard let value = enumeration(item, type) else { continue }
            if result.contains(value) {
                fail("'\(value.rawValue)' is listed twice", at: item.location)
            } else {
                result.append(value)
            }
        }
        return result
    }

    mutating func stringList(_ node: YAMLNode) -> [(String, SourceLocation)]? {
        guard case .sequence(let items) = node.content else {
            fail("expected a list, found \(node.kindDescription)", at: node.location)
            return nil
        }
        return items.compactMap { item in string(item).map { ($0, item.location) } }
    }

    mutating func stringMapping(_ node: YAMLNode) -> [(String, String, SourceLocation)]? {
        guard case .mapping(let entries) = node.content else {
            fail("expected a mapping, found \(node.kindDescription)", at: node.location)
            return nil
        }
        return entries.compactMap { entry in string(entry.value).map { (entry.key, $0, entry.keyLocation) } }
    }

    mutating func headers(_ node: YAMLNode) -> [(name: String, value: String)] {
        guard let pairs = stringMapping(node) else { return [] }
        var result: [(name: String, value: String)] = []
        for (name, value, location) in pairs {
            if !isToken(name) { fail("invalid header name '\(name)'", at: location); continue }
            if value.contains("\r") || value.contains("\n") || value.contains("\0") {
                fail("header '\(name)' has a line break or NUL in its value", at: location)
                continue
            }
            result.append((name, value))
        }
        return result
    }

    mutating func hostPort(_ node: YAMLNode) -> HostPort? {
        guard case .scalar(let text, _) = node.content, let value = parseHostPort(text) else {
            fail("invalid listen address \(describe(node)); expected host:port such as 127.0.0.1:8080 or [::1]:8080", at: node.location)
            return nil
        }
        return value
    }

    mutating func url(_ node: YAMLNode) -> URLValue? {
        guard case .scalar(let text, _) = node.content, let value = parseURL(text) else {
            fail("invalid URL \(describe(node)); expected http://host[:port][/path] or https://...", at: node.location)
            return nil
        }
        return value
    }

    private func describe(_ node: YAMLNode) -> String {
        if case .scalar(let text, _) = node.content, !node.isNull { return "'\(text)'" }
        return node.kindDescription
    }
}

// MARK: - Value parsers (public: the command line and later modules reuse them)

/// Parses `250ms`, `5s`, `2m`, `1h` (a non-negative integer and a unit).
public func parseDuration(_ text: String) -> Duration? {
    let digits = text.prefix { $0.isASCII && $0.isNumber }
    guard !digits.isEmpty, digits.count <= 9, let number = Int64(digits) else { return nil }
    switch text.dropFirst(digits.count) {
    case "ms": return .milliseconds(number)
    case "s": return .seconds(number)
    case "m": return .seconds(number * 60)
    case "h": return .seconds(number * 3600)
    default: return nil
    }
}

/// Parses `512B`, `64KiB`, `8MiB`, `1GiB` (also `KB`/`MB`/`GB`, powers of 1000, and a bare
/// number of bytes).
public func parseSize(_ text: String) -> Int? {
    let digits = text.prefix { $0.isASCII && $0.isNumber }
    guard !digits.isEmpty, digits.count <= 12, let number = Int(digits) else { return nil }
    let units: [Substring: Int] = ["": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30,
                                   "KB": 1000, "MB": 1_000_000, "GB": 1_000_000_000]
    guard let factor = units[text.dropFirst(digits.count)] else { return nil }
    let (product, overflow) = number.multipliedReportingOverflow(by: factor)
    return overflow || product > 1 << 40 ? nil : product
}

/// Parses `host:port`, `[v6]:port` or `:port` (all interfaces).
public func parseHostPort(_ text: String) -> HostPort? {
    var host: Substring
    var portText: Substring
    if text.hasPrefix("[") {
        guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
        host = text[text.index(after: text.startIndex)..<close]
        portText = text[text.index(close, offsetBy: 2)...]
        guard host.contains(":") else { return nil }
    } else {
        guard let colon = text.lastIndex(of: ":") else { return nil }
        host = text[..<colon]
        portText = text[text.index(after: colon)...]
        if host.contains(":") { return nil }
        if host.isEmpty { host = "0.0.0.0" }
    }
    guard !portText.isEmpty, portText.allSatisfy({ $0.isASCII && $0.isNumber }), let port = Int(portText), port <= 65535,
          host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || ".-:_".contains($0)) }) else { return nil }
    return HostPort(host: String(host), port: port)
}

/// Parses an absolute `http`/`https` URL without query or fragment.
public func parseURL(_ text: String) -> URLValue? {
    let scheme: String
    if text.hasPrefix("http://") { scheme = "http" } else if text.hasPrefix("https://") { scheme = "https" } else { return nil }
    let rest = text.dropFirst(scheme.count + 3)
    guard !rest.contains("?"), !rest.contains("#"), !rest.contains(" ") else { return nil }
    let authority = rest.prefix { $0 != "/" }
    var path = String(rest.dropFirst(authority.count))
    while path.hasSuffix("/") { path.removeLast() }
    let defaultPort = scheme == "http" ? 80 : 443
    let hostPort: HostPort?
    if authority.hasSuffix("]") || !authority.contains(":") {
        var host = String(authority)
        if host.hasPrefix("[") { host = String(host.dropFirst().dropLast()) }
        hostPort = host.isEmpty ? nil : HostPort(host: host, port: defaultPort)
    } else {
        hostPort = parseHostPort(String(authority))
    }
    guard let hostPort, !hostPort.host.isEmpty, !authority.contains("@") else { return nil }
    var description = text
    while description.hasSuffix("/") { description.removeLast() }
    return URLValue(scheme: scheme, host: hostPort.host, port: hostPort.port, path: path, description: description)
}

/// True for an RFC 9110 token (header names, methods).
public func isToken(_ text: String) -> Bool {
    !text.isEmpty && text.unicodeScalars.allSatisfy { scalar in
        scalar.isASCII && (scalar.properties.isAlphabetic || scalar.properties.numericType != nil
                           || "!#$%&'*+-.^_`|~".unicodeScalars.contains(scalar))
    }
}

private func isValidOrigin(_ text: String) -> Bool {
    if text == "*" { return true }
    guard let url = parseURL(text) else { return false }
    return url.path.isEmpty && !text.hasSuffix("/")
}

/// The allowed name nearest to `word` by edit distance, if it is near enough to be a typo.
func closest(_ word: String, among candidates: [String]) -> String? {
    let a = Array(word.lowercased())
    var best: (String, Int)?
    for candidate in candidates {
        let b = Array(candidate.lowercased())
        var previous = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var row = [i] + Array(repeating: 0, count: b.count)
            for j in stride(from: 1, through: b.count, by: 1) {
                row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = row
        }
        let distance = a.isEmpty ? b.count : previous[b.count]
        if distance <= max(2, candidate.count / 3), distance < (best?.1 ?? Int.max) { best = (candidate, distance) }
    }
    return best?.0
}

extension String {
    fileprivate func replacingUnderscores() -> String { filter { $0 != "_" } }
}

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
        var configuration = Configuration()
        var budgetEntries: [(origin: String, rate: Rate, location: SourceLocation)] = []
        guard let top = mapping(root, section: "", what: "the configuration") else { return configuration }
        if let node = top["listen"] { configuration.listen = hostPort(node.value) ?? configuration.listen }
        if let node = top["upstream"], let section = mapping(node.value, section: "upstream", what: "upstream") {
            if let entry = section["base"] { configuration.upstream.base = url(entry.value) }
            if let entry = section["timeout"] { configuration.upstream.timeout = duration(entry.value, positive: true) ?? configuration.upstream.timeout }
            if let entry = section["max_concurrent"] { configuration.upstream.maxConcurrent = integer(entry.value, range: 1...10_000) ?? configuration.upstream.maxConcurrent }
            if let entry = section["headers"] { configuration.upstream.headers = headers(entry.value) }
            if let entry = section["max_body"] { configuration.upstream.maxBody = size(entry.value) ?? configuration.upstream.maxBody }
            if let entry = section["follow_redirects"] { configuration.upstream.followRedirects = boolean(entry.value) ?? false }
            if let entry = section["budget"] { configuration.upstream.budget = budgetRate(entry.value) }
            if let entry = section["budgets"] { budgetEntries = decodeBudgets(entry.value) }
            if let entry = section["oauth2"] { configuration.upstream.oauth2 = decodeOAuth2(entry.value, what: "upstream.oauth2") }
            if let entry = section["oauth2_origins"] {
                if case .mapping(let entries) = entry.value.content {
                    for entry in entries {
                        guard let url = parseURL(entry.key), url.path.isEmpty else {
                            fail("invalid origin '\(entry.key)' in upstream.oauth2_origins; expected http(s)://host[:port] with no path", at: entry.keyLocation)
                            continue
                        }
                        if let settings = decodeOAuth2(entry.value, what: "upstream.oauth2_origins['\(entry.key)']") {
                            configuration.upstream.oauth2ByOrigin.append((url.origin, settings))
                        }
                    }
                } else {
                    fail("upstream.oauth2_origins is \(entry.value.kindDescription); expected a mapping of origin to an oauth2 block", at: entry.value.location)
                }
            }
        }
        if let node = top["transports"] {
            if let list = enumList(node.value, Transport.self) {
                if list.isEmpty { fail("transports is empty; enable at least one of websocket, sse, longpoll", at: node.value.location) }
                configuration.transports = list
            }
        }
        if let node = top["cors"], let section = mapping(node.value, section: "cors", what: "cors") {
            if let entry = section["origins"], let origins = stringList(entry.value) {
                for (origin, location) in origins where !isValidOrigin(origin) {
                    fail("invalid origin '\(origin)'; expected scheme://host[:port] without a path, or '*'", at: location)
                }
                configuration.cors.origins = origins.map(\.0)
            }
        }
        if let node = top["admin"], let section = mapping(node.value, section: "admin", what: "admin") {
            if let entry = section["token"], let token = string(entry.value) {
                if token.count < 16 {
                    fail("admin token is \(token.count) characters long; use at least 16", at: entry.value.location)
                }
                configuration.admin.token = token
            }
            if let entry = section["listen"] { configuration.admin.listen = hostPort(entry.value) }
        }
        if let node = top["auth"], let section = mapping(node.value, section: "auth", what: "auth") {
            decodeAuth(section, into: &configuration.auth)
        }
        if let node = top["tls"], let section = mapping(node.value, section: "tls", what: "tls") {
            let certificate = section["certificate"].flatMap { string($0.value) }
            let key = section["key"].flatMap { string($0.value) }
            if certificate == nil && section["certificate"] == nil { fail("missing required key 'tls.certificate' (a PEM certificate chain file)", at: node.keyLocation) }
            if key == nil && section["key"] == nil { fail("missing required key 'tls.key' (a PEM private key file)", at: node.keyLocation) }
            if let certificate, let key {
                var tls = Configuration.TLS(certificate: certificate, key: key)
                if let entry = section["handshake_timeout"] { tls.handshakeTimeout = duration(entry.value, positive: true) ?? tls.handshakeTimeout }
                configuration.tls = tls
            }
        }
        if let node = top["limits"], let section = mapping(node.value, section: "limits", what: "limits") {
            decodeLimits(section, into: &configuration.limits)
        }
        if let node = top["server"], let section = mapping(node.value, section: "server", what: "server") {
            decodeServer(section, into: &configuration.server)
        }
        if let node = top["types"] { configuration.types = boolean(node.value) ?? false }
        if let node = top["logging"], let section = mapping(node.value, section: "logging", what: "logging") {
            if let entry = section["level"] { configuration.logging.level = enumeration(entry.value, LogLevel.self) ?? configuration.logging.level }
            if let entry = section["access"] { configuration.logging.access = boolean(entry.value) ?? false }
        }
        if let node = top["diagnostics"], let section = mapping(node.value, section: "diagnostics", what: "diagnostics") {
            if let entry = section["echo"] { configuration.diagnostics.echo = boolean(entry.value) ?? false }
        }
        if let node = top["cluster"], let section = mapping(node.value, section: "cluster", what: "cluster") {
            decodeCluster(section, at: node.keyLocation, into: &configuration)
        }
        if let node = top["endpoints"] {
            configuration.endpoints = endpoints(node.value, upstream: configuration.upstream, authEnabled: configuration.auth.isEnabled, authLocation: top["auth"]?.keyLocation)
        } else {
            fail("missing required key 'endpoints'; declare at least one endpoint", at: root.location)
        }
        // A budget names an origin some endpoint polls; anything else is a typo that would
        // leave the real origin unbounded.
        let used = Set(configuration.endpoints.filter { $0.source == .poll }.compactMap { ($0.upstreamOrigin ?? configuration.upstream.base)?.origin })
        if let base = configuration.upstream.base?.origin, configuration.upstream.budget != nil, !used.contains(base), configuration.endpoints.contains(where: { $0.source == .poll }) {
            if let entry = top["upstream"].flatMap({ mapping($0.value)?["budget"] }) {
                fail("upstream.budget limits \(base), which no polled endpoint uses", at: entry.value.location)
            }
        }
        for entry in budgetEntries {
            if configuration.upstream.budgets.contains(where: { $0.origin == entry.origin }) {
                fail("upstream.budgets names \(entry.origin) twice", at: entry.location)
            } else if used.contains(entry.origin) {
                configuration.upstream.budgets.append((entry.origin, entry.rate))
            } else {
                let origins = used.sorted().joined(separator: ", ")
                fail("upstream.budgets names \(entry.origin), which no polled endpoint uses" + (origins.isEmpty ? "" : " (the polled origins: \(origins))"), at: entry.location)
            }
        }
        if configuration.upstream.base == nil, top["upstream"].map({ mapping($0.value)?["base"] == nil }) ?? true,
           let polling = configuration.endpoints.first(where: { $0.source == .poll && $0.upstreamOrigin == nil }) {
            fail("missing required key 'upstream.base': endpoint '\(polling.path)' polls an upstream", at: top["upstream"]?.keyLocation ?? polling.location)
        }
        return configuration
    }

    mutating func decodeCluster(_ section: [String: YAMLNode.Entry], at location: SourceLocation, into configuration: inout Configuration) {
        guard let entry = section["redis"] else {
            fail("missing required key 'cluster.redis' (redis://[:password@]host:port[/db])", at: location)
            return
        }
        guard let text = string(entry.value) else { return }
        let redis: Configuration.RedisURL
        switch Configuration.RedisURL.parse(text) {
        case .success(let parsed): redis = parsed
        case .failure(let message): fail("invalid cluster.redis: \(message.text)", at: entry.value.location); return
        }
        var cluster = Configuration.Cluster(redis: redis, node: Configuration.Cluster.defaultNodeName())
        if let entry = section["node"], let node = string(entry.value) {
            if node.isEmpty || node.count > 64 || !node.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }) {
                fail("invalid cluster.node '\(node)'; use 1-64 letters, digits, '.', '_' or '-'", at: entry.value.location)
            } else {
                cluster.node = node
            }
        }
        if let entry = section["lease"], let lease = duration(entry.value, positive: true) {
            if lease < .seconds(1) || lease > .seconds(600) {
                fail("cluster.lease is \(lease); use 1s to 10m (each node heartbeats at least every sixth of it)", at: entry.value.location)
            } else {
                cluster.lease = lease
            }
        }
        if let entry = section["key_prefix"], let prefix = string(entry.value) {
            if prefix.isEmpty || prefix.count > 64 || !prefix.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || ":._-".contains($0)) }) {
                fail("invalid cluster.key_prefix '\(prefix)'; use 1-64 letters, digits, ':', '.', '_' or '-' (no braces: they are the hash tags)", at: entry.value.location)
            } else {
                cluster.keyPrefix = prefix
            }
        }
        configuration.cluster = cluster
    }

    mutating func decodeLimits(_ section: [String: YAMLNode.Entry], into limits: inout Configuration.Limits) {
        if let entry = section["max_connections"] { limits.maxConnections = integer(entry.value, range: 1...10_000_000) ?? limits.maxConnections }
        if let entry = section["max_connections_per_ip"] { limits.maxConnectionsPerIP = integer(entry.value, range: 1...10_000_000) ?? limits.maxConnectionsPerIP }
        if let entry = section["max_message"] { limits.maxMessage = size(entry.value) ?? limits.maxMessage }
        if let entry = section["max_topics"] { limits.maxTopics = integer(entry.value, range: 1...10_000_000) ?? limits.maxTopics }
        if let entry = section["max_topics_per_connection"] { limits.maxTopicsPerConnection = integer(entry.value, range: 1...100_000) ?? limits.maxTopicsPerConnection }
        if let entry = section["max_request_line"] { limits.maxRequestLine = size(entry.value) ?? limits.maxRequestLine }
        if let entry = section["max_header_bytes"] { limits.maxHeaderBytes = size(entry.value) ?? limits.maxHeaderBytes }
        if let entry = section["max_headers"] { limits.maxHeaders = integer(entry.value, range: 1...10_000) ?? limits.maxHeaders }
        if let entry = section["send_buffer"] { limits.sendBuffer = size(entry.value) ?? limits.sendBuffer }
        if let entry = section["slow_consumer_timeout"] { limits.slowConsumerTimeout = duration(entry.value, positive: true) ?? limits.slowConsumerTimeout }
        if let entry = section["journal_entries"] { limits.journalEntries = integer(entry.value, range: 1...1_000_000) ?? limits.journalEntries }
        if let entry = section["journal_bytes"] { limits.journalBytes = size(entry.value) ?? limits.journalBytes }
        if let entry = section["max_connections_per_user"] { limits.maxConnectionsPerUser = integer(entry.value, range: 1...10_000_000) ?? limits.maxConnectionsPerUser }
        if let entry = section["subscribe_rate"] { limits.subscribeRate = rate(entry.value) ?? limits.subscribeRate }
        if let entry = section["message_rate"] { limits.messageRate = rate(entry.value) ?? limits.messageRate }
        if let entry = section["publish_rate"] { limits.publishRate = rate(entry.value) ?? limits.publishRate }
        if let entry = section["ticket_rate"] { limits.ticketRate = rate(entry.value) ?? limits.ticketRate }
    }

    mutating func decodeAuth(_ section: [String: YAMLNode.Entry], into auth: inout Configuration.Auth) {
        if let node = section["jwt"], let jwtSection = mapping(node.value, section: "auth.jwt", what: "auth.jwt") {
            guard let algorithmEntry = jwtSection["algorithm"] else {
                fail("missing required key 'auth.jwt.algorithm'; expected one of: \(JWTAlgorithm.allCases.map(\.rawValue).joined(separator: ", "))", at: node.keyLocation)
                return
            }
            guard let algorithm = enumeration(algorithmEntry.value, JWTAlgorithm.self) else { return }
            var jwt = Configuration.JWT(algorithm: algorithm)
            if let entry = jwtSection["secret"], let secret = string(entry.value) {
                if algorithm != .hs256 {
                    fail("'secret' is for HS256; \(algorithm.rawValue) verifies with 'public_key'", at: entry.keyLocation)
                } else if secret.utf8.count < 32 {
                    fail("HS256 secret is \(secret.utf8.count) bytes long; use at least 32 (RFC 7518 section 3.2)", at: entry.value.location)
                }
                jwt.secret = secret
            }
            if let entry = jwtSection["public_key"], let key = string(entry.value) {
                if algorithm == .hs256 {
                    fail("'public_key' is for RS256 and ES256; HS256 verifies with 'secret'", at: entry.keyLocation)
                }
                jwt.publicKey = key
            }
            if algorithm == .hs256 && jwtSection["secret"] == nil {
                fail("missing required key 'auth.jwt.secret' for HS256", at: algorithmEntry.value.location)
            }
            if algorithm != .hs256 && jwtSection["public_key"] == nil {
                fail("missing required key 'auth.jwt.public_key' for \(algorithm.rawValue) (a PEM file or PEM text)", at: algorithmEntry.value.location)
            }
            if let entry = jwtSection["issuer"] { jwt.issuer = string(entry.value) }
            if let entry = jwtSection["audience"] { jwt.audience = string(entry.value) }
            if let entry = jwtSection["leeway"] {
                jwt.leeway = duration(entry.value, positive: false) ?? jwt.leeway
                if jwt.leeway > .seconds(300) { fail("leeway \(formatDuration(jwt.leeway)) is more than 5m; a clock that far off needs fixing, not tolerating", at: entry.value.location) }
            }
            auth.jwt = jwt
        }
        if let node = section["api_keys"] {
            guard case .sequence(let items) = node.value.content else {
                return fail("expected a list of API keys ('- { key: ..., subject: ... }'), found \(node.value.kindDescription)", at: node.value.location)
            }
            var seen: Set<String> = []
            for item in items {
                guard let keySection = mapping(item, section: "auth.api_keys[]", what: "an API key") else { continue }
                guard let keyEntry = keySection["key"], let key = string(keyEntry.value) else {
                    if keySection["key"] == nil { fail("missing required key 'key' in API key", at: item.location) }
                    continue
                }
                guard let subjectEntry = keySection["subject"], let subject = string(subjectEntry.value) else {
                    if keySection["subject"] == nil { fail("missing required key 'subject' in API key", at: item.location) }
                    continue
                }
                if key.count < 16 { fail("API key is \(key.count) characters long; use at least 16", at: keyEntry.value.location) }
                if !seen.insert(key).inserted { fail("this API key is listed twice", at: keyEntry.value.location) }
                let scopes = keySection["scopes"].flatMap { stringList($0.value) }?.map(\.0) ?? []
                auth.apiKeys.append(Configuration.APIKey(key: key, subject: subject, scopes: scopes))
            }
        }
        if let entry = section["ticket_ttl"] { auth.ticketTTL = duration(entry.value, positive: true) ?? auth.ticketTTL }
        if let entry = section["expiry_grace"] { auth.expiryGrace = duration(entry.value, positive: false) ?? auth.expiryGrace }
        if let entry = section["max_tickets"] { auth.maxTickets = integer(entry.value, range: 1...10_000_000) ?? auth.maxTickets }
    }

    /// An endpoint's `changes` block: `upstream` and `topics` required.
    mutating func changeIndex(_ node: YAMLNode, endpoint: Configuration.Endpoint) -> Configuration.ChangeIndex? {
        guard let section = mapping(node, section: "endpoints[].changes", what: "changes") else { return nil }
        for required in ["upstream", "topics"] where section[required] == nil { fail("missing required key 'changes.\(required)'", at: node.location) }
        guard let upstreamEntry = section["upstream"], let upstream = string(upstreamEntry.value),
              let topicsEntry = section["topics"], let topics = string(topicsEntry.value) else { return nil }
        guard upstream.hasPrefix("/") || upstream.hasPrefix("http://") || upstream.hasPrefix("https://") else {
            fail("invalid changes.upstream '\(upstream)'; expected a path such as /api/changes?since={cursor}, or an http(s):// URL", at: upstreamEntry.value.location)
            return nil
        }
        guard topics.hasPrefix("/") else {
            fail("invalid changes.topics '\(topics)'; expected a JSON pointer pattern such as /changed/*/path", at: topicsEntry.value.location)
            return nil
        }
        var index = Configuration.ChangeIndex(upstream: upstream, topics: topics)
        if let entry = section["every"], let every = duration(entry.value, positive: true) {
            if every < .milliseconds(100) { fail("changes.every is \(formatDuration(every)); use at least 100ms", at: entry.value.location) }
            index.every = every
        }
        if let entry = section["cursor"], let cursor = string(entry.value) {
            guard cursor.isEmpty || cursor.hasPrefix("/") else {
                fail("invalid changes.cursor '\(cursor)'; expected a JSON pointer such as /next", at: entry.value.location)
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
        guard let section = mapping(node, section: "upstream.oauth2", what: what) else { return nil }
        for required in ["token_url", "client_id", "client_secret"] where section[required] == nil {
            fail("missing required key '\(what).\(required)'", at: node.location)
        }
        guard let urlEntry = section["token_url"], let tokenURL = url(urlEntry.value),
              let idEntry = section["client_id"], let clientID = string(idEntry.value),
              let secretEntry = section["client_secret"], var secret = string(secretEntry.value) else { return nil }
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
                     scope: section["scope"].flatMap { string($0.value) }, audience: section["audience"].flatMap { string($0.value) })
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

    mutating func decodeServer(_ section: [String: YAMLNode.Entry], into server: inout Configuration.Server) {
        if let entry = section["event_loops"] {
            if case .scalar("auto", _) = entry.value.content { server.eventLoops = nil } else { server.eventLoops = integer(entry.value, range: 1...256) }
        }
        if let entry = section["header_timeout"] { server.headerTimeout = duration(entry.value, positive: true) ?? server.headerTimeout }
        if let entry = section["idle_timeout"] { server.idleTimeout = duration(entry.value, positive: true) ?? server.idleTimeout }
        if let entry = section["shutdown_timeout"] { server.shutdownTimeout = duration(entry.value, positive: true) ?? server.shutdownTimeout }
        if let entry = section["sse_heartbeat"] { server.sseHeartbeat = duration(entry.value, positive: true) ?? server.sseHeartbeat }
        if let entry = section["sse_retry"] { server.sseRetry = duration(entry.value, positive: true) ?? server.sseRetry }
        if let entry = section["websocket_ping"] { server.websocketPing = duration(entry.value, positive: true) ?? server.websocketPing }
        if let entry = section["max_wait"] { server.maxWait = duration(entry.value, positive: true) ?? server.maxWait }
    }
}

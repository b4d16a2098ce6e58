/// The list of every configuration key: its section, type, default and meaning. The decoder
/// takes each section's allowed keys from here (unknown keys and "did you mean" come from it),
/// and `deltacast check --reference` prints it as the README's table, so the file format, the
/// typed ``Configuration`` and the documentation cannot drift apart. Defaults are read from the
/// typed structs, never written twice.
public enum ConfigurationReference {
    /// One configuration key.
    public struct Key: Sendable {
        /// Dotted path, e.g. `limits.max_message`; `endpoints[].path` for endpoint keys.
        public var path: String
        /// The value's type as a person writes it.
        public var type: String
        /// The default, or `required`.
        public var defaultValue: String
        /// What it does.
        public var meaning: String
        /// The last component of the path.
        public var name: String { String(path.split(separator: ".").last ?? "") }
    }

    /// Every key, in the order of the reference table.
    public static let keys: [Key] = {
        let c = Configuration()
        let u = c.upstream, l = c.limits, s = c.server, a = c.auth
        func d(_ value: Duration) -> String { formatDuration(value) }
        func z(_ value: Int) -> String { formatSize(value) }
        return [
            Key(path: "listen", type: "host:port", defaultValue: c.listen.description, meaning: "Address to listen on; port 0 picks a free port."),
            Key(path: "upstream", type: "mapping", defaultValue: "", meaning: "The legacy API."),
            Key(path: "upstream.base", type: "URL", defaultValue: "required if an endpoint polls", meaning: "Base URL that endpoint `upstream` templates are appended to."),
            Key(path: "upstream.timeout", type: "duration", defaultValue: d(u.timeout), meaning: "Time allowed for one upstream request."),
            Key(path: "upstream.max_concurrent", type: "integer", defaultValue: "\(u.maxConcurrent)", meaning: "Most upstream requests in flight at once."),
            Key(path: "upstream.headers", type: "mapping", defaultValue: "none", meaning: "Headers sent with every upstream request; use `${VAR}` for secrets."),
            Key(path: "upstream.max_body", type: "size", defaultValue: z(u.maxBody), meaning: "Largest upstream body accepted; larger is an upstream error."),
            Key(path: "upstream.follow_redirects", type: "boolean", defaultValue: "\(u.followRedirects)", meaning: "Follow upstream redirects."),
            Key(path: "upstream.budget", type: "rate", defaultValue: "none", meaning: "Requests per second (or `/m`, `/h`) to the origin of `upstream.base`, never exceeded: a token bucket with a burst of a tenth of a second's worth; due polls wait, earliest and most watched first, first polls ahead."),
            Key(path: "upstream.budgets", type: "mapping", defaultValue: "none", meaning: "Budgets of other origins that endpoints poll, e.g. `{ \"https://billing.internal:8443\": 50/s }`."),
            Key(path: "upstream.oauth2", type: "mapping", defaultValue: "none", meaning: "OAuth2 client credentials (RFC 6749 §4.4) for the origin of `upstream.base`: one token shared by every poll, refreshed at 80 % of its life and once after a 401; not for passthrough endpoints."),
            Key(path: "upstream.oauth2.token_url", type: "URL", defaultValue: "required", meaning: "The token endpoint (`POST grant_type=client_credentials`, client authenticated with HTTP Basic)."),
            Key(path: "upstream.oauth2.client_id", type: "string", defaultValue: "required", meaning: "The client's id."),
            Key(path: "upstream.oauth2.client_secret", type: "string", defaultValue: "required", meaning: "The client's secret: `${VAR}` from the environment or `file:/path`; never shown anywhere."),
            Key(path: "upstream.oauth2.scope", type: "string", defaultValue: "none", meaning: "`scope` of the token request."),
            Key(path: "upstream.oauth2.audience", type: "string", defaultValue: "none", meaning: "`audience` of the token request (Auth0, Okta and others need it)."),
            Key(path: "upstream.oauth2_origins", type: "mapping", defaultValue: "none", meaning: "`oauth2` blocks of other origins that endpoints poll, by origin."),
            Key(path: "endpoints", type: "list", defaultValue: "required", meaning: "The mirrored endpoints, at least one."),
            Key(path: "endpoints[].path", type: "path pattern", defaultValue: "required", meaning: "Path clients use; `{name}` segments are parameters."),
            Key(path: "endpoints[].upstream", type: "URL template", defaultValue: "the `path`", meaning: "Upstream path template, with the same parameters as `path`; may carry a fixed query (`/v1/orders?status=open&customer={id}`), and may be an absolute `http(s)://` URL that overrides `upstream.base`."),
            Key(path: "endpoints[].headers", type: "mapping", defaultValue: "none", meaning: "Headers for this endpoint's upstream requests; replace `upstream.headers` of the same name."),
            Key(path: "endpoints[].source", type: Source.allCases.map(\.rawValue).joined(separator: " \\| "), defaultValue: Source.poll.rawValue, meaning: "`publish`: no upstream, state arrives by `POST /deltacast/publish`."),
            Key(path: "endpoints[].interval", type: "duration", defaultValue: "1s", meaning: "Time between polls while watched; `{ min, max }` adapts each topic's interval to how often it changes and who watches it."),
            Key(path: "endpoints[].interval.min", type: "duration", defaultValue: "required", meaning: "The shortest adaptive interval (at least 100ms): a topic that changes at every poll, or a refresh."),
            Key(path: "endpoints[].interval.max", type: "duration", defaultValue: "required", meaning: "The longest adaptive interval (at most 1h): where a quiet topic drifts."),
            Key(path: "endpoints[].jitter", type: "duration", defaultValue: "interval / 10", meaning: "Random delay added to each poll."),
            Key(path: "endpoints[].diff", type: DiffMode.allCases.map(\.rawValue).joined(separator: " \\| "), defaultValue: DiffMode.jsonPatch.rawValue, meaning: "How changes are sent."),
            Key(path: "endpoints[].array_keys", type: "mapping", defaultValue: "none", meaning: "Array pointer pattern → key field, e.g. `{ /items: id }`; `*` matches any segment; `\"\"` is the root (a bare array)."),
            Key(path: "endpoints[].ignore", type: "list", defaultValue: "none", meaning: "Pointer patterns of volatile fields that never count as a change."),
            Key(path: "endpoints[].params", type: "mapping", defaultValue: "`[^/]+` each", meaning: "Regular expression each path parameter must match in full."),
            Key(path: "endpoints[].query", type: "list", defaultValue: "none", meaning: "Query parameters that are part of the topic; others are ignored (a cache-buster does not split a topic)."),
            Key(path: "endpoints[].auth", type: AuthMode.allCases.map(\.rawValue).joined(separator: " \\| "), defaultValue: "`token` if `auth` has a key, else `none`", meaning: "`token`: a verified JWT or API key is required; `passthrough`: forward client credentials, one topic per credential."),
            Key(path: "endpoints[].allow", type: "expression", defaultValue: "none", meaning: "Who may read a topic, e.g. `params.user == claims.sub`; operators `== != in && \\|\\| !`, references `params.` `claims.` `query.`."),
            Key(path: "endpoints[].scopes", type: "list", defaultValue: "none", meaning: "Scopes the token must all carry (`scope`, `scp` or `scopes` claim)."),
            Key(path: "endpoints[].forward_headers", type: "list", defaultValue: "Authorization, Cookie", meaning: "Headers forwarded and digested under `auth: passthrough`."),
            Key(path: "endpoints[].changes", type: "mapping", defaultValue: "none", meaning: "The upstream's change index: each topic it names is polled at once; `interval` is then the safety net."),
            Key(path: "endpoints[].changes.upstream", type: "URL template", defaultValue: "required", meaning: "The index, e.g. `/api/changes?since={cursor}` (after `upstream.base`) or an absolute URL."),
            Key(path: "endpoints[].changes.every", type: "duration", defaultValue: "1s", meaning: "How often the index is read (at least 100ms)."),
            Key(path: "endpoints[].changes.cursor", type: "JSON pointer", defaultValue: "none", meaning: "Where the next cursor is in the index's answer; sent back as `{cursor}`."),
            Key(path: "endpoints[].changes.topics", type: "pointer pattern", defaultValue: "required", meaning: "Where the changed topics are: client paths, or values of the endpoint's one parameter (`/changed/*/id`)."),
            Key(path: "endpoints[].linger", type: "duration", defaultValue: "30s", meaning: "Polling continues this long after the last subscriber or GET."),
            Key(path: "endpoints[].max_body", type: "size", defaultValue: "`upstream.max_body`", meaning: "Largest body for this endpoint."),
            Key(path: "endpoints[].digest", type: "bool", defaultValue: "false", meaning: "Snapshots and patches carry the SHA-256 of the resulting document (RFC 8785 form); the client library checks it and resynchronises on drift."),
            Key(path: "transports", type: "list", defaultValue: Transport.allCases.map(\.rawValue).joined(separator: ", "), meaning: "Enabled transports: " + Transport.allCases.map(\.rawValue).joined(separator: ", ") + "."),
            Key(path: "cors", type: "mapping", defaultValue: "", meaning: "Cross-origin policy."),
            Key(path: "cors.origins", type: "list", defaultValue: "none", meaning: "Allowed browser origins (`scheme://host[:port]`), or `*`."),
            Key(path: "admin", type: "mapping", defaultValue: "", meaning: "Admin endpoints."),
            Key(path: "admin.token", type: "string", defaultValue: "none (admin off)", meaning: "Bearer token for refresh/publish/status, 16+ characters; use `${VAR}`."),
            Key(path: "admin.listen", type: "host:port", defaultValue: "none", meaning: "Separate address for the admin endpoints, the status page and `/metrics` (then 404 on `listen`)."),
            Key(path: "auth", type: "mapping", defaultValue: "", meaning: "Client authentication."),
            Key(path: "auth.jwt", type: "mapping", defaultValue: "none", meaning: "JSON Web Token verification."),
            Key(path: "auth.jwt.algorithm", type: JWTAlgorithm.allCases.map(\.rawValue).joined(separator: " \\| "), defaultValue: "required", meaning: "The only `alg` accepted (`none` never is)."),
            Key(path: "auth.jwt.secret", type: "string", defaultValue: "required for HS256", meaning: "HS256 shared secret, 32+ bytes; use `${VAR}`."),
            Key(path: "auth.jwt.public_key", type: "path or PEM", defaultValue: "required for RS256/ES256", meaning: "RSA (2048+ bits) or P-256 public key or certificate: a PEM file, or PEM text from `${VAR}`."),
            Key(path: "auth.jwt.issuer", type: "string", defaultValue: "none", meaning: "Required `iss`."),
            Key(path: "auth.jwt.audience", type: "string", defaultValue: "none", meaning: "Required `aud` (one of them)."),
            Key(path: "auth.jwt.leeway", type: "duration", defaultValue: d(Configuration.JWT.defaultLeeway), meaning: "Clock skew allowed for `exp` and `nbf`."),
            Key(path: "auth.api_keys", type: "list", defaultValue: "none", meaning: "Static API keys: `- { key: ${KEY}, subject: NAME, scopes: [a, b] }`."),
            Key(path: "auth.api_keys[].key", type: "string", defaultValue: "required", meaning: "The key, 16+ characters."),
            Key(path: "auth.api_keys[].subject", type: "string", defaultValue: "required", meaning: "Its `claims.sub`."),
            Key(path: "auth.api_keys[].scopes", type: "list", defaultValue: "none", meaning: "Its scopes."),
            Key(path: "auth.ticket_ttl", type: "duration", defaultValue: d(a.ticketTTL), meaning: "Lifetime of a single-use ticket from `POST /deltacast/ticket`."),
            Key(path: "auth.expiry_grace", type: "duration", defaultValue: d(a.expiryGrace), meaning: "After `exp`, time to renew with an `auth` message before `expired` and close 4401."),
            Key(path: "auth.max_tickets", type: "integer", defaultValue: "\(a.maxTickets)", meaning: "Outstanding tickets in all; beyond → 503."),
            Key(path: "tls", type: "mapping", defaultValue: "none (plain HTTP)", meaning: "Native TLS 1.2/1.3 (OpenSSL), ALPN `http/1.1`; SIGHUP reloads the files."),
            Key(path: "tls.certificate", type: "path", defaultValue: "required", meaning: "PEM certificate chain, leaf first."),
            Key(path: "tls.key", type: "path", defaultValue: "required", meaning: "PEM private key."),
            Key(path: "tls.handshake_timeout", type: "duration", defaultValue: d(Configuration.TLS.defaultHandshakeTimeout), meaning: "Time to complete a handshake; slower → closed."),
            Key(path: "limits", type: "mapping", defaultValue: "", meaning: "Resource limits."),
            Key(path: "limits.max_connections", type: "integer", defaultValue: "\(l.maxConnections)", meaning: "Open connections in all; beyond → 503."),
            Key(path: "limits.max_connections_per_ip", type: "integer", defaultValue: "\(l.maxConnectionsPerIP)", meaning: "Open connections per client IP; beyond → 429."),
            Key(path: "limits.max_message", type: "size", defaultValue: z(l.maxMessage), meaning: "Largest client WebSocket message or request body."),
            Key(path: "limits.max_topics", type: "integer", defaultValue: "\(l.maxTopics)", meaning: "Topics alive at once (LRU eviction of idle ones)."),
            Key(path: "limits.max_topics_per_connection", type: "integer", defaultValue: "\(l.maxTopicsPerConnection)", meaning: "Subscriptions per connection; beyond → `too_many`."),
            Key(path: "limits.max_request_line", type: "size", defaultValue: z(l.maxRequestLine), meaning: "Longest request line; beyond → 414."),
            Key(path: "limits.max_header_bytes", type: "size", defaultValue: z(l.maxHeaderBytes), meaning: "Largest header block; beyond → 431."),
            Key(path: "limits.max_headers", type: "integer", defaultValue: "\(l.maxHeaders)", meaning: "Most header fields; beyond → 431."),
            Key(path: "limits.send_buffer", type: "size", defaultValue: z(l.sendBuffer), meaning: "Pending bytes per connection before conflation."),
            Key(path: "limits.slow_consumer_timeout", type: "duration", defaultValue: d(l.slowConsumerTimeout), meaning: "No write progress this long → closed."),
            Key(path: "limits.journal_entries", type: "integer", defaultValue: "\(l.journalEntries)", meaning: "Changes kept per topic for resumes."),
            Key(path: "limits.journal_bytes", type: "size", defaultValue: z(l.journalBytes), meaning: "Patch bytes kept per topic for resumes."),
            Key(path: "limits.max_connections_per_user", type: "integer", defaultValue: "\(l.maxConnectionsPerUser)", meaning: "WebSocket and SSE connections per token subject; beyond → 429 or close 1008."),
            Key(path: "limits.subscribe_rate", type: "rate", defaultValue: "\(l.subscribeRate)", meaning: "Subscribes per connection (burst = the count); beyond → `too_many`."),
            Key(path: "limits.message_rate", type: "rate", defaultValue: "\(l.messageRate)", meaning: "Client WebSocket messages per connection; beyond → close 1008."),
            Key(path: "limits.publish_rate", type: "rate", defaultValue: "\(l.publishRate)", meaning: "Publishes and refreshes per admin token; beyond → 429 + `Retry-After`."),
            Key(path: "limits.ticket_rate", type: "rate", defaultValue: "\(l.ticketRate)", meaning: "Tickets per subject; beyond → 429 + `Retry-After`."),
            Key(path: "server", type: "mapping", defaultValue: "", meaning: "Data plane."),
            Key(path: "server.event_loops", type: "integer or `auto`", defaultValue: "auto", meaning: "Event-loop threads; `auto` = usable cores."),
            Key(path: "server.header_timeout", type: "duration", defaultValue: d(s.headerTimeout), meaning: "Time to receive a header block; slower → 408."),
            Key(path: "server.idle_timeout", type: "duration", defaultValue: d(s.idleTimeout), meaning: "Keep-alive idle time before close."),
            Key(path: "server.shutdown_timeout", type: "duration", defaultValue: d(s.shutdownTimeout), meaning: "Graceful shutdown deadline."),
            Key(path: "server.sse_heartbeat", type: "duration", defaultValue: d(s.sseHeartbeat), meaning: "SSE comment-line interval."),
            Key(path: "server.sse_retry", type: "duration", defaultValue: d(s.sseRetry), meaning: "SSE `retry:` hint."),
            Key(path: "server.websocket_ping", type: "duration", defaultValue: d(s.websocketPing), meaning: "A ping after this long without a frame from the peer; two missed pongs close."),
            Key(path: "server.max_wait", type: "duration", defaultValue: d(s.maxWait), meaning: "Longest long-poll hold a client may request."),
            Key(path: "types", type: "boolean", defaultValue: "false", meaning: "Serve `/deltacast/types.d.ts`: a TypeScript interface per endpoint and the `Topics` map, inferred from the states the proxy holds (public endpoints only)."),
            Key(path: "logging", type: "mapping", defaultValue: "", meaning: "Logging."),
            Key(path: "logging.level", type: LogLevel.allCases.map(\.rawValue).joined(separator: " \\| "), defaultValue: c.logging.level.rawValue, meaning: "Lowest level written."),
            Key(path: "logging.access", type: "boolean", defaultValue: "\(c.logging.access)", meaning: "One access-log line per request."),
            Key(path: "cluster", type: "mapping", defaultValue: "none (one process)", meaning: "Cluster mode on Redis: one poll per topic cluster-wide, one history, cursors valid on every node."),
            Key(path: "cluster.redis", type: "URL", defaultValue: "required", meaning: "`redis://[[user]:password@]host[:port][/db]`; the password via `${VAR}`."),
            Key(path: "cluster.node", type: "string", defaultValue: "host name and process id", meaning: "This node's name, unique in the cluster."),
            Key(path: "cluster.lease", type: "duration", defaultValue: "3 × the shortest interval, ≥ 1s", meaning: "Membership lease (1s–10m): a node not heard from for this long is dead, and the topics it polled are claimed within lease + interval."),
            Key(path: "cluster.key_prefix", type: "string", defaultValue: "deltacast", meaning: "Every Redis key and channel starts with it."),
            Key(path: "diagnostics", type: "mapping", defaultValue: "", meaning: "Test-only routes."),
            Key(path: "diagnostics.echo", type: "boolean", defaultValue: "\(c.diagnostics.echo)", meaning: "Serve the `/deltacast/echo` WebSocket echo route."),
        ]
    }()

    /// The names allowed directly under `section` ("" for the top level, `endpoints[]` for an
    /// endpoint).
    public static func keyNames(in section: String) -> [String] {
        keys.compactMap { key in
            let prefix = section.isEmpty ? "" : section + "."
            guard key.path.hasPrefix(prefix) else { return nil }
            let rest = key.path.dropFirst(prefix.count)
            return rest.contains(".") ? nil : String(rest)
        }
    }

    /// The reference as a Markdown table.
    public static var markdown: String {
        var lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
        for key in keys {
            lines.append("| `\(key.path)` | \(key.type) | \(key.defaultValue) | \(key.meaning) |")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// `250ms`, `5s`, `2m`, `1h`: the largest unit that divides the duration exactly.
public func formatDuration(_ duration: Duration) -> String {
    let milliseconds = duration.wholeMilliseconds
    if milliseconds % 3_600_000 == 0 && milliseconds > 0 { return "\(milliseconds / 3_600_000)h" }
    if milliseconds % 60_000 == 0 && milliseconds > 0 { return "\(milliseconds / 60_000)m" }
    if milliseconds % 1000 == 0 { return "\(milliseconds / 1000)s" }
    return "\(milliseconds)ms"
}

/// `512B`, `64KiB`, `8MiB`, `1GiB`: the largest binary unit that divides the size exactly.
public func formatSize(_ bytes: Int) -> String {
    for (unit, factor) in [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] where bytes > 0 && bytes % factor == 0 {
        return "\(bytes / factor)\(unit)"
    }
    return "\(bytes)B"
}

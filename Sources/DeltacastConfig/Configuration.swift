#if canImport(Glibc)
import Glibc
#endif

/// Deltacast's whole configuration, validated and typed. Every default lives here, next to the
/// reason for it; ``ConfigurationReference`` renders them into the README's reference table.
public struct Configuration: Sendable {
    /// Address the proxy listens on. Default `127.0.0.1:8080`: loopback until someone decides
    /// to expose it.
    public var listen = HostPort(host: "127.0.0.1", port: 8080)
    /// The legacy API and how the proxy treats it.
    public var upstream = Upstream()
    /// The mirrored endpoints; at least one.
    public var endpoints: [Endpoint] = []
    /// Enabled push transports, in the client's order of preference. Default: all three.
    public var transports: [Transport] = Transport.allCases
    /// Cross-origin policy for browsers.
    public var cors = CORS()
    /// Admin endpoints (`/deltacast/refresh`, `/deltacast/publish`).
    public var admin = Admin()
    /// Client authentication: JWT and API keys, tickets, expiry.
    public var auth = Auth()
    /// Native TLS; nil serves plain HTTP.
    public var tls: TLS?
    /// Resource limits: every queue and table the proxy holds has one.
    public var limits = Limits()
    /// Event loops, timeouts and heartbeats of the data plane.
    public var server = Server()
    /// Logging.
    public var logging = Logging()
    /// Whether `GET /deltacast/types.d.ts` serves the topics' TypeScript types, inferred from
    /// the states the proxy holds.
    public var types = false
    /// Test-only routes.
    public var diagnostics = Diagnostics()
    /// Cluster mode on Redis; nil runs one independent process.
    public var cluster: Cluster?

    /// Creates the default configuration (no endpoints).
    public init() {}

    /// The legacy API.
    public struct Upstream: Sendable {
        /// Base URL every endpoint's `upstream` template is appended to. Required when any
        /// endpoint polls.
        public var base: URLValue?
        /// Time allowed for one upstream request, connect to last byte. Default 5 s: well
        /// under a typical 30 s load-balancer timeout, long enough for a slow legacy query.
        public var timeout: Duration = .seconds(5)
        /// Most upstream requests in flight at once, all endpoints together. Default 16: bounds
        /// the load the proxy itself can put on the legacy API.
        public var maxConcurrent = 16
        /// Headers sent with every upstream request (e.g. a service token), in file order.
        public var headers: [(name: String, value: String)] = []
        /// Largest upstream body accepted; a larger one is an upstream error. Default 8 MiB.
        public var maxBody = 8 * 1024 * 1024
        /// Whether to follow redirects. Default false: a redirect usually means a login page.
        public var followRedirects = false
        /// Requests per second to the origin of ``base`` (polls, cold GETs, passthrough topics,
        /// refreshes), never exceeded. Default: none (only ``maxConcurrent`` bounds them).
        public var budget: Rate?
        /// Budgets of other origins (absolute endpoint `upstream` URLs), by origin
        /// (`https://billing.internal:8443`), in file order.
        public var budgets: [(origin: String, rate: Rate)] = []
        /// OAuth2 client credentials (RFC 6749 §4.4) for the requests to the origin of ``base``.
        public var oauth2: OAuth2?
        /// OAuth2 client credentials of other origins, by origin, in file order.
        public var oauth2ByOrigin: [(origin: String, settings: OAuth2)] = []

        /// Where the proxy gets a token for an origin's requests (RFC 6749 §4.4): one token is
        /// shared by every poll of the origin. The secret never appears in logs, metrics, the
        /// status page, `deltacast check` or an error.
        public struct OAuth2: Sendable, Equatable, CustomStringConvertible {
            public var tokenURL: URLValue
            public var clientID: String
            public var clientSecret: String
            public var scope: String?
            public var audience: String?
            public init(tokenURL: URLValue, clientID: String, clientSecret: String, scope: String? = nil, audience: String? = nil) {
                self.tokenURL = tokenURL; self.clientID = clientID; self.clientSecret = clientSecret; self.scope = scope; self.audience = audience
            }
            /// Without the secret.
            public var description: String { "oauth2 client \(clientID) at \(tokenURL)" }
        }
        /// Creates the defaults.
        public init() {}

        /// The budget of requests to `origin` (`scheme://host:port`), if any.
        public func budget(forOrigin origin: String) -> Rate? {
            if let named = budgets.first(where: { $0.origin == origin }) { return named.rate }
            if let base, base.origin == origin { return budget }
            return nil
        }
    }

    /// One mirrored endpoint.
    public struct Endpoint: Sendable {
        /// Path pattern clients use, e.g. `/api/users/{user}/notifications`.
        public var path: PathPattern
        /// The path the proxy fetches, relative to `upstream.base` (or to ``upstreamOrigin``),
        /// with the same `{params}`. Default: the same as `path`.
        public var upstream: PathPattern
        /// A fixed query string of the `upstream` template (`?format=json&customer={id}`), in
        /// file order; values may hold `{param}`s. Client query parameters listed in ``query``
        /// follow them (see ``upstreamURL(base:parameters:topic:)``).
        public var upstreamQuery: [(name: String, value: String)] = []
        /// An absolute `upstream: http(s)://host[:port]/path` overrides `upstream.base` for this
        /// endpoint: one proxy can front several legacy services. Nil uses `upstream.base`.
        public var upstreamOrigin: URLValue?
        /// Headers sent with this endpoint's requests, after `upstream.headers` (a header of the
        /// same name replaces the shared one), in file order.
        public var headers: [(name: String, value: String)] = []
        /// Where state comes from: polling the upstream, or `POST /deltacast/publish`.
        public var source: Source = .poll
        /// Time between polls while the topic is watched. Default 1 s. With
        /// ``adaptiveInterval``, the shortest.
        public var interval: Duration = .seconds(1)
        /// `interval: { min, max }`: each topic's interval follows how often it changes (halved
        /// by a poll that found a change, half as long again after one that did not; a new
        /// topic starts at the geometric mean of the bounds) and who watches it, between these
        /// bounds. Nil: a fixed `interval`.
        public var adaptiveInterval: (min: Duration, max: Duration)?
        /// Random extra delay added to each poll, so topics do not poll in lock step.
        /// Default: a tenth of `interval`.
        public var jitter: Duration?
        /// How changes are expressed.
        public var diff: DiffMode = .jsonPatch
        /// Array paths whose elements are matched by a key field (pointer pattern → field).
        public var arrayKeys: [(path: String, field: String)] = []
        /// Pointer patterns of volatile fields that never count as a change.
        public var ignore: [String] = []
        /// Regular expression each path parameter must match in full. Default `[^/]+`.
        public var params: [String: String] = [:]
        /// Query parameters that are part of the topic (and forwarded upstream); others are
        /// refused. Default none.
        public var query: [String] = []
        /// Credential handling. Default `token` when `auth` configures a key, else `none`.
        public var auth: AuthMode = .none
        /// Who may read this endpoint's topics (`auth: token`), e.g. `params.user == claims.sub`.
        public var allow: AuthorizationRule?
        /// Scopes the token must carry (all of them), e.g. `[prices:read]`.
        public var scopes: [String] = []
        /// Request headers forwarded upstream under `auth: passthrough`, and digested into the
        /// topic. Default `Authorization` and `Cookie`.
        public var forwardHeaders = ["Authorization", "Cookie"]
        /// How long the topic keeps polling after its last subscriber or plain GET. Default 30 s.
        public var linger: Duration = .seconds(30)
        /// A cheap "what changed" resource of the upstream: each topic it names is polled at
        /// once, and `interval` becomes the safety net. Nil: none.
        public var changes: ChangeIndex?
        /// Largest body accepted for this endpoint. Default: `upstream.max_body`.
        public var maxBody: Int?
        /// Whether snapshots and patches carry `digest`, the SHA-256 (hex) of the document they
        /// result in, serialized as RFC 8785 (JSON Canonicalization Scheme). Default false.
        public var digest = false
        /// Where the endpoint was declared (its `path` key), for messages.
        public var location: SourceLocation

        /// The jitter in force: the configured one or a tenth of the interval.
        public var effectiveJitter: Duration { jitter ?? interval / 10 }
    }

    /// Cross-origin policy.
    public struct CORS: Sendable {
        /// Origins allowed to call the proxy from a browser and open WebSockets; `*` for any.
        /// Default none: only same-origin pages.
        public var origins: [String] = []
        /// Creates the defaults.
        public init() {}
    }

    /// Admin endpoint protection.
    public struct Admin: Sendable {
        /// Bearer token for `/deltacast/refresh` and `/deltacast/publish`; at least 16
        /// characters. Default none: the admin endpoints answer 403.
        public var token: String?
        /// A separate address for the admin endpoints, the status page and `/metrics`; when
        /// set, the main listener answers 404 for them. Default none: one listener.
        public var listen: HostPort?
        /// Creates the defaults.
        public init() {}
    }

    /// Client authentication.
    public struct Auth: Sendable {
        /// JSON Web Tokens: one algorithm and its key.
        public var jwt: JWT?
        /// Static API keys (bearer tokens that never expire), each with a subject and scopes.
        public var apiKeys: [APIKey] = []
        /// How long a ticket from `POST /deltacast/ticket` stays valid (single use). Default
        /// 30 s: long enough to open a stream, too short to matter in a log.
        public var ticketTTL: Duration = .seconds(30)
        /// Time after a token's `exp` before its subscriptions end (a chance to renew with an
        /// `auth` message). Default 10 s.
        public var expiryGrace: Duration = .seconds(10)
        /// Tickets issued and not yet used or expired, in all; beyond → 503. Default 100,000.
        public var maxTickets = 100_000
        /// Whether any credential is configured (then endpoints default to `auth: token`).
        public var isEnabled: Bool { jwt != nil || !apiKeys.isEmpty }
        /// Creates the defaults.
        public init() {}
    }

    /// JSON Web Token verification.
    public struct JWT: Sendable {
        /// The only `alg` accepted.
        public var algorithm: JWTAlgorithm
        /// HS256: the shared secret (32+ bytes; use `${VAR}`).
        public var secret: String?
        /// RS256/ES256: a PEM public key or certificate, as a file path or inline PEM text.
        public var publicKey: String?
        /// Required `iss`, if set.
        public var issuer: String?
        /// Required `aud` (or one of them), if set.
        public var audience: String?
        /// Clock skew allowed for `exp` and `nbf`. Default 30 s.
        public var leeway: Duration = JWT.defaultLeeway
        /// 30 s: covers ordinary clock drift between the token issuer and the proxy.
        public static let defaultLeeway: Duration = .seconds(30)
    }

    /// One static API key.
    public struct APIKey: Sendable {
        /// The key (16+ characters; use `${VAR}`).
        public var key: String
        /// The subject it stands for (`claims.sub`).
        public var subject: String
        /// Its scopes.
        public var scopes: [String]
    }

    /// TLS via OpenSSL: TLS 1.2 and 1.3 only, ALPN `http/1.1`.
    public struct TLS: Sendable {
        /// PEM certificate chain file (leaf first). Reloaded on SIGHUP.
        public var certificate: String
        /// PEM private key file. Reloaded on SIGHUP.
        public var key: String
        /// Time a client has to finish the handshake. Default 10 s.
        public var handshakeTimeout: Duration = TLS.defaultHandshakeTimeout
        /// 10 s: as long as the header timeout; a slow mobile handshake takes well under it.
        public static let defaultHandshakeTimeout: Duration = .seconds(10)
    }

    /// Cluster mode: several proxies share one poll per topic and one history through Redis.
    public struct Cluster: Sendable, Equatable {
        /// The Redis server (`redis://[[user]:password@]host[:port][/db]`), or a Redis Cluster's
        /// seeds (`redis-cluster://[[user]:password@]host[:port][,host[:port]...]`).
        public var redis: RedisURL
        /// This node's name, unique in the cluster. Default: the host name and the process id.
        public var node: String
        /// The membership lease (a node not heard from for this long is dead); nil: 3 × the
        /// shortest poll interval, at least 1 s.
        public var lease: Duration?
        /// Every key and channel starts with it. Default `deltacast`.
        public var keyPrefix = "deltacast"

        public init(redis: RedisURL, node: String, lease: Duration? = nil, keyPrefix: String = "deltacast") {
            self.redis = redis
            self.node = node
            self.lease = lease
            self.keyPrefix = keyPrefix
        }

        /// The host name and the process id (`web-3-41234`): unique per process.
        public static func defaultNodeName() -> String {
            var buffer = [CChar](repeating: 0, count: 256)
            let host = gethostname(&buffer, buffer.count) == 0 ? String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "node"
            let cleaned = String(host.map { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) ? $0 : "-" }.prefix(48))
            return "\(cleaned.isEmpty ? "node" : cleaned)-\(getpid())"
        }

        /// The lease in force: as configured, else 3 × the shortest interval of a polled
        /// endpoint, at least 1 s (and 3 s with no polled endpoint).
        public func effectiveLease(endpoints: [Endpoint]) -> Duration {
            if let lease { return lease }
            guard let shortest = endpoints.filter({ $0.source == .poll }).map(\.interval).min() else { return .seconds(3) }
            return max(.seconds(1), shortest * 3)
        }
    }

    /// An upstream change index (`changes:` of an endpoint).
    public struct ChangeIndex: Sendable, Equatable {
        /// Where it is: a path after `upstream.base` or an absolute URL, with `{cursor}` where
        /// the last cursor goes (empty at first).
        public var upstream: String
        /// How often it is read. Default 1 s.
        public var every: Duration = .seconds(1)
        /// JSON pointer to the next cursor in its answer; nil: no cursor (the index lists what
        /// changed lately, and the same entry may come twice).
        public var cursor: String?
        /// Pointer pattern (`*` for any element or member) to the changed topics: client paths
        /// (`/api/orders/17`), or values of the endpoint's one parameter (`17`).
        public var topics: String
        public init(upstream: String, every: Duration = .seconds(1), cursor: String? = nil, topics: String) {
            self.upstream = upstream; self.every = every; self.cursor = cursor; self.topics = topics
        }
    }

    /// Why a value is invalid, in words (`file:line:col` is added by the loader).
    public struct ConfigurationMessage: Error, Sendable, Equatable {
        public let text: String
        public init(_ text: String) { self.text = text }
    }

    /// A `redis://` or `redis-cluster://` URL, parsed.
    public struct RedisURL: Sendable, Equatable, CustomStringConvertible {
        /// The server, or a Redis Cluster's first seed.
        public var host: String
        public var port: Int
        /// The ACL user (`AUTH user password`), or nil for `AUTH password`.
        public var user: String?
        public var password: String?
        public var database: Int
        /// A Redis Cluster's seed nodes (the first is `host`/`port`); empty for one Redis.
        public var seeds: [Seed]

        /// One Redis Cluster node to read the slot map from.
        public struct Seed: Sendable, Hashable, CustomStringConvertible {
            public var host: String
            public var port: Int
            public init(host: String, port: Int) { self.host = host; self.port = port }
            public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
        }

        public init(host: String, port: Int = 6379, user: String? = nil, password: String? = nil, database: Int = 0, seeds: [Seed] = []) {
            self.host = host; self.port = port; self.user = user; self.password = password; self.database = database; self.seeds = seeds
        }

        /// Whether it names a Redis Cluster (`redis-cluster://`).
        public var isCluster: Bool { !seeds.isEmpty }

        /// The same credentials at another address (a cluster node).
        public func at(host: String, port: Int) -> RedisURL {
            RedisURL(host: host, port: port, user: user, password: password, database: database)
        }

        /// The URL without its password (for logs and the status page).
        public var description: String {
            let credentials = password == nil ? "" : (user ?? "") + ":***@"
            if isCluster { return "redis-cluster://\(credentials)\(seeds.map(\.description).joined(separator: ","))" }
            return "redis://\(credentials)\(Seed(host: host, port: port))/\(database)"
        }

        /// Parses `redis://[[user]:password@]host[:port][/db]` or
        /// `redis-cluster://[[user]:password@]host[:port][,host[:port]...]`; the error says
        /// what is wrong.
        public static func parse(_ text: String) -> Result<RedisURL, ConfigurationMessage> {
            if text.hasPrefix("rediss://") {
                return .failure(ConfigurationMessage("TLS to Redis (rediss://) is not supported; reach Redis over a private network or a local TLS tunnel, and use redis://"))
            }
            let cluster = text.hasPrefix("redis-cluster://")
            guard cluster || text.hasPrefix("redis://") else {
                return .failure(ConfigurationMessage("'\(text)' is not a redis:// or redis-cluster:// URL; expected redis://[:password@]host:port[/db] or redis-cluster://[:password@]host:port,host:port"))
            }
            var rest = Substring(text.dropFirst(cluster ? "redis-cluster://".count : "redis://".count))
            var user: String?, password: String?
            if let at = rest.lastIndex(of: "@") {
                let credentials = rest[..<at]
                rest = rest[rest.index(after: at)...]
                guard let colon = credentials.firstIndex(of: ":") else {
                    return .failure(ConfigurationMessage("the credentials in a redis URL are ':password@' or 'user:password@'"))
                }
                user = colon == credentials.startIndex ? nil : String(credentials[..<colon])
                password = String(credentials[credentials.index(after: colon)...])
                if password!.isEmpty { return .failure(ConfigurationMessage("the redis URL has an empty password")) }
            }
            var database = 0
            if let slash = rest.firstIndex(of: "/") {
                let text = rest[rest.index(after: slash)...]
                guard let number = Int(text), number >= 0, number <= 1_000_000 else {
                    return .failure(ConfigurationMessage("'\(text)' is not a database number; expected /0, /1, ..."))
                }
                if cluster && number != 0 { return .failure(ConfigurationMessage("a Redis Cluster has only database 0; leave out '/\(text)'")) }
                database = number
                rest = rest[..<slash]
            }
            if rest.contains("?") || rest.contains("#") { return .failure(ConfigurationMessage("a redis URL takes no query or fragment")) }
            if !cluster && rest.contains(",") {
                return .failure(ConfigurationMessage("a redis:// URL names one server; for a Redis Cluster's seeds use redis-cluster://host:port,host:port"))
            }
            var seeds: [Seed] = []
            for part in rest.split(separator: ",", omittingEmptySubsequences: false) {
                if cluster && part.isEmpty && rest.contains(",") { return .failure(ConfigurationMessage("an empty seed in '\(rest)'; separate seeds with one comma")) }
                switch parseAddress(part) {
                case .success(let seed): seeds.append(seed)
                case .failure(let message): return .failure(message)
                }
            }
            if seeds.count > 64 { return .failure(ConfigurationMessage("\(seeds.count) seeds; name at most 64 (any few primaries will do: the rest are read from the slot map)")) }
            return .success(RedisURL(host: seeds[0].host, port: seeds[0].port, user: user, password: password, database: database, seeds: cluster ? seeds : []))
        }

        /// `host[:port]` or `[v6][:port]`; the port defaults to 6379.
        private static func parseAddress(_ text: Substring) -> Result<Seed, ConfigurationMessage> {
            var host = String(text), port = 6379
            if host.hasPrefix("[") {
                guard let close = host.firstIndex(of: "]") else { return .failure(ConfigurationMessage("an IPv6 address in a redis URL needs its closing ]")) }
                let after = host[host.index(after: close)...]
                if after.hasPrefix(":") {
                    guard let number = Int(after.dropFirst()), (1...65535).contains(number) else { return .failure(ConfigurationMessage("'\(after.dropFirst())' is not a port (1-65535)")) }
                    port = number
                } else if !after.isEmpty {
                    return .failure(ConfigurationMessage("unexpected '\(after)' after the IPv6 address"))
                }
                host = String(host[host.index(after: host.startIndex)..<close])
            } else if let colon = host.lastIndex(of: ":") {
                let portText = host[host.index(after: colon)...]
                guard let number = Int(portText), (1...65535).contains(number) else { return .failure(ConfigurationMessage("'\(portText)' is not a port (1-65535)")) }
                port = number
                host = String(host[..<colon])
            }
            guard !host.isEmpty else { return .failure(ConfigurationMessage("the redis URL names no host")) }
            return .success(Seed(host: host, port: port))
        }
    }

    /// Limits. Past each one the proxy refuses with a named status, close code or error event.
    public struct Limits: Sendable {
        /// Open client connections in all; beyond it new ones get 503. Default 100,000.
        public var maxConnections = 100_000
        /// Open connections per client IP; beyond it 429. Default 1,000.
        public var maxConnectionsPerIP = 1_000
        /// Largest WebSocket message or request body a client may send. Default 1 MiB.
        public var maxMessage = 1024 * 1024
        /// Topics alive at once; least recently used idle ones are evicted first. Default 10,000.
        public var maxTopics = 10_000
        /// Topics one connection may subscribe to. Default 100.
        public var maxTopicsPerConnection = 100
        /// Longest request line; longer → 414. Default 8 KiB.
        public var maxRequestLine = 8 * 1024
        /// Largest request header block; larger → 431. Default 16 KiB.
        public var maxHeaderBytes = 16 * 1024
        /// Most request header fields; more → 431. Default 100.
        public var maxHeaders = 100
        /// Pending outbound bytes per connection before conflation. Default 1 MiB.
        public var sendBuffer = 1024 * 1024
        /// A connection that makes no write progress this long is closed. Default 30 s.
        public var slowConsumerTimeout: Duration = .seconds(30)
        /// Changes kept per topic for resumes. Default 256.
        public var journalEntries = 256
        /// Patch bytes kept per topic for resumes. Default 8 MiB.
        public var journalBytes = 8 * 1024 * 1024
        /// Push connections (WebSocket, SSE) one token subject may hold; beyond → 429. Default 100.
        public var maxConnectionsPerUser = 100
        /// Subscribes per connection (token bucket); beyond → `too_many`. Default 50/s.
        public var subscribeRate = Rate(count: 50, period: .seconds(1))
        /// Client WebSocket messages per connection; beyond → close 1008. Default 200/s.
        public var messageRate = Rate(count: 200, period: .seconds(1))
        /// Publishes and refreshes per admin token; beyond → 429. Default 10000/s.
        public var publishRate = Rate(count: 10_000, period: .seconds(1))
        /// Tickets issued per subject; beyond → 429. Default 60/m.
        public var ticketRate = Rate(count: 60, period: .seconds(60))
        /// Creates the defaults.
        public init() {}
    }

    /// Data-plane threads and timers.
    public struct Server: Sendable {
        /// Event-loop threads; nil means one per usable core (cgroup-aware).
        public var eventLoops: Int?
        /// Time to receive a request's whole header block; slower → 408. Default 10 s.
        public var headerTimeout: Duration = .seconds(10)
        /// Keep-alive connection idle time before close. Default 60 s.
        public var idleTimeout: Duration = .seconds(60)
        /// Graceful-shutdown deadline. Default 10 s.
        public var shutdownTimeout: Duration = .seconds(10)
        /// SSE comment-line interval. Default 15 s: under common 30–60 s proxy idle timeouts.
        public var sseHeartbeat: Duration = .seconds(15)
        /// SSE `retry:` hint. Default 2 s.
        public var sseRetry: Duration = .seconds(2)
        /// A ping goes out after this long without a frame from the peer (a peer that keeps
        /// sending is not interrupted); two unanswered pings close the connection. Default 30 s.
        public var websocketPing: Duration = .seconds(30)
        /// Longest long-poll hold a client may ask for (`wait`, `Prefer: wait`). Default 60 s.
        public var maxWait: Duration = .seconds(60)
        /// Creates the defaults.
        public init() {}
    }

    /// Logging.
    public struct Logging: Sendable {
        /// Lowest level written. Default `info`.
        public var level: LogLevel = .info
        /// Whether to write one access-log line per request. Default false.
        public var access = false
        /// Creates the defaults.
        public init() {}
    }

    /// Test-only routes.
    public struct Diagnostics: Sendable {
        /// Serve the `/deltacast/echo` WebSocket echo route (for Autobahn). Default false.
        public var echo = false
        /// Creates the defaults.
        public init() {}
    }
}

/// A push transport.
public enum Transport: String, Sendable, CaseIterable {
    case websocket, sse, longpoll
}

/// One value per transport (subscriber counts, deliveries), addressed by ``Transport``.
public struct PerTransport<Value: Sendable>: Sendable {
    public var websocket: Value
    public var sse: Value
    public var longpoll: Value

    /// The same value for every transport.
    public init(repeating value: Value) { websocket = value; sse = value; longpoll = value }

    /// A value made for each transport (a counter each, not one shared).
    public init(_ make: (Transport) -> Value) { websocket = make(.websocket); sse = make(.sse); longpoll = make(.longpoll) }

    public subscript(transport: Transport) -> Value {
        get {
            switch transport {
            case .websocket: websocket
            case .sse: sse
            case .longpoll: longpoll
            }
        }
        set {
            switch transport {
            case .websocket: websocket = newValue
            case .sse: sse = newValue
            case .longpoll: longpoll = newValue
            }
        }
    }
}

/// How an endpoint expresses changes.
public enum DiffMode: String, Sendable, CaseIterable {
    case jsonPatch = "json-patch", mergePatch = "merge-patch", snapshot
}

/// Where an endpoint's state comes from.
public enum Source: String, Sendable, CaseIterable {
    case poll, publish
}

/// How client credentials are treated.
public enum AuthMode: String, Sendable, CaseIterable {
    case none, token, passthrough
}

/// A JWT signature algorithm.
public enum JWTAlgorithm: String, Sendable, CaseIterable {
    case hs256 = "HS256", rs256 = "RS256", es256 = "ES256"
}

/// Log levels, least to most severe.
public enum LogLevel: String, Sendable, CaseIterable, Comparable {
    case debug, info, warn, error
    public static func < (lhs: LogLevel, rhs: LogLevel) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// A listen address: host (IPv4, IPv6 without brackets, or a name) and port (0 = any free).
public struct HostPort: Sendable, Hashable, CustomStringConvertible {
    /// The host.
    public var host: String
    /// The port.
    public var port: Int
    /// Creates an address.
    public init(host: String, port: Int) { self.host = host; self.port = port }
    /// `host:port`, with brackets around an IPv6 host.
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// An absolute http(s) URL, split into the parts the upstream client needs.
public struct URLValue: Sendable, Hashable, CustomStringConvertible {
    /// `http` or `https`.
    public var scheme: String
    /// Host name or address.
    public var host: String
    /// Port, explicit or the scheme's default.
    public var port: Int
    /// Path prefix without a trailing slash ("" for none).
    public var path: String
    /// The URL as written, without a trailing slash.
    public var description: String

    /// `scheme://host:port`, lowercased, the port always written: what a request budget names.
    public var origin: String { "\(scheme.lowercased())://\(host.lowercased()):\(port)" }
}

/// A path pattern such as `/api/users/{user}/notifications`.
public struct PathPattern: Sendable, Hashable, CustomStringConvertible {
    /// One piece of the pattern.
    public enum Segment: Sendable, Hashable {
        case literal(String), parameter(String)
    }
    /// The pattern as written.
    public var text: String
    /// The `/`-separated segments after the leading slash.
    public var segments: [Segment]
    /// The parameter names, in order.
    public var parameterNames: [String] {
        segments.compactMap { if case .parameter(let name) = $0 { name } else { nil } }
    }
    /// The pattern with parameter names erased, so `/a/{x}` and `/a/{y}` compare equal.
    public var shape: String {
        "/" + segments.map { if case .literal(let text) = $0 { text } else { "{}" } }.joined(separator: "/")
    }
    /// The pattern as written.
    public var description: String { text }
}

public import DeltacastBase
public import DeltacastLoop
import DeltacastWire
public import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A simulated legacy REST API: what `deltacast demo` puts behind the proxy, and the upstream
/// of the integration tests and `bench upstream` (`deltacast simulate`). One event loop,
/// HTTP/1.1 keep-alive.
///
/// Built-in resources (they change on their own, once a second):
/// - `GET /api/prices`: 20 keyed rows, 3 change every second; `ETag`, `If-None-Match` → 304;
///   a volatile `generatedAt`.
/// - `GET /api/users/{id}/notifications`: needs `Authorization: Bearer user-{id}` (else 401);
///   a user gets a new notification every few seconds.
/// - `GET /api/whoami`: any bearer token → `{"token": ...}` (tells credentials apart); none → 401.
/// - `GET /api/inventory`: about 1 MB, one row changes every 5 s; `Last-Modified`,
///   `If-Modified-Since` → 304.
/// - `GET /api/flaky`: a counter; about 1 in 6 answers is a 500, 1 in 10 broken JSON.
///
/// Control routes for tests and benchmarks (under `/_sim/`):
/// - `PUT /_sim/docs/PATH[?token=T]` stores the body (and its Content-Type) as the document at
///   `/PATH`, with an `ETag`; with a token, `Authorization: Bearer T` is required (else 401).
/// - `POST /_sim/fail/PATH?mode=status|timeout|broken|huge|close|slow[&status=N][&retry_after=S]
///   [&size=N][&delay=MS][&count=N]` makes the next N (default: all) requests to `/PATH` fail so;
///   `DELETE /_sim/fail/PATH` ends it.
/// - `GET /_sim/stats` → requests, 304s and body bytes per path; `POST /_sim/reset` zeroes them
///   and forgets documents and failures; `POST /_sim/freeze` stops the built-ins changing.
/// - `POST /_sim/oauth/token`: an OAuth2 token endpoint (client credentials; the client
///   `sim-client`:`sim-secret` by HTTP Basic) issuing `t1`, `t2`... that live `ttl` seconds;
///   `GET /api/secure` answers only a live one (else 401, and an expired one is counted).
///   `POST /_sim/oauth?mode=ok|fail|malformed|deny|huge[&ttl=S]` sets how the endpoint answers
///   (503, broken JSON, 401 `invalid_client`, a 100 KB token); `POST /_sim/oauth?revoke=1` ends every token;
///   `GET /_sim/oauth` tells what was issued and used.
/// - `GET /api/changes?since=N`: a change index of the documents stored by `PUT /_sim/docs`
///   (`{"next":M,"changed":[{"path":P},...]}`, at most 1,000 a time, the last 100,000 kept);
///   `POST /_sim/changes?reset=1` starts its numbers again (a cursor that goes back).
///   `GET /_sim/delays[?all=1][&reset=1]` → for documents changed since the last reset: how
///   many were read again after their change, how long that took (median, max, ms; with
///   `all`, each `[path, ms]`), and how many were not.
/// - `GET /_sim/windows` → requests (every resource) in each whole second of the last 600:
///   `{"windows":[N, ...],"max":N}`, the current second left out.
/// - `GET /_sim/credentials[?token=T]` → for `/api/whoami`, per bearer token: how many asked,
///   the longest time between two requests of one token, the fewest requests of a token; with
///   a token, its request count and the number of requests (all resources) served before its
///   first one. At most 100,000 tokens are remembered.
public final class LegacySimulator: @unchecked Sendable {
    let loop: EventLoop
    private let listener: Int32
    /// The bound port.
    public let port: Int

    struct Document { var body: [UInt8]; var contentType: String; var version: Int; var token: String? }
    struct Failure { var mode: String; var status: Int; var retryAfter: String?; var size: Int; var delay: Int64; var remaining: Int? }

    // Loop-only state.
    fileprivate var documents: [String: Document] = [:]
    private var failures: [String: Failure] = [:]
    private var requests: [String: Int] = [:]
    private var notModified: [String: Int] = [:]
    private var bodyBytes: [String: Int] = [:]
    private var connections: [Int32: SimulatorConnection] = [:]
    private var frozen = false
    /// The change index: (number, path) of each stored document, in order; the last number.
    private var changeLog: [(seq: Int, path: String)] = []
    private var changeSeq = 0
    /// Documents changed and not yet read since (path → when), and how long reads took after.
    private var unreadChanges: [String: Int64] = [:]
    private var readDelays: [Int64] = []
    private var readDelayPaths: [String] = []
    /// The OAuth2 token endpoint: its mode, the tokens' life (ms), the tokens by their expiry,
    /// and what the protected resource saw.
    private var oauthMode = "ok"
    private var oauthTTL: Int64 = 2000
    private var oauthTokens: [String: Int64] = [:]
    private var oauthIssued = 0
    private var oauthRequests = 0
    private var secureServed = 0
    private var expiredUses: [String: Int] = [:]
    private var unknownUses = 0
    /// Requests by whole second since the start (the last 600 seconds).
    private var windows: [Int64: Int] = [:]
    private let started = MonotonicClock.milliseconds()
    private var served = 0
    /// `/api/whoami` per token: the last request (ms), the longest gap, the requests, and how many
    /// requests had been served before its first.
    private var tokens: [String: (last: Int64, longestGap: Int64, count: Int, servedBefore: Int)] = [:]
    /// For `bench upstream`, readable from any thread: when each prices version appeared and
    /// when it was first served (monotonic ns), the last 4,096 versions; and totals of upstream
    /// requests and body bytes over every resource.
    public let versionTimes = Locked<[Int: (created: UInt64, served: UInt64?)]>([:])
    public let totals = Locked<(requests: Int, bytes: Int)>((0, 0))
    /// For `bench polling`, while set: how late each user's notifications were asked for.
    public let pollLateness = Locked<PollLatenessLog?>(nil)
    /// For `bench polling --workload zipf`, while set: each change to a stored document and
    /// when it was read next.
    public let detections = Locked<DetectionLog?>(nil)
    /// Part of every ETag, so a restarted simulator never repeats one for other content.
    private let instance = String(UInt32.random(in: 0...UInt32.max), radix: 36)
    /// Delayed (`slow`) requests being answered now, and the most at once.
    fileprivate var inFlight = 0
    private var maxInFlight = 0
    private var random = SystemRandomNumberGenerator()

    private var prices: [(id: String, price: Double, change: Double, volume: Int)] = []
    private var pricesVersion = 1
    private var notifications: [String: (version: Int, items: [(id: Int, text: String)])] = [:]
    private var inventory: [(sku: String, name: String, quantity: Int, warehouse: String)] = []
    private var inventoryBody: [UInt8] = []
    private var inventoryModified = 0
    private var flakyCounter = 0
    private var ticks = 0

    /// Binds `host:port` (0: any free port). Call ``start()`` to serve.
    public init(host: String = "127.0.0.1", port: Int) throws {
        loop = try EventLoop()
        (listener, self.port) = try Socket.listen(host: host, port: port, reusePort: false)
        let symbols = ["AAPL", "MSFT", "GOOG", "AMZN", "META", "NVDA", "TSLA", "ORCL", "IBM", "INTC",
                       "AMD", "CSCO", "ADBE", "CRM", "NFLX", "QCOM", "TXN", "AVGO", "SAP", "SHOP"]
        prices = symbols.enumerated().map { index, symbol in (symbol, 100 + Double(index) * 7.25, 0, 1000 * (index + 1)) }
        let warehouses = ["north", "south", "east", "west"]
        inventory = (0..<11_500).map { index in
            ("SKU-\(100_000 + index)", "Part \(index) of assembly \(index / 50)", (index * 37) % 500, warehouses[index % 4])
        }
        encodeInventory()
    }

    public func start() throws {
        try loop.start(name: "deltacast-simulator")
        loop.execute { [self] in
            try? loop.register(listener, events: EventLoop.readable, handler: Acceptor(simulator: self))
            scheduleTick()
        }
    }

    public func stop() {
        loop.stop()
        loop.join()
        close(listener)
    }

    private final class Acceptor: EventLoopHandler {
        unowned let simulator: LegacySimulator
        init(simulator: LegacySimulator) { self.simulator = simulator }
        func handle(events: UInt32) { simulator.acceptAll() }
    }

    private func acceptAll() {
        while true {
            let fd = accept(listener, nil, nil)
            guard fd >= 0 else { return }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            guard connections.count < 10_000 else { close(fd); continue }
            let connection = SimulatorConnection(fd: fd, simulator: self)
            connections[fd] = connection
            try? loop.register(fd, events: EventLoop.readable, handler: connection)
        }
    }

    fileprivate func closed(_ connection: SimulatorConnection) {
        guard connections[connection.fd] === connection else { return }
        loop.deregister(connection.fd)
        connections[connection.fd] = nil
        close(connection.fd)
    }

    // MARK: Changes over time

    private func scheduleTick() {
        loop.schedule(afterMilliseconds: 1000) { [unowned self] in
            if !frozen { tick() }
            scheduleTick()
        }
    }

    private func tick() {
        ticks += 1
        for _ in 0..<3 {
            let index = Int.random(in: 0..<prices.count, using: &random)
            let move = (Double(Int.random(in: -150...150, using: &random)) / 100)
            prices[index].price = ((prices[index].price + move) * 100).rounded() / 100
            prices[index].change = move
            prices[index].volume += Int.random(in: 1...500, using: &random)
        }
        pricesVersion += 1
        let version = pricesVersion
        let now = MonotonicClock.nanoseconds()
        versionTimes.withLock { table in
            table[version] = (now, nil)
            table[version - 4096] = nil
        }
        flakyCounter += 1
        if ticks % 3 == 0, let user = notifications.keys.randomElement(using: &random) {
            var entry = notifications[user]!
            let next = (entry.items.last?.id ?? 0) + 1
            entry.items.append((next, "Order \(1000 + next) shipped"))
            if entry.items.count > 20 { entry.items.removeFirst() }
            entry.version += 1
            notifications[user] = entry
        }
        if ticks % 5 == 0 {
            let index = Int.random(in: 0..<inventory.count, using: &random)
            inventory[index].quantity = Int.random(in: 0...500, using: &random)
            encodeInventory()
        }
    }

    private func encodeInventory() {
        var text = "{\"warehouse\":\"central\",\"items\":["
        for (index, item) in inventory.enumerated() {
            if index > 0 { text += "," }
            text += "{\"sku\":\"\(item.sku)\",\"name\":\"\(item.name)\",\"quantity\":\(item.quantity),\"warehouse\":\"\(item.warehouse)\"}"
        }
        text += "]}"
        inventoryBody = Array(text.utf8)
        inventoryModified = Int(time(nil))
    }

    // MARK: Answers

    /// The answer to one request, or nil to say nothing (a simulated timeout).
    fileprivate func answer(_ request: HTTPRequestHead, body: [UInt8]) -> (response: [UInt8], close: Bool, delay: Int64)? {
        let path = String(request.target.prefix { $0 != "?" })
        if path.hasPrefix("/_sim/") { return (control(request, path: path, body: body), false, 0) }
        guard request.method == "GET" else {
            return (Self.json(405, "{\"error\":\"method not allowed\"}"), false, 0)
        }
        requests[path, default: 0] += 1
        let now = MonotonicClock.milliseconds()
        let second = (now - started) / 1000
        windows[second, default: 0] += 1
        if windows.count > 600 { windows = windows.filter { $0.key > second - 600 } }
        if path == "/api/whoami", let authorization = request.headers["Authorization"] {
            if tokens.count >= 100_000 && tokens[authorization] == nil { tokens = [:] }
            if let known = tokens[authorization] {
                tokens[authorization] = (now, max(known.longestGap, now - known.last), known.count + 1, known.servedBefore)
            } else {
                tokens[authorization] = (now, 0, 1, served)
            }
        }
        served += 1
        var delay: Int64 = 0
        if var failure = failures[path] {
            if let remaining = failure.remaining {
                if remaining <= 1 { failures[path] = nil } else { failure.remaining = remaining - 1; failures[path] = failure }
            }
            switch failure.mode {
            case "timeout": return nil
            case "close": return ([], true, 0)
            case "broken": return (Self.json(200, "{\"broken\": [1, 2,"), false, 0)
            case "huge":
                let filler = "{\"filler\":\"" + String(repeating: "x", count: max(0, failure.size - 14)) + "\"}"
                bodyBytes[path, default: 0] += filler.utf8.count
                return (Self.json(200, filler), false, 0)
            case "slow":
                delay = failure.delay
                inFlight += 1
                maxInFlight = max(maxInFlight, inFlight)
            default:
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: "application/json")
                if let retryAfter = failure.retryAfter { headers.add(name: "Retry-After", value: retryAfter) }
                return (HTTPResponseWriter.response(status: failure.status, headers: headers, body: Array("{\"error\":\"simulated failure\"}".utf8)), false, 0)
            }
        }
        let response = resource(request, path: path)
        return (response, false, delay)
    }

    private func resource(_ request: HTTPRequestHead, path: String) -> [UInt8] {
        if let document = documents[path] {
            detections.withLock { $0?.read(path: path, at: MonotonicClock.nanoseconds()) }
            if let changed = unreadChanges.removeValue(forKey: path), readDelays.count < 1_000_000 {
                readDelays.append(MonotonicClock.milliseconds() - changed)
                readDelayPaths.append(path)
            }
            if let token = document.token, request.headers["Authorization"] != "Bearer \(token)" {
                return Self.json(401, "{\"error\":\"unauthorized\"}")
            }
            return versioned(request, path: path, etag: "\"\(instance)-v\(document.version)\"", contentType: document.contentType) { document.body }
        }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        switch path {
        case "/api/prices":
            return versioned(request, path: path, etag: "\"p\(pricesVersion)\"", contentType: "application/json") { pricesBody() }
        case "/api/whoami":
            guard let authorization = request.headers["Authorization"], authorization.hasPrefix("Bearer "), authorization.count > 7 else {
                return Self.json(401, "{\"error\":\"unauthorized\"}")
            }
            return body(path: path, Self.json(200, "{\"token\":" + Self.quoted(String(authorization.dropFirst(7))) + "}"))
        case "/api/inventory":
            let modified = HTTPDate.format(secondsSince1970: inventoryModified)
            if request.headers["If-Modified-Since"] == modified {
                notModified[path, default: 0] += 1
                return HTTPResponseWriter.response(status: 304, headers: ["Last-Modified": modified], body: [UInt8]())
            }
            bodyBytes[path, default: 0] += inventoryBody.count
            return HTTPResponseWriter.response(status: 200, headers: ["Content-Type": "application/json", "Last-Modified": modified], body: inventoryBody)
        case "/api/changes":
            let since = Self.query(request.target)["since"].flatMap(Int.init) ?? 0
            let first = changeLog.firstIndex { $0.seq > since } ?? changeLog.count
            let page = changeLog[first..<min(changeLog.count, first + 1000)]
            let next = page.last?.seq ?? max(since, changeSeq)
            return body(path: path, Self.json(200, "{\"next\":\(min(next, changeSeq)),\"changed\":[" + page.map { "{\"path\":" + Self.quoted($0.path) + "}" }.joined(separator: ",") + "]}"))
        case "/api/secure":
            let now = MonotonicClock.milliseconds()
            guard let authorization = request.headers["Authorization"], authorization.hasPrefix("Bearer "),
                  let expiry = oauthTokens[String(authorization.dropFirst(7))] else {
                unknownUses += 1
                return Self.json(401, "{\"error\":\"invalid_token\"}")
            }
            guard now < expiry else {
                expiredUses[String(authorization.dropFirst(7)), default: 0] += 1
                return Self.json(401, "{\"error\":\"invalid_token\",\"error_description\":\"expired\"}")
            }
            secureServed += 1
            return body(path: path, Self.json(200, "{\"secure\":\(secureServed / 20)}"))
        case "/api/flaky":
            let roll = Int.random(in: 0..<60, using: &random)
            if roll < 10 { return Self.json(500, "{\"error\":\"internal server error\"}") }
            if roll < 16 { return Self.json(200, "{\"counter\": \(flakyCounter), \"status\": ") }
            return body(path: path, Self.json(200, "{\"counter\":\(flakyCounter),\"status\":\"ok\"}"))
        default:
            if parts.count == 5, parts[1] == "api", parts[2] == "users", parts[4] == "notifications", !parts[3].isEmpty {
                let user = String(parts[3])
                pollLateness.withLock { $0?.record(user: user, at: MonotonicClock.nanoseconds()) }
                // A bearer token, or (for browsers, which cannot set headers on a WebSocket or
                // an EventSource) a `session` cookie with the same value.
                let cookies = request.headers.values("Cookie").flatMap { $0.split(separator: ";").map { $0.trimmingOWS } }
                guard request.headers["Authorization"] == "Bearer user-\(user)" || cookies.contains("session=user-\(user)") else {
                    return Self.json(401, "{\"error\":\"unauthorized\"}")
                }
                if notifications[user] == nil {
                    guard notifications.count < 10_000 else { return Self.json(503, "{\"error\":\"too many users\"}") }
                    notifications[user] = (1, [(1, "Welcome, user \(user)")])
                }
                let entry = notifications[user]!
                return versioned(request, path: path, etag: "\"n\(entry.version)\"", contentType: "application/json") {
                    let items = entry.items.map { "{\"id\":\($0.id),\"text\":" + Self.quoted($0.text) + "}" }.joined(separator: ",")
                    return Array("{\"user\":\(Self.quoted(user)),\"unread\":\(entry.items.count),\"items\":[\(items)]}".utf8)
                }
            }
            return Self.json(404, "{\"error\":\"not found\"}")
        }
    }

    private func pricesBody() -> [UInt8] {
        let version = pricesVersion
        let now = MonotonicClock.nanoseconds()
        versionTimes.withLock { table in
            if table[version] == nil { table[version] = (now, now) } else if table[version]!.served == nil { table[version]!.served = now }
        }
        var text = "{\"generatedAt\":\(Int(time(nil)) * 1000 + Int.random(in: 0..<1000, using: &random)),\"version\":\(version),\"items\":["
        for (index, row) in prices.enumerated() {
            if index > 0 { text += "," }
            text += "{\"id\":\"\(row.id)\",\"price\":\(row.price),\"change\":\(row.change),\"volume\":\(row.volume)}"
        }
        return Array((text + "]}").utf8)
    }

    private func versioned(_ request: HTTPRequestHead, path: String, etag: String, contentType: String, body make: () -> [UInt8]) -> [UInt8] {
        totals.withLock { $0.requests += 1 }
        if request.headers["If-None-Match"] == etag {
            notModified[path, default: 0] += 1
            return HTTPResponseWriter.response(status: 304, headers: ["ETag": etag], body: [UInt8]())
        }
        let content = make()
        bodyBytes[path, default: 0] += content.count
        totals.withLock { $0.bytes += content.count }
        return HTTPResponseWriter.response(status: 200, headers: ["Content-Type": contentType, "ETag": etag], body: content)
    }

    private func body(path: String, _ response: [UInt8]) -> [UInt8] {
        bodyBytes[path, default: 0] += response.count
        return response
    }

    /// Stores a JSON document at `path` from any thread, as `PUT /_sim/docs/PATH` does.
    public func store(_ path: String, json: [UInt8]) {
        loop.execute { [self] in _ = store(path, body: json, contentType: "application/json", token: nil) }
    }

    /// Stores a document (loop only); returns its version.
    private func store(_ target: String, body: [UInt8], contentType: String, token: String?) -> Int {
        changeSeq += 1
        changeLog.append((changeSeq, target))
        if changeLog.count > 100_000 { changeLog.removeFirst(changeLog.count - 100_000) }
        if unreadChanges[target] == nil { unreadChanges[target] = MonotonicClock.milliseconds() }
        detections.withLock { $0?.changed(path: target, at: MonotonicClock.nanoseconds()) }
        let version = (documents[target]?.version ?? 0) + 1
        documents[target] = Document(body: body, contentType: contentType, version: version, token: token)
        return version
    }

    private func control(_ request: HTTPRequestHead, path: String, body: [UInt8]) -> [UInt8] {
        let query = Self.query(request.target)
        if path.hasPrefix("/_sim/docs/") {
            let target = String(path.dropFirst("/_sim/docs".count))
            switch request.method {
            case "PUT", "POST":
                let version = store(target, body: body, contentType: request.headers["Content-Type"] ?? "application/json", token: query["token"])
                return Self.json(200, "{\"path\":\(Self.quoted(target)),\"version\":\(version)}")
            case "DELETE":
                documents[target] = nil
                return Self.json(200, "{}")
            default:
                return Self.json(405, "{\"error\":\"PUT or DELETE\"}")
            }
        }
        if path == "/_sim/changes" {
            if query["reset"] != nil { changeLog = []; changeSeq = 0 }
            return Self.json(200, "{\"next\":\(changeSeq)}")
        }
        if path == "/_sim/delays" {
            let sorted = readDelays.sorted()
            let median = sorted.isEmpty ? 0 : sorted[sorted.count / 2]
            var all = ""
            if query["all"] != nil {
                all = ",\"all\":[" + zip(readDelayPaths, readDelays).map { "[" + Self.quoted($0.0) + ",\($0.1)]" }.joined(separator: ",") + "]"
            }
            if query["reset"] != nil { readDelays = []; readDelayPaths = []; unreadChanges = [:] }
            return Self.json(200, "{\"count\":\(sorted.count),\"median_ms\":\(median),\"max_ms\":\(sorted.last ?? 0),\"unread\":\(unreadChanges.count)\(all)}")
        }
        if path == "/_sim/oauth/token" {
            oauthRequests += 1
            switch oauthMode {
            case "fail": return Self.json(503, "{\"error\":\"temporarily_unavailable\"}")
            case "malformed": return Self.json(200, "{\"access_token\": ")
            case "huge": return Self.json(200, "{\"access_token\":\"" + String(repeating: "a", count: 100_000) + "\"}")
            case "deny": return Self.json(401, "{\"error\":\"invalid_client\"}")
            default: break
            }
            let expected = "Basic " + Base64.encode(Array("sim-client:sim-secret".utf8))
            guard request.method == "POST", request.headers["Authorization"] == expected,
                  String(decoding: body, as: UTF8.self).split(separator: "&").contains("grant_type=client_credentials") else {
                return Self.json(401, "{\"error\":\"invalid_client\"}")
            }
            oauthIssued += 1
            let token = "t\(oauthIssued)"
            oauthTokens[token] = MonotonicClock.milliseconds() + oauthTTL
            if oauthTokens.count > 10_000 { oauthTokens = oauthTokens.filter { $0.value > MonotonicClock.milliseconds() } }
            return Self.json(200, "{\"access_token\":\"\(token)\",\"token_type\":\"Bearer\",\"expires_in\":\(oauthTTL / 1000)}")
        }
        if path == "/_sim/oauth" {
            if request.method == "POST" {
                if let mode = query["mode"] { oauthMode = mode }
                if let ttl = query["ttl"].flatMap(Int64.init) { oauthTTL = ttl * 1000 }
                if query["revoke"] != nil { oauthTokens = [:] }
            }
            let expired = "{" + expiredUses.sorted { $0.key < $1.key }.map { Self.quoted($0.key) + ":\($0.value)" }.joined(separator: ",") + "}"
            return Self.json(200, "{\"mode\":\(Self.quoted(oauthMode)),\"issued\":\(oauthIssued),\"token_requests\":\(oauthRequests),\"served\":\(secureServed),"
                             + "\"expired_uses\":\(expired),\"unknown_uses\":\(unknownUses)}")
        }
        if path.hasPrefix("/_sim/fail/") {
            let target = String(path.dropFirst("/_sim/fail".count))
            if request.method == "DELETE" { failures[target] = nil; return Self.json(200, "{}") }
            let mode = query["mode"] ?? "status"
            guard ["status", "timeout", "broken", "huge", "close", "slow"].contains(mode) else {
                return Self.json(400, "{\"error\":\"mode must be status, timeout, broken, huge, close or slow\"}")
            }
            failures[target] = Failure(mode: mode, status: Int(query["status"] ?? "") ?? 500, retryAfter: query["retry_after"],
                                       size: Int(query["size"] ?? "") ?? 10_000_000, delay: Int64(query["delay"] ?? "") ?? 0,
                                       remaining: Int(query["count"] ?? ""))
            return Self.json(200, "{}")
        }
        switch path {
        case "/_sim/stats":
            func object(_ table: [String: Int]) -> String {
                "{" + table.sorted { $0.key < $1.key }.map { Self.quoted($0.key) + ":\($0.value)" }.joined(separator: ",") + "}"
            }
            return Self.json(200, "{\"requests\":\(object(requests)),\"notModified\":\(object(notModified)),\"bytes\":\(object(bodyBytes)),\"maxInFlight\":\(maxInFlight)}")
        case "/_sim/windows":
            let current = (MonotonicClock.milliseconds() - started) / 1000
            let counts = (max(0, current - 600)..<current).map { windows[$0] ?? 0 }
            return Self.json(200, "{\"windows\":[" + counts.map(String.init).joined(separator: ",") + "],\"max\":\(counts.max() ?? 0)}")
        case "/_sim/credentials":
            if let token = query["token"] {
                guard let known = tokens["Bearer " + token] else { return Self.json(404, "{\"error\":\"no request with that token\"}") }
                return Self.json(200, "{\"count\":\(known.count),\"served_before_first\":\(known.servedBefore),\"longest_gap_ms\":\(known.longestGap)}")
            }
            let gap = tokens.values.map(\.longestGap).max() ?? 0
            let fewest = tokens.values.map(\.count).min() ?? 0
            return Self.json(200, "{\"tokens\":\(tokens.count),\"longest_gap_ms\":\(gap),\"fewest_requests\":\(fewest),\"served\":\(served)}")
        case "/_sim/reset":
            requests = [:]; notModified = [:]; bodyBytes = [:]; documents = [:]; failures = [:]; maxInFlight = 0; windows = [:]; tokens = [:]
            return Self.json(200, "{}")
        case "/_sim/freeze":
            frozen = query["on"] != "false"
            return Self.json(200, "{\"frozen\":\(frozen)}")
        default:
            return Self.json(404, "{\"error\":\"unknown control route\"}")
        }
    }

    static func json(_ status: Int, _ text: String) -> [UInt8] {
        HTTPResponseWriter.response(status: status, headers: ["Content-Type": "application/json"], body: Array(text.utf8))
    }

    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where scalar.value < 0x20: out += "\\u00" + String(scalar.value, radix: 16).leftPadded(to: 2)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    static func query(_ target: String) -> [String: String] {
        guard let mark = target.firstIndex(of: "?") else { return [:] }
        var result: [String: String] = [:]
        for pair in target[target.index(after: mark)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            result[String(parts[0])] = parts.count == 2 ? String(parts[1]) : ""
        }
        return result
    }
}

extension String {
    func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}

/// One client connection of the simulator: parse, answer in order, write with backpressure.
private final class SimulatorConnection: EventLoopHandler {
    let fd: Int32
    unowned let simulator: LegacySimulator
    private var parser = HTTPRequestParser(limits: .init(maximumBody: 16 * 1024 * 1024))
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var output: [UInt8] = []
    private var written = 0
    private var silent = false
    private var closing = false
    private var waiting = false
    private var done = false

    private func finish() {
        done = true
        simulator.closed(self)
    }

    init(fd: Int32, simulator: LegacySimulator) { self.fd = fd; self.simulator = simulator }

    func handle(events: UInt32) {
        if events & EventLoop.writable != 0 { flush() }
        guard !done, events & (EventLoop.readable | EventLoop.failed) != 0 else { return }
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = read(fd, &buffer, buffer.count)
            if count > 0 { parser.append(buffer[0..<count]); continue }
            if count < 0 && errno == EAGAIN { break }
            return finish()
        }
        process()
    }

    private func process() {
        while !done && !silent && !closing && !waiting {
            let event: HTTPRequestEvent?
            do { event = try parser.next() } catch {
                output += LegacySimulator.json(error.status, "{\"error\":\(LegacySimulator.quoted(error.reason))}")
                closing = true
                break
            }
            guard let event else { break }
            switch event {
            case .head(let received): head = received; body = []
            case .body(let bytes): body += bytes
            case .end:
                guard let request = head else { continue }
                head = nil
                guard let (response, close, delay) = simulator.answer(request, body: body) else { silent = true; break }
                if close { return finish() }
                if delay > 0 {
                    waiting = true
                    let simulator = simulator
                    simulator.loop.schedule(afterMilliseconds: delay) { [weak self] in
                        simulator.inFlight -= 1
                        guard let self, !done else { return }
                        waiting = false
                        output += response
                        flush()
                        process()
                    }
                    return
                }
                output += response
            }
        }
        flush()
    }

    private func flush() {
        guard !done else { return }
        while written < output.count {
            let count = output[written...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if count > 0 { written += count; continue }
            if count < 0 && errno == EAGAIN {
                try? simulator.loop.modify(fd, events: EventLoop.readable | EventLoop.writable)
                return
            }
            return finish()
        }
        output.removeAll(keepingCapacity: output.count < 1 << 20)
        written = 0
        try? simulator.loop.modify(fd, events: EventLoop.readable)
        if closing { finish() }
    }
}

/// When each user's notifications are requested (`bench polling`): a poller meant to ask every
/// `interval` is late by the time between two requests past that interval. The first request of
/// each user in the window only starts its clock.
public struct PollLatenessLog: Sendable {
    public let intervalNanoseconds: UInt64
    private var last: [String: UInt64] = [:]
    /// Lateness of each request after the first of its user, nanoseconds.
    public private(set) var lateness: [UInt64] = []
    /// Every request recorded.
    public private(set) var requests = 0

    public init(intervalNanoseconds: UInt64) { self.intervalNanoseconds = intervalNanoseconds }

    mutating func record(user: String, at now: UInt64) {
        requests += 1
        if let previous = last[user] {
            let gap = now &- previous
            lateness.append(gap > intervalNanoseconds ? gap - intervalNanoseconds : 0)
        }
        last[user] = now
    }
}

/// Each change to a stored document and how long until the document was read again: the
/// detection delay of a poller (`bench polling --workload zipf`). Every change waiting when a
/// read comes is detected by it. At most ``limit`` changes are kept (waiting or detected); past
/// that, changes are counted in ``dropped`` and not kept.
public struct DetectionLog: Sendable {
    public struct Detection: Sendable {
        public let path: String
        /// Monotonic nanoseconds.
        public let changedAt: UInt64
        public let delay: UInt64
    }

    public static let limit = 2_000_000
    private var waiting: [String: [UInt64]] = [:]
    private var waitingCount = 0
    public private(set) var detected: [Detection] = []
    /// Reads of stored documents while the log was set.
    public private(set) var reads = 0
    public private(set) var dropped = 0

    public init() {}

    /// Changes not read yet, with when they happened.
    public var undetected: [(path: String, changedAt: UInt64)] {
        waiting.flatMap { path, times in times.map { (path, $0) } }
    }

    mutating func changed(path: String, at now: UInt64) {
        guard waitingCount + detected.count < Self.limit else { dropped += 1; return }
        waiting[path, default: []].append(now)
        waitingCount += 1
    }

    mutating func read(path: String, at now: UInt64) {
        reads += 1
        guard let times = waiting.removeValue(forKey: path) else { return }
        waitingCount -= times.count
        for time in times { detected.append(Detection(path: path, changedAt: time, delay: now &- time)) }
    }
}

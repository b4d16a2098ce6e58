public import DeltacastConfig
public import DeltacastHub
public import DeltacastWire

/// A response the router decided on, before framing.
public struct RoutedResponse: Sendable {
    /// Status code.
    public var status: Int
    /// Header fields (framing headers are added by the writer).
    public var headers: HTTPHeaders
    /// Body bytes.
    public var body: [UInt8]
    /// Whether the connection must close after it.
    public var close = false
    /// The long-poll events it carries: counted as deliveries when it is written.
    var events = 0

    /// A JSON error body `{"error":CODE,"message":TEXT}`.
    public static func error(_ status: Int, _ code: String, _ message: String, headers: HTTPHeaders = HTTPHeaders()) -> RoutedResponse {
        var headers = headers
        headers.add(name: "Content-Type", value: "application/json")
        var body: [UInt8] = []
        body += Array("{\"error\":\"\(code)\",\"message\":".utf8)
        body += jsonString(message)
        body += Array("}".utf8)
        return RoutedResponse(status: status, headers: headers, body: body)
    }
}

/// Encodes a JSON string literal (for small bodies built here).
func jsonString(_ text: String) -> [UInt8] {
    var output: [UInt8] = [0x22]
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": output += [0x5C, 0x22]
        case "\\": output += [0x5C, 0x5C]
        case _ where scalar.value < 0x20: output += Array(String(format: scalar.value).utf8)
        default: output += Array(String(scalar).utf8)
        }
    }
    output.append(0x22)
    return output
}

private extension String {
    init(format value: UInt32) {
        self = "\\u00" + Hex.encode([UInt8(truncatingIfNeeded: value)])
    }
}

/// What the router decided for a request.
public enum Route: Sendable {
    /// Answer with this response.
    case respond(RoutedResponse)
    /// A mirrored endpoint path (GET or HEAD): endpoint index and topic name. The transport
    /// (cached GET, long-poll, SSE, WebSocket) is chosen from the request's headers.
    case topic(endpoint: Int, topic: String)
    /// `/deltacast/ws`, `/deltacast/sse`, `/deltacast/poll`: multiplexed transports.
    case multiplexed(Transport)
    /// `POST /deltacast/publish?topic=...` (admin token already checked).
    case publish(endpoint: Int, topic: String)
    /// `POST /deltacast/refresh?topic=...` (admin token already checked).
    case refresh(endpoint: Int, topic: String)
    /// `/deltacast/echo` (only with `diagnostics.echo`).
    case echo
    /// `/metrics` (Prometheus text; the server fills it in).
    case metrics
    /// `GET /deltacast/status` (admin token checked): JSON, or an SSE stream of it each second.
    case status
    /// `GET /deltacast/report` (admin token checked): the migration report, JSON.
    case report
    /// `GET /deltacast/types.d.ts` (`types: true`): the topics' types from the states held.
    case topicTypes
    /// `POST /deltacast/ticket`: a single-use ticket for the bearer token's principal.
    case ticket
    /// `POST /deltacast/reload` (admin token checked): re-read the configuration file.
    case reload
}

/// Maps a request to a route: probes, metrics, negotiation, the admin endpoints (token
/// checked), the multiplexed transports, the mirrored endpoint paths (with their parameters
/// validated), CORS preflight, 404 and 405. Pure: no I/O, so it is tested without sockets.
///
/// A class: immutable once made, and shared by every request of its generation (a struct
/// holding the configuration was copied, each field retained, for every request it routed).
public final class Router: Sendable {
    private let configuration: Configuration
    /// Endpoint and topic matching, shared with the hub.
    public let matcher: EndpointMatcher

    /// Whether `/` serves the demo dashboard (`deltacast demo`).
    private let dashboard: Bool

    /// A router for `configuration`; with `dashboard`, `GET /` serves the demo dashboard.
    public init(configuration: Configuration, dashboard: Bool = false) {
        self.configuration = configuration
        self.matcher = EndpointMatcher(endpoints: configuration.endpoints)
        self.dashboard = dashboard
    }

    /// Routes one request. `draining` makes `/readyz` answer 503; `openConnections` feeds
    /// `/metrics`.
    public func route(_ head: HTTPRequestHead, draining: Bool, openConnections: Int = 0, adminListener: Bool = false, clusterAvailable: Bool = true) -> Route {
        let path = head.target.utf8.firstIndex(of: UInt8(ascii: "?")).map { String(head.target[..<$0]) } ?? head.target
        let isRead = head.method == "GET" || head.method == "HEAD"
        if configuration.admin.listen != nil {
            // With a separate admin address, each listener serves only its own half.
            let adminRoute = Router.adminPaths.contains(path)
            if adminRoute && !adminListener {
                return .respond(.error(404, "not_found", "\(path) is served on the admin address (admin.listen), not here"))
            }
            if adminListener && !adminRoute && path != "/healthz" && path != "/readyz" {
                return .respond(.error(404, "not_found", "the admin address serves only \(Router.adminPaths.joined(separator: ", ")), /healthz and /readyz"))
            }
        }
        switch path {
        case "/healthz", "/readyz":
            guard isRead else { return .respond(methodNotAllowed(allow: "GET, HEAD")) }
            if path == "/readyz" && draining {
                return .respond(json(503, "{\"status\":\"draining\"}"))
            }
            if path == "/readyz" && !clusterAvailable {
                // It still serves what it holds: a load balancer keeps it, an operator looks.
                return .respond(json(200, "{\"status\":\"degraded\",\"cluster\":\"unavailable\"}"))
            }
            return .respond(json(200, path == "/healthz" ? "{\"status\":\"ok\"}" : "{\"status\":\"ready\"}"))
        case "/deltacast.js", "/deltacast.mjs":
            guard isRead else { return .respond(methodNotAllowed(allow: "GET, HEAD")) }
            return .respond(StaticAsset.clientLibrary(module: path.hasSuffix(".mjs")).response(to: head))
        case "/deltacast.d.ts":
            guard isRead else { return .respond(methodNotAllowed(allow: "GET, HEAD")) }
            return .respond(StaticAsset.clientDeclarations.response(to: head))
        case "/" where dashboard, "/index.html" where dashboard:
            guard isRead else { return .respond(methodNotAllowed(allow: "GET, HEAD")) }
            return .respond(StaticAsset.dashboard.response(to: head))
        case "/metrics":
            guard isRead else { return .respond(methodNotAllowed(allow: "GET, HEAD")) }
            return .metrics
        case "/deltacast/status":
            guard isRead else { return .respond(methodNotAllowed(allow: "GET, HEAD")) }
            if let refusal = checkAdmin(head) { return .respond(refusal) }
            return .status
        case "/deltacast/types.d.ts":
            guard isRead else { return .respond(methodNotAllowed(allow: "GET, HEAD")) }
            guard configuration.types else {
                return .respond(.error(404, "not_found", "the topics' types are not served: set types: true in the configuration"))
            }
            return .topicTypes
        case "/deltacast/report":
            guard isRead else { return .respond(methodNotAllowed(allow: "GET, HEAD")) }
            if let refusal = checkAdmin(head) { return .respond(refusal) }
            return .report
        case "/deltacast/", "/deltacast":
            guard isRead else { return .respond(methodNotAllowed(allow: "GET, HEAD")) }
            return .respond(StaticAsset.statusPage.response(to: head))
        case "/deltacast/negotiate":
            guard isRead else { return .respond(methodNotAllowed(allow: "GET, HEAD")) }
            return .respond(negotiate())
        case "/deltacast/ws", "/deltacast/sse", "/deltacast/poll":
            let transport: Transport = path.hasSuffix("/ws") ? .websocket : path.hasSuffix("/sse") ? .sse : .longpoll
            guard configuration.transports.contains(transport) else {
                return .respond(.error(404, "not_found", "the \(transport.rawValue) transport is disabled in this proxy's configuration (transports)"))
            }
            guard isRead else { return .respond(methodNotAllowed(allow: "GET")) }
            return .multiplexed(transport)
        case "/deltacast/echo" where configuration.diagnostics.echo:
            return .echo
        case "/deltacast/ticket":
            guard configuration.auth.isEnabled else {
                return .respond(.error(404, "not_found", "tickets need client authentication: configure auth.jwt or auth.api_keys"))
            }
            if head.method == "OPTIONS" { return .respond(preflight(head, methods: "POST, OPTIONS")) }
            guard head.method == "POST" else { return .respond(methodNotAllowed(allow: "POST, OPTIONS")) }
            return .ticket
        case "/deltacast/reload":
            guard head.method == "POST" else { return .respond(methodNotAllowed(allow: "POST")) }
            if let refusal = checkAdmin(head) { return .respond(refusal) }
            return .reload
        case "/deltacast/publish", "/deltacast/refresh":
            guard head.method == "POST" else { return .respond(methodNotAllowed(allow: "POST")) }
            if let refusal = checkAdmin(head) { return .respond(refusal) }
            guard let topicName = Router.firstQueryValue(head.target, "topic"), !topicName.isEmpty else {
                return .respond(.error(400, "bad_request", "\(path) needs ?topic=PATH"))
            }
            switch matcher.match(topicName) {
            case .noMatch:
                return .respond(.error(404, "not_found", "no endpoint is configured at \(topicName)"))
            case .badParameter(let name, let pattern):
                return .respond(.error(400, "bad_request", "invalid value for parameter '\(name)' in \(topicName); it must match \(pattern)"))
            case .unsafeParameter(let name, let reason):
                return .respond(.error(400, "bad_request", "parameter '\(name)' in \(topicName) holds \(reason); it is not forwarded upstream"))
            case .matched(let index, let topic, _):
                if path == "/deltacast/refresh" { return .refresh(endpoint: index, topic: topic) }
                return .publish(endpoint: index, topic: topic)
            }
        default:
            break
        }
        if path == "/deltacast" || path.hasPrefix("/deltacast/") || path.hasPrefix("/deltacast.") {
            return .respond(.error(404, "not_found", "no such Deltacast route: \(path)"))
        }
        switch matcher.match(head.target) {
        case .noMatch:
            return .respond(.error(404, "not_found", "no endpoint is configured at \(path)"))
        case .badParameter(let name, let pattern):
            return .respond(.error(400, "bad_request", "invalid value for parameter '\(name)' in \(path); it must match \(pattern)"))
        case .unsafeParameter(let name, let reason):
            return .respond(.error(400, "bad_request", "parameter '\(name)' in \(path) holds \(reason); it is not forwarded upstream"))
        case .matched(let index, let topic, _):
            if head.method == "OPTIONS" { return .respond(preflight(head)) }
            guard isRead else { return .respond(methodNotAllowed(allow: "GET, HEAD, OPTIONS")) }
            return .topic(endpoint: index, topic: topic)
        }
    }

    /// What `admin.listen` serves (and the main address then does not).
    static let adminPaths = ["/metrics", "/deltacast/status", "/deltacast/report", "/deltacast/", "/deltacast", "/deltacast/publish", "/deltacast/refresh", "/deltacast/reload"]

    /// The values of a query parameter, percent-decoded, in order. Split by bytes (`&`, `=`);
    /// a name or value is decoded only when it holds an escape or a `+`.
    public static func queryValues(_ target: String, _ name: String) -> [String] {
        var values: [String] = []
        forEachQueryValue(target, name) { _, value in values.append(value) }
        return values
    }

    /// The first value of `name` in the target's query, or nil (no array is made).
    static func firstQueryValue(_ target: String, _ name: String) -> String? {
        var first: String?
        forEachQueryValue(target, name) { _, value in if first == nil { first = value } }
        return first
    }

    /// Calls `body` with each value of `first` or `second` (0 or 1, and the value), in the
    /// query's order: one pass over the target's bytes for two names.
    static func forEachQueryValue(_ target: String, _ first: String, _ second: String? = nil, _ body: (Int, String) -> Void) {
        var text = target
        text.withUTF8 { bytes in
            guard let mark = bytes.firstIndex(of: UInt8(ascii: "?")) else { return }
            var start = mark + 1
            while start <= bytes.count {
                var end = start
                while end < bytes.count && bytes[end] != UInt8(ascii: "&") { end += 1 }
                var equals = start
                while equals < end && bytes[equals] != UInt8(ascii: "=") { equals += 1 }
                let key = UnsafeBufferPointer(rebasing: bytes[start..<equals])
                let decodedKey = needsDecoding(key) ? percentDecoded(key) : nil
                let position: Int? = if decodedKey.map({ $0 == first }) ?? same(key, first) {
                    0
                } else if let second, decodedKey.map({ $0 == second }) ?? same(key, second) {
                    1
                } else {
                    nil
                }
                if let position {
                    body(position, equals < end ? percentDecoded(UnsafeBufferPointer(rebasing: bytes[(equals + 1)..<end])) : "")
                }
                start = end + 1
            }
        }
    }

    /// Whether `bytes` are exactly `name`'s UTF-8.
    private static func same(_ bytes: UnsafeBufferPointer<UInt8>, _ name: String) -> Bool {
        guard bytes.count == name.utf8.count else { return false }
        return name.utf8.withContiguousStorageIfAvailable { $0.elementsEqual(bytes) } ?? name.utf8.elementsEqual(bytes)
    }

    private static func needsDecoding(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        bytes.contains { $0 == UInt8(ascii: "%") || $0 == UInt8(ascii: "+") }
    }

    /// The cursors a reconnecting event stream resumes from: `Last-Event-ID`, or
    /// `?last_event_id=` for clients that cannot set headers; one per topic, in order.
    @_spi(Fuzzing) public static func resumeCursors(_ request: HTTPRequestHead) -> [Cursor?] {
        let value = request.headers["Last-Event-ID"] ?? firstQueryValue(request.target, "last_event_id")
        return Cursor.list(lastEventID: value ?? "")
    }

    /// The topics a multiplexed event stream or long-poll names: every `?topic=` in order, each
    /// with the `since` at the same position (nil where there is none or it is not a cursor).
    /// For an event stream a `Last-Event-ID` replaces the `since` list as a whole: it is what
    /// the browser echoes on a reconnect, newer than the URL's. Empty when no topic is named.
    @_spi(Fuzzing) public static func multiplexedTopics(_ request: HTTPRequestHead, transport: Transport) -> [(name: String, since: Cursor?)] {
        // The n-th `since` goes with the n-th `topic`, in whatever order they come. One array is
        // built; `ahead[next...]` holds, in order, the sinces whose topic has not come yet (rare;
        // a queue read by index, so a hostile query stays linear).
        var topics: [(name: String, since: Cursor?)] = []
        var sinces = 0
        var ahead: [Cursor?] = []
        var next = 0
        forEachQueryValue(request.target, "topic", "since") { position, value in
            if position == 0 {
                let since = next < ahead.count ? ahead[next] : nil
                if next < ahead.count { next += 1 }
                topics.append((value, since))
            } else {
                if sinces < topics.count { topics[sinces].since = Cursor(value) } else { ahead.append(Cursor(value)) }
                sinces += 1
            }
        }
        if transport == .sse {
            let resumed = resumeCursors(request)
            if !resumed.isEmpty {
                for index in topics.indices { topics[index].since = index < resumed.count ? resumed[index] : nil }
            }
        }
        return topics
    }

    /// Percent-decodes (and turns `+` into a space, as forms do); invalid escapes stay as they are.
    static func percentDecoded(_ utf8: UnsafeBufferPointer<UInt8>) -> String {
        guard needsDecoding(utf8) else { return String(decoding: utf8, as: UTF8.self) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(utf8.count)
        var index = 0
        while index < utf8.count {
            let byte = utf8[index]
            if byte == UInt8(ascii: "%"), index + 2 < utf8.count, let high = hexValue(utf8[index + 1]), let low = hexValue(utf8[index + 2]) {
                bytes.append(high << 4 | low)
                index += 3
            } else {
                bytes.append(byte == UInt8(ascii: "+") ? 0x20 : byte)
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    private func negotiate() -> RoutedResponse {
        var body = "{\"protocol\":\"deltacast.v1\",\"transports\":["
        body += configuration.transports.map { "\"\($0.rawValue)\"" }.joined(separator: ",") + "]"
        if configuration.transports.contains(.websocket) { body += ",\"websocket\":\"ws\"" }
        if configuration.transports.contains(.sse) { body += ",\"sse\":\"sse\"" }
        if configuration.transports.contains(.longpoll) { body += ",\"poll\":\"poll\"" }
        body += ",\"heartbeat\":\(configuration.server.sseHeartbeat.components.seconds)}"
        return json(200, body)
    }

    /// 401 without a bearer token, 403 with a wrong one, 403 when no admin token is configured.
    private func checkAdmin(_ head: HTTPRequestHead) -> RoutedResponse? {
        guard let expected = configuration.admin.token else {
            return .error(403, "forbidden", "admin endpoints are disabled: set admin.token in the configuration")
        }
        guard let bearer = head.headers.bearerToken else {
            return .error(401, "unauthorized", "this admin endpoint needs Authorization: Bearer TOKEN", headers: ["WWW-Authenticate": "Bearer"])
        }
        let given = Array(bearer.utf8)
        let wanted = Array(expected.utf8)
        // Constant time in the token's length: no early exit on the first differing byte.
        var difference = given.count ^ wanted.count
        for index in 0..<wanted.count { difference |= Int((index < given.count ? given[index] : 0) ^ wanted[index]) }
        return difference == 0 ? nil : .error(403, "forbidden", "wrong admin token")
    }

    private func preflight(_ head: HTTPRequestHead, methods: String = "GET, HEAD, OPTIONS") -> RoutedResponse {
        guard let origin = head.headers["Origin"] else {
            var headers = HTTPHeaders()
            headers.add(name: "Allow", value: methods)
            return RoutedResponse(status: 204, headers: headers, body: [])
        }
        guard let allowed = configuration.cors.allowOriginHeader(for: origin) else {
            return .error(403, "forbidden", "origin \(origin) is not in cors.origins")
        }
        var headers = HTTPHeaders()
        headers.add(name: "Access-Control-Allow-Origin", value: allowed)
        headers.add(name: "Access-Control-Allow-Methods", value: methods)
        if let requested = head.headers["Access-Control-Request-Headers"] {
            headers.add(name: "Access-Control-Allow-Headers", value: requested)
        }
        headers.add(name: "Access-Control-Max-Age", value: "600")
        headers.add(name: "Vary", value: "Origin")
        return RoutedResponse(status: 204, headers: headers, body: [])
    }

    private func methodNotAllowed(allow: String) -> RoutedResponse {
        var headers = HTTPHeaders()
        headers.add(name: "Allow", value: allow)
        return .error(405, "method_not_allowed", "allowed methods: \(allow)", headers: headers)
    }

    private func json(_ status: Int, _ body: String) -> RoutedResponse {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Cache-Control", value: "no-store")
        return RoutedResponse(status: status, headers: headers, body: Array(body.utf8))
    }
}

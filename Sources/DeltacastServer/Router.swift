public import DeltacastConfig
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
        let hex = Array("0123456789abcdef")
        self = "\\u00" + String(hex[Int(value >> 4)]) + String(hex[Int(value & 0xF)])
    }
}

/// Maps a request to a response: probes, the mirrored endpoint paths (with their parameters
/// validated), CORS preflight, 404 and 405. Pure: no I/O, so it is tested without sockets.
public struct Router: Sendable {
    private let configuration: Configuration
    private let patterns: [(endpoint: Configuration.Endpoint, regexes: [String: CompiledPattern])]

    /// A parameter's pattern, compiled once when the router is built (not per request).
    /// `@unchecked Sendable`: a compiled Regex is immutable and only matched, never mutated.
    struct CompiledPattern: @unchecked Sendable {
        let text: String
        let regex: Regex<AnyRegexOutput>?
        func matches(_ value: Substring) -> Bool {
            guard let regex else { return false }
            return (try? regex.wholeMatch(in: value)) != nil
        }
    }

    /// A router for `configuration`.
    public init(configuration: Configuration) {
        self.configuration = configuration
        self.patterns = configuration.endpoints.map { endpoint in
            (endpoint, Dictionary(uniqueKeysWithValues: endpoint.path.parameterNames.map { name in
                let text = endpoint.params[name] ?? "[^/]+"
                return (name, CompiledPattern(text: text, regex: try? Regex(text)))
            }))
        }
    }

    /// Routes one request. `draining` makes `/readyz` answer 503; `openConnections` feeds
    /// `/metrics` (which issue 9 extends to the full set).
    public func route(_ head: HTTPRequestHead, draining: Bool, openConnections: Int = 0) -> RoutedResponse {
        let path = String(head.target.prefix { $0 != "?" })
        let isRead = head.method == "GET" || head.method == "HEAD"
        switch path {
        case "/healthz", "/readyz":
            guard isRead else { return methodNotAllowed(allow: "GET, HEAD") }
            if path == "/readyz" && draining {
                return json(503, "{\"status\":\"draining\"}")
            }
            return json(200, path == "/healthz" ? "{\"status\":\"ok\"}" : "{\"status\":\"ready\"}")
        case "/metrics":
            guard isRead else { return methodNotAllowed(allow: "GET, HEAD") }
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "text/plain; version=0.0.4; charset=utf-8")
            let text = """
                # HELP deltacast_connections_open Open client connections.
                # TYPE deltacast_connections_open gauge
                deltacast_connections_open \(openConnections)
                # HELP deltacast_draining Whether the server is shutting down (1) or not (0).
                # TYPE deltacast_draining gauge
                deltacast_draining \(draining ? 1 : 0)

                """
            return RoutedResponse(status: 200, headers: headers, body: Array(text.utf8))
        default:
            break
        }
        if path == "/deltacast" || path.hasPrefix("/deltacast/") || path == "/deltacast.js" {
            return .error(404, "not_found", "\(path) is not available yet: the push transports are not built (issue 5)")
        }
        for (endpoint, regexes) in patterns {
            switch match(path, endpoint.path, regexes) {
            case .noMatch: continue
            case .badParameter(let name):
                return .error(400, "bad_request", "invalid value for parameter '\(name)' in \(path); it must match \(regexes[name]!.text)")
            case .matched:
                if head.method == "OPTIONS" { return preflight(head) }
                guard isRead else { return methodNotAllowed(allow: "GET, HEAD, OPTIONS") }
                return .error(501, "not_implemented", "\(path) is configured, but the upstream poller and hub that answer it are not built yet (issue 6)")
            }
        }
        return .error(404, "not_found", "no endpoint is configured at \(path)")
    }

    private enum Match { case matched, noMatch, badParameter(String) }

    private func match(_ path: String, _ pattern: PathPattern, _ regexes: [String: CompiledPattern]) -> Match {
        let pieces = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        guard path.hasPrefix("/"), pieces.count == pattern.segments.count else { return .noMatch }
        var badParameter: String?
        for (piece, segment) in zip(pieces, pattern.segments) {
            switch segment {
            case .literal(let text): if piece != text { return .noMatch }
            case .parameter(let name):
                let ok = !piece.isEmpty && regexes[name]!.matches(piece)
                if !ok && badParameter == nil { badParameter = name }
            }
        }
        return badParameter.map { .badParameter($0) } ?? .matched
    }

    private func preflight(_ head: HTTPRequestHead) -> RoutedResponse {
        guard let origin = head.headers["Origin"] else {
            var headers = HTTPHeaders()
            headers.add(name: "Allow", value: "GET, HEAD, OPTIONS")
            return RoutedResponse(status: 204, headers: headers, body: [])
        }
        guard configuration.cors.origins.contains("*") || configuration.cors.origins.contains(origin) else {
            return .error(403, "forbidden", "origin \(origin) is not in cors.origins")
        }
        var headers = HTTPHeaders()
        headers.add(name: "Access-Control-Allow-Origin", value: configuration.cors.origins.contains("*") ? "*" : origin)
        headers.add(name: "Access-Control-Allow-Methods", value: "GET, HEAD, OPTIONS")
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

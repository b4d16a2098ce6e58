import DeltacastCrypto
/// The server side of the RFC 6455 opening handshake and the RFC 7692 permessage-deflate
/// negotiation. Pure: it reads a request head and says what to answer.
public enum WebSocketHandshake {
    /// The GUID RFC 6455 appends to the client's key.
    static let guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    /// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
    public static func acceptValue(key: String) -> String {
        Base64.encode(SHA1.digest(Array((key + guid).utf8)))
    }

    /// Whether `head` asks for a WebSocket upgrade at all (`Upgrade: websocket`).
    public static func isUpgrade(_ head: HTTPRequestHead) -> Bool {
        head.headers.tokens("Upgrade").contains { $0.lowercased() == "websocket" }
    }

    /// The outcome of checking an upgrade request.
    public enum Outcome: Sendable {
        /// Switch protocols: the 101 head's header fields, and the compression agreed on.
        case accept(headers: HTTPHeaders, deflate: PerMessageDeflate.Parameters?, subprotocol: String?)
        /// Refuse with this status, extra header fields and message.
        case reject(status: Int, headers: HTTPHeaders, message: String)
    }

    /// Checks an upgrade request (RFC 6455 §4.2.1) and negotiates the subprotocol (the first of
    /// `subprotocols` the client offers; a client that offers only others is refused with 400,
    /// one that offers none is accepted without) and permessage-deflate (when `allowDeflate`).
    public static func negotiate(_ head: HTTPRequestHead, subprotocols: [String], allowDeflate: Bool = true) -> Outcome {
        guard head.method == "GET" else {
            return .reject(status: 405, headers: ["Allow": "GET"], message: "a WebSocket handshake must be a GET")
        }
        guard head.minorVersion >= 1 else {
            return .reject(status: 400, headers: [:], message: "a WebSocket handshake needs HTTP/1.1")
        }
        guard head.headers.tokens("Connection").contains(where: { $0.lowercased() == "upgrade" }) else {
            return .reject(status: 400, headers: [:], message: "Connection must include 'Upgrade'")
        }
        guard head.headers.values("Sec-WebSocket-Version").count == 1, head.headers["Sec-WebSocket-Version"] == "13" else {
            return .reject(status: 426, headers: ["Sec-WebSocket-Version": "13"], message: "only WebSocket version 13 is supported")
        }
        guard head.headers.values("Sec-WebSocket-Key").count == 1, let key = head.headers["Sec-WebSocket-Key"],
              let decoded = Base64.decode(key), decoded.count == 16 else {
            return .reject(status: 400, headers: [:], message: "Sec-WebSocket-Key must be 16 bytes in base64")
        }
        var headers: HTTPHeaders = ["Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Accept": acceptValue(key: key)]
        let offered = head.headers.tokens("Sec-WebSocket-Protocol")
        var chosen: String?
        if !offered.isEmpty {
            guard let match = subprotocols.first(where: { offered.contains($0) }) else {
                return .reject(status: 400, headers: [:], message: "none of the offered subprotocols is supported; this endpoint speaks \(subprotocols.joined(separator: ", "))")
            }
            chosen = match
            headers.add(name: "Sec-WebSocket-Protocol", value: match)
        }
        var deflate: PerMessageDeflate.Parameters?
        if allowDeflate {
            let extensions = head.headers.values("Sec-WebSocket-Extensions").joined(separator: ",")
            if let agreed = PerMessageDeflate.negotiate(offers: extensions) {
                deflate = agreed
                headers.add(name: "Sec-WebSocket-Extensions", value: agreed.responseValue)
            }
        }
        return .accept(headers: headers, deflate: deflate, subprotocol: chosen)
    }
}

/// permessage-deflate (RFC 7692): parameter negotiation. The server always asks for
/// `server_no_context_takeover`, so every message it sends is compressed on its own and the
/// same compressed bytes can go to every subscriber.
public enum PerMessageDeflate {
    /// What was agreed with one client.
    public struct Parameters: Sendable, Equatable {
        /// The largest window the server may compress with (8...15). 15 unless the client asked
        /// for less; zlib cannot compress with an 8-bit window, so such clients get their messages
        /// uncompressed (RFC 7692 lets any message go uncompressed).
        public var serverMaxWindowBits = 15
        /// The window the client compresses with; the server's inflater uses it (or 15).
        public var clientMaxWindowBits = 15
        /// Whether the client resets its compressor after each message.
        public var clientNoContextTakeover = false

        /// The defaults: 15-bit windows both ways, context kept by the client.
        public init() {}

        /// The `Sec-WebSocket-Extensions` value for the 101 response.
        public var responseValue: String {
            var value = "permessage-deflate; server_no_context_takeover"
            if clientNoContextTakeover { value += "; client_no_context_takeover" }
            if serverMaxWindowBits < 15 { value += "; server_max_window_bits=\(serverMaxWindowBits)" }
            if clientMaxWindowBits < 15 { value += "; client_max_window_bits=\(clientMaxWindowBits)" }
            return value
        }

        /// Whether the server compresses outgoing messages (see ``serverMaxWindowBits``).
        public var serverCompresses: Bool { serverMaxWindowBits >= 9 }
    }

    /// Accepts the first valid permessage-deflate offer in a `Sec-WebSocket-Extensions` value,
    /// or nil. An offer with an unknown, repeated or out-of-range parameter is declined (the
    /// next one is tried). When the client allows it (`client_max_window_bits` without a value),
    /// the client is asked for a 9-bit window, which keeps each connection's inflater small.
    public static func negotiate(offers: String) -> Parameters? {
        for offer in offers.split(separator: ",") {
            let parts = offer.split(separator: ";").map { $0.trimmingOWS }
            guard parts.first == "permessage-deflate" else { continue }
            var parameters = Parameters()
            var seen: Set<String> = []
            var valid = true
            for part in parts.dropFirst() {
                let pieces = part.split(separator: "=", maxSplits: 1).map { $0.trimmingOWS }
                let name = pieces[0]
                var value = pieces.count == 2 ? pieces[1] : nil
                if let quoted = value, quoted.count >= 2, quoted.hasPrefix("\""), quoted.hasSuffix("\"") {
                    value = String(quoted.dropFirst().dropLast())
                }
                guard seen.insert(name).inserted else { valid = false; break }
                switch name {
                case "server_no_context_takeover":
                    if value != nil { valid = false }
                case "client_no_context_takeover":
                    if value != nil { valid = false }
                    parameters.clientNoContextTakeover = true
                case "server_max_window_bits":
                    guard let text = value, let bits = Int(text), (8...15).contains(bits), text.allSatisfy(\.isNumber) else { valid = false; break }
                    parameters.serverMaxWindowBits = bits
                case "client_max_window_bits":
                    if let text = value {
                        guard let bits = Int(text), (8...15).contains(bits), text.allSatisfy(\.isNumber) else { valid = false; break }
                        parameters.clientMaxWindowBits = min(bits, 9)
                    } else {
                        parameters.clientMaxWindowBits = 9
                    }
                default:
                    valid = false
                }
                if !valid { break }
            }
            if valid { return parameters }
        }
        return nil
    }
}


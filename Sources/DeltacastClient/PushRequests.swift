// The sockets I/O, built where DELTACAST_SOCKETS is defined (Linux; see Package.swift).
#if DELTACAST_SOCKETS
import DeltacastWire

/// The requests a push client sends (RFC 6455 §4.1, the SSE `Accept`, plain GETs), written
/// once for `tail`, `top`, the load generator, the benchmarks and the tests.
package enum PushRequest {
    /// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64.
    package static func webSocketKey() -> String { Base64.encode((0..<16).map { _ in UInt8.random(in: 0...255) }) }

    /// A WebSocket upgrade for `target`. `headers` are whole lines without CRLF.
    package static func webSocketUpgrade(target: String, host: String, key: String, subprotocols: [String] = ["deltacast.v1"], headers: [String] = []) -> [UInt8] {
        var text = "GET \(target) HTTP/1.1\r\nHost: \(host)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n"
        if !subprotocols.isEmpty { text += "Sec-WebSocket-Protocol: \(subprotocols.joined(separator: ", "))\r\n" }
        for header in headers { text += header + "\r\n" }
        return Array((text + "\r\n").utf8)
    }

    /// A `text/event-stream` GET for `target`.
    package static func eventStream(target: String, host: String, headers: [String] = []) -> [UInt8] {
        get(target: target, host: host, headers: ["Accept: text/event-stream"] + headers)
    }

    /// A GET for `target`; `close` asks the server to close after the response.
    package static func get(target: String, host: String, headers: [String] = [], close: Bool = false) -> [UInt8] {
        var text = "GET \(target) HTTP/1.1\r\nHost: \(host)\r\n"
        if close { text += "Connection: close\r\n" }
        for header in headers { text += header + "\r\n" }
        return Array((text + "\r\n").utf8)
    }

    /// Whether `head` accepts the upgrade sent with `key`: status 101 and the
    /// `Sec-WebSocket-Accept` RFC 6455 derives from the key.
    package static func acceptsUpgrade(head: String, key: String) -> Bool {
        guard head.hasPrefix("HTTP/1.1 101") else { return false }
        let expected = WebSocketHandshake.acceptValue(key: key)
        return head.split(separator: "\r\n").contains { line in
            let parts = line.split(separator: ":", maxSplits: 1)
            return parts.count == 2 && parts[0].lowercased() == "sec-websocket-accept" && parts[1].trimmingOWS == expected
        }
    }

    /// The status code of a response head (0 when it is not one).
    package static func status(of head: String) -> Int {
        guard head.hasPrefix("HTTP/1.") else { return 0 }
        return Int(head.dropFirst(9).prefix(3)) ?? 0
    }
}
#endif

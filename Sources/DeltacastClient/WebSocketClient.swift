// The sockets I/O, built where DELTACAST_SOCKETS is defined (Linux; see Package.swift).
#if DELTACAST_SOCKETS
package import DeltacastJSON
package import DeltacastWire

/// A blocking WebSocket client: masked frames out, the project's decoder (client role) in,
/// pings answered. `tail` reads with it, and so do the tests.
package final class WebSocketClient: @unchecked Sendable {
    package let connection: ClientConnection
    private var decoder = WebSocketFrameDecoder(role: .client)
    /// The 101 head (or the refusal) as received.
    package private(set) var handshake = ""
    /// Whether the server answered 101 with the `Sec-WebSocket-Accept` the key asks for.
    package private(set) var accepted = false
    /// Pings the server sent (each answered by ``next()``).
    package private(set) var pingsReceived = 0

    /// Connects to 127.0.0.1:`port` and upgrades `path` (the tests' form).
    package convenience init(port: Int, path: String, headers: [String] = [], subprotocol: String? = "deltacast.v1", timeoutSeconds: Int = 10,
                            receiveBuffer: Int32? = nil) throws {
        let connection = try ClientConnection(host: "127.0.0.1", port: port, timeout: timeoutSeconds, receiveBuffer: receiveBuffer)
        self.init(connection: connection, target: path, host: "127.0.0.1:\(port)", subprotocols: subprotocol.map { [$0] } ?? [], headers: headers)
    }

    /// Sends the upgrade for `target` on an open connection and reads the answer.
    package init(connection: ClientConnection, target: String, host: String, subprotocols: [String] = ["deltacast.v1"], headers: [String] = [],
                maximumMessage: Int = 256 << 20) {
        self.connection = connection
        let key = PushRequest.webSocketKey()
        connection.send(PushRequest.webSocketUpgrade(target: target, host: host, key: key, subprotocols: subprotocols, headers: headers))
        var reader = ResponseReader(connection)
        var early: [UInt8] = []
        do {
            handshake = try reader.head()
            early = reader.takeRest()
        } catch {
            handshake = String(decoding: reader.takeRest(), as: UTF8.self)
        }
        accepted = PushRequest.acceptsUpgrade(head: handshake, key: key)
        let deflate = handshake.contains("permessage-deflate") ? PerMessageDeflate.negotiate(offers: "permessage-deflate") : nil
        decoder = WebSocketFrameDecoder(role: .client, maximumMessage: maximumMessage, deflate: deflate)
        decoder.append(early)
    }

    /// The status code of the handshake's answer.
    package var status: Int { PushRequest.status(of: handshake) }

    /// Sends bytes as they are (a test's malformed frame).
    package func sendRaw(_ bytes: [UInt8]) { connection.send(bytes) }

    /// Sends one masked frame.
    package func send(_ opcode: WebSocketOpcode, _ payload: [UInt8]) {
        connection.send(WebSocketFrame.encode(opcode, payload: payload, maskKey: (0..<4).map { _ in UInt8.random(in: 0...255) }))
    }

    package func sendText(_ text: String) { send(.text, Array(text.utf8)) }

    /// Why ``nextEvent()`` ended.
    package enum End: Error { case closed, timedOut, protocolError(WebSocketError) }

    /// The next event; pings are answered (and counted).
    package func nextEvent() throws(End) -> WebSocketEvent {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let event: WebSocketEvent?
            do { event = try decoder.next() } catch { throw .protocolError(error) }
            if let event {
                if case .ping(let payload) = event { pingsReceived += 1; send(.pong, payload); continue }
                return event
            }
            let n = connection.read(into: &buffer)
            if n == 0 { throw .closed }
            if n < 0 { throw .timedOut }
            decoder.append(buffer[0..<n])
        }
    }

    /// The next event, or nil on a timeout, the end of the stream or a protocol error.
    package func next() -> WebSocketEvent? { try? nextEvent() }

    /// The next text message parsed as a JSON object (nil at a close).
    package func nextJSON() -> JSONObject? {
        while let event = next() {
            if case .message(.text, let payload) = event, case .object(let object)? = try? JSONParser.parse(payload) { return object }
            if case .close = event { return nil }
        }
        return nil
    }

    /// Reads until a close frame; returns its code (nil if the socket just ended).
    package func closeCode() -> UInt16? {
        while let event = next() {
            if case .close(let code, _) = event { return code }
        }
        return nil
    }
}
#endif

import DeltacastJSON
import DeltacastLoop
import DeltacastWire
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A blocking WebSocket client on a raw socket: masked frames out, the project's decoder
/// (client role) in. Every read is bounded by the socket's receive timeout.
final class WebSocketClient: @unchecked Sendable {
    let fd: Int32
    private var decoder = WebSocketFrameDecoder(role: .client)
    /// The 101 head (or the refusal) as received.
    private(set) var handshake = ""
    /// Bytes that arrived after the head.
    private var early: [UInt8] = []

    /// Connects and sends the upgrade for `path` with `headers` (each "Name: value").
    init(port: Int, path: String, headers: [String] = [], subprotocol: String? = "deltacast.v1", timeoutSeconds: Int = 10,
         receiveBuffer: Int32? = nil) throws {
        fd = try Socket.connect(port: port, receiveTimeoutSeconds: timeoutSeconds, receiveBuffer: receiveBuffer)
        var request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        request += "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        if let subprotocol { request += "Sec-WebSocket-Protocol: \(subprotocol)\r\n" }
        for header in headers { request += header + "\r\n" }
        sendRaw(Array((request + "\r\n").utf8))
        var data: [UInt8] = []
        var byte = [UInt8](repeating: 0, count: 4096)
        while true {
            if let end = data.indices.dropLast(3).first(where: { data[$0] == 13 && data[$0 + 1] == 10 && data[$0 + 2] == 13 && data[$0 + 3] == 10 }) {
                handshake = String(decoding: data[..<end], as: UTF8.self)
                early = Array(data[(end + 4)...])
                break
            }
            let n = read(fd, &byte, byte.count)
            if n <= 0 { handshake = String(decoding: data, as: UTF8.self); break }
            data += byte[0..<n]
        }
        let deflate = handshake.contains("permessage-deflate") ? PerMessageDeflate.negotiate(offers: "permessage-deflate") : nil
        decoder = WebSocketFrameDecoder(role: .client, maximumMessage: 64 << 20, deflate: deflate)
        decoder.append(early)
    }

    deinit { close(fd) }

    var accepted: Bool { handshake.hasPrefix("HTTP/1.1 101") }

    func sendRaw(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }

    func send(_ opcode: WebSocketOpcode, _ payload: [UInt8]) {
        sendRaw(WebSocketFrame.encode(opcode, payload: payload, maskKey: [1, 2, 3, 4]))
    }

    func sendText(_ text: String) { send(.text, Array(text.utf8)) }

    /// Pings the server sent (each answered by ``next()``).
    private(set) var pingsReceived = 0

    /// The next event, or nil on timeout or EOF. Pings are answered (and counted).
    func next() -> WebSocketEvent? {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            if let event = try? decoder.next() {
                if case .ping(let payload) = event { pingsReceived += 1; send(.pong, payload); continue }
                return event
            }
            let n = read(fd, &buffer, buffer.count)
            if n <= 0 { return nil }
            decoder.append(buffer[0..<n])
        }
    }

    /// The next text message parsed as a JSON object.
    func nextJSON() -> JSONObject? {
        while let event = next() {
            if case .message(.text, let payload) = event, case .object(let object)? = try? JSONParser.parse(payload) { return object }
            if case .close = event { return nil }
        }
        return nil
    }

    /// Reads until a close frame; returns its code (nil if the socket just ended).
    func closeCode() -> UInt16? {
        while let event = next() {
            if case .close(let code, _) = event { return code }
        }
        return nil
    }
}

/// A blocking SSE reader on a raw socket (a close-delimited `text/event-stream` body).
final class EventStreamClient: @unchecked Sendable {
    let fd: Int32
    private(set) var head = ""
    private var buffer: [UInt8] = []

    struct Event: Equatable { var id: String?; var event: String?; var data: String; var retry: String? }

    init(port: Int, path: String, headers: [String] = [], timeoutSeconds: Int = 10) throws {
        fd = try Socket.connect(port: port, receiveTimeoutSeconds: timeoutSeconds)
        var request = "GET \(path) HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n"
        for header in headers { request += header + "\r\n" }
        _ = Array((request + "\r\n").utf8).withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        while true {
            if let end = find([13, 10, 13, 10]) {
                head = String(decoding: buffer[..<end], as: UTF8.self)
                buffer.removeFirst(end + 4)
                return
            }
            guard fill() else { head = String(decoding: buffer, as: UTF8.self); return }
        }
    }

    deinit { close(fd) }

    private func find(_ pattern: [UInt8]) -> Int? {
        guard buffer.count >= pattern.count else { return nil }
        return (0...(buffer.count - pattern.count)).first { buffer[$0..<($0 + pattern.count)].elementsEqual(pattern) }
    }

    private func fill() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = read(fd, &chunk, chunk.count)
        if n <= 0 { return false }
        buffer += chunk[0..<n]
        return true
    }

    /// The next event block (comments skipped), or nil at EOF/timeout.
    func next() -> Event? {
        while true {
            while let end = find([10, 10]) {
                let block = String(decoding: buffer[..<end], as: UTF8.self)
                buffer.removeFirst(end + 2)
                var event = Event(id: nil, event: nil, data: "", retry: nil)
                var dataLines: [String] = []
                var meaningful = false
                for line in block.split(separator: "\n", omittingEmptySubsequences: false) {
                    if line.hasPrefix(":") { continue }
                    meaningful = true
                    let value = String(line.drop { $0 != ":" }.dropFirst().drop { $0 == " " })
                    if line.hasPrefix("id:") { event.id = value }
                    else if line.hasPrefix("event:") { event.event = value }
                    else if line.hasPrefix("data:") { dataLines.append(value) }
                    else if line.hasPrefix("retry:") { event.retry = value }
                }
                if !meaningful { continue }
                event.data = dataLines.joined(separator: "\n")
                return event
            }
            guard fill() else { return nil }
        }
    }

    /// The next event's data parsed as a JSON object (retry-only blocks skipped).
    func nextJSON() -> (id: String?, object: JSONObject)? {
        while let event = next() {
            if event.data.isEmpty { continue }
            if case .object(let object)? = try? JSONParser.parse(event.data) { return (event.id, object) }
        }
        return nil
    }
}

/// `curl`-free HTTP for tests: one request on a new connection, the whole response back.
func httpRequest(port: Int, _ text: String) throws -> (status: Int, head: String, body: String) {
    let client = try RawClient(port: port)
    client.send(text)
    let response = client.read(responses: 1).texts.first ?? ""
    let parts = response.components(separatedBy: "\r\n\r\n")
    let status = Int(response.dropFirst(9).prefix(3)) ?? 0
    return (status, parts.first ?? "", parts.dropFirst().joined(separator: "\r\n\r\n"))
}

/// Publishes `body` to `topic` with the admin token the transport tests configure.
@discardableResult
func publish(port: Int, _ topic: String, _ body: String, token: String? = adminToken, contentType: String = "application/json") throws -> (status: Int, body: String) {
    var request = "POST /deltacast/publish?topic=\(topic) HTTP/1.1\r\nHost: a\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.utf8.count)\r\n"
    if let token { request += "Authorization: Bearer \(token)\r\n" }
    let response = try httpRequest(port: port, request + "\r\n" + body)
    return (response.status, response.body)
}

let adminToken = "test-admin-token-0123456789"

/// A string member of a JSON object.
extension JSONObject {
    func string(_ key: String) -> String? {
        if case .string(let text)? = self[key] { return text }
        return nil
    }
}

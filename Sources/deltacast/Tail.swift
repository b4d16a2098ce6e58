import DeltacastConfig
import DeltacastJSON
import DeltacastLoop
import DeltacastServer
import DeltacastWire
import Foundation

/// `deltacast tail URL TOPIC`: subscribes like a client (multiplexed endpoint of the chosen or
/// negotiated transport), prints each event with a UTC timestamp, keeps the topic's state with
/// `--state`, and reconnects from its cursor when the connection ends.
enum TailCommand: Command {
    static let name = "tail"
    static let summary = "subscribe to a topic like a client and print each event"
    static let usage = """
        usage: deltacast tail URL TOPIC [--transport ws|sse|poll] [--state] [--count N]
                              [--token TOKEN] [--cacert FILE]

        Subscribes to TOPIC on the proxy at URL (e.g. http://127.0.0.1:8080, or https://...)
        and prints each event as it arrives: an ISO 8601 UTC timestamp, then the event's JSON.
        When the connection ends it reconnects after 1 s and resumes from the last cursor.
          --transport ws|sse|poll   the transport (default: the first one the proxy offers)
          --state                   after each event, print the document with it applied
          --count N                 exit after N events (default: run until Ctrl-C)
          --token TOKEN             sent as Authorization: Bearer (or $DELTACAST_TOKEN)
          --cacert FILE             CA certificates for https (default: the system's store)
        """

    static func run(_ arguments: [String]) throws(CommandLineArguments.UsageError) -> ExitStatus {
        let args = try CommandLineArguments(arguments, flags: ["--state"], options: ["--transport", "--count", "--token", "--cacert"])
        guard args.positionals.count == 2 else { throw .init(message: "expected URL and TOPIC") }
        if let transport = args.value("--transport"), !["ws", "sse", "poll"].contains(transport) {
            throw .init(message: "invalid transport '\(transport)'; expected ws, sse or poll")
        }
        guard let url = parseURL(args.positionals[0]) else {
            throw .init(message: "invalid URL '\(args.positionals[0])'; expected http://HOST:PORT[/prefix] or https://...")
        }
        let topic = args.positionals[1]
        guard topic.hasPrefix("/") else { throw .init(message: "invalid topic '\(topic)'; it is a path starting with /") }
        var count: Int?
        if let text = args.value("--count") {
            guard let value = Int(text), value > 0 else { throw .init(message: "invalid --count '\(text)'; expected a positive integer") }
            count = value
        }
        let token = args.value("--token") ?? ProcessInfo.processInfo.environment["DELTACAST_TOKEN"]
        var tail = Tail(host: url.host == "localhost" ? "127.0.0.1" : url.host, port: url.port, prefix: url.path,
                        topic: topic, printState: args.flags.contains("--state"), remaining: count,
                        tls: url.scheme == "https" ? (serverName: url.host, caFile: args.value("--cacert")) : nil,
                        authorization: token.map { "Authorization: Bearer \($0)\r\n" } ?? "")
        return tail.run(transport: args.value("--transport"))
    }
}

struct Tail {
    let host: String
    let port: Int
    let prefix: String
    let topic: String
    let printState: Bool
    var remaining: Int?
    /// For https: the name the certificate must carry, and the CA file (nil: the system's).
    let tls: (serverName: String, caFile: String?)?
    /// `Authorization: Bearer ...\r\n`, or empty.
    let authorization: String
    var cursor: Cursor?
    var state: JSONValue?

    /// Why a session ended.
    enum End: Error { case done, refused(String), lost(String) }

    mutating func run(transport chosen: String?) -> ExitStatus {
        var transport = chosen
        var failures = 0
        while true {
            do {
                if transport == nil { transport = try negotiate() }
                switch transport {
                case "ws": try webSocket()
                case "sse": try serverSentEvents()
                default: try longPoll()
                }
            } catch {
                guard case .lost(let message) = error else {
                    if case .refused(let message) = error {
                        printError("deltacast tail: \(message)")
                        return .failure
                    }
                    return .success
                }
                failures += 1
                if failures > 1 && cursor == nil && state == nil {
                    printError("deltacast tail: \(message)")
                    return .failure
                }
                printError("deltacast tail: \(message); reconnecting in 1 s" + (cursor.map { " from \($0)" } ?? ""))
                sleep(1)
            }
        }
    }

    private func negotiate() throws(End) -> String {
        let (status, body) = try request("GET \(prefix)/deltacast/negotiate")
        guard status == 200, case .object(let object)? = try? JSONParser.parse(body), case .array(let list)? = object["transports"],
              case .string(let first)? = list.first else {
            throw .refused("negotiation failed: HTTP \(status) \(String(decoding: body, as: UTF8.self))")
        }
        return ["websocket": "ws", "sse": "sse", "longpoll": "poll"][first] ?? "poll"
    }

    // MARK: Transports

    private mutating func webSocket() throws(End) {
        let fd = try connect(timeout: 90)
        defer { close(fd) }
        let key = Base64.encode((0..<16).map { _ in UInt8.random(in: 0...255) })
        try sendAll(fd, Array("GET \(prefix)/deltacast/ws HTTP/1.1\r\nHost: \(host):\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: deltacast.v1\r\n\(authorization)\r\n".utf8))
        var reader = Reader(fd: fd)
        let head = try reader.head()
        guard head.hasPrefix("HTTP/1.1 101") else { throw .refused("WebSocket refused: \(head.split(separator: "\r\n").first ?? "")") }
        var decoder = WebSocketFrameDecoder(role: .client, maximumMessage: 256 << 20)
        decoder.append(reader.takeRest())
        var subscribe = Array(#"{"type":"subscribe","topic":"#.utf8)
        JSONValue.writeString(topic, to: &subscribe)
        if let cursor { subscribe += Array(#","since":"\#(cursor)""#.utf8) }
        subscribe.append(0x7D)
        try sendAll(fd, WebSocketFrame.encode(.text, payload: subscribe, maskKey: Self.mask()))
        while true {
            let event: WebSocketEvent?
            do { event = try decoder.next() } catch { throw .lost("WebSocket protocol error: \(error)") }
            guard let event else {
                decoder.append(try reader.more())
                continue
            }
            switch event {
            case .message(_, let payload): try handle(payload)
            case .ping(let payload): try sendAll(fd, WebSocketFrame.encode(.pong, payload: payload, maskKey: Self.mask()))
            case .pong: break
            case .close(let code, let reason): throw .lost("WebSocket closed: \(code.map(String.init) ?? "no code") \(reason)")
            }
        }
    }

    private mutating func serverSentEvents() throws(End) {
        let fd = try connect(timeout: 90)
        defer { close(fd) }
        var target = "\(prefix)/deltacast/sse?topic=\(Self.percentEncoded(topic))"
        if let cursor { target += "&since=\(cursor)" }
        try sendAll(fd, Array("GET \(target) HTTP/1.1\r\nHost: \(host):\(port)\r\nAccept: text/event-stream\r\n\(authorization)\r\n".utf8))
        var reader = Reader(fd: fd)
        let head = try reader.head()
        guard head.hasPrefix("HTTP/1.1 200") else { throw .refused("SSE refused: \(head.split(separator: "\r\n").first ?? "")") }
        var pending = reader.takeRest()
        while true {
            while let end = FanoutBenchmark.find(pending, [10, 10]) {
                let block = String(decoding: pending[..<end], as: UTF8.self)
                pending.removeFirst(end + 2)
                let data = block.split(separator: "\n").filter { $0.hasPrefix("data:") }.map { $0.dropFirst(5).drop { $0 == " " } }.joined(separator: "\n")
                if !data.isEmpty { try handle(Array(data.utf8)) }
            }
            pending += try reader.more()
        }
    }

    private mutating func longPoll() throws(End) {
        while true {
            let target = "\(prefix)/deltacast/poll?topic=\(Self.percentEncoded(topic))&since=\(cursor?.description ?? "")&wait=25"
            let (status, body) = try request("GET \(target)")
            switch status {
            case 204: continue
            case 200:
                guard case .array(let events)? = try? JSONParser.parse(body) else { throw .lost("long-poll answered with a body that is not a JSON array") }
                for event in events { try handle(event.serialized()) }
            default:
                throw .refused("long-poll refused: HTTP \(status) \(String(decoding: body, as: UTF8.self))")
            }
        }
    }

    // MARK: Events

    private mutating func handle(_ bytes: [UInt8]) throws(End) {
        print("\(Self.timestamp()) \(String(decoding: bytes, as: UTF8.self))")
        guard case .object(let event)? = try? JSONParser.parse(bytes), case .string(let type)? = event["type"] else { return }
        let eventCursor: Cursor? = if case .string(let text)? = event["cursor"] { Cursor(text) } else { nil }
        switch type {
        case "snapshot":
            state = event["data"]
            cursor = eventCursor
        case "patch":
            let base: Cursor? = if case .string(let text)? = event["base"] { Cursor(text) } else { nil }
            guard base == cursor, let current = state else {
                printError("deltacast tail: a patch from \(base?.description ?? "?") does not follow \(cursor?.description ?? "nothing"); resubscribing for a snapshot")
                cursor = nil
                state = nil
                throw .lost("resynchronising")
            }
            do {
                if let merge = event["merge"] {
                    state = JSONMergePatch.apply(merge, to: current)
                } else if let patch = event["patch"] {
                    state = try JSONPatch.apply(try JSONPatch.operations(from: patch), to: current)
                }
            } catch {
                printError("deltacast tail: the patch does not apply (\(error)); resubscribing for a snapshot")
                cursor = nil
                state = nil
                throw .lost("resynchronising")
            }
            cursor = eventCursor
        case "error":
            if case .string(let code)? = event["code"], ["not_found", "forbidden", "bad_request"].contains(code) {
                throw .refused("the proxy refused \(topic): \(code)")
            }
        default:
            break
        }
        if printState, type == "snapshot" || type == "patch", let state {
            print("\(Self.timestamp()) state \(state.jsonText)")
        }
        fflush(nil)
        if let left = remaining {
            remaining = left - 1
            if left - 1 <= 0 { throw .done }
        }
    }

    // MARK: Plumbing

    private func connect(timeout: Int) throws(End) -> TailConnection {
        do {
            return try TailConnection.open(host: host, port: port, timeout: timeout, tls: tls)
        } catch {
            if case .tls(let message) = error { throw .refused(message) }
            throw .lost(error.message)
        }
    }

    private func request(_ line: String) throws(End) -> (Int, [UInt8]) {
        let fd = try connect(timeout: 90)
        defer { close(fd) }
        try sendAll(fd, Array("\(line) HTTP/1.1\r\nHost: \(host):\(port)\r\nConnection: close\r\n\(authorization)\r\n".utf8))
        var reader = Reader(fd: fd)
        let head = try reader.head()
        let status = Int(head.dropFirst(9).prefix(3)) ?? 0
        var body = reader.takeRest()
        while let more = try? reader.more() { body += more }
        return (status, body)
    }

    private func sendAll(_ connection: TailConnection, _ bytes: [UInt8]) throws(End) {
        guard connection.send(bytes) else { throw .lost("connection lost while sending") }
    }

    static func mask() -> [UInt8] { (0..<4).map { _ in UInt8.random(in: 0...255) } }

    static func percentEncoded(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "&=?+"))) ?? text
    }

    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var moment = tm()
        var seconds = now.tv_sec
        gmtime_r(&seconds, &moment)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let millis = now.tv_nsec / 1_000_000
        return "\(moment.tm_year + 1900)-\(two(moment.tm_mon + 1))-\(two(moment.tm_mday))T\(two(moment.tm_hour)):\(two(moment.tm_min)):\(two(moment.tm_sec)).\(millis < 10 ? "00" : millis < 100 ? "0" : "")\(millis)Z"
    }
}

/// A blocking socket, through TLS for https (`tail` and `top`).
struct TailConnection {
    let fd: Int32
    let tls: TLSStream?

    enum Failure: Error {
        case connect(String), tls(String)
        var message: String { switch self { case .connect(let text), .tls(let text): text } }
    }

    /// Connects (with `SO_RCVTIMEO` of `timeout` seconds) and, for https, verifies the server.
    static func open(host: String, port: Int, timeout: Int, tls: (serverName: String, caFile: String?)?) throws(Failure) -> TailConnection {
        let fd: Int32
        do { fd = try Socket.connect(host: host, port: port, receiveTimeoutSeconds: timeout) } catch {
            throw .connect("cannot connect to \(host):\(port): \(error)")
        }
        guard let tls else { return TailConnection(fd: fd, tls: nil) }
        do {
            return TailConnection(fd: fd, tls: try TLSStream.client(fd: fd, host: tls.serverName, caFile: tls.caFile))
        } catch {
            Glibc.close(fd)
            throw .tls("TLS to \(tls.serverName):\(port): \(error)")
        }
    }

    /// Sends every byte; false when the connection failed.
    func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { raw in
                tls.map { $0.write(raw) } ?? Glibc.send(fd, raw.baseAddress, raw.count, Int32(MSG_NOSIGNAL))
            }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    /// Reads what is there: > 0 bytes, 0 at the end, -1 on an error or timeout (errno says).
    func read(into chunk: inout [UInt8]) -> Int {
        chunk.withUnsafeMutableBytes { raw -> Int in
            guard let tls else { return Glibc.read(fd, raw.baseAddress, raw.count) }
            let n = tls.read(into: raw)
            // A TLS read that would block on a blocking socket means SO_RCVTIMEO passed.
            if n < 0 { errno = n == -1 ? EAGAIN : EIO; return -1 }
            return n
        }
    }
}

/// Closes the socket (after TLS close_notify).
func close(_ connection: TailConnection) {
    connection.tls?.shutdown()
    Glibc.close(connection.fd)
}

/// Reads a response head, then raw bytes, from a blocking socket.
struct Reader {
    let fd: TailConnection
    private var buffer: [UInt8] = []

    init(fd: TailConnection) { self.fd = fd }

    mutating func head() throws(Tail.End) -> String {
        while true {
            if let end = FanoutBenchmark.find(buffer, [13, 10, 13, 10]) {
                let text = String(decoding: buffer[..<end], as: UTF8.self)
                buffer.removeFirst(end + 4)
                return text
            }
            buffer += try more()
        }
    }

    mutating func takeRest() -> [UInt8] {
        defer { buffer = [] }
        return buffer
    }

    func more() throws(Tail.End) -> [UInt8] {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = fd.read(into: &chunk)
        if n == 0 { throw .lost("the proxy closed the connection") }
        if n < 0 { throw .lost(errno == EAGAIN ? "no data for 90 s" : "read failed: errno \(errno)") }
        return Array(chunk[0..<n])
    }
}

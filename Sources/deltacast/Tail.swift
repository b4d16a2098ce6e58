import DeltacastBase
import DeltacastClient
import DeltacastCommandLine
import DeltacastConfig
import DeltacastJSON
import DeltacastLoop
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
                        tls: url.scheme == "https" ? ClientConnection.TLSOptions(serverName: url.host, caFile: args.value("--cacert")) : nil,
                        authorization: token.map { ["Authorization: Bearer \($0)"] } ?? [])
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
    let tls: ClientConnection.TLSOptions?
    /// `Authorization: Bearer ...`, or nothing.
    let authorization: [String]
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
        let (status, body) = try request("\(prefix)/deltacast/negotiate")
        guard status == 200, case .object(let object)? = try? JSONParser.parse(body), case .array(let list)? = object["transports"],
              case .string(let first)? = list.first else {
            throw .refused("negotiation failed: HTTP \(status) \(String(decoding: body, as: UTF8.self))")
        }
        return ["websocket": "ws", "sse": "sse", "longpoll": "poll"][first] ?? "poll"
    }

    // MARK: Transports

    private mutating func webSocket() throws(End) {
        let client = WebSocketClient(connection: try connect(timeout: 90), target: "\(prefix)/deltacast/ws", host: "\(host):\(port)", headers: authorization)
        defer { client.connection.close() }
        guard client.accepted else { throw .refused("WebSocket refused: \(client.handshake.split(separator: "\r\n").first ?? "no answer")") }
        var subscribe = Array(#"{"type":"subscribe","topic":"#.utf8)
        JSONValue.writeString(topic, to: &subscribe)
        if let cursor { subscribe += Array(#","since":"\#(cursor)""#.utf8) }
        subscribe.append(0x7D)
        client.send(.text, subscribe)
        while true {
            let event: WebSocketEvent
            do { event = try client.nextEvent() } catch {
                switch error {
                case .closed: throw .lost("the proxy closed the connection")
                case .timedOut: throw .lost("no data for 90 s")
                case .protocolError(let error): throw .lost("WebSocket protocol error: \(error)")
                }
            }
            switch event {
            case .message(_, let payload): try handle(payload)
            case .ping, .pong: break
            case .close(let code, let reason): throw .lost("WebSocket closed: \(code.map(String.init) ?? "no code") \(reason)")
            }
        }
    }

    private mutating func serverSentEvents() throws(End) {
        var target = "\(prefix)/deltacast/sse?topic=\(Self.percentEncoded(topic))"
        if let cursor { target += "&since=\(cursor)" }
        let client = EventStreamClient(connection: try connect(timeout: 90), target: target, host: "\(host):\(port)", headers: authorization)
        defer { client.connection.close() }
        guard client.status == 200 else { throw .refused("SSE refused: \(client.head.split(separator: "\r\n").first ?? "no answer")") }
        while let event = client.next() {
            if !event.data.isEmpty { try handle(Array(event.data.utf8)) }
        }
        throw .lost("the event stream ended")
    }

    private mutating func longPoll() throws(End) {
        while true {
            let target = "\(prefix)/deltacast/poll?topic=\(Self.percentEncoded(topic))&since=\(cursor?.description ?? "")&wait=25"
            let (status, body) = try request(target)
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

    private func connect(timeout: Int) throws(End) -> ClientConnection {
        do {
            return try ClientConnection(host: host, port: port, timeout: timeout, tls: tls)
        } catch {
            if case .tls(let message) = error { throw .refused(message) }
            throw .lost(error.message)
        }
    }

    private func request(_ target: String) throws(End) -> (Int, [UInt8]) {
        let connection = try connect(timeout: 90)
        defer { connection.close() }
        do {
            let response = try connection.exchange(PushRequest.get(target: target, host: "\(host):\(port)", headers: authorization, close: true))
            return (response.status, response.body)
        } catch {
            throw .lost("\(error)")
        }
    }

    static func percentEncoded(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "&=?+"))) ?? text
    }

    static func timestamp() -> String { WallClock.timestamp() }
}

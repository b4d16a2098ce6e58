import DeltacastBase
import DeltacastJSON
import DeltacastWire
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#endif

/// One connection of a ``DeltacastClient`` over one transport, on the client's thread: it
/// subscribes the client's topics (from their cursors), applies what arrives, and returns when
/// the connection ends, the client closes or no topic is left. Reads wait at most
/// ``tick`` seconds, so changes to the topic set and `close()` are seen that soon.
struct Session {
    enum Outcome {
        /// The transport did not open (refused, or not within the open timeout): try the next.
        case refused(String)
        /// The session ended, and why; `opened`: it had been open (the backoff starts over).
        case ended(opened: Bool, String)
    }

    static let tick = 0.25
    let client: DeltacastClient
    let transport: DeltacastClient.Transport
    /// The token this connection carries (the client's, or its token function's answer).
    let token: String?

    func run() -> Outcome {
        switch (transport, client.options.io) {
        case (.websocket, .sockets): return runWebSocket()
        case (.sse, .sockets): return runEventStream()
        case (.longpoll, .sockets): return runLongPoll()
        case (.websocket, .foundation): return .refused("WebSocket: the Foundation I/O carries SSE and long-poll")
        case (.sse, .foundation): return runFoundationEventStream()
        case (.longpoll, .foundation): return runFoundationLongPoll()
        }
    }

    private var endpoint: ProxyEndpoint { client.endpoint }

    private func connect() -> Result<ClientConnection, ClientConnection.Failure> {
        let timeout = max(1, Int(client.options.openTimeout.seconds.rounded(.up)))
        let tls = endpoint.secure ? ClientConnection.TLSOptions(serverName: endpoint.host, caFile: client.options.caFile) : nil
        let connection: ClientConnection
        do { connection = try ClientConnection(host: endpoint.host, port: endpoint.port, timeout: timeout, tls: tls) } catch {
            return .failure(error)
        }
        let closed = client.state.withLock { state -> Bool in
            if !state.closed { state.activeSocket = connection.fd }
            return state.closed
        }
        if closed { connection.close(); return .failure(.connect("the client was closed")) }
        return .success(connection)
    }

    /// Closes `connection`, first letting go of it under the client's lock (see ``DeltacastClient/close()``).
    private func release(_ connection: ClientConnection) {
        client.state.withLock { state in if state.activeSocket == connection.fd { state.activeSocket = nil } }
        connection.close()
    }

    static let lost = "the proxy closed the connection"

    /// Reads wait at most a tick from now on.
    private func shortenReads(_ connection: ClientConnection) {
        var value = timeval(tv_sec: 0, tv_usec: Int(Self.tick * 1_000_000))
        setsockopt(connection.fd, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
    }

    private var stopped: Bool { client.state.withLock { $0.closed || $0.topics.isEmpty } }

    // MARK: WebSocket

    private func runWebSocket() -> Outcome {
        let connection: ClientConnection
        switch connect() { case .success(let open): connection = open; case .failure(let error): return .refused(error.message) }
        let socket = WebSocketClient(connection: connection, target: endpoint.basePath + "/deltacast/ws", host: endpoint.hostHeader,
                                     subprotocols: ["deltacast.v1"] + (token.map { ["token." + $0] } ?? []))
        guard socket.accepted else {
            release(connection)
            return .refused("WebSocket refused: \(socket.handshake.split(separator: "\r\n").first.map(String.init) ?? "no answer within the open timeout")")
        }
        shortenReads(connection)
        opened(.websocket)
        client.state.withLock { state in
            for name in state.topics.keys { state.topics[name]?.sent = false }
            state.webSocketSubscribed = []
        }
        defer { release(connection) }
        // Subscribes are paced by a token bucket of `subscribeRate` a second.
        let rate = Double(max(1, client.options.subscribeRate))
        var tokens = rate
        var refilled = Date().timeIntervalSinceReferenceDate
        var waiting = false
        while !stopped {
            let now = Date().timeIntervalSinceReferenceDate
            tokens = min(rate, tokens + (now - refilled) * rate)
            refilled = now
            // Unsubscribe what left, subscribe what is new (from its cursor): both are messages
            // the proxy counts against limits.message_rate, so both spend the bucket.
            let (subscribe, unsubscribe, more) = client.state.withLock { state -> ([(String, String?)], [String], Bool) in
                var subscribe: [(String, String?)] = []
                var unsubscribe: [String] = []
                var more = false
                for name in state.webSocketSubscribed where state.topics[name] == nil {
                    guard tokens >= 1 else { more = true; break }
                    tokens -= 1
                    unsubscribe.append(name)
                }
                for name in unsubscribe { state.webSocketSubscribed.remove(name) }
                for (name, topic) in state.topics where !topic.sent && (topic.retryAt ?? 0) <= now {
                    guard tokens >= 1 else { more = true; break }
                    tokens -= 1
                    subscribe.append((name, topic.cursor))
                    state.topics[name]?.sent = true
                    state.topics[name]?.retryAt = nil
                    state.webSocketSubscribed.insert(name)
                }
                state.changed = false
                return (subscribe, unsubscribe, more)
            }
            // Subscribes waiting for tokens: read only until the next one.
            if more != waiting {
                waiting = more
                var value = more ? timeval(tv_sec: 0, tv_usec: Int(1_000_000 / rate) + 1000) : timeval(tv_sec: 0, tv_usec: Int(Self.tick * 1_000_000))
                setsockopt(connection.fd, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
            }
            for (name, cursor) in subscribe { socket.sendText(Self.message("subscribe", topic: name, since: cursor)) }
            for name in unsubscribe { socket.sendText(Self.message("unsubscribe", topic: name, since: nil)) }
            do {
                let event = try socket.nextEvent()
                switch event {
                case .message(.text, let payload):
                    if let resubscribe = handle(payload), !resubscribe.isEmpty {
                        for name in resubscribe { socket.sendText(Self.message("subscribe", topic: name, since: nil)) }
                    }
                case .close(let code, let reason):
                    return .ended(opened: true, "WebSocket closed: \(code.map(String.init) ?? "no code") \(reason)")
                default:
                    break
                }
            } catch .timedOut {
                continue
            } catch {
                return .ended(opened: true, Self.lost)
            }
        }
        socket.send(.close, [0x03, 0xE8])
        return .ended(opened: true, "closed")
    }

    static func message(_ type: String, topic: String, since: String?) -> String {
        var object = JSONObject([("type", .string(type)), ("topic", .string(topic))])
        if let since { object["since"] = .string(since) }
        return String(decoding: JSONValue.object(object).serialized(), as: UTF8.self)
    }

    // MARK: SSE

    /// `topic=A&since=CA&topic=B&since=` for every topic, from their cursors.
    private func topicQuery() -> String {
        client.state.withLock { state in
            state.changed = false
            return state.topics.map { name, topic in "topic=\(Self.escape(name))&since=\(Self.escape(topic.cursor ?? ""))" }.joined(separator: "&")
        }
    }

    static func escape(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~/"))) ?? text
    }

    private var authorization: [String] { token.map { ["Authorization: Bearer \($0)"] } ?? [] }

    private func runEventStream() -> Outcome {
        let connection: ClientConnection
        switch connect() { case .success(let open): connection = open; case .failure(let error): return .refused(error.message) }
        defer { release(connection) }
        let stream = EventStreamClient(connection: connection, target: endpoint.basePath + "/deltacast/sse?" + topicQuery(),
                                       host: endpoint.hostHeader, headers: authorization)
        guard stream.status == 200 else {
            return .refused("SSE refused: \(stream.head.split(separator: "\r\n").first.map(String.init) ?? "no answer within the open timeout")")
        }
        shortenReads(connection)
        opened(.sse)
        while !stopped {
            // SSE names its topics in the URL: a changed set (or a resync) opens a new stream.
            if client.state.withLock({ $0.changed }) { return .ended(opened: true, "the topics changed") }
            switch stream.read() {
            case .event(let event):
                guard !event.data.isEmpty else { continue }
                if let resubscribe = handle(Array(event.data.utf8)), !resubscribe.isEmpty { return .ended(opened: true, "resynchronising") }
            case .timedOut:
                continue
            case .ended:
                return .ended(opened: true, "the event stream ended")
            }
        }
        return .ended(opened: true, "closed")
    }

    // MARK: Long-poll

    private func runLongPoll() -> Outcome {
        var first = true
        while !stopped {
            let connection: ClientConnection
            switch connect() {
            case .success(let open): connection = open
            case .failure(let error): return first ? .refused(error.message) : .ended(opened: true, error.message)
            }
            let target = endpoint.basePath + "/deltacast/poll?" + topicQuery() + "&wait=\(client.options.pollWait)"
            let response: ClientResponse
            do {
                // The hold is up to `pollWait` s: reads wait that long and a margin.
                var value = timeval(tv_sec: client.options.pollWait + 10, tv_usec: 0)
                setsockopt(connection.fd, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
                response = try connection.exchange(PushRequest.get(target: target, host: endpoint.hostHeader, headers: authorization, close: true))
            } catch {
                release(connection)
                return first ? .refused("long-poll: \(error)") : .ended(opened: true, "long-poll: \(error)")
            }
            release(connection)
            guard response.status == 200 || response.status == 204 else {
                let why = "long-poll refused: HTTP \(response.status) \(String(decoding: response.body.prefix(200), as: UTF8.self))"
                return first ? .refused(why) : .ended(opened: true, why)
            }
            if first { opened(.longpoll); first = false }
            guard response.status == 200, case .array(let events)? = try? JSONParser.parse(response.body) else { continue }
            for event in events {
                _ = handle(event.serialized())
            }
        }
        return .ended(opened: !first, "closed")
    }

    // MARK: Foundation I/O

    /// Why the Foundation I/O cannot serve this client, if it cannot: on Linux its TLS cannot
    /// take another CA file.
    private func foundationRefusal() -> String? {
        #if canImport(FoundationNetworking)
        if endpoint.secure && client.options.caFile != nil { return "a CA file (Options.caFile) needs the sockets I/O on Linux" }
        #endif
        return nil
    }

    /// The request of `target` on the proxy, with the client's token.
    private func makeRequest(_ target: String, accept: String) -> URLRequest? {
        guard let url = URL(string: (endpoint.secure ? "https://" : "http://") + endpoint.hostHeader + target) else { return nil }
        var request = URLRequest(url: url)
        request.setValue(accept, forHTTPHeaderField: "Accept")
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        return request
    }

    /// Starts `request` unless the client was closed; ``DeltacastClient/close()`` cancels it.
    private func begin(_ request: URLRequest, idleTimeout: Double) -> FoundationRequest? {
        let started = FoundationRequest(request, idleTimeout: idleTimeout)
        let closed = client.state.withLock { state -> Bool in
            if !state.closed { state.activeRequest = started }
            return state.closed
        }
        if closed { started.cancel(); return nil }
        return started
    }

    /// Ends `request`, first letting go of it under the client's lock.
    private func finish(_ request: FoundationRequest) {
        client.state.withLock { state in if state.activeRequest === request { state.activeRequest = nil } }
        request.cancel()
    }

    /// SSE over `URLSession`: the same stream as ``runEventStream()``, read as it arrives.
    private func runFoundationEventStream() -> Outcome {
        if let refusal = foundationRefusal() { return .refused(refusal) }
        // The proxy sends a heartbeat on a quiet stream: a minute without a byte is a dead one.
        guard let urlRequest = makeRequest(endpoint.basePath + "/deltacast/sse?" + topicQuery(), accept: "text/event-stream"),
              let request = begin(urlRequest, idleTimeout: 60) else { return .refused("the client was closed") }
        defer { finish(request) }
        switch request.status(within: client.options.openTimeout.seconds) {
        case .success(200)?: break
        case .success(let status)?: return .refused("SSE refused: HTTP \(status)")
        case .failure(let failure)?: return .refused("SSE: \(failure.message)")
        case nil: return .refused("SSE: no answer within the open timeout")
        }
        opened(.sse)
        var parser = EventStreamParser()
        while !stopped {
            // SSE names its topics in the URL: a changed set (or a resync) opens a new stream.
            if client.state.withLock({ $0.changed }) { return .ended(opened: true, "the topics changed") }
            switch request.read(waiting: Self.tick) {
            case .bytes(let bytes):
                parser.append(bytes)
                do {
                    while let event = try parser.next() {
                        guard !event.data.isEmpty else { continue }
                        if let resubscribe = handle(Array(event.data.utf8)), !resubscribe.isEmpty { return .ended(opened: true, "resynchronising") }
                    }
                } catch {
                    return .ended(opened: true, "an event stream line longer than \(parser.maximumLine) bytes")
                }
            case .ended(.finished):
                return .ended(opened: true, "the event stream ended")
            case .ended(.failed(let why)):
                return .ended(opened: true, "the event stream failed: \(why)")
            }
        }
        return .ended(opened: true, "closed")
    }

    /// Long-poll over `URLSession`: one request at a time, each held up to ``DeltacastClient/Options/pollWait``.
    private func runFoundationLongPoll() -> Outcome {
        if let refusal = foundationRefusal() { return .refused(refusal) }
        var first = true
        while !stopped {
            let target = endpoint.basePath + "/deltacast/poll?" + topicQuery() + "&wait=\(client.options.pollWait)"
            let limit = Double(client.options.pollWait + 10)
            guard let urlRequest = makeRequest(target, accept: "application/json"),
                  let request = begin(urlRequest, idleTimeout: limit) else { break }
            let answer = request.body(within: limit, tick: Self.tick) { stopped }
            let status = request.responseStatus ?? 0
            finish(request)
            guard let answer else { break }
            let body: [UInt8]
            switch answer {
            case .success(let bytes): body = bytes
            case .failure(let failure): return first ? .refused("long-poll: \(failure.message)") : .ended(opened: true, "long-poll: \(failure.message)")
            }
            guard status == 200 || status == 204 else {
                let why = "long-poll refused: HTTP \(status) \(String(decoding: body.prefix(200), as: UTF8.self))"
                return first ? .refused(why) : .ended(opened: true, why)
            }
            if first { opened(.longpoll); first = false }
            guard status == 200, case .array(let events)? = try? JSONParser.parse(body) else { continue }
            for event in events {
                _ = handle(event.serialized())
            }
        }
        return .ended(opened: !first, "closed")
    }

    private func opened(_ transport: DeltacastClient.Transport) {
        client.state.withLock { $0.transport = transport }
        client.options.onConnection?(.connected(transport))
    }

    // MARK: Events

    /// Applies one event; returns the topics to subscribe again without a cursor (a patch that
    /// does not follow the state), nil when the event was not one.
    private func handle(_ payload: [UInt8]) -> [String]? {
        guard case .object(let event)? = try? JSONParser.parse(payload), case .string(let type)? = event["type"] else { return nil }
        guard case .string(let name)? = event["topic"] else {
            // An error for the whole connection (too many topics for it, a bad request).
            if type == "error" { endAll(event) }
            return []
        }
        let cursor: String? = if case .string(let text)? = event["cursor"] { text } else { nil }
        enum Action {
            case deliver(TopicSink, JSONValue, String), status(TopicSink, Bool, Int?, String?), end(TopicSink, any Error), resync, none
            /// The topic's sink, when the event ended the subscription (it left the table).
            var sink: TopicSink? { if case .end(let sink, _) = self { return sink }; return nil }
        }
        let action = client.state.withLock { state -> Action in
            guard var topic = state.topics[name] else { return .none }
            switch type {
            case "snapshot":
                guard let data = event["data"], let cursor else { return .none }
                if let held = topic.cursor, Self.notNewer(cursor, than: held), topic.document != nil { return .none }
                topic.document = data
                topic.cursor = cursor
                state.topics[name] = topic
                return .deliver(topic.sink, data, cursor)
            case "patch":
                guard let cursor else { return .none }
                if let held = topic.cursor, Self.notNewer(cursor, than: held) { return .none }   // applied already
                guard case .string(let base)? = event["base"], base == topic.cursor, let document = topic.document else {
                    topic.cursor = nil
                    topic.document = nil
                    state.topics[name] = topic
                    state.changed = true
                    return .resync
                }
                let next: JSONValue
                if let merge = event["merge"] {
                    next = JSONMergePatch.apply(merge, to: document)
                } else if let patch = event["patch"], let operations = try? JSONPatch.operations(from: patch), let applied = try? JSONPatch.apply(operations, to: document) {
                    next = applied
                } else {
                    topic.cursor = nil
                    topic.document = nil
                    state.topics[name] = topic
                    state.changed = true
                    return .resync
                }
                topic.document = next
                topic.cursor = cursor
                state.topics[name] = topic
                return .deliver(topic.sink, next, cursor)
            case "status":
                if case .string(let upstream)? = event["upstream"] {
                    let http: Int? = if case .number(let number)? = event["http"] { number.intValue } else { nil }
                    let message: String? = if case .string(let text)? = event["message"] { text } else { nil }
                    return .status(topic.sink, upstream == "error", http, message)
                }
                return .none
            case "error":
                let code: String = if case .string(let text)? = event["code"] { text } else { "error" }
                if code == "expired" { return .none }   // the stream closes; the next connection resumes
                let message: String = if case .string(let text)? = event["message"] { text } else { "" }
                // `limits.subscribe_rate`: not a refusal of the topic; subscribe again when told.
                if code == "too_many", let wait = Self.retryDelay(message) {
                    state.topics[name]?.sent = false
                    state.topics[name]?.retryAt = Date().timeIntervalSinceReferenceDate + wait
                    return .none
                }
                state.topics[name] = nil
                state.webSocketSubscribed.remove(name)   // the proxy dropped it already
                state.changed = true
                return .end(topic.sink, DeltacastClient.SubscriptionError.refused(code: code, message: message))
            default:
                return .none
            }
        }
        if let raw = client.state.withLock({ $0.topics[name]?.sink.raw }) ?? action.sink?.raw {
            let after: JSONValue? = if case .deliver(_, let value, _) = action { value } else { nil }
            raw(payload, after)
        }
        switch action {
        case .deliver(let sink, let value, let cursor):
            if !sink.deliver(value, cursor) { client.state.withLock { state in state.topics[name] = nil; state.changed = true } }
        case .status(let sink, let stale, let http, let message):
            sink.status(stale, http, message)
        case .end(let sink, let error):
            sink.end(error)
        case .resync:
            return [name]
        case .none:
            break
        }
        return []
    }

    private func endAll(_ event: JSONObject) {
        let code: String = if case .string(let text)? = event["code"] { text } else { "error" }
        let message: String = if case .string(let text)? = event["message"] { text } else { "" }
        let sinks = client.state.withLock { state -> [TopicSink] in
            defer { state.topics = [:] }
            return state.topics.values.map(\.sink)
        }
        for sink in sinks { sink.end(DeltacastClient.SubscriptionError.refused(code: code, message: message)) }
    }

    /// `… retry in N ms` (a subscribe over the proxy's rate): N, in seconds.
    static func retryDelay(_ message: String) -> Double? {
        guard let range = message.range(of: "retry in "), let end = message[range.upperBound...].firstIndex(of: " "),
              let milliseconds = Int(message[range.upperBound..<end]) else { return nil }
        return Double(milliseconds) / 1000
    }

    /// Whether cursor `a` is not newer than `b`: same epoch, sequence not higher.
    static func notNewer(_ a: String, than b: String) -> Bool {
        guard let (epochA, seqA) = parts(a), let (epochB, seqB) = parts(b) else { return false }
        return epochA == epochB && seqA <= seqB
    }

    static func parts(_ cursor: String) -> (Substring, Int)? {
        guard let dash = cursor.lastIndex(of: "-"), let seq = Int(cursor[cursor.index(after: dash)...]) else { return nil }
        return (cursor[..<dash], seq)
    }
}

import DeltacastBase
import DeltacastJSON
import Foundation

/// How a session's bytes travel: each I/O runs the three transports (or refuses one it cannot
/// carry), and ``Session`` does the rest: topics, cursors, events applied.
protocol SessionIO {
    func runWebSocket(_ session: Session) -> Session.Outcome
    func runEventStream(_ session: Session) -> Session.Outcome
    func runLongPoll(_ session: Session) -> Session.Outcome
}

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
        guard let io = Self.io(client.options.io) else {
            return .refused("the sockets I/O is not in this build (Apple platforms, and Linux builds with DELTACAST_CLIENT_IO=foundation, use the Foundation I/O)")
        }
        switch transport {
        case .websocket: return io.runWebSocket(self)
        case .sse: return io.runEventStream(self)
        case .longpoll: return io.runLongPoll(self)
        }
    }

    /// The I/O `choice` names, nil when this build has none such.
    static func io(_ choice: DeltacastClient.IO) -> (any SessionIO)? {
        switch choice {
        case .sockets:
            #if DELTACAST_SOCKETS
            SocketIO()
            #else
            nil
            #endif
        case .foundation:
            FoundationIO()
        }
    }

    var endpoint: ProxyEndpoint { client.endpoint }

    static let lost = "the proxy closed the connection"

    var stopped: Bool { client.state.withLock { $0.closed || $0.topics.isEmpty } }

    // MARK: WebSocket

    static func message(_ type: String, topic: String, since: String?) -> String {
        var object = JSONObject([("type", .string(type)), ("topic", .string(topic))])
        if let since { object["since"] = .string(since) }
        return String(decoding: JSONValue.object(object).serialized(), as: UTF8.self)
    }

    // MARK: SSE

    /// `topic=A&since=CA&topic=B&since=` for every topic, from their cursors.
    func topicQuery() -> String {
        client.state.withLock { state in
            state.changed = false
            return state.topics.map { name, topic in "topic=\(Self.escape(name))&since=\(Self.escape(topic.cursor ?? ""))" }.joined(separator: "&")
        }
    }

    static func escape(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~/"))) ?? text
    }

    var authorization: [String] { token.map { ["Authorization: Bearer \($0)"] } ?? [] }

    func opened(_ transport: DeltacastClient.Transport) {
        client.state.withLock { $0.transport = transport }
        client.options.onConnection?(.connected(transport))
    }

    // MARK: Events

    /// Applies one event; returns the topics to subscribe again without a cursor (a patch that
    /// does not follow the state), nil when the event was not one.
    func handle(_ payload: [UInt8]) -> [String]? {
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

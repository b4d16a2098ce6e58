// The sockets I/O, built where DELTACAST_SOCKETS is defined (Linux; see Package.swift).
#if DELTACAST_SOCKETS
import DeltacastJSON
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The client's own sockets and TLS (OpenSSL) under every transport: blocking reads bounded by
/// the socket's receive timeout, a tick at a time.
struct SocketIO: SessionIO {
    private func connect(_ session: Session) -> Result<ClientConnection, ClientConnection.Failure> {
        let timeout = max(1, Int(session.client.options.openTimeout.seconds.rounded(.up)))
        let tls = session.endpoint.secure ? ClientConnection.TLSOptions(serverName: session.endpoint.host, caFile: session.client.options.caFile) : nil
        let connection: ClientConnection
        do { connection = try ClientConnection(host: session.endpoint.host, port: session.endpoint.port, timeout: timeout, tls: tls) } catch {
            return .failure(error)
        }
        let closed = session.client.state.withLock { state -> Bool in
            if !state.closed { state.activeSocket = connection.fd }
            return state.closed
        }
        if closed { connection.close(); return .failure(.connect("the client was closed")) }
        return .success(connection)
    }

    /// Closes `connection`, first letting go of it under the client's lock (see ``DeltacastClient/close()``).
    private func release(_ session: Session, _ connection: ClientConnection) {
        session.client.state.withLock { state in if state.activeSocket == connection.fd { state.activeSocket = nil } }
        connection.close()
    }

    /// Reads wait at most a tick from now on.
    private func shortenReads(_ connection: ClientConnection) {
        var value = timeval(tv_sec: 0, tv_usec: Int(Session.tick * 1_000_000))
        setsockopt(connection.fd, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
    }

    func runWebSocket(_ session: Session) -> Session.Outcome {
        let connection: ClientConnection
        switch connect(session) { case .success(let open): connection = open; case .failure(let error): return .refused(error.message) }
        let socket = WebSocketClient(connection: connection, target: session.endpoint.basePath + "/deltacast/ws", host: session.endpoint.hostHeader,
                                     subprotocols: ["deltacast.v1"] + (session.token.map { ["token." + $0] } ?? []))
        guard socket.accepted else {
            release(session, connection)
            return .refused("WebSocket refused: \(socket.handshake.split(separator: "\r\n").first.map(String.init) ?? "no answer within the open timeout")")
        }
        shortenReads(connection)
        session.opened(.websocket)
        session.client.state.withLock { state in
            for name in state.topics.keys { state.topics[name]?.sent = false }
            state.webSocketSubscribed = []
        }
        defer { release(session, connection) }
        // Subscribes are paced by a token bucket of `subscribeRate` a second.
        let rate = Double(max(1, session.client.options.subscribeRate))
        var tokens = rate
        var refilled = Date().timeIntervalSinceReferenceDate
        var waiting = false
        while !session.stopped {
            let now = Date().timeIntervalSinceReferenceDate
            tokens = min(rate, tokens + (now - refilled) * rate)
            refilled = now
            // Unsubscribe what left, subscribe what is new (from its cursor): both are messages
            // the proxy counts against limits.message_rate, so both spend the bucket.
            let (subscribe, unsubscribe, more) = session.client.state.withLock { state -> ([(String, String?)], [String], Bool) in
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
                var value = more ? timeval(tv_sec: 0, tv_usec: Int(1_000_000 / rate) + 1000) : timeval(tv_sec: 0, tv_usec: Int(Session.tick * 1_000_000))
                setsockopt(connection.fd, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
            }
            for (name, cursor) in subscribe { socket.sendText(Session.message("subscribe", topic: name, since: cursor)) }
            for name in unsubscribe { socket.sendText(Session.message("unsubscribe", topic: name, since: nil)) }
            do {
                let event = try socket.nextEvent()
                switch event {
                case .message(.text, let payload):
                    if let resubscribe = session.handle(payload), !resubscribe.isEmpty {
                        for name in resubscribe { socket.sendText(Session.message("subscribe", topic: name, since: nil)) }
                    }
                case .close(let code, let reason):
                    return .ended(opened: true, "WebSocket closed: \(code.map(String.init) ?? "no code") \(reason)")
                default:
                    break
                }
            } catch .timedOut {
                continue
            } catch {
                return .ended(opened: true, Session.lost)
            }
        }
        socket.send(.close, [0x03, 0xE8])
        return .ended(opened: true, "closed")
    }

    func runEventStream(_ session: Session) -> Session.Outcome {
        let connection: ClientConnection
        switch connect(session) { case .success(let open): connection = open; case .failure(let error): return .refused(error.message) }
        defer { release(session, connection) }
        let stream = EventStreamClient(connection: connection, target: session.endpoint.basePath + "/deltacast/sse?" + session.topicQuery(),
                                       host: session.endpoint.hostHeader, headers: session.authorization)
        guard stream.status == 200 else {
            return .refused("SSE refused: \(stream.head.split(separator: "\r\n").first.map(String.init) ?? "no answer within the open timeout")")
        }
        shortenReads(connection)
        session.opened(.sse)
        while !session.stopped {
            // SSE names its topics in the URL: a changed set (or a resync) opens a new stream.
            if session.client.state.withLock({ $0.changed }) { return .ended(opened: true, "the topics changed") }
            switch stream.read() {
            case .event(let event):
                guard !event.data.isEmpty else { continue }
                if let resubscribe = session.handle(Array(event.data.utf8)), !resubscribe.isEmpty { return .ended(opened: true, "resynchronising") }
            case .timedOut:
                continue
            case .ended:
                return .ended(opened: true, "the event stream ended")
            }
        }
        return .ended(opened: true, "closed")
    }

    func runLongPoll(_ session: Session) -> Session.Outcome {
        var first = true
        while !session.stopped {
            let connection: ClientConnection
            switch connect(session) {
            case .success(let open): connection = open
            case .failure(let error): return first ? .refused(error.message) : .ended(opened: true, error.message)
            }
            let target = session.endpoint.basePath + "/deltacast/poll?" + session.topicQuery() + "&wait=\(session.client.options.pollWait)"
            let response: ClientResponse
            do {
                // The hold is up to `pollWait` s: reads wait that long and a margin.
                var value = timeval(tv_sec: session.client.options.pollWait + 10, tv_usec: 0)
                setsockopt(connection.fd, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
                response = try connection.exchange(PushRequest.get(target: target, host: session.endpoint.hostHeader, headers: session.authorization, close: true))
            } catch {
                release(session, connection)
                return first ? .refused("long-poll: \(error)") : .ended(opened: true, "long-poll: \(error)")
            }
            release(session, connection)
            guard response.status == 200 || response.status == 204 else {
                let why = "long-poll refused: HTTP \(response.status) \(String(decoding: response.body.prefix(200), as: UTF8.self))"
                return first ? .refused(why) : .ended(opened: true, why)
            }
            if first { session.opened(.longpoll); first = false }
            guard response.status == 200, case .array(let events)? = try? JSONParser.parse(response.body) else { continue }
            for event in events {
                _ = session.handle(event.serialized())
            }
        }
        return .ended(opened: !first, "closed")
    }
}
#endif

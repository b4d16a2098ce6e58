import DeltacastJSON
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Foundation's `URLSession` under SSE and long-poll (``FoundationRequest``). A WebSocket is
/// refused: on Linux `URLSessionWebSocketTask` needs a libcurl built with WebSocket support,
/// which Debian's is not.
struct FoundationIO: SessionIO {
    func runWebSocket(_ session: Session) -> Session.Outcome {
        .refused("WebSocket: the Foundation I/O carries SSE and long-poll")
    }

    /// Why the Foundation I/O cannot serve this client, if it cannot: on Linux its TLS cannot
    /// take another CA file.
    private func refusal(_ session: Session) -> String? {
        #if canImport(FoundationNetworking)
        if session.endpoint.secure && session.client.options.caFile != nil { return "a CA file (Options.caFile) needs the sockets I/O on Linux" }
        #endif
        return nil
    }

    /// The request of `target` on the proxy, with the client's token.
    private func makeRequest(_ session: Session, _ target: String, accept: String) -> URLRequest? {
        guard let url = URL(string: (session.endpoint.secure ? "https://" : "http://") + session.endpoint.hostHeader + target) else { return nil }
        var request = URLRequest(url: url)
        request.setValue(accept, forHTTPHeaderField: "Accept")
        if let token = session.token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        return request
    }

    /// Starts `request` unless the client was closed; ``DeltacastClient/close()`` cancels it.
    private func begin(_ session: Session, _ request: URLRequest, idleTimeout: Double) -> FoundationRequest? {
        let started = FoundationRequest(request, idleTimeout: idleTimeout)
        let closed = session.client.state.withLock { state -> Bool in
            if !state.closed { state.activeRequest = started }
            return state.closed
        }
        if closed { started.cancel(); return nil }
        return started
    }

    /// Ends `request`, first letting go of it under the client's lock.
    private func finish(_ session: Session, _ request: FoundationRequest) {
        session.client.state.withLock { state in if state.activeRequest === request { state.activeRequest = nil } }
        request.cancel()
    }

    /// SSE over `URLSession`: the same stream as the sockets I/O reads, as it arrives.
    func runEventStream(_ session: Session) -> Session.Outcome {
        if let refusal = refusal(session) { return .refused(refusal) }
        // The proxy sends a heartbeat on a quiet stream: a minute without a byte is a dead one.
        guard let urlRequest = makeRequest(session, session.endpoint.basePath + "/deltacast/sse?" + session.topicQuery(), accept: "text/event-stream"),
              let request = begin(session, urlRequest, idleTimeout: 60) else { return .refused("the client was closed") }
        defer { finish(session, request) }
        switch request.status(within: session.client.options.openTimeout.seconds) {
        case .success(200)?: break
        case .success(let status)?: return .refused("SSE refused: HTTP \(status)")
        case .failure(let failure)?: return .refused("SSE: \(failure.message)")
        case nil: return .refused("SSE: no answer within the open timeout")
        }
        session.opened(.sse)
        var parser = EventStreamParser()
        while !session.stopped {
            // SSE names its topics in the URL: a changed set (or a resync) opens a new stream.
            if session.client.state.withLock({ $0.changed }) { return .ended(opened: true, "the topics changed") }
            switch request.read(waiting: Session.tick) {
            case .bytes(let bytes):
                parser.append(bytes)
                do {
                    while let event = try parser.next() {
                        guard !event.data.isEmpty else { continue }
                        if let resubscribe = session.handle(Array(event.data.utf8)), !resubscribe.isEmpty { return .ended(opened: true, "resynchronising") }
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
    func runLongPoll(_ session: Session) -> Session.Outcome {
        if let refusal = refusal(session) { return .refused(refusal) }
        var first = true
        while !session.stopped {
            let target = session.endpoint.basePath + "/deltacast/poll?" + session.topicQuery() + "&wait=\(session.client.options.pollWait)"
            let limit = Double(session.client.options.pollWait + 10)
            guard let urlRequest = makeRequest(session, target, accept: "application/json"),
                  let request = begin(session, urlRequest, idleTimeout: limit) else { break }
            let answer = request.body(within: limit, tick: Session.tick) { session.stopped }
            let status = request.responseStatus ?? 0
            finish(session, request)
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
            if first { session.opened(.longpoll); first = false }
            guard status == 200, case .array(let events)? = try? JSONParser.parse(body) else { continue }
            for event in events {
                _ = session.handle(event.serialized())
            }
        }
        return .ended(opened: !first, "closed")
    }
}

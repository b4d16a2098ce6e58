import DeltacastConfig
import DeltacastHub
import DeltacastLoop
import DeltacastWire

extension HTTPConnection {
    /// Answers `request` with an open event stream (close-delimited) and its `retry:` hint;
    /// false when the connection is gone.
    func beginEventStream(_ request: HTTPRequestHead, multiplexed: Bool) -> Bool {
        var headers: HTTPHeaders = ["Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "close"]
        addCORS(request, to: &headers)
        logAccess(request, status: 200, bytes: 0)
        guard send(HTTPResponseWriter.head(status: 200, headers: headers, date: state.dateValue())) else { return false }
        install(EventStreamSession(multiplexed: multiplexed, retryMilliseconds: state.sseRetryMilliseconds))
        send(ServerSentEvents.retry(milliseconds: state.sseRetryMilliseconds))
        return true
    }

    func startSSE(_ request: HTTPRequestHead, topics: [MultiplexedRequest.Requested], multiplexed: Bool, credential: Credential, caughtUp: Bool = false) {
        // Cluster mode: the topics catch up before the stream begins, so each is subscribed in
        // the order asked (a multiplexed stream's `id:` lists cursors in that order).
        if !caughtUp, state.context.cluster != nil,
           awaitCatchUp(request, topics: resolvedTopics(topics[...], credential: credential, request: request), then: { [unowned self] in
               startSSE(request, topics: topics, multiplexed: multiplexed, credential: credential, caughtUp: true)
           }) {
            return
        }
        guard beginEventStream(request, multiplexed: multiplexed) else { return }
        for (name, endpoint, since) in topics {
            if let error = refusal(name, endpoint: endpoint, credential: credential) {
                send(ServerSentEvents.event(event: "error", data: error))
                continue
            }
            guard let topic = hubTopic(name, endpoint: endpoint!, request: nil, credentialsFrom: request) else {
                send(ServerSentEvents.event(event: "error", data: DeltacastEvent.error(topic: name, code: .tooMany, message: "the proxy holds limits.max_topics topics, all watched")))
                continue
            }
            attach(topic, since: since, sendBacklog: true)
        }
        flush()
    }
}

extension HTTPConnection {
    /// `GET /deltacast/status`: the status JSON; with `Accept: text/event-stream`, an SSE
    /// stream of it once a second (`event: status`), for the status page.
    func serveStatus(_ request: HTTPRequestHead) {
        let json = state.context.statusJSON()
        guard TopicRequest.wantsEventStream(request) else {
            return finish(request, RoutedResponse(status: 200, headers: ["Content-Type": "application/json", "Cache-Control": "no-store"], body: json))
        }
        guard beginEventStream(request, multiplexed: true) else { return }
        send(ServerSentEvents.event(event: "status", data: json))
        flush()
        scheduleStatusTick()
    }

    func scheduleStatusTick() {
        state.loop.schedule(afterMilliseconds: 1000) { [weak self] in
            guard let self, !self.closed else { return }
            self.statusTick(self.state.context.statusJSON())
        }
    }

    func statusTick(_ json: [UInt8]) {
        guard !closed, session is EventStreamSession else { return }
        // Skipped while the previous one is still queued: a slow page never piles them up.
        if queue.isEmpty { send(ServerSentEvents.event(event: "status", data: json)) }
        flush()
        scheduleStatusTick()
    }
}

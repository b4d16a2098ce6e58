import DeltacastConfig
import DeltacastHub
import DeltacastLoop
import DeltacastWire

/// Subscribing, unsubscribing, and the delivery of changes to a push connection; the rules of
/// cursors and conflation are ``SubscriptionSet``'s.
extension HTTPConnection {
    /// Subscribes to `topic` on this loop; sends what the subscriber missed when `sendBacklog`.
    /// Returns the topic's cursor at the moment of subscribing (nil before its first state).
    @discardableResult
    func attach(_ topic: Topic, since: Cursor?, sendBacklog: Bool) -> Cursor? {
        let transport = mode.transport
        let (backlog, cursor) = topic.subscribe(loop: state.index, since: since, transport: transport)
        state.addSubscriber(self, topic: topic.key)
        if since != nil {
            if backlog.first?.kind == .snapshot { state.counters.resumesBySnapshot.add(1, ordering: .relaxed) } else { state.counters.resumesFromJournal.add(1, ordering: .relaxed) }
        }
        let log = state.server.log
        if log.enabled(.debug) {
            let resume = since == nil ? "none" : backlog.first?.kind == .snapshot ? "snapshot" : "journal"
            log.log(.debug, "subscribe", ["conn": .int(id), "topic": .string(topic.name), "mode": .string("\(mode)"), "resume": .string(resume)])
        }
        subscriptions.insert(topic, transport: transport, since: since, current: cursor, listed: mode == .sse)
        if sendBacklog {
            for change in backlog {
                push(change)
                if change.kind == .error {
                    endSubscription(topic.key)
                    return cursor
                }
            }
        }
        return cursor
    }

    /// Ends one subscription (its `error` event already queued).
    func detachSubscription(_ key: String) { detach(key) }

    func detach(_ key: String) {
        guard let subscription = subscriptions.remove(key) else { return }
        subscription.topic.unsubscribe(loop: state.index, transport: subscription.transport)
        state.removeSubscriber(self, topic: key)
    }

    /// Detaches the subscription to the topic clients know as `name`.
    func detach(named name: String) {
        for key in subscriptions.keys(topicNamed: name) { detach(key) }
    }

    /// The upstream refused this connection's credentials for a topic (the `error` event is
    /// queued): the subscription ends; a single-topic stream ends with it.
    func endSubscription(_ key: String, reason: String = "forbidden by the upstream") {
        detach(key)
        switch mode {
        case .sse where !sseMultiplexed:
            closeAfterFlush = true
        case .webSocket where webSocket?.kind == .single:
            closeWebSocket(code: 1008, reason: reason)
        default:
            break
        }
    }

    func detachAll() {
        for (key, subscription) in subscriptions.removeAll() {
            subscription.topic.unsubscribe(loop: state.index, transport: subscription.transport)
            state.removeSubscriber(self, topic: key)
        }
    }

    /// A change of a topic this connection receives (called by the loop).
    func deliver(_ change: Change) {
        guard !closed, !subscriptions.isDuplicate(change) else { return }
        if mode == .held {
            if let hold { answerHold(hold, change: change) }
            return
        }
        push(change)
        if change.kind == .error {
            // An error from a topic the hub no longer holds: a reload removed its endpoint.
            let removed = subscriptions[change.key].map { !state.server.hub.holds($0.topic) } ?? false
            endSubscription(change.key, reason: removed ? "endpoint removed by a configuration reload" : "forbidden by the upstream")
            flush()
            return
        }
        state.flushSoon(self)
    }

    /// Queues a change in this connection's framing, unless it is conflating (``SubscriptionSet``).
    func push(_ change: Change) {
        switch subscriptions.admit(change, queueFull: queue.isAboveHighWatermark) {
        case .ignore:
            return
        case .drop(let started):
            if started {
                state.counters.conflations.add(1, ordering: .relaxed)
                state.server.log.log(.info, "conflation", ["conn": .int(id), "topic": .string(change.topic), "pending_bytes": .int(queue.pendingBytes)])
            }
        case .send(let previous):
            let bytes: [UInt8]
            switch mode {
            case .webSocket: bytes = change.webSocketFrame(deflate: webSocket?.usesSharedDeflate ?? false)
            case .sse: bytes = sseFrame(change)
            case .http, .held: return
            }
            if queue.enqueue(bytes) {
                state.counters.delivered(transport: mode == .webSocket ? .websocket : .sse, bytes: bytes.count)
            } else {
                // Past the hard limit: conflate rather than close.
                subscriptions.refused(change, restoring: previous)
            }
        }
    }

    /// After a slow consumer's queue drained: one fresh snapshot per topic that lost changes.
    func resync() {
        for topic in subscriptions.takeOwed() {
            for change in topic.changes(since: nil) ?? [] { push(change) }
        }
    }

    /// No progress writing for `limits.slow_consumer_timeout`: close (WebSocket: 1008).
    func slowConsumerTimedOut() {
        state.counters.slowConsumerCloses.add(1, ordering: .relaxed)
        closeReason = (.warn, mode == .webSocket ? 1008 : nil, "slow consumer: no write progress for limits.slow_consumer_timeout")
        if mode == .webSocket, let session = webSocket, session.control.beginClose() {
            _ = queue.enqueue(WebSocketFrame.encode(.close, payload: WebSocketFrame.closePayload(code: 1008, reason: "slow consumer: no progress")))
            _ = writeQueue()
        }
        close()
    }
}

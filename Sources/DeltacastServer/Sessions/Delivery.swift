import DeltacastConfig
import DeltacastHub
import DeltacastLoop
import DeltacastWire

/// One topic a connection receives, and the cursor of the last change it was sent.
struct Subscription {
    let topic: Topic
    /// The transport it counts under in the topic (nil: a plain request).
    var transport: Transport?
    var cursor: Cursor?
    /// Changes were dropped (slow consumer): one snapshot is owed once the socket drains.
    var needsResync = false
}

extension HTTPConnection {
    // MARK: Subscriptions and delivery

    /// Subscribes to `topic` on this loop; sends what the subscriber missed when `sendBacklog`.
    func attach(_ topic: Topic, since: Cursor?, sendBacklog: Bool) {
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
        // The client's cursor counts only when it is a state of this topic's history; the
        // backlog (patches from it, or a snapshot) then brings it up to date.
        var held: Cursor?
        if let since, let cursor, since.epoch == cursor.epoch, since.seq <= cursor.seq { held = since }
        subscriptions[topic.key] = Subscription(topic: topic, transport: transport, cursor: held)
        if sendBacklog {
            for change in backlog {
                push(change)
                if change.kind == .error { return endSubscription(topic.key) }
            }
        }
    }

    /// Ends one subscription (its `error` event already queued).
    func detachSubscription(_ key: String) { detach(key) }

    func detach(_ key: String) {
        guard let subscription = subscriptions.removeValue(forKey: key) else { return }
        subscription.topic.unsubscribe(loop: state.index, transport: subscription.transport)
        state.removeSubscriber(self, topic: key)
    }

    /// Detaches the subscription to the topic clients know as `name`.
    func detach(named name: String) {
        for (key, subscription) in subscriptions where subscription.topic.name == name { detach(key) }
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
        for name in Array(subscriptions.keys) { detach(name) }
    }

    /// A change of a topic this connection receives (called by the loop).
    func deliver(_ change: Change) {
        guard !closed, let subscription = subscriptions[change.key] else { return }
        if let cursor = change.cursor, let held = subscription.cursor, cursor.seq <= held.seq { return }
        if mode == .held {
            if let hold { answerHold(hold, change: change) }
            return
        }
        push(change)
        if change.kind == .error {
            // An error from a topic the hub no longer holds: a reload removed its endpoint.
            let removed = !state.server.hub.holds(subscription.topic)
            endSubscription(change.key, reason: removed ? "endpoint removed by a configuration reload" : "forbidden by the upstream")
            flush()
            return
        }
        state.flushSoon(self)
    }

    /// Queues a change in this connection's framing, unless it is conflating.
    func push(_ change: Change) {
        guard var subscription = subscriptions[change.key] else { return }
        if change.kind == .patch, subscription.cursor != change.base { subscription.needsResync = true }
        if subscription.needsResync || conflating || queue.isAboveHighWatermark {
            // Slow consumer: drop, and owe one snapshot once the socket drains.
            if change.cursor != nil { subscription.needsResync = true }
            if !conflating {
                state.counters.conflations.add(1, ordering: .relaxed)
                state.server.log.log(.info, "conflation", ["conn": .int(id), "topic": .string(change.topic), "pending_bytes": .int(queue.pendingBytes)])
            }
            conflating = true
            subscriptions[change.key] = subscription
            return
        }
        let previous = subscription.cursor
        if let cursor = change.cursor { subscription.cursor = cursor }
        subscriptions[change.key] = subscription
        let bytes: [UInt8]
        switch mode {
        case .webSocket: bytes = change.webSocketFrame(deflate: webSocket?.usesSharedDeflate ?? false)
        case .sse: bytes = sseFrame(change)
        case .http, .held: return
        }
        if queue.enqueue(bytes) {
            state.counters.delivered(transport: mode == .webSocket ? .websocket : .sse, bytes: bytes.count)
        } else {
            // Past the hard limit: conflate like above rather than close.
            subscription.cursor = previous
            if change.cursor != nil { subscription.needsResync = true }
            subscriptions[change.key] = subscription
            conflating = true
        }
    }

    /// After a slow consumer's queue drained: one fresh snapshot per topic that lost changes.
    func resync() {
        conflating = false
        for (key, subscription) in subscriptions where subscription.needsResync {
            var fresh = subscription
            fresh.needsResync = false
            fresh.cursor = nil
            subscriptions[key] = fresh
            for change in subscription.topic.changes(since: nil) ?? [] { push(change) }
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

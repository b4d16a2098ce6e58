import DeltacastConfig
import DeltacastHub
import DeltacastLoop
import DeltacastWire

/// Subscribing, unsubscribing, and the delivery of changes to a push connection, whatever its
/// session; the rules of cursors and conflation are ``SubscriptionSet``'s, the framing the
/// session's.
extension HTTPConnection {
    /// Subscribes to `topic` on this loop; sends what the subscriber missed when `sendBacklog`.
    /// Returns the topic's cursor at the moment of subscribing (nil before its first state).
    @discardableResult
    func attach(_ topic: Topic, since: Cursor?, sendBacklog: Bool) -> Cursor? {
        let (backlog, cursor) = topic.subscribe(loop: state.index, since: since, transport: transport)
        state.addSubscriber(self, topic: topic.key)
        if since == nil, topic.pollsAdaptively { state.context.topicSource?.subscriberArrived(topic) }
        if since != nil {
            if backlog.first?.kind == .snapshot { state.counters.resumesBySnapshot.add(1, ordering: .relaxed) } else { state.counters.resumesFromJournal.add(1, ordering: .relaxed) }
        }
        let log = state.context.log
        if log.enabled(.debug) {
            let resume = since == nil ? "none" : backlog.first?.kind == .snapshot ? "snapshot" : "journal"
            log.log(.debug, "subscribe", ["conn": .int(id), "topic": .string(topic.name), "mode": .string(modeName), "resume": .string(resume)])
        }
        subscriptions.insert(topic, transport: transport, since: since, current: cursor, listed: session?.listsCursors ?? false)
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

    func detach(_ key: String) {
        guard let subscription = subscriptions.remove(key) else { return }
        subscription.topic.unsubscribe(loop: state.index, transport: subscription.transport)
        state.removeSubscriber(self, topic: key)
    }

    /// Detaches the subscription to the topic clients know as `name` (and forgets one still
    /// waiting for its topic to catch up).
    func detach(named name: String) {
        for key in subscriptions.keys(topicNamed: name) { detach(key) }
        if !pendingAttaches.isEmpty { pendingAttaches = pendingAttaches.filter { $0.value != name } }
    }

    /// A subscription ends, its `error` event already queued (refused by the upstream or the
    /// configuration, or its endpoint removed); a single-topic stream ends with it.
    func endSubscription(_ key: String, reason: String = "forbidden by the upstream") {
        detach(key)
        if let actions = session?.subscriptionEnded(reason: reason) { perform(actions) }
    }

    func detachAll() {
        subscriptions.removeEach { key, subscription in
            subscription.topic.unsubscribe(loop: state.index, transport: subscription.transport)
            state.removeSubscriber(self, topic: key)
        }
    }

    /// A change of a topic this connection receives (called by the loop's fan-out, which counts
    /// the deliveries in `tally` and records them once per change). True when the connection
    /// queued bytes to flush at the end of the loop iteration.
    func deliver(_ change: Change, tally: inout DeliveryTally) -> Bool {
        guard !closed, let framing else { return false }
        guard framing.pushes else {
            // A held poll: its session answers (or not yet).
            guard !subscriptions.isDuplicate(change) else { return false }
            if let action = session?.deliver(change, subscriptions: { self.subscriptions }) { perform(action) }
            return false
        }
        // `push` ignores a duplicate (``SubscriptionSet/admit(_:queueFull:)``): one lookup.
        guard push(change, tally: &tally) else { return false }
        if change.kind == .error {
            // An error from a topic the hub no longer holds: a reload removed its endpoint.
            let removed = subscriptions[change.key].map { !state.context.hub.holds($0.topic) } ?? false
            endSubscription(change.key, reason: removed ? "endpoint removed by a configuration reload" : "forbidden by the upstream")
            flush()
            return false
        }
        return true
    }

    /// ``push(_:tally:)`` outside a fan-out: the delivery is counted at once.
    @discardableResult
    func push(_ change: Change) -> Bool {
        var tally = DeliveryTally()
        defer { state.counters.record(tally) }
        return push(change, tally: &tally)
    }

    /// Queues a change in the session's framing, unless it is conflating (``SubscriptionSet``),
    /// and counts it in `tally`. False when the change is for no subscription here, or one
    /// already sent.
    func push(_ change: Change, tally: inout DeliveryTally) -> Bool {
        switch subscriptions.admit(change, queueFull: queue.isAboveHighWatermark) {
        case .ignore:
            return false
        case .drop(let started):
            if started {
                state.counters.conflations.add(1, ordering: .relaxed)
                state.context.log.log(.info, "conflation", ["conn": .int(id), "topic": .string(change.topic), "pending_bytes": .int(queue.pendingBytes)])
            }
        case .send(let previous):
            guard let transport, let bytes = framing?.frame(change, listedCursors: { self.subscriptions.listedCursors }) else { return false }
            if queue.enqueue(bytes) {
                tally.add(transport, bytes: bytes.count)
            } else {
                // Past the hard limit: conflate rather than close.
                subscriptions.refused(change, restoring: previous)
            }
        }
        return true
    }

    /// After a slow consumer's queue drained: one fresh snapshot per topic that lost changes.
    func resync() {
        for topic in subscriptions.takeOwed() {
            for change in topic.changes(since: nil) ?? [] { push(change) }
        }
    }

    /// No progress writing for `limits.slow_consumer_timeout`: the session's ending (WebSocket:
    /// close 1008) is tried once, then the connection closes.
    func slowConsumerTimedOut() {
        state.counters.slowConsumerCloses.add(1, ordering: .relaxed)
        let ending = session?.end(code: 1008, reason: "slow consumer: no progress") ?? []
        var code: Int?
        var closing = false
        for action in ending {
            switch action {
            case .sendPastWatermark(let bytes): closing = queue.enqueue(bytes)
            case .finish(let reason): code = reason?.code
            default: break
            }
        }
        closeReason = CloseReason(level: .warn, code: code, text: "slow consumer: no write progress for limits.slow_consumer_timeout")
        if closing { _ = writeQueue() }
        close()
    }
}

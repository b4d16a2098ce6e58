import DeltacastConfig
import DeltacastHub
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

/// The topics one connection receives, with each one's cursor, and conflation: what to do with
/// a change when the socket is behind. A value type with no socket: the connection asks it
/// whether a change goes out (``admit(_:queueFull:)``), tells it when the bytes did not fit
/// (``refused(_:restoring:)``), and once the queue drains takes the topics owed a snapshot
/// (``takeOwed()``).
///
/// The rules, which every push transport shares:
/// - a change at or before the cursor already sent is a duplicate and is skipped;
/// - a patch whose base is not the cursor sent cannot apply: the topic is owed a snapshot;
/// - while the queue is past its high watermark, changes are dropped and each topic that lost
///   one is owed a snapshot, sent once the queue drains (one snapshot, never a backlog).
struct SubscriptionSet {
    /// By topic key (the name, plus a credential digest under `auth: passthrough`).
    private(set) var entries: [String: Subscription] = [:]
    /// Keys in the order they were listed (a multiplexed SSE stream's `id:` lists their cursors
    /// so). Append-only for the stream's life: a position is what a resuming client's
    /// `Last-Event-ID` refers to. Only listed subscriptions enter it, so it stays bounded by
    /// `limits.max_topics_per_connection`.
    private(set) var listed: [String] = []
    /// Changes are being dropped until the queue drains.
    private(set) var conflating = false

    var isEmpty: Bool { entries.isEmpty }
    var count: Int { entries.count }
    subscript(key: String) -> Subscription? { entries[key] }

    /// Whether a subscription to the topic clients know as `name` exists.
    func contains(topicNamed name: String) -> Bool { entries.values.contains { $0.topic.name == name } }

    /// The keys of the subscriptions to the topic clients know as `name` (one per credential).
    func keys(topicNamed name: String) -> [String] {
        entries.compactMap { $0.value.topic.name == name ? $0.key : nil }
    }

    /// Adds (or replaces) the subscription to `topic`. `since` counts only when it is a state of
    /// the topic's history (same epoch, not past `current`); otherwise the backlog the topic
    /// returned (a snapshot) brings the client up to date from nothing.
    mutating func insert(_ topic: Topic, transport: Transport?, since: Cursor?, current: Cursor?, listed isListed: Bool = false) {
        var held: Cursor?
        if let since, let current, since.epoch == current.epoch, since.seq <= current.seq { held = since }
        entries[topic.key] = Subscription(topic: topic, transport: transport, cursor: held)
        if isListed && !listed.contains(topic.key) { listed.append(topic.key) }
    }

    @discardableResult
    mutating func remove(_ key: String) -> Subscription? { entries.removeValue(forKey: key) }

    /// Removes every subscription and returns them (the connection unsubscribes each).
    mutating func removeAll() -> [(key: String, subscription: Subscription)] {
        defer { entries = [:] }
        return entries.map { ($0.key, $0.value) }
    }

    /// Whether `change` is for no subscription here, or at or before the cursor already sent
    /// in the same epoch (a change of another epoch is a new history: cluster mode starts one
    /// when Redis lost its own, and its seqs start again at 1).
    func isDuplicate(_ change: Change) -> Bool {
        guard let subscription = entries[change.key] else { return true }
        if let cursor = change.cursor, let held = subscription.cursor, cursor.epoch == held.epoch, cursor.seq <= held.seq { return true }
        return false
    }

    /// What to do with a change for a push transport.
    enum Admission: Equatable {
        /// Not subscribed here.
        case ignore
        /// Queue it; `previous` is the cursor to restore if its bytes do not fit.
        case send(previous: Cursor?)
        /// Drop it (a snapshot is owed). `started` when this change began conflation.
        case drop(started: Bool)
    }

    /// Decides about `change`; on `.send` the subscription's cursor is already advanced. A
    /// duplicate (``isDuplicate(_:)``) is ignored. One hash of the topic key per delivery: the
    /// subscription is found once and changed in place.
    mutating func admit(_ change: Change, queueFull: Bool) -> Admission {
        guard let index = entries.index(forKey: change.key) else { return .ignore }
        let held = entries.values[index].cursor
        if let cursor = change.cursor, let held, cursor.epoch == held.epoch, cursor.seq <= held.seq { return .ignore }
        if change.kind == .patch, held != change.base { entries.values[index].needsResync = true }
        if entries.values[index].needsResync || conflating || queueFull {
            if change.cursor != nil { entries.values[index].needsResync = true }
            let started = !conflating
            conflating = true
            return .drop(started: started)
        }
        if let cursor = change.cursor { entries.values[index].cursor = cursor }
        return .send(previous: held)
    }

    /// The bytes of an admitted change did not fit (past the queue's hard limit): conflate as if
    /// it had been dropped.
    mutating func refused(_ change: Change, restoring previous: Cursor?) {
        guard var subscription = entries[change.key] else { return }
        subscription.cursor = previous
        if change.cursor != nil { subscription.needsResync = true }
        entries[change.key] = subscription
        conflating = true
    }

    /// The queue drained: conflation ends, and each topic that lost changes is returned to be
    /// sent one fresh snapshot (its cursor is forgotten, so the snapshot is admitted).
    mutating func takeOwed() -> [Topic] {
        conflating = false
        var owed: [Topic] = []
        for (key, subscription) in entries where subscription.needsResync {
            var fresh = subscription
            fresh.needsResync = false
            fresh.cursor = nil
            entries[key] = fresh
            owed.append(subscription.topic)
        }
        return owed
    }

    /// The listed subscriptions' cursors, comma-separated in listing order (an ended one
    /// leaves its position empty): a multiplexed SSE stream's `id:`.
    var listedCursors: String {
        listed.map { entries[$0]?.cursor?.description ?? "" }.joined(separator: ",")
    }
}

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
    /// The subscription while there is only one, by its topic key (the name, plus a credential
    /// digest under `auth: passthrough`). Most connections hold one topic: kept inline, a
    /// delivery finds it with one comparison of keys that share their storage, with no hash
    /// and no visit to a dictionary's storage on each of 10,000 connections.
    private var sole: (key: String, subscription: Subscription)?
    /// Every subscription by topic key, once there are two or more (`sole` is then nil).
    private var table: [String: Subscription] = [:]
    /// Keys in the order they were listed (a multiplexed SSE stream's `id:` lists their cursors
    /// so). Append-only for the stream's life: a position is what a resuming client's
    /// `Last-Event-ID` refers to. Only listed subscriptions enter it, so it stays bounded by
    /// `limits.max_topics_per_connection`.
    private(set) var listed: [String] = []
    /// Changes are being dropped until the queue drains.
    private(set) var conflating = false

    var isEmpty: Bool { sole == nil && table.isEmpty }
    var count: Int { sole == nil ? table.count : 1 }

    subscript(key: String) -> Subscription? {
        if let sole { return sole.key == key ? sole.subscription : nil }
        return table[key]
    }

    /// Every subscription by topic key: a copy, for the walks over all of them (renewals,
    /// reloads, expiry).
    var entries: [String: Subscription] {
        guard let sole else { return table }
        return [sole.key: sole.subscription]
    }

    /// Each subscription, in no particular order.
    func forEach(_ body: (Subscription) -> Void) {
        if let sole { body(sole.subscription) } else { for subscription in table.values { body(subscription) } }
    }

    /// Whether a subscription to the topic clients know as `name` exists.
    func contains(topicNamed name: String) -> Bool { !keys(topicNamed: name).isEmpty }

    /// The keys of the subscriptions to the topic clients know as `name` (one per credential).
    func keys(topicNamed name: String) -> [String] {
        if let sole { return sole.subscription.topic.name == name ? [sole.key] : [] }
        return table.compactMap { $0.value.topic.name == name ? $0.key : nil }
    }

    /// Runs `body` on the subscription under `key` in place; nil when there is none.
    private mutating func modify<Result>(_ key: String, _ body: (inout Subscription) -> Result) -> Result? {
        if sole != nil {
            guard sole!.key == key else { return nil }
            return body(&sole!.subscription)
        }
        guard let index = table.index(forKey: key) else { return nil }
        return body(&table.values[index])
    }

    /// Adds (or replaces) the subscription to `topic`. `since` counts only when it is a state of
    /// the topic's history (same epoch, not past `current`); otherwise the backlog the topic
    /// returned (a snapshot) brings the client up to date from nothing.
    mutating func insert(_ topic: Topic, transport: Transport?, since: Cursor?, current: Cursor?, listed isListed: Bool = false) {
        var held: Cursor?
        if let since, let current, since.epoch == current.epoch, since.seq <= current.seq { held = since }
        let subscription = Subscription(topic: topic, transport: transport, cursor: held)
        if table.isEmpty && (sole == nil || sole!.key == topic.key) {
            sole = (topic.key, subscription)
        } else {
            if let sole { table[sole.key] = sole.subscription }
            sole = nil
            table[topic.key] = subscription
        }
        if isListed && !listed.contains(topic.key) { listed.append(topic.key) }
    }

    @discardableResult
    mutating func remove(_ key: String) -> Subscription? {
        if let sole {
            guard sole.key == key else { return nil }
            self.sole = nil
            return sole.subscription
        }
        let removed = table.removeValue(forKey: key)
        if table.count == 1, let only = table.first {
            table = [:]
            sole = (only.key, only.value)
        }
        return removed
    }

    /// Removes every subscription, calling `body` with each (the connection unsubscribes it):
    /// no array is made, and a held poll ends with one.
    mutating func removeEach(_ body: (String, Subscription) -> Void) {
        let sole = self.sole, table = self.table
        self.sole = nil
        self.table = [:]
        if let sole { body(sole.key, sole.subscription) }
        for (key, subscription) in table { body(key, subscription) }
    }

    /// Whether `change` is for no subscription here, or at or before the cursor already sent
    /// in the same epoch (a change of another epoch is a new history: cluster mode starts one
    /// when Redis lost its own, and its seqs start again at 1).
    func isDuplicate(_ change: Change) -> Bool {
        guard let subscription = self[change.key] else { return true }
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
    /// duplicate (``isDuplicate(_:)``) is ignored. The subscription is found once (a comparison
    /// of keys when it is the only one, else one hash) and changed in place.
    mutating func admit(_ change: Change, queueFull: Bool) -> Admission {
        let conflating = self.conflating
        let admission = modify(change.key) { subscription -> Admission in
            let held = subscription.cursor
            if let cursor = change.cursor, let held, cursor.epoch == held.epoch, cursor.seq <= held.seq { return .ignore }
            if change.kind == .patch, held != change.base { subscription.needsResync = true }
            if subscription.needsResync || conflating || queueFull {
                if change.cursor != nil { subscription.needsResync = true }
                return .drop(started: !conflating)
            }
            if let cursor = change.cursor { subscription.cursor = cursor }
            return .send(previous: held)
        } ?? .ignore
        if case .drop = admission { self.conflating = true }
        return admission
    }

    /// The bytes of an admitted change did not fit (past the queue's hard limit): conflate as if
    /// it had been dropped.
    mutating func refused(_ change: Change, restoring previous: Cursor?) {
        let found: Void? = modify(change.key) { subscription in
            subscription.cursor = previous
            if change.cursor != nil { subscription.needsResync = true }
        }
        if found != nil { conflating = true }
    }

    /// The queue drained: conflation ends, and each topic that lost changes is returned to be
    /// sent one fresh snapshot (its cursor is forgotten, so the snapshot is admitted).
    mutating func takeOwed() -> [Topic] {
        conflating = false
        var owed: [Topic] = []
        func settle(_ subscription: inout Subscription) {
            guard subscription.needsResync else { return }
            subscription.needsResync = false
            subscription.cursor = nil
            owed.append(subscription.topic)
        }
        if sole != nil {
            settle(&sole!.subscription)
        } else {
            for index in table.indices { settle(&table.values[index]) }
        }
        return owed
    }

    /// The listed subscriptions' cursors, comma-separated in listing order (an ended one
    /// leaves its position empty): a multiplexed SSE stream's `id:`.
    var listedCursors: String {
        listed.map { self[$0]?.cursor?.description ?? "" }.joined(separator: ",")
    }
}

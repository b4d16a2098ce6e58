/// Who polls each topic, as one node sees it (cluster mode). A value type with no socket and no
/// clock: it takes the time, the live members and Redis's replies, and answers with the claims
/// and releases to send, and whether this node may poll a topic now.
///
/// - **Membership.** A node is a member while its heartbeat (one per node per tick, whatever
///   the number of topics) keeps its key in Redis alive; locally it counts itself a member until
///   the lease, less a margin, after the last heartbeat Redis took. A heartbeat that finds the
///   key gone (the node was paused or cut off past the lease, or Redis lost its data) makes a
///   new incarnation: everything the old one owned is void.
/// - **Ownership.** A topic's owner is one record in Redis, `NODE INCARNATION`, written only
///   when it changes: a claim is a compare-and-set. Nothing is renewed per topic. A topic held
///   here with no owner is claimed at once by the node that rendezvous hashing prefers among
///   the live ones, by any other holder after one tick (the preferred node may not hold it); a
///   topic whose owner left the live set is claimed once two heartbeats agree. The first claim
///   wins; the others learn the winner from the reply. A preferred node that holds a topic
///   another live node owns takes it over after ``ticksBeforeTakeover`` ticks of seeing so
///   (ownership spreads, and moves to a node that joins); the takeover is announced with the
///   new owner, so the former owner stops at once.
/// - **Fencing.** The commit script refuses a writer that is not the owner record. A node past
///   its local lease neither polls nor commits; once Redis expired its membership, its next
///   heartbeat changes its incarnation, so its old records no longer match it: a node that
///   was paused can never commit with the ownership it had.
struct Ownership: Sendable {
    /// What to send to Redis.
    enum Command: Equatable, Sendable {
        /// Claim `key` (its hash tag `tag`) if its owner record still reads `expected` ('': none).
        case claim(key: String, tag: String, expected: String)
        /// Give up `key`: this node no longer holds the topic.
        case release(key: String, tag: String)
    }

    /// One topic this node holds.
    private struct Held {
        var tag: String
        /// The owner record as last read (`NODE INCARNATION`, '' when none); nil until read.
        var owner: String?
        /// Ticks it has been seen without an owner, or owned by another node while this one is
        /// preferred.
        var freeTicks = 0
        /// A claim is in flight.
        var claiming = false
    }

    let node: String
    private(set) var incarnation: String
    let leaseMilliseconds: Int64
    /// Members alive at the last heartbeat, `NODE INCARNATION` each.
    private(set) var live: Set<String> = []
    /// Their node names, sorted.
    private(set) var liveNodes: [String] = []
    /// Until when this node counts itself a member (monotonic ms; 0: not now).
    private var memberUntil: Int64 = 0
    /// Incarnations of this node that lapsed: records naming them are claimed back at once.
    private var former: Set<String> = []
    private var held: [String: Held] = [:]

    init(node: String, incarnation: String, leaseMilliseconds: Int64) {
        self.node = node
        self.incarnation = incarnation
        self.leaseMilliseconds = leaseMilliseconds
    }

    /// This node as owner records and the member list name it.
    var identity: String { node + " " + incarnation }

    /// How long before Redis would expire it that a node stops counting itself a member: a
    /// fifth of the lease, at least 100 ms (clocks run at the same rate; this covers the
    /// heartbeat's own round trip and scheduling).
    var margin: Int64 { max(100, leaseMilliseconds / 5) }

    // MARK: Membership

    /// Redis took a heartbeat sent at `sentAt` and listed the live members.
    mutating func heartbeat(sentAt: Int64, members: [String]) {
        memberUntil = sentAt + leaseMilliseconds - margin
        live = Set(members)
        liveNodes = Array(Set(members.map { String($0.prefix { $0 != " " }) })).sorted()
        former.formIntersection(live)   // a former incarnation out of the live set is just dead
    }

    /// Redis no longer knew this node's membership: it continues as `fresh`, and what the old
    /// incarnation owned is claimed again (by whoever comes first).
    mutating func lapsed(fresh: String) {
        former.insert(identity)
        incarnation = fresh
        memberUntil = 0
    }

    /// Redis cannot be reached: stop polling at once (the lease may still run in Redis).
    mutating func suspend() { memberUntil = 0 }

    /// Whether this node counts itself a member at `now`.
    func isMember(now: Int64) -> Bool { memberUntil > now }

    // MARK: Topics

    /// A topic appeared here: its owner is read with its state (``learned(owner:of:)``).
    mutating func hold(_ key: String, tag: String) {
        if held[key] == nil { held[key] = Held(tag: tag) }
    }

    /// A topic is gone from this node: a release if it owns it.
    mutating func drop(_ key: String) -> Command? {
        guard let topic = held.removeValue(forKey: key) else { return nil }
        return topic.owner == identity ? .release(key: key, tag: topic.tag) : nil
    }

    /// Keys of the topics held here.
    var heldKeys: [String] { Array(held.keys) }

    /// The owner record of `key` as Redis returned it (a claim's reply, a sync's). True when
    /// this node just became its owner: poll it now.
    @discardableResult
    mutating func learned(owner: String, of key: String) -> Bool {
        guard var topic = held[key] else { return false }
        let gained = owner == identity && topic.owner != identity
        topic.owner = owner
        topic.claiming = false
        if !owner.isEmpty { topic.freeTicks = 0 }
        held[key] = topic
        return gained
    }

    /// A claim got no reply: try again at the next tick.
    mutating func claimFailed(_ key: String) { held[key]?.claiming = false }

    /// Another node released the topic tagged `tag` (it no longer holds it).
    mutating func released(tag: String) {
        for (key, topic) in held where topic.tag == tag { held[key]?.owner = "" }
    }

    /// Ticks a preferred node waits before it takes a topic over from a live owner: the views
    /// of the live set converge first, so two nodes never pass a topic back and forth.
    static let ticksBeforeTakeover = 6

    /// The claims due at `now`: held topics without an owner (at once where this node is
    /// preferred, else after a tick); whose owner has been missing from the live set at two
    /// ticks in a row (at once when it is a former incarnation of this node); or, for the
    /// preferred node, owned by another for ``ticksBeforeTakeover`` ticks.
    mutating func tick(now: Int64) -> [Command] {
        guard isMember(now: now) else { return [] }
        var commands: [Command] = []
        for (key, topic) in held where !topic.claiming {
            guard let owner = topic.owner else { continue }
            let claim: Bool
            if owner.isEmpty {
                claim = topic.freeTicks >= 1 || preferred(topic.tag) == node
                if !claim { held[key]?.freeTicks += 1 }
            } else if owner == identity {
                claim = false
            } else if former.contains(owner) {
                claim = true
            } else if !live.contains(owner) {
                claim = topic.freeTicks >= 1
                if !claim { held[key]?.freeTicks += 1 }
            } else if preferred(topic.tag) == node {
                claim = topic.freeTicks >= Self.ticksBeforeTakeover
                if !claim { held[key]?.freeTicks += 1 }
            } else {
                claim = false
                held[key]?.freeTicks = 0
            }
            if claim {
                held[key]?.claiming = true
                commands.append(.claim(key: key, tag: topic.tag, expected: owner))
            }
        }
        return commands
    }

    /// Whether this node may poll `key` at `now`: it owns it and counts itself a member.
    func mayPoll(_ key: String, now: Int64) -> Bool {
        isMember(now: now) && held[key]?.owner == identity
    }

    /// The node owning `key`, by name, if any is known.
    func ownerNode(of key: String) -> String? {
        guard let owner = held[key]?.owner, !owner.isEmpty else { return nil }
        return String(owner.prefix { $0 != " " })
    }

    /// Topics this node owns and may poll at `now`.
    func owned(now: Int64) -> Int {
        guard isMember(now: now) else { return 0 }
        return held.values.reduce(0) { $0 + ($1.owner == identity ? 1 : 0) }
    }

    /// The node rendezvous hashing picks for `tag` among the live nodes (this one alone when
    /// none is known).
    func preferred(_ tag: String) -> String {
        let nodes = liveNodes.isEmpty ? [node] : liveNodes
        return nodes.max { Self.weight($0, tag) < Self.weight($1, tag) } ?? node
    }

    /// FNV-1a over node and tag.
    static func weight(_ node: String, _ tag: String) -> UInt64 {
        var hash: UInt64 = 0xcbf29ce484222325
        for byte in node.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100000001b3 }
        hash = (hash ^ 0) &* 0x100000001b3
        for byte in tag.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100000001b3 }
        return hash
    }
}

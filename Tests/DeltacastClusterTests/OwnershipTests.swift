import Testing
@testable import DeltacastCluster

/// Who polls what, on explicit times and scripted Redis replies (no socket): joining, claiming a
/// free topic, taking over from a dead owner or as the preferred node, releasing, lapsing.
@Suite struct OwnershipTests {
    let lease: Int64 = 1000

    /// One node's `Ownership`, held by reference so each step reads as a call.
    final class Node {
        var ownership: Ownership
        init(_ node: String, _ incarnation: String, lease: Int64) { ownership = Ownership(node: node, incarnation: incarnation, leaseMilliseconds: lease) }
        func heartbeat(sentAt: Int64, members: [String]) { ownership.heartbeat(sentAt: sentAt, members: members) }
        func hold(_ key: String, tag: String) { ownership.hold(key, tag: tag) }
        func tick(now: Int64) -> [Ownership.Command] { ownership.tick(now: now) }
        @discardableResult func learned(owner: String, of key: String) -> Bool { ownership.learned(owner: owner, of: key) }
        func drop(_ key: String) -> Ownership.Command? { ownership.drop(key) }
        func released(tag: String) { ownership.released(tag: tag) }
        func claimFailed(_ key: String) { ownership.claimFailed(key) }
        func lapsed(fresh: String) { ownership.lapsed(fresh: fresh) }
        func suspend() { ownership.suspend() }
        func mayPoll(_ key: String, now: Int64) -> Bool { ownership.mayPoll(key, now: now) }
        func isMember(now: Int64) -> Bool { ownership.isMember(now: now) }
        var liveNodes: [String] { ownership.liveNodes }
        var margin: Int64 { ownership.margin }
        var identity: String { ownership.identity }
        func ownerNode(of key: String) -> String? { ownership.ownerNode(of: key) }
        func owned(now: Int64) -> Int { ownership.owned(now: now) }
        func preferred(_ tag: String) -> String { ownership.preferred(tag) }
    }

    /// Node `name` as incarnation `incarnation`, a member with `members` at time 0, holding
    /// "/t" (tagged `tag`) whose owner record reads `owner`.
    func node(_ name: String, _ incarnation: String, members: [String], tag: String, owner: String) -> Node {
        let node = Node(name, incarnation, lease: lease)
        node.heartbeat(sentAt: 0, members: members)
        node.hold("/t", tag: tag)
        node.learned(owner: owner, of: "/t")
        return node
    }

    /// A tag rendezvous hashing gives to `node` among `nodes`.
    func tag(preferring node: String, among nodes: [String]) -> String {
        let probe = Node(node, "x", lease: lease)
        probe.heartbeat(sentAt: 0, members: nodes.map { $0 + " i" })
        return (0..<1000).map { "tag\($0)" }.first { probe.preferred($0) == node }!
    }

    @Test func aNodeIsAMemberUntilTheLeaseLessAMarginAfterItsLastHeartbeat() {
        let ownership = Node("a", "one", lease: lease)
        #expect(!ownership.isMember(now: 0))
        ownership.heartbeat(sentAt: 100, members: ["a one", "b two"])
        #expect(ownership.liveNodes == ["a", "b"])
        #expect(ownership.isMember(now: 100 + lease - ownership.margin - 1))
        #expect(!ownership.isMember(now: 100 + lease - ownership.margin))
        ownership.heartbeat(sentAt: 500, members: ["a one"])
        #expect(ownership.isMember(now: 1200) && ownership.liveNodes == ["a"])
        ownership.suspend()   // Redis unreachable: no polling, at once
        #expect(!ownership.isMember(now: 501))
    }

    @Test func aFreeTopicIsClaimedAtOnceByThePreferredNodeAndAfterATickByAnother() {
        let nodes = ["a", "b"]
        let tag = tag(preferring: "a", among: nodes)
        let preferred = Node("a", "1", lease: lease)
        let other = Node("b", "2", lease: lease)
        preferred.heartbeat(sentAt: 0, members: ["a 1", "b 2"])
        other.heartbeat(sentAt: 0, members: ["a 1", "b 2"])
        preferred.hold("/t", tag: tag)
        other.hold("/t", tag: tag)
        // Nothing is claimed before the owner record was read with the topic's state.
        #expect(preferred.tick(now: 10).isEmpty)
        preferred.learned(owner: "", of: "/t")
        other.learned(owner: "", of: "/t")
        #expect(preferred.tick(now: 10) == [.claim(key: "/t", tag: tag, expected: "")])
        #expect(other.tick(now: 10).isEmpty)                  // waits a tick: the preferred node may hold it
        #expect(other.tick(now: 20) == [.claim(key: "/t", tag: tag, expected: "")])
        #expect(preferred.tick(now: 30).isEmpty)              // its claim is in flight
        // Redis serialised the claims: the preferred node's won, the other's reply names it.
        #expect(preferred.learned(owner: "a 1", of: "/t"))
        #expect(!other.learned(owner: "a 1", of: "/t"))
        #expect(preferred.mayPoll("/t", now: 40) && !other.mayPoll("/t", now: 40))
        #expect(preferred.ownerNode(of: "/t") == "a" && other.ownerNode(of: "/t") == "a")
        #expect(preferred.owned(now: 40) == 1 && other.owned(now: 40) == 0)
        #expect(other.tick(now: 50).isEmpty)                  // a live owner is left alone
    }

    @Test func aDeadOwnerIsReplacedByAnyHolderOnceTwoTicksAgree() {
        let tag = tag(preferring: "a", among: ["a", "b", "c"])
        let ownership = node("c", "3", members: ["a 1", "b 2", "c 3"], tag: tag, owner: "a 1")
        #expect(ownership.tick(now: 10).isEmpty)
        // a's heartbeats stopped: past the lease, Redis no longer lists it.
        ownership.heartbeat(sentAt: 1100, members: ["b 2", "c 3"])
        #expect(ownership.tick(now: 1110).isEmpty)
        #expect(ownership.tick(now: 1120) == [.claim(key: "/t", tag: tag, expected: "a 1")])
        #expect(ownership.learned(owner: "c 3", of: "/t"))
        // A node that restarted is another incarnation: its old records are dead too.
        ownership.learned(owner: "b 2", of: "/t")
        ownership.heartbeat(sentAt: 1200, members: ["b 9", "c 3"])
        #expect(ownership.tick(now: 1210).isEmpty)
        #expect(ownership.tick(now: 1220) == [.claim(key: "/t", tag: tag, expected: "b 2")])
    }

    @Test func thePreferredNodeTakesOverALiveOwnerAfterSixTicks() {
        let tag = tag(preferring: "b", among: ["a", "b"])
        let ownership = node("b", "2", members: ["a 1", "b 2"], tag: tag, owner: "a 1")
        for tick in 1...Ownership.ticksBeforeTakeover { #expect(ownership.tick(now: Int64(tick) * 10).isEmpty) }
        #expect(ownership.tick(now: 70) == [.claim(key: "/t", tag: tag, expected: "a 1")])
        // A claim that got no reply is tried again.
        ownership.claimFailed("/t")
        #expect(ownership.tick(now: 40) == [.claim(key: "/t", tag: tag, expected: "a 1")])
    }

    @Test func aLapsedMembershipVoidsWhatItOwnedAndIsClaimedBack() {
        let tag = tag(preferring: "b", among: ["a", "b"])
        let ownership = node("a", "old", members: ["a old", "b 2"], tag: tag, owner: "a old")
        #expect(ownership.mayPoll("/t", now: 10))
        // Paused past the lease: no polling on waking, before Redis is even asked.
        #expect(!ownership.mayPoll("/t", now: 2000))
        #expect(ownership.tick(now: 2000).isEmpty)
        // The heartbeat finds the membership gone: a new incarnation, which does not own "a old"'s topics.
        ownership.lapsed(fresh: "new")
        #expect(ownership.identity == "a new")
        ownership.heartbeat(sentAt: 2100, members: ["a old", "a new", "b 2"])   // the old member lingers in the set a while
        #expect(!ownership.mayPoll("/t", now: 2110))
        #expect(ownership.tick(now: 2110) == [.claim(key: "/t", tag: tag, expected: "a old")])
    }

    @Test func aTopicGoneFromTheNodeIsReleasedWhenItWasOwnedAndAReleaseFreesItElsewhere() {
        let tag = tag(preferring: "a", among: ["a", "b"])
        let owner = node("a", "1", members: ["a 1", "b 2"], tag: tag, owner: "a 1")
        let holder = node("b", "2", members: ["a 1", "b 2"], tag: tag, owner: "a 1")
        #expect(owner.drop("/t") == .release(key: "/t", tag: tag))
        #expect(owner.drop("/t") == nil)                      // forgotten
        #expect(holder.drop("/u") == nil)
        holder.released(tag: tag)
        _ = holder.tick(now: 10)                               // not preferred: a tick first
        #expect(holder.tick(now: 20) == [.claim(key: "/t", tag: tag, expected: "")])
        // A node that does not own a topic it drops sends nothing.
        #expect(holder.drop("/t") == nil)
    }

    @Test func withoutAMembershipNothingIsClaimed() {
        let ownership = Node("a", "1", lease: lease)
        ownership.hold("/t", tag: "t")
        ownership.learned(owner: "", of: "/t")
        #expect(ownership.tick(now: 0).isEmpty)
        #expect(ownership.preferred("t") == "a")              // alone, it prefers itself
    }
}

import Testing
@testable import DeltacastCluster

/// Who polls what, on explicit times and scripted Redis replies (no socket): joining, claiming a
/// free topic, taking over from a dead owner or as the preferred node, releasing, lapsing.
@Suite struct OwnershipTests {
    let lease: Int64 = 1000

    /// A tag rendezvous hashing gives to `node` among `nodes`.
    func tag(preferring node: String, among nodes: [String]) -> String {
        var probe = Ownership(node: node, incarnation: "x", leaseMilliseconds: lease)
        probe.heartbeat(sentAt: 0, members: nodes.map { $0 + " i" })
        return (0..<1000).map { "tag\($0)" }.first { probe.preferred($0) == node }!
    }

    @Test func aNodeIsAMemberUntilTheLeaseLessAMarginAfterItsLastHeartbeat() {
        var ownership = Ownership(node: "a", incarnation: "one", leaseMilliseconds: lease)
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
        var preferred = Ownership(node: "a", incarnation: "1", leaseMilliseconds: lease)
        var other = Ownership(node: "b", incarnation: "2", leaseMilliseconds: lease)
        preferred.heartbeat(sentAt: 0, members: ["a 1", "b 2"])
        other.heartbeat(sentAt: 0, members: ["a 1", "b 2"])
        preferred.hold("/t", tag: tag)
        other.hold("/t", tag: tag)
        // Nothing is claimed before the owner record was read with the topic's state.
        let result1 = preferred.tick(now: 10)
        #expect(result1.isEmpty)
        preferred.learned(owner: "", of: "/t")
        other.learned(owner: "", of: "/t")
        let result2 = preferred.tick(now: 10)
        #expect(result2 == [.claim(key: "/t", tag: tag, expected: "")])
        let result3 = other.tick(now: 10)
        #expect(result3.isEmpty)                  // waits a tick: the preferred node may hold it
        let result4 = other.tick(now: 20)
        #expect(result4 == [.claim(key: "/t", tag: tag, expected: "")])
        let result5 = preferred.tick(now: 30)
        #expect(result5.isEmpty)              // its claim is in flight
        // Redis serialised the claims: the preferred node's won, the other's reply names it.
        let result6 = preferred.learned(owner: "a 1", of: "/t")
        #expect(result6)
        let result7 = other.learned(owner: "a 1", of: "/t")
        #expect(!result7)
        #expect(preferred.mayPoll("/t", now: 40) && !other.mayPoll("/t", now: 40))
        #expect(preferred.ownerNode(of: "/t") == "a" && other.ownerNode(of: "/t") == "a")
        #expect(preferred.owned(now: 40) == 1 && other.owned(now: 40) == 0)
        let result8 = other.tick(now: 50)
        #expect(result8.isEmpty)                  // a live owner is left alone
    }

    @Test func aDeadOwnerIsReplacedAtOnceByAnyHolder() {
        let tag = tag(preferring: "a", among: ["a", "b", "c"])
        var ownership = Ownership(node: "c", incarnation: "3", leaseMilliseconds: lease)
        ownership.heartbeat(sentAt: 0, members: ["a 1", "b 2", "c 3"])
        ownership.hold("/t", tag: tag)
        ownership.learned(owner: "a 1", of: "/t")
        let result9 = ownership.tick(now: 10)
        #expect(result9.isEmpty)
        // a's heartbeats stopped: past the lease, Redis no longer lists it.
        ownership.heartbeat(sentAt: 1100, members: ["b 2", "c 3"])
        let result10 = ownership.tick(now: 1110)
        #expect(result10 == [.claim(key: "/t", tag: tag, expected: "a 1")])
        let result11 = ownership.learned(owner: "c 3", of: "/t")
        #expect(result11)
        // A node that restarted is another incarnation: its old records are dead too.
        ownership.learned(owner: "b 2", of: "/t")
        ownership.heartbeat(sentAt: 1200, members: ["b 9", "c 3"])
        let result12 = ownership.tick(now: 1210)
        #expect(result12 == [.claim(key: "/t", tag: tag, expected: "b 2")])
    }

    @Test func thePreferredNodeTakesOverALiveOwnerAfterTwoTicks() {
        let tag = tag(preferring: "b", among: ["a", "b"])
        var ownership = Ownership(node: "b", incarnation: "2", leaseMilliseconds: lease)
        ownership.heartbeat(sentAt: 0, members: ["a 1", "b 2"])
        ownership.hold("/t", tag: tag)
        ownership.learned(owner: "a 1", of: "/t")
        let result13 = ownership.tick(now: 10)
        #expect(result13.isEmpty)
        let result14 = ownership.tick(now: 20)
        #expect(result14.isEmpty)
        let result15 = ownership.tick(now: 30)
        #expect(result15 == [.claim(key: "/t", tag: tag, expected: "a 1")])
        // A claim that got no reply is tried again.
        ownership.claimFailed("/t")
        let result16 = ownership.tick(now: 40)
        #expect(result16 == [.claim(key: "/t", tag: tag, expected: "a 1")])
    }

    @Test func aLapsedMembershipVoidsWhatItOwnedAndIsClaimedBack() {
        let tag = tag(preferring: "b", among: ["a", "b"])
        var ownership = Ownership(node: "a", incarnation: "old", leaseMilliseconds: lease)
        ownership.heartbeat(sentAt: 0, members: ["a old", "b 2"])
        ownership.hold("/t", tag: tag)
        ownership.learned(owner: "a old", of: "/t")
        #expect(ownership.mayPoll("/t", now: 10))
        // Paused past the lease: no polling on waking, before Redis is even asked.
        #expect(!ownership.mayPoll("/t", now: 2000))
        let result17 = ownership.tick(now: 2000)
        #expect(result17.isEmpty)
        // The heartbeat finds the membership gone: a new incarnation, which does not own "a old"'s topics.
        ownership.lapsed(fresh: "new")
        #expect(ownership.identity == "a new")
        ownership.heartbeat(sentAt: 2100, members: ["a old", "a new", "b 2"])   // the old member lingers in the set a while
        #expect(!ownership.mayPoll("/t", now: 2110))
        let result18 = ownership.tick(now: 2110)
        #expect(result18 == [.claim(key: "/t", tag: tag, expected: "a old")])
    }

    @Test func aTopicGoneFromTheNodeIsReleasedWhenItWasOwnedAndAReleaseFreesItElsewhere() {
        let tag = tag(preferring: "a", among: ["a", "b"])
        var owner = Ownership(node: "a", incarnation: "1", leaseMilliseconds: lease)
        var holder = Ownership(node: "b", incarnation: "2", leaseMilliseconds: lease)
        owner.heartbeat(sentAt: 0, members: ["a 1", "b 2"])
        holder.heartbeat(sentAt: 0, members: ["a 1", "b 2"])
        owner.hold("/t", tag: tag)
        holder.hold("/t", tag: tag)
        owner.learned(owner: "a 1", of: "/t")
        holder.learned(owner: "a 1", of: "/t")
        let result19 = owner.drop("/t")
        #expect(result19 == .release(key: "/t", tag: tag))
        let result20 = owner.drop("/t")
        #expect(result20 == nil)                      // forgotten
        let result21 = holder.drop("/u")
        #expect(result21 == nil)
        holder.released(tag: tag)
        _ = holder.tick(now: 10)                               // not preferred: a tick first
        let result22 = holder.tick(now: 20)
        #expect(result22 == [.claim(key: "/t", tag: tag, expected: "")])
        // A node that does not own a topic it drops sends nothing.
        let result23 = holder.drop("/t")
        #expect(result23 == nil)
    }

    @Test func withoutAMembershipNothingIsClaimed() {
        var ownership = Ownership(node: "a", incarnation: "1", leaseMilliseconds: lease)
        ownership.hold("/t", tag: "t")
        ownership.learned(owner: "", of: "/t")
        let result24 = ownership.tick(now: 0)
        #expect(result24.isEmpty)
        #expect(ownership.preferred("t") == "a")              // alone, it prefers itself
    }
}

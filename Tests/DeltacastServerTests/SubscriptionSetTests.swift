import DeltacastBase
import DeltacastLoop
import DeltacastConfig
import DeltacastHub
import DeltacastWire
import Synchronization
import Testing
@testable import DeltacastServer

/// The cursor and conflation rules every push transport shares, on real topics and their real
/// changes, with no socket: the queue's state is a parameter.
@Suite struct SubscriptionSetTests {
    /// A hub with two publish endpoints, and the changes it emits, in order.
    final class Published: Sendable {
        let hub: Hub
        final class Emitted: Sendable { let changes = Locked<[Change]>([]) }
        let emitted: Emitted
        init() throws {
            let configuration = try Configuration.load(text: """
                endpoints:
                  - path: /live/{room}
                    source: publish
                    array_keys: { /items: id }
                """, file: "subscriptions.yaml", environment: [:])
            let emitted = Emitted()
            hub = Hub(configuration: configuration, loopCount: 1) { _, change in emitted.changes.withLock { $0.append(change) } }
            self.emitted = emitted
        }
        /// The topic `name`, with a subscriber on loop 0 (so its changes are emitted).
        func subscribed(_ name: String = "/live/a") throws -> Topic {
            let topic = try hub.topic(named: name, endpoint: 0)
            _ = topic.subscribe(loop: 0, since: nil)
            return topic
        }

        /// Publishes a document with `price` and returns the change every subscriber got.
        func publish(_ topic: Topic, price: Int) throws -> Change {
            let before = emitted.changes.withLock { $0.count }
            try topic.update(body: Array(#"{"items":[{"id":1,"p":\#(price)},{"id":2,"p":5}],"note":"long enough for a patch to be the smaller"}"#.utf8),
                             contentType: "application/json")
            return emitted.changes.withLock { $0[before] }
        }
    }

    @Test func aChangeAtOrBeforeTheCursorSentIsADuplicate() throws {
        let published = try Published()
        let topic = try published.subscribed("/live/a")
        let first = try published.publish(topic, price: 1)
        let second = try published.publish(topic, price: 2)
        var set = SubscriptionSet()
        set.insert(topic, transport: .websocket, since: first.cursor, current: second.cursor)
        #expect(set.isDuplicate(first))          // the client holds it
        #expect(set.admit(first, queueFull: false) == .ignore)   // and is never sent twice
        #expect(!set.isDuplicate(second))
        #expect(set.admit(second, queueFull: false) == .send(previous: first.cursor))
        #expect(set.isDuplicate(second))         // sent now
        #expect(set.admit(second, queueFull: false) == .ignore)
        // A new history (cluster mode: Redis lost the topic's) starts again at seq 1: not a duplicate.
        let restarted = Change(topic: topic.name, key: topic.key, kind: .snapshot, cursor: Cursor(epoch: "fresh001", seq: 1), base: nil,
                               event: Array("{}".utf8), deflater: nil)
        #expect(!set.isDuplicate(restarted))
        #expect(set.admit(restarted, queueFull: false) == .send(previous: second.cursor))
        // A change of a topic this connection does not receive is never for it.
        let other = try published.subscribed("/live/b")
        let foreign = try published.publish(other, price: 9)
        #expect(set.isDuplicate(foreign))
        #expect(set.admit(foreign, queueFull: false) == .ignore)
    }

    /// One topic is held inline and several in a table: cursors, conflation and lookups carry
    /// over as the set grows past one and shrinks back, and a removed topic is never admitted.
    @Test func cursorsSurviveGrowingFromOneTopicToSeveralAndBack() throws {
        let published = try Published()
        let a = try published.subscribed("/live/a"), b = try published.subscribed("/live/b"), c = try published.subscribed("/live/c")
        let a1 = try published.publish(a, price: 1), b1 = try published.publish(b, price: 1), c1 = try published.publish(c, price: 1)
        var set = SubscriptionSet()
        set.insert(a, transport: .websocket, since: nil, current: a1.cursor)
        #expect(set.admit(a1, queueFull: false) == .send(previous: nil))
        #expect(set.admit(b1, queueFull: false) == .ignore)
        set.insert(b, transport: .websocket, since: nil, current: b1.cursor)
        set.insert(c, transport: .websocket, since: nil, current: c1.cursor)
        #expect(set.count == 3)
        #expect(set[a.key]?.cursor == a1.cursor)   // kept when the set grew
        #expect(set.admit(a1, queueFull: false) == .ignore)
        #expect(set.admit(b1, queueFull: false) == .send(previous: nil))
        #expect(set.admit(c1, queueFull: true) == .drop(started: true))   // conflation starts
        #expect(set.remove(c.key)?.topic === c)
        #expect(set.remove(a.key)?.topic === a)
        #expect(set.count == 1 && set.keys(topicNamed: "/live/b") == [b.key] && !set.contains(topicNamed: "/live/a"))
        #expect(set[b.key]?.cursor == b1.cursor)   // kept when the set shrank
        #expect(set.conflating)
        let b2 = try published.publish(b, price: 2)
        #expect(set.admit(b2, queueFull: false) == .drop(started: false))
        #expect(set.takeOwed().map(\.key) == [b.key])
        #expect(set.admit(a1, queueFull: false) == .ignore && set.admit(c1, queueFull: false) == .ignore)
        #expect(set.remove(a.key) == nil)
        var removed: [String] = []
        set.removeEach { key, _ in removed.append(key) }
        #expect(removed == [b.key])
        #expect(set.isEmpty && set.admit(b2, queueFull: false) == .ignore)
    }

    @Test func aCursorFromAnotherEpochOrTheFutureIsNotHeld() throws {
        let published = try Published()
        let topic = try published.subscribed("/live/a")
        let current = try published.publish(topic, price: 1).cursor!
        var set = SubscriptionSet()
        set.insert(topic, transport: .sse, since: Cursor(epoch: current.epoch, seq: current.seq + 5), current: current)
        #expect(set[topic.key]?.cursor == nil)
        set.insert(topic, transport: .sse, since: Cursor(epoch: "other", seq: 1), current: current)
        #expect(set[topic.key]?.cursor == nil)
        set.insert(topic, transport: .sse, since: current, current: current)
        #expect(set[topic.key]?.cursor == current)
    }

    @Test func aFullQueueDropsChangesAndOwesOneSnapshotOnceItDrains() throws {
        let published = try Published()
        let topic = try published.subscribed("/live/a")
        var set = SubscriptionSet()
        let snapshot = try published.publish(topic, price: 1)
        set.insert(topic, transport: .websocket, since: nil, current: nil)
        #expect(set.admit(snapshot, queueFull: false) == .send(previous: nil))
        // The queue passes its high watermark: the first drop starts conflation, later ones follow.
        let dropped = try published.publish(topic, price: 2)
        #expect(set.admit(dropped, queueFull: true) == .drop(started: true))
        #expect(set.conflating)
        let later = try published.publish(topic, price: 3)
        #expect(set.admit(later, queueFull: false) == .drop(started: false))   // still conflating, even with room
        // Drained: one snapshot is owed, once, and its change is admitted from no cursor.
        let owed = set.takeOwed()
        #expect(owed.map(\.key) == [topic.key])
        #expect(!set.conflating)
        #expect(set.takeOwed().isEmpty)
        let fresh = try #require(topic.changes(since: nil)?.first)
        #expect(fresh.kind == .snapshot && fresh.cursor == later.cursor)
        #expect(set.admit(fresh, queueFull: false) == .send(previous: nil))
        // The next patch applies to that snapshot and goes out.
        let next = try published.publish(topic, price: 4)
        #expect(next.kind == .patch)
        #expect(set.admit(next, queueFull: false) == .send(previous: later.cursor))
    }

    @Test func aPatchThatDoesNotApplyToTheCursorSentIsReplacedByASnapshot() throws {
        let published = try Published()
        let topic = try published.subscribed("/live/a")
        let first = try published.publish(topic, price: 1)
        _ = try published.publish(topic, price: 2)   // never seen by this subscriber
        let third = try published.publish(topic, price: 3)
        var set = SubscriptionSet()
        set.insert(topic, transport: .websocket, since: first.cursor, current: first.cursor)
        #expect(third.kind == .patch && third.base != first.cursor)
        #expect(set.admit(third, queueFull: false) == .drop(started: true))
        #expect(set.takeOwed().count == 1)
    }

    @Test func bytesPastTheHardLimitRestoreTheCursorAndConflate() throws {
        let published = try Published()
        let topic = try published.subscribed("/live/a")
        let first = try published.publish(topic, price: 1)
        let second = try published.publish(topic, price: 2)
        var set = SubscriptionSet()
        set.insert(topic, transport: .sse, since: first.cursor, current: first.cursor)
        guard case .send(let previous) = set.admit(second, queueFull: false) else { Issue.record("not admitted"); return }
        set.refused(second, restoring: previous)
        #expect(set[topic.key]?.cursor == first.cursor)
        #expect(set.conflating)
        #expect(!set.isDuplicate(second))   // it was never sent
        #expect(set.takeOwed().count == 1)
    }

    @Test func aMultiplexedStreamListsCursorsInTheOrderItSubscribed() throws {
        let published = try Published()
        let a = try published.hub.topic(named: "/live/a", endpoint: 0)
        let b = try published.hub.topic(named: "/live/b", endpoint: 0)
        _ = a.subscribe(loop: 0, since: nil)
        _ = b.subscribe(loop: 0, since: nil)
        var set = SubscriptionSet()
        set.insert(b, transport: .sse, since: nil, current: nil, listed: true)
        set.insert(a, transport: .sse, since: nil, current: nil, listed: true)
        let changeA = try published.publish(a, price: 1)
        _ = set.admit(changeA, queueFull: false)
        #expect(set.listedCursors == ",\(changeA.cursor!)")
        // An ended subscription keeps its position (a resuming client's Last-Event-ID counts on it).
        set.remove(b.key)
        #expect(set.listedCursors == ",\(changeA.cursor!)")
        set.insert(b, transport: .sse, since: nil, current: nil, listed: true)
        #expect(set.listed.count == 2)
        // Subscriptions that are not listed (WebSocket) never grow the list.
        for _ in 0..<100 { set.insert(a, transport: .websocket, since: nil, current: nil); set.remove(a.key) }
        #expect(set.listed.count == 2)
        #expect(set.keys(topicNamed: "/live/b") == [b.key])
        #expect(set.contains(topicNamed: "/live/b") && !set.contains(topicNamed: "/live/a"))
        var removed = 0
        set.removeEach { _, _ in removed += 1 }
        #expect(removed == 1 && set.isEmpty)
    }
}

import DeltacastBase
import DeltacastLoop
import DeltacastConfig
import DeltacastJSON
import DeltacastWire
import Synchronization
import Testing
@testable import DeltacastHub

/// A hub whose deliveries are collected per loop.
final class Collector: Sendable {
    let delivered = Locked<[(Int, Change)]>([])
    var changes: [Change] { delivered.withLock { $0.map(\.1) } }
}

/// A hub clock that moves only when told.
final class ManualHubClock: HubClock {
    private let now = Atomic<Int64>(1_000)
    var milliseconds: Int64 { now.load(ordering: .relaxed) }
    func advance(by milliseconds: Int64) { now.add(milliseconds, ordering: .relaxed) }
}

func makeHub(_ yaml: String, loops: Int = 2, clock: any HubClock = SystemHubClock()) throws -> (Hub, Collector) {
    let configuration = try Configuration.load(text: yaml, file: "hub.yaml", environment: [:])
    let collector = Collector()
    let hub = Hub(configuration: configuration, loopCount: loops, deliver: { loop, change in
        collector.delivered.withLock { $0.append((loop, change)) }
    }, clock: clock)
    return (hub, collector)
}

let publishEndpoints = """
    endpoints:
      - path: /live/{room}
        source: publish
        array_keys: { /items: id }
        ignore: [/generatedAt]
      - path: /merge/{room}
        source: publish
        diff: merge-patch

    """

func body(_ price: Int, generatedAt: Int = 0) -> [UInt8] {
    Array(#"{"generatedAt":\#(generatedAt),"items":[{"id":1,"p":\#(price)},{"id":2,"p":5}],"note":"long enough for a patch to be the smaller"}"#.utf8)
}

@Suite struct TopicTests {
    @Test func changesGoOnlyToLoopsWithSubscribersInOrder() throws {
        let (hub, collector) = try makeHub(publishEndpoints)
        let topic = try hub.topic(named: "/live/a", endpoint: 0)
        #expect(topic.subscribe(loop: 1, since: nil).backlog.isEmpty)  // no state yet: nothing to send
        try topic.update(body: body(1), contentType: "application/json")
        try topic.update(body: body(2), contentType: "application/json")
        let delivered = collector.delivered.withLock { $0 }
        #expect(delivered.map(\.0) == [1, 1])
        #expect(delivered.map { $0.1.kind } == [.snapshot, .patch])
        #expect(delivered.map { $0.1.cursor?.seq } == [1, 2])
        #expect(delivered[1].1.base == delivered[0].1.cursor)
        // Encoded once: the WebSocket frame and SSE event carry exactly the event bytes.
        let change = delivered[1].1
        #expect(Array(change.webSocketFrame.suffix(change.event.count)) == change.event)
        #expect(String(decoding: change.sseEvent, as: UTF8.self) == "id: \(change.cursor!)\nevent: patch\ndata: \(String(decoding: change.event, as: UTF8.self))\n\n")
    }

    @Test func aChangeConfinedToIgnoredFieldsChangesNothingAClientCanSee() throws {
        let (hub, collector) = try makeHub(publishEndpoints)
        let topic = try hub.topic(named: "/live/a", endpoint: 0)
        _ = topic.subscribe(loop: 0, since: nil)
        try topic.update(body: body(1, generatedAt: 1), contentType: "application/json")
        let outcome = try topic.update(body: body(1, generatedAt: 2), contentType: "application/json")
        #expect(outcome == .unchanged(Cursor(epoch: topic.epoch, seq: 1)))
        #expect(topic.current()?.body == body(1, generatedAt: 1))  // the stored body is the last counted one
        #expect(collector.changes.count == 1)
    }

    /// The upstream changed its serializer (whitespace, member order, an escape): the same
    /// JSON is no change. A string respelled with a combining accent is one (RFC 6902 compares
    /// code points), and its patch carries the new spelling.
    @Test func aRespelledBodyIsNoChangeButARespelledStringIs() throws {
        let (hub, collector) = try makeHub(publishEndpoints)
        let topic = try hub.topic(named: "/live/a", endpoint: 0)
        _ = topic.subscribe(loop: 0, since: nil)
        try topic.update(body: Array(#"{"items":[{"id":1,"name":"caf\u00e9"}],"note":"long enough for a patch to be the smaller"}"#.utf8), contentType: "application/json")
        let respelled = try topic.update(body: Array("{ \"note\" : \"long enough for a patch to be the smaller\",\n  \"items\" : [ { \"name\" : \"café\", \"id\" : 1 } ] }".utf8), contentType: "application/json")
        #expect(respelled == .unchanged(Cursor(epoch: topic.epoch, seq: 1)))
        let decomposed = try topic.update(body: Array(#"{"items":[{"id":1,"name":"cafe\u0301"}],"note":"long enough for a patch to be the smaller"}"#.utf8), contentType: "application/json")
        #expect(decomposed == .changed(Cursor(epoch: topic.epoch, seq: 2)))
        let event = collector.changes.last?.event ?? []
        let replace = Array(#""patch":[{"op":"replace","path":"/items/0/name","value":"cafe"#.utf8) + [0xCC, 0x81] + Array(#""}]"#.utf8)
        #expect(event.firstRange(of: replace) != nil, "\(String(decoding: event, as: UTF8.self))")
    }

    @Test func mergePatchEndpointsSendMergeDocuments() throws {
        let (hub, collector) = try makeHub(publishEndpoints)
        let topic = try hub.topic(named: "/merge/a", endpoint: 1)
        _ = topic.subscribe(loop: 0, since: nil)
        try topic.update(body: body(1), contentType: "application/json")
        try topic.update(body: Array(#"{"generatedAt":0,"items":[{"id":1,"p":1},{"id":2,"p":5}],"note":"changed note, still long enough"}"#.utf8), contentType: "application/json")
        let event = String(decoding: collector.changes[1].event, as: UTF8.self)
        #expect(event.hasSuffix(#""merge":{"note":"changed note, still long enough"}}"#))
    }

    @Test func nonJSONBodiesTravelAsStringSnapshotsAndBadJSONIsRefused() throws {
        let (hub, collector) = try makeHub(publishEndpoints)
        let topic = try hub.topic(named: "/live/t", endpoint: 0)
        _ = topic.subscribe(loop: 0, since: nil)
        try topic.update(body: Array("line one\nline \"two\"".utf8), contentType: "text/plain")
        #expect(String(decoding: collector.changes[0].event, as: UTF8.self).hasSuffix(#""data":"line one\nline \"two\""}"#))
        #expect(throws: Topic.UpdateError.self) { try topic.update(body: Array("{".utf8), contentType: "application/json") }
        #expect(topic.current()?.contentType == "text/plain")
    }

    /// The journal holds at most `journal_entries` changes and `journal_bytes` bytes; a resume
    /// from before it gets one snapshot.
    @Test(arguments: [("journal_entries: 3", 3), ("journal_bytes: 300", 2)])
    func theJournalIsBoundedByCountAndBytes(_ limit: String, _ kept: Int) throws {
        let (hub, _) = try makeHub(publishEndpoints + "limits: { \(limit) }\n")
        let topic = try hub.topic(named: "/live/j", endpoint: 0)
        for price in 1...20 { try topic.update(body: body(price), contentType: "application/json") }
        #expect(topic.journalCount == kept)
        let recent = topic.changes(since: Cursor(epoch: topic.epoch, seq: 20 - kept))
        #expect(recent?.map(\.kind) == Array(repeating: .patch, count: kept))
        #expect(topic.changes(since: Cursor(epoch: topic.epoch, seq: 19 - kept))?.map(\.kind) == [.snapshot])
        #expect(topic.changes(since: Cursor(epoch: "other1", seq: 19))?.map(\.kind) == [.snapshot])
        #expect(topic.changes(since: Cursor(epoch: topic.epoch, seq: 20)) == nil)
    }

    /// The journal's storage, trimmed entries included, stays within a quarter of the limit
    /// (or 4) above it at every change: memory follows `journal_entries` (the soak found topics
    /// holding up to twice their journal). A resume still gets exactly the live entries.
    @Test(arguments: [24, 256])
    func trimmedJournalEntriesAreReleasedPromptly(_ limit: Int) throws {
        let (hub, _) = try makeHub(publishEndpoints + "limits: { journal_entries: \(limit) }\n")
        let topic = try hub.topic(named: "/live/s", endpoint: 0)
        var most = 0
        for price in 1...(limit * 5) {
            try topic.update(body: body(price), contentType: "application/json")
            most = max(most, topic.journalStorageCount)
        }
        #expect(most <= limit + max(4, limit / 4) + 1, "\(most) changes held for a journal of \(limit)")
        #expect(topic.journalCount == limit)
        #expect(topic.changes(since: Cursor(epoch: topic.epoch, seq: limit * 5 - limit))?.count == limit)
    }

    /// At `limits.max_topics`, the least recently used topic without subscribers is evicted;
    /// when every topic is watched, a new one is refused.
    @Test func topicCountIsBoundedWithLRUEviction() throws {
        let (hub, _) = try makeHub(publishEndpoints + "limits: { max_topics: 2 }\n")
        let a = try hub.topic(named: "/live/a", endpoint: 0)
        _ = try hub.topic(named: "/live/b", endpoint: 0)
        _ = try hub.topic(named: "/live/a", endpoint: 0)  // a is now the more recently used
        _ = try hub.topic(named: "/live/c", endpoint: 0)
        #expect(hub.existingTopic(key: "/live/b") == nil)
        #expect(hub.existingTopic(key: "/live/a") === a)
        #expect(hub.topicCount == 2)
        _ = a.subscribe(loop: 0, since: nil)
        _ = try hub.existingTopic(key: "/live/c")!.subscribe(loop: 1, since: nil)
        #expect(throws: Hub.TopicError.tooMany(2)) { try hub.topic(named: "/live/d", endpoint: 0) }
    }

    @Test func topicNamesKeepOnlyAllowedQueryParametersInOrder() throws {
        let matcher = EndpointMatcher(endpoints: try Configuration.load(text: """
            endpoints:
              - path: /api/users/{user}/feed
                source: publish
                params: { user: "[0-9]+" }
                query: [region, limit]
            """, file: "m.yaml", environment: [:]).endpoints)
        #expect(matcher.match("/api/users/42/feed?limit=5&_=123&region=eu") == .matched(index: 0, topic: "/api/users/42/feed?limit=5&region=eu", parameters: ["user": "42"]))
        // Without parameters (the multiplexed routes need only the endpoint and the name):
        // the same endpoint and topic, and still refused when a parameter is bad.
        #expect(matcher.match("/api/users/42/feed?limit=5&_=123&region=eu", parameters: false) == .matched(index: 0, topic: "/api/users/42/feed?limit=5&region=eu", parameters: [:]))
        #expect(matcher.match("/api/users/x/feed", parameters: false) == .badParameter(name: "user", pattern: "[0-9]+"))
        #expect(matcher.match("/api/users/x/feed") == .badParameter(name: "user", pattern: "[0-9]+"))
        #expect(matcher.match("/api/users/42") == .noMatch)
    }
}

@Suite struct TopicLifecycleTests {
    let yaml = """
        upstream: { base: http://127.0.0.1:9 }
        endpoints:
          - path: /users/{user}
            auth: passthrough
            linger: 0s
          - path: /open/{id}
            linger: 1h

        """

    @Test func passthroughTopicsAreKeyedByCredential() throws {
        let (hub, _) = try makeHub(yaml)
        let alice: [(name: String, value: String)] = [("Authorization", "Bearer alice")]
        let bob: [(name: String, value: String)] = [("Authorization", "Bearer bob")]
        let a = try hub.topic(named: "/users/1", endpoint: 0, credentials: alice)
        let b = try hub.topic(named: "/users/1", endpoint: 0, credentials: bob)
        #expect(a !== b && a.name == b.name && a.key != b.key)
        #expect(try hub.topic(named: "/users/1", endpoint: 0, credentials: alice) === a)
        #expect(!a.key.contains("alice"))
        // The header name's case does not matter; the value's does.
        #expect(hub.key(name: "/users/1", endpoint: 0, credentials: [("authorization", "Bearer alice")]) == a.key)
        #expect(hub.key(name: "/users/1", endpoint: 0, credentials: [("Authorization", "bearer alice")]) != a.key)
        // Endpoints without passthrough ignore credentials.
        #expect(hub.key(name: "/open/1", endpoint: 1, credentials: alice) == "/open/1")
        #expect(hub.credentials(endpoint: hub.configuration.endpoints[0]) { $0 == "Authorization" ? "Bearer x" : nil }.map(\.value) == ["Bearer x"])
        #expect(hub.credentials(endpoint: hub.configuration.endpoints[1]) { _ in "Bearer x" }.isEmpty)
    }

    @Test func aTopicLingersExactlyItsLingerAfterItsLastUse() throws {
        let clock = ManualHubClock()
        let (hub, _) = try makeHub(yaml, clock: clock)
        let topic = try hub.topic(named: "/open/1", endpoint: 1)   // linger 1 h
        clock.advance(by: 3_599_999)
        #expect(!hub.evictIfIdle(topic))
        _ = try hub.topic(named: "/open/1", endpoint: 1)   // a use starts the hour again
        clock.advance(by: 3_599_999)
        #expect(!hub.evictIfIdle(topic))
        _ = topic.subscribe(loop: 0, since: nil)
        clock.advance(by: 7_200_000)
        #expect(!hub.evictIfIdle(topic))   // a subscriber keeps it, however long
        topic.unsubscribe(loop: 0)
        clock.advance(by: 3_599_999)
        #expect(!hub.evictIfIdle(topic))
        clock.advance(by: 1)
        #expect(hub.evictIfIdle(topic))
    }

    @Test func idleTopicsAreEvictedOnlyWithoutSubscribersAfterLinger() throws {
        let (hub, _) = try makeHub(yaml)
        let lingering = try hub.topic(named: "/open/1", endpoint: 1)
        #expect(!hub.evictIfIdle(lingering))  // linger 1 h
        let user = try hub.topic(named: "/users/1", endpoint: 0)
        _ = user.subscribe(loop: 0, since: nil)
        #expect(!hub.evictIfIdle(user))  // a subscriber keeps it, linger 0 s or not
        user.unsubscribe(loop: 0)
        #expect(hub.evictIfIdle(user))
        #expect(!hub.holds(user) && hub.holds(lingering))
        #expect(try hub.topic(named: "/users/1", endpoint: 0) !== user)
    }

    @Test func upstreamProblemsAreReportedOnceAndForbiddenEndsSubscriptions() throws {
        let (hub, collector) = try makeHub(yaml)
        let topic = try hub.topic(named: "/open/1", endpoint: 1)
        _ = topic.subscribe(loop: 0, since: nil)
        try topic.update(body: body(1), contentType: "application/json")
        topic.upstreamFailed(UpstreamProblem(kind: .status, http: 500, message: "upstream answered 500"))
        topic.upstreamFailed(UpstreamProblem(kind: .timeout, http: nil, message: "upstream timed out after 5000 ms"))
        #expect(topic.current()?.stale == true && topic.current()?.body == body(1))
        topic.upstreamRecovered()
        let kinds = collector.changes.map(\.kind)
        #expect(kinds == [.snapshot, .status, .status])
        #expect(String(decoding: collector.changes[1].event, as: UTF8.self).contains(#""http":500"#))
        #expect(String(decoding: collector.changes[2].event, as: UTF8.self).contains(#""upstream":"ok""#))

        let user = try hub.topic(named: "/users/2", endpoint: 0, credentials: [("Authorization", "Bearer x")])
        try user.update(body: body(1), contentType: "application/json")
        user.upstreamFailed(UpstreamProblem(kind: .forbidden, http: 401, message: "the upstream refused these credentials (401)"))
        #expect(user.current() == nil)  // no data for a refused credential, not even stale
        #expect(user.upstreamProblem?.responseStatus == 401)
        let (backlog, _) = user.subscribe(loop: 1, since: nil)
        #expect(backlog.map(\.kind) == [.error])
        #expect(String(decoding: backlog[0].event, as: UTF8.self).contains(#""code":"forbidden""#))
    }

    @Test func dotSegmentsAreRefusedAsParameters() {
        let matcher = EndpointMatcher(endpoints: (try? Configuration.load(text: yaml, file: "hub.yaml", environment: [:]).endpoints) ?? [])
        for piece in ["..", ".", "%2e%2E", "%2E."] {
            #expect(matcher.match("/open/\(piece)") == .badParameter(name: "id", pattern: "[^/]+"), "\(piece)")
        }
        for piece in ["..a", "...", "%2e%2e.", ".%2", "%2e%2", "%2g", "a."] {
            guard case .matched = matcher.match("/open/\(piece)") else { Issue.record("refused \(piece)"); continue }
        }
    }
}

/// Cluster mode's side of a topic, without Redis: a change prepared but not applied, and the
/// shared history applied as it arrives (in order, after a gap, in a new epoch, backwards).
@Suite struct TopicReplicationTests {
    /// A leader's topic that has made `count` states by itself (prepared, then replicated as
    /// Redis would return them).
    func history(_ hub: Hub, states: Int) throws -> (Topic, [(seq: Int, event: [UInt8])]) {
        let leader = try hub.topic(named: "/live/a", endpoint: 0)
        var entries: [(seq: Int, event: [UInt8])] = []
        for price in 1...states {
            let prepared = try #require(try leader.prepare(body: body(price), contentType: "application/json"))
            entries.append((prepared.cursor.seq, prepared.event))
            #expect(leader.replicate(epoch: prepared.cursor.epoch, seq: prepared.cursor.seq, body: prepared.body, contentType: "application/json",
                                     entries: [(prepared.cursor.seq, prepared.event)]) != .current)
        }
        return (leader, entries)
    }

    @Test func aPreparedChangeChangesNothingUntilItIsReplicated() throws {
        let (hub, collector) = try makeHub(publishEndpoints)
        let topic = try hub.topic(named: "/live/a", endpoint: 0)
        _ = topic.subscribe(loop: 0, since: nil)
        let first = try #require(try topic.prepare(body: body(1), contentType: "application/json"))
        #expect(first.base.seq == 0 && first.cursor.seq == 1 && first.cursor.epoch == topic.epoch)
        #expect(String(decoding: first.event, as: UTF8.self).hasPrefix(#"{"type":"snapshot""#))
        #expect(topic.cursor == nil && collector.changes.isEmpty)
        #expect(topic.replicate(epoch: topic.epoch, seq: 1, body: first.body, contentType: "application/json", entries: [(1, first.event)]) == .reset)
        let second = try #require(try topic.prepare(body: body(2), contentType: "application/json"))
        #expect(String(decoding: second.event, as: UTF8.self).hasPrefix(#"{"type":"patch""#))
        #expect(second.base == Cursor(epoch: topic.epoch, seq: 1))
        #expect(try topic.prepare(body: body(1), contentType: "application/json") == nil)   // identical: no change
        #expect(try topic.prepare(body: body(1, generatedAt: 9), contentType: "application/json") == nil)   // only an ignored field
        // A new epoch (the shared history vanished) starts with a snapshot at seq 1.
        let fresh = try #require(try topic.prepare(body: body(2), contentType: "application/json", newEpoch: "fresh001"))
        #expect(fresh.cursor == Cursor(epoch: "fresh001", seq: 1) && fresh.base.seq == 0)
    }

    @Test func entriesThatFollowAreDeliveredInOrderAndJournaled() throws {
        let (hub, _) = try makeHub(publishEndpoints)
        let (leader, entries) = try history(hub, states: 4)
        // A follower on another "node" (another hub) meets the topic at seq 2, then gets 3 and 4.
        let (other, collector) = try makeHub(publishEndpoints)
        let follower = try other.topic(named: "/live/a", endpoint: 0)
        _ = follower.subscribe(loop: 1, since: nil)
        #expect(follower.replicate(epoch: leader.epoch, seq: 2, body: body(2), contentType: "application/json", entries: Array(entries[0...1])) == .reset)
        #expect(follower.replicate(epoch: leader.epoch, seq: 4, body: body(4), contentType: "application/json", entries: Array(entries[2...3])) == .applied(2))
        let delivered = collector.changes
        #expect(delivered.map(\.kind) == [.snapshot, .patch, .patch])
        #expect(delivered.map { $0.cursor?.seq } == [2, 3, 4])
        #expect(delivered.last?.event == entries[3].event)   // the leader's bytes, as they were committed
        // The journal serves a resume from seq 1 (it loaded the shared journal when it met the topic).
        #expect(follower.changes(since: Cursor(epoch: leader.epoch, seq: 1))?.map { $0.cursor?.seq } == [2, 3, 4])
        #expect(follower.replicate(epoch: leader.epoch, seq: 4, body: nil, contentType: "application/json", entries: []) == .current)
        #expect(follower.current()?.body == body(4))
    }

    @Test func aGapPastTheEntriesOrANewEpochJumpsWithOneSnapshot() throws {
        let (hub, _) = try makeHub(publishEndpoints)
        let (leader, entries) = try history(hub, states: 5)
        let (other, collector) = try makeHub(publishEndpoints)
        let follower = try other.topic(named: "/live/a", endpoint: 0)
        _ = follower.subscribe(loop: 0, since: nil)
        _ = follower.replicate(epoch: leader.epoch, seq: 1, body: body(1), contentType: "application/json", entries: [entries[0]])
        // Entries 2 and 3 were trimmed from the shared journal: only 4 and 5 come.
        #expect(follower.replicate(epoch: leader.epoch, seq: 5, body: body(5), contentType: "application/json", entries: Array(entries[3...4])) == .reset)
        #expect(collector.changes.map(\.kind) == [.snapshot, .snapshot])
        #expect(collector.changes.last?.cursor == Cursor(epoch: leader.epoch, seq: 5))
        // A cursor before the gap gets a snapshot; one the loaded entries cover gets patches.
        #expect(follower.changes(since: Cursor(epoch: leader.epoch, seq: 2))?.map(\.kind) == [.snapshot])
        #expect(follower.changes(since: Cursor(epoch: leader.epoch, seq: 3))?.map(\.kind) == [.patch, .patch])
        // A new epoch: a snapshot, and the epoch is the cluster's from now on.
        #expect(follower.replicate(epoch: "epoch002", seq: 1, body: body(9), contentType: "application/json", entries: []) == .reset)
        #expect(follower.epoch == "epoch002" && follower.cursor == Cursor(epoch: "epoch002", seq: 1))
        // The same epoch with a lower seq (an old Redis snapshot): nothing applied; the caller rotates.
        #expect(follower.replicate(epoch: "epoch002", seq: 0, body: body(1), contentType: "application/json", entries: []) == .wentBackwards)
        #expect(follower.cursor == Cursor(epoch: "epoch002", seq: 1))
    }

    @Test func subscribersAreToldOnceWhenTheClusterIsUnavailableAndNewOnesOnSubscribing() throws {
        let (hub, collector) = try makeHub(publishEndpoints)
        let topic = try hub.topic(named: "/live/a", endpoint: 0)
        _ = topic.subscribe(loop: 0, since: nil)
        topic.setClusterAvailable(false)
        topic.setClusterAvailable(false)
        #expect(collector.changes.map { String(decoding: $0.event, as: UTF8.self) } == [#"{"type":"status","topic":"/live/a","cluster":"unavailable"}"#])
        let backlog = topic.subscribe(loop: 1, since: nil).backlog
        #expect(backlog.map { String(decoding: $0.event, as: UTF8.self) } == [#"{"type":"status","topic":"/live/a","cluster":"unavailable"}"#])
        topic.setClusterAvailable(true)
        #expect(collector.changes.last.map { String(decoding: $0.event, as: UTF8.self) } == #"{"type":"status","topic":"/live/a","cluster":"ok"}"#)
        #expect(topic.subscribe(loop: 1, since: nil).backlog.isEmpty)
    }
}

/// Path parameters that an upstream decoding before routing would read as structure.
@Suite struct SmuggledParameterTests {
    @Test func encodedStructureIsNamedAndPlainEscapesPass() throws {
        let matcher = EndpointMatcher(endpoints: try Configuration.load(text: "endpoints:\n  - path: /a/{id}\n    source: publish\n", file: "m.yaml", environment: [:]).endpoints)
        #expect(matcher.match("/a/..%2Fadmin") == .unsafeParameter(name: "id", reason: "an encoded slash (%2F)"))
        #expect(matcher.match("/a/%5c") == .unsafeParameter(name: "id", reason: "an encoded backslash (%5C)"))
        #expect(matcher.match("/a/x%7F") == .unsafeParameter(name: "id", reason: "an encoded NUL or control byte"))
        #expect(matcher.match("/a/%252E%252e") == .unsafeParameter(name: "id", reason: "a dot segment encoded twice (%252E)"))
        #expect(matcher.match("/a/%255c") == .unsafeParameter(name: "id", reason: "a backslash encoded twice (%255C)"))
        // FuzzQuery found a bare backslash forwarded as it came.
        #expect(matcher.match("/a/x\\..\\admin") == .unsafeParameter(name: "id", reason: "a backslash"))
        // And a raw NUL or CR LF, which a topic named in `?topic=` or a subscribe message
        // carries already decoded.
        #expect(matcher.match("/a/x\u{0}y") == .unsafeParameter(name: "id", reason: "a NUL or control byte"))
        #expect(matcher.match("/a/x\r\nHost: y") == .unsafeParameter(name: "id", reason: "a NUL or control byte"))
        // Ordinary escapes (a space, UTF-8, a percent sign itself) are values, not structure.
        for value in ["caf%C3%A9", "a%20b", "100%25", "%2541"] {
            guard case .matched = matcher.match("/a/\(value)") else { Issue.record("\(value) refused"); continue }
        }
        // A single-encoded dot segment was already refused as a value that walks the path.
        #expect(matcher.match("/a/%2e%2E") == .badParameter(name: "id", pattern: "[^/]+"))
    }

    /// A slash followed by a combining mark is one Swift Character but a slash to the upstream:
    /// it separates segments, so it cannot carry structure inside a parameter.
    @Test func aSlashWithACombiningMarkStillSeparatesSegments() throws {
        let matcher = EndpointMatcher(endpoints: try Configuration.load(text: "endpoints:\n  - path: /a/{id}\n    source: publish\n  - path: /a/{id}/b\n    source: publish\n", file: "m.yaml", environment: [:]).endpoints)
        #expect(matcher.match("/a/x/\u{301}") == .noMatch)
        guard case .matched(let index, let topic, let parameters) = matcher.match("/a/x\u{301}/b") else { Issue.record("no match"); return }
        #expect(index == 1 && topic == "/a/x\u{301}/b" && parameters == ["id": "x\u{301}"])
        // Literal segments still compare as strings (canonically equivalent spellings match).
        let literal = EndpointMatcher(endpoints: try Configuration.load(text: "endpoints:\n  - path: /caf\u{E9}/{id}\n    source: publish\n", file: "m.yaml", environment: [:]).endpoints)
        guard case .matched = literal.match("/cafe\u{301}/1") else { Issue.record("a decomposed é did not match"); return }
    }
}

/// Cluster mode's Redis as a script: it records what the topic asks and answers when the test
/// says so, so the gate's order of events is explicit.
final class ScriptedReplication: TopicReplication, @unchecked Sendable {
    private let lock = Locked<(catchUps: [@Sendable () -> Void], commits: [(parsed: Bool, body: [UInt8])], problems: [UpstreamProblem?])>(([], [], []))
    var catchUpsAsked: Int { lock.withLock { $0.catchUps.count } }
    var commits: [(parsed: Bool, body: [UInt8])] { lock.withLock { $0.commits } }

    func update(_ topic: Topic, parsed: JSONDocument?, body: [UInt8], contentType: String,
                completion: @escaping @Sendable (Result<Topic.UpdateOutcome, Topic.UpdateError>) -> Void) {
        lock.withLock { $0.commits.append((parsed != nil, body)) }
    }
    func mayPoll(_ topic: Topic) -> Bool { true }
    var liveNodeCount: Int { 1 }
    func upstreamChanged(_ topic: Topic, problem: UpstreamProblem?) {
        lock.withLock { $0.problems.append(problem) }
    }
    var problems: [UpstreamProblem?] { lock.withLock { $0.problems } }
    func catchUp(_ topic: Topic, completion: @escaping @Sendable () -> Void) {
        lock.withLock { $0.catchUps.append(completion) }
    }
    /// Answers the `index`th catch-up asked for.
    func answer(_ index: Int) {
        let completion = lock.withLock { $0.catchUps[index] }
        completion()
    }
}

/// Counts resumptions from any thread.
final class Resumptions: Sendable {
    let count = Atomic<Int>(0)
    func resume() { count.add(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}

/// The gate in front of a topic in cluster mode: readers wait for the shared state without
/// anyone blocking, and a cursor newer than the node's waits for a read made after it asked.
@Suite struct TopicCatchUpTests {
    func clusterHub() throws -> (Hub, ScriptedReplication) {
        let replication = ScriptedReplication()
        let configuration = try Configuration.load(text: publishEndpoints, file: "hub.yaml", environment: [:])
        return (Hub(configuration: configuration, loopCount: 1, deliver: { _, _ in }, replication: replication), replication)
    }

    @Test func readersOfALoadingTopicShareItsFirstReadAndGoOnWhenItEnds() throws {
        let (hub, replication) = try clusterHub()
        let topic = try hub.topic(named: "/live/a", endpoint: 0)
        #expect(topic.needsCatchUp(since: nil))
        let resumed = Resumptions()
        topic.catchUp(since: nil) { resumed.resume() }
        topic.catchUp(since: nil) { resumed.resume() }
        #expect(replication.catchUpsAsked == 1 && resumed.value == 0)
        replication.answer(0)
        #expect(resumed.value == 2)
        #expect(!topic.needsCatchUp(since: nil))
        #expect(replication.catchUpsAsked == 1)
    }

    @Test func aCursorNewerThanTheNodeWaitsForAReadMadeAfterItAsked() throws {
        let (hub, replication) = try clusterHub()
        let topic = try hub.topic(named: "/live/a", endpoint: 0)
        topic.catchUp(since: nil) {}
        replication.answer(0)
        #expect(topic.replicate(epoch: "epoch001", seq: 3, body: body(3), contentType: "application/json", entries: []) == .reset)
        let ahead = Cursor(epoch: "epoch001", seq: 5)
        #expect(topic.needsCatchUp(since: ahead))
        #expect(!topic.needsCatchUp(since: Cursor(epoch: "epoch001", seq: 3)))
        #expect(!topic.needsCatchUp(since: Cursor(epoch: "other001", seq: 9)))   // another history: a snapshot, no wait
        let first = Resumptions(), second = Resumptions()
        topic.catchUp(since: ahead) { first.resume() }        // starts a read
        topic.catchUp(since: ahead) { second.resume() }       // one is in flight: waits for the next
        #expect(replication.catchUpsAsked == 2)
        replication.answer(1)
        #expect(first.value == 1 && second.value == 0)
        #expect(replication.catchUpsAsked == 3)               // the next read started by itself
        replication.answer(2)
        #expect(second.value == 1)
    }

    @Test func pastTheWaitersLimitAReaderIsServedAtOnce() throws {
        let (hub, replication) = try clusterHub()
        let topic = try hub.topic(named: "/live/a", endpoint: 0)
        let resumed = Resumptions()
        for _ in 0..<Topic.maximumCatchUpWaiters { topic.catchUp(since: nil) { resumed.resume() } }
        #expect(resumed.value == 0)
        topic.catchUp(since: nil) { resumed.resume() }
        #expect(resumed.value == 1)                           // not queued: served what the node holds
        replication.answer(0)
        #expect(resumed.value == Topic.maximumCatchUpWaiters + 1)
    }

    @Test func theOwnersUpstreamProblemsGoToTheClusterAndOthersAreOnlyApplied() throws {
        let (hub, replication) = try clusterHub()
        let topic = try hub.topic(named: "/live/a", endpoint: 0)
        let failing = UpstreamProblem(kind: .status, http: 503, message: "upstream answered 503")
        topic.upstreamFailed(failing)
        topic.upstreamFailed(UpstreamProblem(kind: .timeout, http: nil, message: "still failing"))   // no news for subscribers
        topic.upstreamRecovered()
        topic.upstreamRecovered()                                                                  // nothing to recover from
        #expect(replication.problems == [failing, nil])
        // What another node found is applied here and never sent back.
        topic.replicateProblem(failing)
        #expect(topic.upstreamProblem == failing)
        topic.replicateProblem(nil)
        #expect(topic.upstreamProblem == nil)
        #expect(replication.problems == [failing, nil])
    }

    @Test func aChangeIsParsedHereAndCommittedThereNeverAppliedDirectly() throws {
        let (hub, replication) = try clusterHub()
        let topic = try hub.topic(named: "/live/a", endpoint: 0)
        guard case .finished(.failure(.invalidJSON)) = topic.update(body: Array("{not json".utf8), contentType: "application/json", whenCommitted: { _ in }) else {
            Issue.record("a body that is not JSON must be refused before any commit")
            return
        }
        guard case .committing = topic.update(body: body(1), contentType: "application/json", whenCommitted: { _ in }) else {
            Issue.record("a JSON body must go to the cluster")
            return
        }
        #expect(replication.commits.map(\.parsed) == [true])
        #expect(replication.commits.first?.body == body(1))
        #expect(topic.cursor == nil)                          // nothing applied until the shared history says so
        #expect(throws: Topic.UpdateError.self) { try topic.update(body: body(2), contentType: "application/json") }
    }
}

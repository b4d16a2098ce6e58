import DeltacastConfig
import DeltacastJSON
import DeltacastWire
import Testing
@testable import DeltacastHub

/// A topic's versioned state alone: what a new body makes of it (nothing, a patch, a merge
/// patch or a snapshot), how its seq moves, and what a reader holding a cursor is owed.
@Suite struct VersionedStateTests {
    func endpoint(_ settings: String) throws -> Configuration.Endpoint {
        try Configuration.load(text: "endpoints:\n  - { path: /t, source: publish\(settings) }\n", file: "v.yaml", environment: [:]).endpoints[0]
    }

    func document(_ text: String) throws -> JSONDocument { try JSONDocument(parsing: Array(text.utf8)) }

    /// A state at seq 1 holding `text`.
    func state(_ text: String) throws -> VersionedState {
        var state = VersionedState(epoch: "abcd1234")
        _ = state.advance(document: try document(text), body: Array(text.utf8), contentType: "application/json")
        return state
    }

    func diff(_ from: String, _ to: String, _ settings: String = "") throws -> VersionedState.Diffed {
        let endpoint = try endpoint(settings)
        return try state(from).diff(to: document(to), body: Array(to.utf8), endpoint: endpoint, options: Topic.diffOptions(endpoint))
    }

    @Test func aNewBodyIsAPatchAMergePatchOrASnapshot() throws {
        let old = #"{"price":1,"name":"a long enough name to make the patch smaller"}"#
        let new = #"{"price":2,"name":"a long enough name to make the patch smaller"}"#
        #expect(try diff(old, new) == .patch(Array(#"[{"op":"replace","path":"/price","value":2}]"#.utf8), merge: false))
        #expect(try diff(old, new, ", diff: merge-patch") == .patch(Array(#"{"price":2}"#.utf8), merge: true))
        #expect(try diff(old, new, ", diff: snapshot") == .snapshot)
        // A patch no smaller than the body goes as the body.
        #expect(try diff(#"{"a":1}"#, #"{"b":2}"#) == .snapshot)
        // Only an ignored field changed: nothing a client sees.
        #expect(try diff(#"{"a":1,"at":5}"#, #"{"a":1,"at":6}"#, ", ignore: [/at]") == .unchanged)
        #expect(try diff(#"{"a":1,"at":5}"#, #"{"a":1,"at":6}"#, ", diff: snapshot, ignore: [/at]") == .unchanged)
        // No state yet, or a body that is not JSON: whole.
        let endpoint = try endpoint("")
        #expect(VersionedState(epoch: "abcd1234").diff(to: try document("{}"), body: Array("{}".utf8), endpoint: endpoint, options: Topic.diffOptions(endpoint)) == .snapshot)
        #expect(try state("{}").diff(to: nil, body: Array("text".utf8), endpoint: endpoint, options: Topic.diffOptions(endpoint)) == .snapshot)
    }

    @Test func advancingMovesTheSeqAndDropsWhatWasPreparedForTheOldState() throws {
        var state = try state(#"{"a":1}"#)
        #expect(state.cursor == Cursor(epoch: "abcd1234", seq: 1))
        #expect(state.holds(Array(#"{"a":1}"#.utf8), contentType: "application/json"))
        #expect(!state.holds(Array(#"{"a":1}"#.utf8), contentType: "text/plain"))
        state.currentDigest = "old"
        let (base, cursor) = state.advance(document: try document(#"{"a":2}"#), body: Array(#"{"a":2}"#.utf8), contentType: "application/json")
        #expect(base.seq == 1 && cursor.seq == 2 && state.currentDigest == nil && state.body == Array(#"{"a":2}"#.utf8))
        state.jump(epoch: "zzzz9999", seq: 40, document: nil, body: Array("x".utf8), contentType: "text/plain")
        #expect(state.cursor == Cursor(epoch: "zzzz9999", seq: 40) && state.journal.count == 0 && state.document == nil)
    }

    @Test func aReaderIsOwedNothingItsMissedChangesOrASnapshot() throws {
        var state = VersionedState(epoch: "abcd1234")
        guard case .upToDate = state.resume(since: nil) else { Issue.record("a state before the first"); return }
        for seq in 1...5 {
            let (base, cursor) = state.advance(document: nil, body: Array("\(seq)".utf8), contentType: "text/plain")
            state.journal.append(Change(topic: "/t", kind: .patch, cursor: cursor, base: base, event: [UInt8](repeating: 0x20, count: 10), deflater: nil),
                                 maxEntries: 3, maxBytes: 1_000)
        }
        func owed(_ since: Cursor?) -> String {
            switch state.resume(since: since) {
            case .upToDate: "nothing"
            case .missed(let changes): changes.map { "\($0.cursor!.seq)" }.joined(separator: ",")
            case .snapshot: "snapshot"
            }
        }
        #expect(owed(Cursor(epoch: "abcd1234", seq: 5)) == "nothing")
        #expect(owed(Cursor(epoch: "abcd1234", seq: 3)) == "4,5")
        #expect(owed(Cursor(epoch: "abcd1234", seq: 1)) == "snapshot")   // 2 left the journal
        #expect(owed(Cursor(epoch: "abcd1234", seq: 9)) == "snapshot")   // ahead of this state
        #expect(owed(Cursor(epoch: "other123", seq: 4)) == "snapshot")
        #expect(owed(nil) == "snapshot")
    }

    @Test func aPreparedChangeIsTheNextSeqsEventAndChangesNothing() throws {
        let state = try state(#"{"a":1}"#)
        let patch = try #require(state.prepared(.patch(Array(#"[{"op":"replace","path":"/a","value":2}]"#.utf8), merge: false), topic: "/t",
                                                json: true, body: Array(#"{"a":2}"#.utf8), contentType: "application/json", digest: nil))
        #expect(patch.base == Cursor(epoch: "abcd1234", seq: 1) && patch.cursor == Cursor(epoch: "abcd1234", seq: 2))
        let event = String(decoding: patch.event, as: UTF8.self)
        #expect(event.hasPrefix(#"{"type":"patch","topic":"/t","cursor":"abcd1234-2","base":"abcd1234-1""#) && event.contains(#""patch":[{"op":"replace""#))
        let snapshot = try #require(state.prepared(.snapshot, topic: "/t", json: false, body: Array("plain".utf8), contentType: "text/plain", digest: "d1"))
        let whole = String(decoding: snapshot.event, as: UTF8.self)
        #expect(whole.contains(#""data":"plain""#) && whole.contains(#""digest":"d1""#) && snapshot.contentType == "text/plain")
        #expect(state.prepared(.unchanged, topic: "/t", json: true, body: [], contentType: "application/json", digest: nil) == nil)
        #expect(state.seq == 1 && state.body == Array(#"{"a":1}"#.utf8))
    }
}

import DeltacastClient
import DeltacastConfig
import DeltacastJSON
import DeltacastLoop
import DeltacastTestSupport
import DeltacastWire
import Foundation
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import DeltacastServer

let pushConfig = """
    upstream: { base: http://127.0.0.1:9, timeout: 300ms }
    endpoints:
      - path: /live/{room}
        source: publish
        array_keys: { /items: id }
      - path: /snap/{room}
        source: publish
        diff: snapshot
      - path: /api/prices
    admin: { token: \(adminToken) }
    cors: { origins: [https://dash.example] }
    limits: { max_topics_per_connection: 3, journal_entries: 4, max_message: 256KiB }

    """

/// `{"items":[{"id":1,"p":P1},{"id":2,"p":P2}],"note":...}`: big enough that a one-price patch
/// is smaller than the document (else the proxy rightly sends a snapshot).
func document(_ p1: Int, _ p2: Int = 20) -> String {
    #"{"items":[{"id":1,"p":\#(p1)},{"id":2,"p":\#(p2)}],"note":"a document long enough that one changed price is cheaper as a patch"}"#
}

/// Applies a patch event to `state` (the client library's job, done here with DeltacastJSON).
func apply(_ event: JSONObject, to state: JSONValue) throws -> JSONValue {
    let operations = try JSONPatch.operations(from: event["patch"]!)
    return try JSONPatch.apply(operations, to: state)
}

/// Waits until the server holds `count` long-polls (its `/metrics` gauge says so), so a test
/// knows a request is held before it changes anything.
func awaitHeldLongPolls(_ port: Int, _ count: Int) throws -> Bool {
    try eventually(10) {
        let metrics = try httpRequest(port: port, "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n").body
        return metrics.contains("deltacast_connections{mode=\"longpoll\"} \(count)\n")
    }
}

@Suite(.serialized) struct TransportTests {
    @Test func publishNeedsTheAdminTokenAndValidJSONAndKeepsStateOnRefusal() throws {
        try withServer(pushConfig) { port in
            #expect(try publish(port: port, "/live/a", document(1), token: nil).status == 401)
            let wrong = try publish(port: port, "/live/a", document(1), token: "wrong-token-wrong-token")
            #expect(wrong.status == 403 && wrong.body.contains("wrong admin token"))
            let first = try publish(port: port, "/live/a", document(1))
            #expect(first.status == 200 && first.body.contains(#""changed":true"#))
            let broken = try publish(port: port, "/live/a", #"{"items":["#)
            #expect(broken.status == 400)
            #expect(broken.body.contains("body is not valid JSON: line 1, column 11"))
            #expect(broken.body.contains("the state of /live/a is unchanged"))
            #expect(try httpRequest(port: port, "GET /live/a HTTP/1.1\r\nHost: a\r\n\r\n").body == document(1))
            let same = try publish(port: port, "/live/a", document(1))
            #expect(same.body.contains(#""changed":false"#))
            let polled = try publish(port: port, "/api/prices", document(1))
            #expect(polled.status == 409 && polled.body.contains("source: poll"))
            #expect(try publish(port: port, "/nowhere", "{}").status == 404)
            #expect(try httpRequest(port: port, "GET /live/empty HTTP/1.1\r\nHost: a\r\n\r\n").body.contains("nothing has been published to /live/empty yet"))
        }
    }

    @Test func plainGetIsCachedWithETagAnd304() throws {
        try withServer(pushConfig) { port in
            try publish(port: port, "/live/a", document(1))
            let first = try httpRequest(port: port, "GET /live/a HTTP/1.1\r\nHost: a\r\n\r\n")
            #expect(first.status == 200 && first.body == document(1))
            #expect(first.head.contains("Cache-Control: no-cache") && first.head.contains("Content-Type: application/json"))
            let etag = try #require(first.head.split(separator: "\r\n").first { $0.hasPrefix("ETag: ") }?.dropFirst(6))
            let again = try httpRequest(port: port, "GET /live/a HTTP/1.1\r\nHost: a\r\nIf-None-Match: \(etag)\r\n\r\n")
            #expect(again.status == 304 && again.body.isEmpty)
            try publish(port: port, "/live/a", document(2))
            let changed = try httpRequest(port: port, "GET /live/a HTTP/1.1\r\nHost: a\r\nIf-None-Match: \(etag)\r\n\r\n")
            #expect(changed.status == 200 && changed.body == document(2))
        }
    }

    /// A legacy poller adds `Prefer: wait=N`: held until the data changes, else 304.
    @Test func preferWaitHoldsALegacyPollUntilTheChange() throws {
        try withServer(pushConfig) { port in
            try publish(port: port, "/live/a", document(1))
            let etag = try #require(try httpRequest(port: port, "GET /live/a HTTP/1.1\r\nHost: a\r\n\r\n").head.split(separator: "\r\n").first { $0.hasPrefix("ETag: ") }?.dropFirst(6))
            let held = try RawClient(port: port)
            held.send("GET /live/a HTTP/1.1\r\nHost: a\r\nIf-None-Match: \(etag)\r\nPrefer: wait=10\r\n\r\n")
            #expect(try awaitHeldLongPolls(port, 1), "the legacy poll is held before the change")
            try publish(port: port, "/live/a", document(5))
            let answer = held.read(responses: 1).texts.first ?? ""
            #expect(answer.hasPrefix("HTTP/1.1 200") && answer.hasSuffix(document(5)))
            #expect(!answer.contains("ETag: \(etag)"))
            // Nothing changes within the wait: 304, and the connection serves the next request.
            let newTag = try #require(answer.split(separator: "\r\n").first { $0.hasPrefix("ETag: ") }?.dropFirst(6))
            held.send("GET /live/a HTTP/1.1\r\nHost: a\r\nIf-None-Match: \(newTag)\r\nPrefer: wait=1\r\n\r\nGET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
            let (texts, _) = held.read(responses: 2)
            #expect(texts.map { String($0.prefix(12)) } == ["HTTP/1.1 304", "HTTP/1.1 200"])
        }
    }

    @Test func webSocketSubscriptionStartsWithASnapshotThenPatchesThatApply() throws {
        try withServer(pushConfig) { port in
            try publish(port: port, "/live/a", document(1))
            let client = try WebSocketClient(port: port, path: "/deltacast/ws")
            #expect(client.accepted && client.handshake.contains("Sec-WebSocket-Protocol: deltacast.v1"))
            client.sendText(#"{"type":"subscribe","topic":"/live/a"}"#)
            let snapshot = try #require(client.nextJSON())
            #expect(snapshot.string("type") == "snapshot" && snapshot.string("topic") == "/live/a")
            var state = try #require(snapshot["data"])
            var cursor = try #require(snapshot.string("cursor"))
            for price in 2...4 {
                try publish(port: port, "/live/a", document(price))
                let patch = try #require(client.nextJSON())
                #expect(patch.string("type") == "patch" && patch.string("base") == cursor)
                state = try apply(patch, to: state)
                cursor = try #require(patch.string("cursor"))
            }
            #expect(state == (try JSONParser.parse(document(4))))
            #expect(Cursor(cursor)?.seq == 4)
        }
    }

    @Test func badClientMessagesGetErrorEventsAndTheConnectionCarriesOn() throws {
        try withServer(pushConfig) { port in
            try publish(port: port, "/live/a", document(1))
            let client = try WebSocketClient(port: port, path: "/deltacast/ws")
            let cases: [(String, String, String)] = [
                ("{oops", "bad_request", "message is not valid JSON"),
                (#"{"type":"dance"}"#, "bad_request", "unknown message type \"dance\""),
                (#"{"type":"subscribe","topic":"/nowhere"}"#, "not_found", "no endpoint is configured at /nowhere"),
            ]
            for (message, code, text) in cases {
                client.sendText(message)
                let error = try #require(client.nextJSON())
                #expect(error.string("type") == "error" && error.string("code") == code)
                #expect(error.string("message")?.contains(text) == true, "\(error)")
            }
            client.send(.binary, [1, 2])
            #expect(client.nextJSON()?.string("code") == "bad_request")
            // limits.max_topics_per_connection is 3.
            for room in ["a", "b", "c"] { client.sendText(#"{"type":"subscribe","topic":"/live/\#(room)"}"#) }
            #expect(client.nextJSON()?.string("type") == "snapshot")  // only /live/a has state
            client.sendText(#"{"type":"subscribe","topic":"/live/d"}"#)
            let tooMany = try #require(client.nextJSON())
            #expect(tooMany.string("code") == "too_many" && tooMany.string("topic") == "/live/d")
            try publish(port: port, "/live/b", document(7))
            let snapshot = try #require(client.nextJSON())
            #expect(snapshot.string("topic") == "/live/b" && snapshot.string("type") == "snapshot")
        }
    }

    /// DESIGN.md "Topics": a resume the journal covers gets exactly the missed patches; one
    /// from another epoch or older than the journal gets one snapshot.
    @Test func resumeGetsExactlyTheMissedPatchesOrOneSnapshot() throws {
        try withServer(pushConfig) { port in
            var cursors: [String] = []
            for price in 1...4 {
                let body = try publish(port: port, "/live/r", document(price)).body
                cursors.append(String(body.split(separator: "\"").first { Cursor($0) != nil } ?? ""))
            }
            let client = try WebSocketClient(port: port, path: "/deltacast/ws")
            client.sendText(#"{"type":"subscribe","topic":"/live/r","since":"\#(cursors[1])"}"#)
            let first = try #require(client.nextJSON()), second = try #require(client.nextJSON())
            #expect([first.string("type"), second.string("type")] == ["patch", "patch"])
            #expect([first.string("base"), first.string("cursor"), second.string("cursor")] == [cursors[1], cursors[2], cursors[3]])

            let epoch = cursors[0].split(separator: "-")[0]
            let stranger = try WebSocketClient(port: port, path: "/deltacast/ws")
            stranger.sendText(#"{"type":"subscribe","topic":"/live/r","since":"zzzz\#(epoch.prefix(4))-2"}"#)
            let snapshot = try #require(stranger.nextJSON())
            #expect(snapshot.string("type") == "snapshot" && snapshot.string("cursor") == cursors[3])

            // journal_entries is 4: after 8 changes, the first cursor is out of reach.
            for price in 5...8 { try publish(port: port, "/live/r", document(price)) }
            let late = try WebSocketClient(port: port, path: "/deltacast/ws")
            late.sendText(#"{"type":"subscribe","topic":"/live/r","since":"\#(cursors[0])"}"#)
            let resync = try #require(late.nextJSON())
            #expect(resync.string("type") == "snapshot" && Cursor(resync.string("cursor") ?? "")?.seq == 8)
            // Up to date: nothing is sent until the next change, which is a patch from it.
            let current = try #require(resync.string("cursor"))
            let upToDate = try WebSocketClient(port: port, path: "/deltacast/ws")
            upToDate.sendText(#"{"type":"subscribe","topic":"/live/r","since":"\#(current)"}"#)
            try publish(port: port, "/live/r", document(9))
            let next = try #require(upToDate.nextJSON())
            #expect(next.string("type") == "patch" && next.string("base") == current)
        }
    }

    @Test func sseOnTheMirroredPathResumesFromLastEventID() throws {
        try withServer(pushConfig) { port in
            try publish(port: port, "/live/s", document(1))
            let stream = try EventStreamClient(port: port, path: "/live/s")
            #expect(stream.head.hasPrefix("HTTP/1.1 200"))
            for header in ["Content-Type: text/event-stream", "Cache-Control: no-cache", "X-Accel-Buffering: no"] {
                #expect(stream.head.contains(header), "\(header)")
            }
            #expect(stream.next()?.retry == "2000")
            let snapshot = try #require(stream.next())
            #expect(snapshot.event == "snapshot")
            try publish(port: port, "/live/s", document(2))
            try publish(port: port, "/live/s", document(3))
            let patches = [stream.next(), stream.next()]
            #expect(patches.map { $0?.event } == ["patch", "patch"])
            let lastID = try #require(patches[1]?.id)
            #expect(Cursor(lastID)?.seq == 3)
            // Resume from the snapshot's id: exactly the two patches again, by header and by query.
            for resume in [try EventStreamClient(port: port, path: "/live/s", headers: ["Last-Event-ID: \(snapshot.id!)"]),
                           try EventStreamClient(port: port, path: "/live/s?last_event_id=\(snapshot.id!)")] {
                _ = resume.next()  // retry
                #expect([resume.next()?.id, resume.next()?.id] == [patches[0]?.id, lastID])
            }
        }
    }

    @Test func multiplexedSSEIdListsEveryTopicsCursor() throws {
        try withServer(pushConfig) { port in
            let a = try publish(port: port, "/live/a", document(1)).body
            try publish(port: port, "/live/b", document(1))
            let cursorA = String(a.split(separator: "\"").first { Cursor($0) != nil }!)
            let stream = try EventStreamClient(port: port, path: "/deltacast/sse?topic=/live/a&topic=/live/b&topic=/nowhere&since=\(cursorA)&since=")
            var events: [(String?, JSONObject)] = []
            for _ in 0..<2 { if let event = stream.nextJSON() { events.append(event) } }
            // /live/a is up to date: nothing; /live/b: its snapshot; /nowhere: not_found.
            #expect(events.map { $0.1.string("type") } == ["snapshot", "error"])
            #expect(events[1].1.string("code") == "not_found")
            let cursorB = events[0].1.string("cursor")!
            #expect(events[0].0 == "\(cursorA),\(cursorB)")
            try publish(port: port, "/live/a", document(2))
            let patch = try #require(stream.nextJSON())
            #expect(patch.id == "\(patch.object.string("cursor")!),\(cursorB)")
        }
    }

    @Test func multiplexedLongPollAnswersAtOnceHoldsOrTimesOut() throws {
        try withServer(pushConfig) { port in
            try publish(port: port, "/live/p", document(1))
            let immediate = try httpRequest(port: port, "GET /deltacast/poll?topic=/live/p&since= HTTP/1.1\r\nHost: a\r\n\r\n")
            guard case .array(let events)? = try? JSONParser.parse(immediate.body), case .object(let snapshot)? = events.first else {
                Issue.record("not an event array: \(immediate.body)")
                return
            }
            #expect(immediate.status == 200 && snapshot.string("type") == "snapshot")
            let cursor = snapshot.string("cursor")!
            let held = try RawClient(port: port)
            held.send("GET /deltacast/poll?topic=/live/p&since=\(cursor)&wait=10 HTTP/1.1\r\nHost: a\r\n\r\n")
            #expect(try awaitHeldLongPolls(port, 1), "the poll is held before the change")
            try publish(port: port, "/live/p", document(2))
            let answer = held.read(responses: 1).texts.first ?? ""
            #expect(answer.hasPrefix("HTTP/1.1 200") && answer.contains(#""type":"patch""#) && answer.contains(#""base":"\#(cursor)""#))
            let quiet = try httpRequest(port: port, "GET /deltacast/poll?topic=/live/p&since=\(Cursor(cursor)!.epoch)-2&wait=1 HTTP/1.1\r\nHost: a\r\n\r\n")
            #expect(quiet.status == 204)
        }
    }

    @Test(arguments: [
        ("unmasked frame", WebSocketFrame.encode(.text, payload: Array("hi".utf8)), UInt16(1002)),
        ("invalid UTF-8", WebSocketFrame.encode(.text, payload: [0xC0, 0xAF], maskKey: [9, 9, 9, 9]), UInt16(1007)),
        ("message over limits.max_message", WebSocketFrame.encode(.binary, payload: [UInt8](repeating: 0, count: 300 * 1024), maskKey: [9, 9, 9, 9]), UInt16(1009)),
        ("bad close code", WebSocketFrame.encode(.close, payload: [0x03, 0xE7], maskKey: [9, 9, 9, 9]), UInt16(1002)),
        ("reserved opcode", [0x83, 0x80, 1, 2, 3, 4], UInt16(1002)),
        ("close 1000", WebSocketFrame.encode(.close, payload: [0x03, 0xE8], maskKey: [9, 9, 9, 9]), UInt16(1000)),
    ] as [(String, [UInt8], UInt16)])
    func hostileFramesGetTheirCloseCodeAndHarmNoOneElse(_ name: String, _ frame: [UInt8], _ code: UInt16) throws {
        try withServer(pushConfig) { port in
            try publish(port: port, "/live/h", document(1))
            let bystander = try WebSocketClient(port: port, path: "/deltacast/ws")
            bystander.sendText(#"{"type":"subscribe","topic":"/live/h"}"#)
            #expect(bystander.nextJSON()?.string("type") == "snapshot")
            let hostile = try WebSocketClient(port: port, path: "/deltacast/ws")
            hostile.sendRaw(frame)
            #expect(hostile.closeCode() == code, "\(name)")
            try publish(port: port, "/live/h", document(2))
            #expect(bystander.nextJSON()?.string("type") == "patch")
        }
    }

    @Test func pingFloodIsAnsweredAndBounded() throws {
        try withServer(pushConfig) { port in
            let client = try WebSocketClient(port: port, path: "/deltacast/ws")
            let ping = WebSocketFrame.encode(.ping, payload: [UInt8](repeating: 7, count: 125), maskKey: [1, 2, 3, 4])
            for _ in 0..<50 { client.sendRaw(Array(repeating: ping, count: 200).flatMap { $0 }) }  // 10,000 pings
            var pongs = 0
            while pongs < 10_000, let event = client.next() { if case .pong = event { pongs += 1 } }
            #expect(pongs == 10_000)
            client.sendText(#"{"type":"subscribe","topic":"/nowhere"}"#)
            #expect(client.nextJSON()?.string("code") == "not_found")
        }
    }

    @Test func handshakeRefusalsNameTheirReason() throws {
        try withServer(pushConfig) { port in
            let oldVersion = try httpRequest(port: port, "GET /deltacast/ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n")
            #expect(oldVersion.status == 426 && oldVersion.head.contains("Sec-WebSocket-Version: 13"))
            let evil = try WebSocketClient(port: port, path: "/deltacast/ws", headers: ["Origin: https://evil.example"])
            #expect(evil.handshake.hasPrefix("HTTP/1.1 403"))
            let listed = try WebSocketClient(port: port, path: "/deltacast/ws", headers: ["Origin: https://dash.example"])
            #expect(listed.accepted)
            let sameOrigin = try WebSocketClient(port: port, path: "/deltacast/ws", headers: ["Origin: http://127.0.0.1:\(port)"])
            #expect(sameOrigin.accepted)
        }
    }

    @Test func negotiationListsOnlyEnabledTransportsAndDisabledOnesAreRefused() throws {
        try withServer(pushConfig) { port in
            let all = try httpRequest(port: port, "GET /deltacast/negotiate HTTP/1.1\r\nHost: a\r\n\r\n")
            #expect(all.body == #"{"protocol":"deltacast.v1","transports":["websocket","sse","longpoll"],"websocket":"ws","sse":"sse","poll":"poll","heartbeat":15}"#)
        }
        try withServer(pushConfig + "transports: [longpoll]\n") { port in
            let one = try httpRequest(port: port, "GET /deltacast/negotiate HTTP/1.1\r\nHost: a\r\n\r\n")
            #expect(one.body == #"{"protocol":"deltacast.v1","transports":["longpoll"],"poll":"poll","heartbeat":15}"#)
            let sse = try httpRequest(port: port, "GET /deltacast/sse?topic=/live/a HTTP/1.1\r\nHost: a\r\n\r\n")
            #expect(sse.status == 404 && sse.body.contains("the sse transport is disabled"))
            let mirrored = try httpRequest(port: port, "GET /live/a HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n")
            #expect(mirrored.status == 406)
            let socket = try WebSocketClient(port: port, path: "/live/a")
            #expect(socket.handshake.hasPrefix("HTTP/1.1 403"))
        }
    }

    @Test func shutdownClosesWebSocketsWith1012EndsSSEAndAnswersLongPolls() throws {
        let configuration = try Configuration.load(text: "listen: 127.0.0.1:0\nserver: { event_loops: 2, shutdown_timeout: 5s }\n" + pushConfig, file: "t.yaml", environment: [:])
        let server = try HTTPServer(configuration: configuration)
        let port = try server.start()
        try publish(port: port, "/live/z", document(1))
        let socket = try WebSocketClient(port: port, path: "/live/z", subprotocol: nil)
        #expect(socket.nextJSON()?.string("type") == "snapshot")
        let stream = try EventStreamClient(port: port, path: "/live/z")
        _ = stream.next(); _ = stream.next()
        let cursor = try #require(socket.handshake.isEmpty ? nil : try httpRequest(port: port, "GET /live/z HTTP/1.1\r\nHost: a\r\n\r\n").head.split(separator: "\"").dropFirst().first)
        let poll = try RawClient(port: port)
        poll.send("GET /deltacast/poll?topic=/live/z&since=\(cursor)&wait=30 HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(try awaitHeldLongPolls(port, 1), "the poll is held before the shutdown")
        let stopped = BackgroundWork { server.shutdown() }
        #expect(socket.closeCode() == 1012)
        #expect(stream.next()?.retry == "2000")
        #expect(stream.next() == nil)
        #expect(poll.read(responses: 1).texts.first?.hasPrefix("HTTP/1.1 204") == true)
        #expect(stopped.wait(), "the shutdown completes")
    }

    /// A big document for the snapshot endpoint: each publish is delivered whole (~64 KiB).
    static func bigDocument(_ version: Int) -> String {
        #"{"version":\#(version),"blob":"\#(String(repeating: "x", count: 64 * 1024))"}"#
    }

    /// DESIGN.md invariant 3: a reader that stops reading is conflated (its pending changes
    /// dropped, one snapshot when it drains) while a reader that keeps up gets every change.
    @Test func aSlowReaderIsConflatedWhileOthersReceiveEveryChange() throws {
        try withServer(pushConfig.replacingOccurrences(of: "max_message: 256KiB", with: "max_message: 256KiB, send_buffer: 64KiB")) { port in
            try publish(port: port, "/snap/x", Self.bigDocument(0))
            let slow = try WebSocketClient(port: port, path: "/snap/x", subprotocol: nil, timeoutSeconds: 5, receiveBuffer: 4096)
            let fast = try WebSocketClient(port: port, path: "/snap/x", subprotocol: nil, timeoutSeconds: 5)
            #expect(fast.nextJSON()?.string("type") == "snapshot")
            let changes = 150
            // The fast reader takes each change before the next is published (a loaded machine
            // cannot make it fall behind); the slow one reads nothing until the end.
            var received: [Int] = []
            for version in 1...changes {
                try publish(port: port, "/snap/x", Self.bigDocument(version))
                guard let event = fast.nextJSON(), let seq = Cursor(event.string("cursor") ?? "")?.seq else { break }
                received.append(seq)
            }
            #expect(received == Array(2...(changes + 1)))  // every change, in order

            var seen: [Int] = []
            var last: JSONObject?
            while let event = slow.nextJSON() {
                seen.append(Cursor(event.string("cursor") ?? "")?.seq ?? -1)
                last = event
                if seen.last == changes + 1 { break }
            }
            #expect(seen.count < changes + 1, "the slow reader got everything: nothing was conflated")
            #expect(seen == seen.sorted())
            #expect(last?["data"] == (try JSONParser.parse(Self.bigDocument(changes))))
        }
    }

    /// A reader that never reads is closed after limits.slow_consumer_timeout without progress.
    @Test func aReaderThatNeverReadsIsClosedAfterTheSlowConsumerTimeout() throws {
        try withServer(pushConfig.replacingOccurrences(of: "max_message: 256KiB", with: "max_message: 256KiB, send_buffer: 64KiB, slow_consumer_timeout: 1s"),
                       server: ", header_timeout: 1s") { port in
            try publish(port: port, "/snap/y", Self.bigDocument(0))
            let stuck = try WebSocketClient(port: port, path: "/snap/y", subprotocol: nil, timeoutSeconds: 5, receiveBuffer: 4096)
            for version in 1...100 { try publish(port: port, "/snap/y", Self.bigDocument(version)) }
            // A deadline, not a timing: under the sanitizers' load a loop's sweep may run late.
            #expect(try eventually(30) {
                try httpRequest(port: port, "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n").body.contains("deltacast_slow_consumer_closes_total 1\n")
            }, "closed for want of progress")
            // What was already in flight arrives, then the connection ends (no timeout).
            var events = 0
            var ended = false
            while true {
                guard let event = stuck.next() else { ended = true; break }
                if case .close = event { ended = stuck.next() == nil; break }
                events += 1
            }
            #expect(ended)
            #expect(events < 101)
            #expect(try httpRequest(port: port, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n").status == 200)
        }
    }

    /// SSE streams get a comment line when quiet; a WebSocket peer that answers no ping is
    /// closed (1008) after two unanswered pings.
    @Test func heartbeatsKeepStreamsAliveAndFindDeadPeers() throws {
        try withServer(pushConfig, server: ", header_timeout: 1s, sse_heartbeat: 1s, websocket_ping: 1s") { port in
            try publish(port: port, "/live/beat", document(1))
            let stream = try RawClient(port: port)
            stream.send("GET /live/beat HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n")
            var text = ""
            var buffer = [UInt8](repeating: 0, count: 4096)
            while !text.contains(": heartbeat\n\n") {
                let n = Glibc.read(stream.fd, &buffer, buffer.count)
                guard n > 0 else { break }
                text += String(decoding: buffer[0..<n], as: UTF8.self)
            }
            #expect(text.contains("event: snapshot") && text.hasSuffix(": heartbeat\n\n"))

            // A peer that reads but never answers: raw frames, no pong.
            let silent = try Socket.connect(port: port, receiveTimeoutSeconds: 10)
            defer { close(silent) }
            let upgrade = "GET /live/beat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            _ = Array(upgrade.utf8).withUnsafeBytes { Glibc.send(silent, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            var bytes: [UInt8] = []
            while true {
                let n = Glibc.read(silent, &buffer, buffer.count)
                guard n > 0 else { break }
                bytes += buffer[0..<n]
            }
            let head = String(decoding: bytes, as: UTF8.self).components(separatedBy: "\r\n\r\n")[0]
            var decoder = WebSocketFrameDecoder(role: .client)
            decoder.append(bytes.dropFirst(head.utf8.count + 4))
            var events: [WebSocketEvent] = []
            while let event = try? decoder.next() { events.append(event) }
            #expect(events.filter { if case .ping = $0 { true } else { false } }.count == 2)
            #expect(events.last == .close(code: 1008, reason: "no pong to two pings"))

            // A peer that keeps talking is not pinged: its messages prove it alive (long
            // transfers are not interrupted by pings they would have to answer).
            let chatty = try WebSocketClient(port: port, path: "/deltacast/ws")
            for _ in 0..<10 {
                chatty.sendText(#"{"type":"unsubscribe","topic":"/live/beat"}"#)
                usleep(300_000)  // pacing the talker over 3 ping intervals, not waiting for a result
            }
            chatty.sendText(#"{"type":"subscribe","topic":"/live/beat"}"#)
            #expect(chatty.nextJSON()?.string("type") == "snapshot")
            #expect(chatty.pingsReceived == 0)
        }
    }

    /// `server.max_wait` caps what a client may ask to be held; `limits.max_topics` with every
    /// topic watched refuses a new one with 503.
    @Test func longPollWaitIsCappedAndTopicsAreBounded() throws {
        try withServer(pushConfig.replacingOccurrences(of: "journal_entries: 4", with: "journal_entries: 4, max_topics: 1"), server: ", max_wait: 1s") { port in
            try publish(port: port, "/live/one", document(1))
            let watcher = try WebSocketClient(port: port, path: "/live/one", subprotocol: nil)
            #expect(watcher.nextJSON()?.string("type") == "snapshot")
            let cursor = try #require(try httpRequest(port: port, "GET /live/one HTTP/1.1\r\nHost: a\r\n\r\n").head.split(separator: "\"").dropFirst().first)
            // Asks for 30 s; the client gives up reading after 10 s; the cap answers after 1 s.
            let held = try RawClient(port: port)
            held.send("GET /deltacast/poll?topic=/live/one&since=\(cursor)&wait=30 HTTP/1.1\r\nHost: a\r\n\r\n")
            #expect(held.read(responses: 1).texts.first?.hasPrefix("HTTP/1.1 204") == true)
            let refused = try publish(port: port, "/live/two", document(1))
            #expect(refused.status == 503 && refused.body.contains("limits.max_topics"))
        }
    }
}

extension ManyConnectionsTests {
    /// 10,000 concurrent subscribers of one topic (5,000 WebSocket, 5,000 SSE) on a
    /// `deltacast serve` process all receive the snapshot and every change, in order.
    @Test func tenThousandSubscribersOfOneTopicAllReceiveEveryChange() throws {
        let (process, port) = try startServeProcess(manyConnectionsConfig)
        defer { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        try publish(port: port, "/live/all", document(0))
        var sockets: [WebSocketClient] = []
        var streams: [EventStreamClient] = []
        for _ in 0..<5_000 {
            let socket = try WebSocketClient(port: port, path: "/live/all", subprotocol: nil, timeoutSeconds: 20)
            if socket.accepted { sockets.append(socket) }
            streams.append(try EventStreamClient(port: port, path: "/live/all", timeoutSeconds: 20))
        }
        #expect(sockets.count == 5_000)
        #expect(streams.allSatisfy { $0.head.hasPrefix("HTTP/1.1 200") })
        for price in 1...3 { try publish(port: port, "/live/all", document(price)) }
        var complete = 0
        for socket in sockets {
            let seqs = (0..<4).compactMap { _ in socket.nextJSON().flatMap { Cursor($0.string("cursor") ?? "")?.seq } }
            if seqs == [1, 2, 3, 4] { complete += 1 }
        }
        for stream in streams {
            let seqs = (0..<4).compactMap { _ in stream.nextJSON().flatMap { Cursor($0.object.string("cursor") ?? "")?.seq } }
            if seqs == [1, 2, 3, 4] { complete += 1 }
        }
        #expect(complete == 10_000)
    }
}

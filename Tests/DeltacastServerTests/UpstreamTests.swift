import DeltacastBase
import DeltacastLoop
import DeltacastClient
import DeltacastJSON
import DeltacastTestSupport
import DeltacastWire
import Foundation
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The simulated legacy API (`deltacast simulate`) as a process, driven through its control
/// routes: the real upstream of these tests.
final class SimulatorProcess: @unchecked Sendable {
    let process: Process
    let port: Int

    init(port requested: Int = 0) throws {
        (process, port) = try startDeltacast(["simulate", "--listen", "127.0.0.1:\(requested)"])
        try control("POST", "/_sim/freeze")
    }

    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    deinit { stop() }

    @discardableResult
    func control(_ method: String, _ target: String, body: String = "", contentType: String = "application/json") throws -> String {
        let response = try httpRequest(port: port, "\(method) \(target) HTTP/1.1\r\nHost: sim\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        guard response.status == 200 else {
            throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: "simulator \(method) \(target): \(response.status) \(response.body)"])
        }
        return response.body
    }

    /// Serves `body` at `path` (with a new ETag); with `token`, only to `Bearer token`.
    func put(_ path: String, _ body: String, token: String? = nil) throws {
        try control("PUT", "/_sim/docs\(path)" + (token.map { "?token=\($0)" } ?? ""), body: body)
    }

    /// Upstream GETs of `path` so far (304s included).
    func requests(_ path: String) throws -> Int {
        let stats = try JSONParser.parse(Array(try control("GET", "/_sim/stats").utf8))
        guard case .object(let object) = stats, case .object(let requests)? = object["requests"], case .number(let count)? = requests[path] else { return 0 }
        return count.intValue ?? 0
    }
}

/// A proxy configuration polling the simulator on `port`.
func upstreamConfig(_ port: Int, timeout: String = "1s", _ endpoints: String, extra: String = "", headers: String = "{}") -> String {
    """
    listen: 127.0.0.1:0
    upstream: { base: http://127.0.0.1:\(port), timeout: \(timeout), max_concurrent: 4, headers: \(headers) }
    endpoints:
    \(endpoints)
    admin: { token: \(adminToken) }
    \(extra)
    """
}

/// `GET target` on the proxy with extra header lines.
func get(_ port: Int, _ target: String, _ headers: [String] = []) throws -> (status: Int, head: String, body: String) {
    try httpRequest(port: port, "GET \(target) HTTP/1.1\r\nHost: a\r\n" + headers.map { $0 + "\r\n" }.joined() + "\r\n")
}

/// The topics `/deltacast/status` lists now, across endpoints (the admin token of upstreamConfig).
func statusTopics(_ port: Int) throws -> [[String: Any]] {
    let status = try get(port, "/deltacast/status", ["Authorization: Bearer \(adminToken)"])
    let json = try JSONSerialization.jsonObject(with: Data(status.body.utf8)) as? [String: Any]
    return (json?["endpoints"] as? [[String: Any]])?.flatMap { $0["topics"] as? [[String: Any]] ?? [] } ?? []
}

func header(_ head: String, _ name: String) -> String? {
    head.split(separator: "\r\n").first { $0.lowercased().hasPrefix(name.lowercased() + ":") }
        .map { String($0.dropFirst(name.count + 1)).trimmingCharacters(in: .whitespaces) }
}

@Suite(.serialized) struct UpstreamTests {
    /// Invariant 2: 1,000 subscribers (400 WebSocket, 400 SSE, 200 held long-polls) of one
    /// topic cost the upstream one request per interval, counted at the upstream; and each of
    /// them receives the change when the upstream's body changes.
    @Test func onePollPerIntervalWhateverTheNumberOfSubscribers() throws {
        let simulator = try SimulatorProcess()
        try simulator.put("/doc", document(1))
        let (process, port) = try startServeProcess(upstreamConfig(simulator.port, """
              - path: /doc
                interval: 500ms
                array_keys: { /items: id }
            """, extra: "limits: { max_connections_per_ip: 5000 }\nserver: { event_loops: 2 }"))
        defer { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        let first = try get(port, "/doc")
        let cursor = try #require(header(first.head, "ETag")).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        var sockets: [WebSocketClient] = []
        var streams: [EventStreamClient] = []
        var polls: [RawClient] = []
        for index in 0..<400 {
            let socket = try WebSocketClient(port: port, path: "/deltacast/ws", timeoutSeconds: 20)
            socket.sendText(#"{"type":"subscribe","topic":"/doc","since":"\#(cursor)"}"#)
            sockets.append(socket)
            streams.append(try EventStreamClient(port: port, path: "/doc", headers: ["Last-Event-ID: \(cursor)"], timeoutSeconds: 20))
            if index < 200 {
                let poll = try RawClient(port: port)
                poll.send("GET /deltacast/poll?topic=/doc&since=\(cursor)&wait=60 HTTP/1.1\r\nHost: a\r\n\r\n")
                polls.append(poll)
            }
        }
        // While all 1,000 are attached, the upstream's next 5 requests span at least 4 intervals
        // (500 ms each): one poll per interval, not one per subscriber. (A slow machine only
        // stretches the span, so this cannot fail for want of speed.)
        let before = try simulator.requests("/doc")
        _ = try eventually(30) { try simulator.requests("/doc") - before >= 1 }
        let start = Date()
        #expect(try eventually(30) { try simulator.requests("/doc") - before >= 5 })
        let span = Date().timeIntervalSince(start)
        #expect(span >= 4 * 0.5 - 0.1, "4 upstream polls in \(span) s at a 500 ms interval")

        try simulator.put("/doc", document(2))
        var received = 0
        for socket in sockets where socket.nextJSON().map({ $0.string("type") == "patch" && $0.string("base") == cursor }) == true { received += 1 }
        for stream in streams {
            _ = stream.next()  // retry:
            if let event = stream.nextJSON(), event.object.string("type") == "patch" { received += 1 }
        }
        for poll in polls {
            let response = poll.read(responses: 1).texts.first ?? ""
            if response.hasPrefix("HTTP/1.1 200"), response.contains(#""type":"patch""#) { received += 1 }
        }
        #expect(received == 1000)
    }

    /// Invariant 1 (convergence): the upstream mutates a keyed document at random while 60
    /// clients (20 WebSocket, 20 SSE, 20 long-poll; a third of them slow readers) disconnect and
    /// resume at random points; once it stops, every client's applied state equals its body.
    /// A path parameter that would smuggle structure into the upstream URL is refused with 400
    /// and never reaches the upstream; a legitimate one still does.
    @Test func pathParametersThatSmuggleStructureAreRefusedBeforeTheUpstream() throws {
        let simulator = try SimulatorProcess()
        try simulator.put("/v1/items/42", #"{"id":42}"#)
        let (process, port) = try startServeProcess(upstreamConfig(simulator.port, """
              - path: /api/items/{id}
                upstream: /v1/items/{id}
                interval: 1s
            """))
        defer { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        let cases: [(String, String)] = [
            ("..%2F..%2Fadmin", "an encoded slash (%2F)"),
            ("..%2f..%2fadmin", "an encoded slash (%2F)"),
            ("x%5C..%5Cadmin", "an encoded backslash (%5C)"),
            ("42%00", "an encoded NUL or control byte"),
            ("42%0d%0aX-Injected:%201", "an encoded NUL or control byte"),
            ("%252e%252e", "a dot segment encoded twice (%252E)"),
            ("..%252Fadmin", "a slash encoded twice (%252F)"),
            ("x\\..\\admin", "a backslash"),
        ]
        for (value, reason) in cases {
            let response = try get(port, "/api/items/\(value)")
            #expect(response.status == 400, "\(value)")
            guard case .object(let fields) = try JSONParser.parse(response.body) else { Issue.record("\(response.body)"); continue }
            #expect(fields["message"] == .string("parameter 'id' in /api/items/\(value) holds \(reason); it is not forwarded upstream"), "\(response.body)")
        }
        // Named in a multiplexed query, a topic arrives decoded: a NUL there is refused too,
        // as an error event for that topic (FuzzQuery found it forwarded).
        let multiplexed = try get(port, "/deltacast/poll?topic=/api/items/x%00y&topic=/api/items/a%0d%0aHost:%20b")
        #expect(multiplexed.body.components(separatedBy: "holds a NUL or control byte; it is not forwarded upstream").count == 3, "\(multiplexed.body)")
        // The upstream saw none of them, and still serves a plain one.
        let stats = try simulator.control("GET", "/_sim/stats")
        #expect(!stats.contains("admin") && !stats.contains("%00") && !stats.contains("%25"), "\(stats)")
        #expect(try get(port, "/api/items/42").status == 200)
        #expect(try simulator.requests("/v1/items/42") >= 1)
    }

    @Test func everyClientConvergesOnTheUpstreamsFinalBody() throws {
        let simulator = try SimulatorProcess()
        var generator = SystemRandomNumberGenerator()
        var rows = (0..<30).map { ["id": $0, "v": 0] }
        func body() -> String {
            "{\"rows\":[" + rows.map { "{\"id\":\($0["id"]!),\"v\":\($0["v"]!)}" }.joined(separator: ",") + "]}"
        }
        try simulator.put("/keyed", body())
        let (process, port) = try startServeProcess(upstreamConfig(simulator.port, """
              - path: /keyed
                interval: 100ms
                jitter: 0ms
                array_keys: { /rows: id }
            """, extra: "limits: { journal_entries: 8 }\nserver: { event_loops: 2 }"))
        defer { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        let finalBody = Locked<JSONValue?>(nil)
        let converged = Atomic<Int>(0)
        let failures = Locked<[String]>([])
        let done = Atomic<Int>(0)
        for index in 0..<60 {
            let transport = ["ws", "sse", "poll"][index % 3]
            let slow = index % 6 < 2
            Thread.detachNewThread {
                defer { done.add(1, ordering: .relaxed) }
                let client = ConvergenceClient(port: port, transport: transport, slow: slow)
                let deadline = Date().addingTimeInterval(60)
                while Date() < deadline {
                    client.runSession(maxEvents: Int.random(in: 1...12))
                    if let target = finalBody.withLock({ $0 }), client.state == target {
                        converged.add(1, ordering: .relaxed)
                        return
                    }
                }
                failures.withLock { $0.append("\(transport)\(slow ? " slow" : ""): \(client.log.suffix(4))") }
            }
        }
        // Random mutations: inserts, deletes, moves and value changes of keyed rows.
        var nextID = 30
        for _ in 0..<60 {
            switch Int.random(in: 0..<4, using: &generator) {
            case 0: rows.insert(["id": nextID, "v": 1], at: Int.random(in: 0...rows.count, using: &generator)); nextID += 1
            case 1 where rows.count > 5: rows.remove(at: Int.random(in: 0..<rows.count, using: &generator))
            case 2: rows.swapAt(Int.random(in: 0..<rows.count, using: &generator), Int.random(in: 0..<rows.count, using: &generator))
            default: rows[Int.random(in: 0..<rows.count, using: &generator)]["v", default: 0] += 1
            }
            try simulator.put("/keyed", body())
            usleep(UInt32.random(in: 20_000...150_000, using: &generator))
        }
        finalBody.withLock { $0 = try? JSONParser.parse(Array(body().utf8)) }
        #expect(eventually(90) { done.load(ordering: .relaxed) == 60 })
        #expect(converged.load(ordering: .relaxed) == 60, "\(failures.withLock { $0 })")
    }

    /// Resume over a polled topic: a client that missed k changes gets exactly those k patches;
    /// one whose cursor fell out of the journal, or comes from another epoch (a restarted
    /// proxy), gets one snapshot.
    @Test func resumeGetsTheMissedPatchesOrOneSnapshot() throws {
        let simulator = try SimulatorProcess()
        try simulator.put("/r", document(0))
        let yaml = upstreamConfig(simulator.port, """
              - path: /r
                interval: 50ms
                array_keys: { /items: id }
            """, extra: "limits: { journal_entries: 4 }")
        var (process, port) = try startServeProcess(yaml)
        defer { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        func change(to price: Int) throws -> String {
            try simulator.put("/r", document(price))
            var etag = ""
            // ETag and body from the same response: they must describe the same state.
            #expect(try eventually {
                let response = try get(port, "/r")
                etag = header(response.head, "ETag") ?? ""
                return response.body == document(price)
            })
            return etag.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        }
        let start = try change(to: 1)
        let missed = try (2...4).map { try change(to: $0) }
        let client = try WebSocketClient(port: port, path: "/deltacast/ws")
        client.sendText(#"{"type":"subscribe","topic":"/r","since":"\#(start)"}"#)
        let events = (0..<3).compactMap { _ in client.nextJSON() }
        #expect(events.map { $0.string("type") } == ["patch", "patch", "patch"])
        #expect(events.map { $0.string("cursor") ?? "" } == missed)

        for price in 5...9 { _ = try change(to: price) }
        let late = try WebSocketClient(port: port, path: "/deltacast/ws")
        late.sendText(#"{"type":"subscribe","topic":"/r","since":"\#(start)"}"#)
        let resync = try #require(late.nextJSON())
        #expect(resync.string("type") == "snapshot")

        // A restarted proxy starts a new epoch: the old cursor gets a snapshot of the new one.
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        (process, port) = try startServeProcess(yaml)
        let fresh = try WebSocketClient(port: port, path: "/deltacast/ws")
        fresh.sendText(#"{"type":"subscribe","topic":"/r","since":"\#(missed[2])"}"#)
        let snapshot = try #require(fresh.nextJSON())
        #expect(snapshot.string("type") == "snapshot")
        #expect(Cursor(snapshot.string("cursor") ?? "")?.epoch != Cursor(missed[2])?.epoch)
    }

    /// Every upstream failure keeps the last good state: subscribers get `status` with
    /// `stale: true` and the reason, plain GETs the last body with `Deltacast-Stale: true`;
    /// recovery brings `status` `upstream: ok`. The same failures before any good state give a
    /// cold GET 502 (504 for a timeout) with a JSON error.
    @Test(arguments: [
        ("mode=status&status=500", "upstream answered 500", 502),
        ("mode=status&status=404", "upstream answered 404", 502),
        ("mode=timeout", "upstream timed out after 400 ms", 504),
        ("mode=broken", "upstream body is not valid JSON", 502),
        ("mode=huge&size=300000", "upstream body is larger than max_body (100000 bytes)", 502),
        ("mode=close", "upstream transfer failed", 502),
    ])
    func upstreamFailureKeepsTheStateAndSaysSo(_ failure: String, _ message: String, _ coldStatus: Int) throws {
        let simulator = try SimulatorProcess()
        try simulator.put("/f", document(1))
        let (process, port) = try startServeProcess(upstreamConfig(simulator.port, timeout: "400ms", """
              - path: /f
                interval: 100ms
                max_body: 100000
              - path: /cold
                interval: 100ms
                max_body: 100000
            """))
        defer { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        let client = try WebSocketClient(port: port, path: "/deltacast/ws")
        client.sendText(#"{"type":"subscribe","topic":"/f"}"#)
        #expect(client.nextJSON()?.string("type") == "snapshot")
        try simulator.control("POST", "/_sim/fail/f?\(failure)")
        let status = try #require(client.nextJSON())
        #expect(status.string("type") == "status" && status.string("upstream") == "error")
        #expect(status["stale"] == .bool(true))
        #expect(status.string("message")?.hasPrefix(message) == true, "\(status)")
        let stale = try get(port, "/f")
        #expect(stale.status == 200 && stale.body == document(1))
        #expect(header(stale.head, "Deltacast-Stale") == "true")
        try simulator.control("DELETE", "/_sim/fail/f")
        let recovered = try #require(client.nextJSON())
        #expect(recovered.string("type") == "status" && recovered.string("upstream") == "ok")
        #expect(try eventually { header(try get(port, "/f").head, "Deltacast-Stale") == nil })

        try simulator.control("POST", "/_sim/fail/cold?\(failure)")
        let cold = try get(port, "/cold")
        #expect(cold.status == coldStatus)
        #expect(header(cold.head, "Content-Type") == "application/json")
        #expect(cold.body.contains(message), "\(cold.body)")
    }

    /// Connection refused, then the upstream comes back on the same port.
    @Test func anUpstreamThatGoesAwayAndComesBack() throws {
        var simulator = try SimulatorProcess()
        let upstreamPort = simulator.port
        try simulator.put("/g", document(1))
        let (process, port) = try startServeProcess(upstreamConfig(upstreamPort, "  - path: /g\n    interval: 100ms\n"))
        defer { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        let stream = try EventStreamClient(port: port, path: "/g")
        _ = stream.next()
        #expect(stream.nextJSON()?.object.string("type") == "snapshot")
        simulator.stop()
        let down = try #require(stream.nextJSON()?.object)
        #expect(down.string("upstream") == "error" && down.string("message")?.contains("could not connect to the upstream") == true)
        simulator = try SimulatorProcess(port: upstreamPort)
        try simulator.put("/g", document(2))
        // Backoff doubles from 100 ms; the recovery and the new state arrive within seconds.
        let up = try #require(stream.nextJSON()?.object)
        #expect(up.string("upstream") == "ok")
        #expect(stream.nextJSON()?.object.string("type") == "patch")
    }

    /// `Retry-After` on a 503 holds the next poll back (here 2 s at a 100 ms interval).
    @Test func retryAfterHoldsTheNextPollBack() throws {
        let simulator = try SimulatorProcess()
        try simulator.put("/ra", document(1))
        let (process, port) = try startServeProcess(upstreamConfig(simulator.port, "  - path: /ra\n    interval: 100ms\n    jitter: 0ms\n"))
        defer { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        let client = try WebSocketClient(port: port, path: "/deltacast/ws")
        client.sendText(#"{"type":"subscribe","topic":"/ra"}"#)
        #expect(client.nextJSON()?.string("type") == "snapshot")
        try simulator.control("POST", "/_sim/fail/ra?mode=status&status=503&retry_after=2&count=1")
        #expect(client.nextJSON()?.string("upstream") == "error")
        // The poller's own schedule says when it polls next: past the 100 ms interval (and its
        // 200 ms backoff), at the Retry-After. (The rule itself is unit-tested on a manual
        // clock in PollerTests.)
        var nextPoll: Int?
        #expect(try eventually(10) {
            guard let topic = try statusTopics(port).first(where: { $0["name"] as? String == "/ra" }), topic["poll_failures"] as? Int == 1 else { return false }
            nextPoll = topic["next_poll_ms"] as? Int
            return true
        })
        #expect((nextPoll ?? 0) > 1_000, "next poll in \(nextPoll ?? -1) ms after a Retry-After: 2")
        #expect(client.nextJSON()?.string("upstream") == "ok")
    }

    /// `auth: passthrough`: each credential has its own topic (the upstream sees each one's
    /// header), a GET never gets another credential's cached body, a refused credential gets
    /// the upstream's 401 on GET and an `error` event `forbidden` on a subscription, while
    /// the same connection's other subscriptions carry on.
    @Test func passthroughKeepsCredentialsApart() throws {
        let simulator = try SimulatorProcess()
        try simulator.put("/open", document(1))
        let (process, port) = try startServeProcess(upstreamConfig(simulator.port, """
              - path: /api/whoami
                interval: 100ms
                auth: passthrough
              - path: /api/users/{user}/notifications
                interval: 100ms
                auth: passthrough
                params: { user: "[0-9]+" }
              - path: /open
                interval: 100ms
              - path: /svc/whoami
                upstream: /api/whoami
                interval: 100ms
            """, headers: "{ Authorization: Bearer service-token }"))
        defer { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        // A plain endpoint sends the configured service header (to its `upstream:` path); a
        // passthrough one sends the client's instead, and nothing when the client sent none.
        #expect(try get(port, "/svc/whoami", ["Authorization: Bearer alice"]).body == #"{"token":"service-token"}"#)
        let alice = try get(port, "/api/whoami", ["Authorization: Bearer alice"])
        let bob = try get(port, "/api/whoami", ["Authorization: Bearer bob"])
        #expect(alice.body == #"{"token":"alice"}"#)
        #expect(bob.body == #"{"token":"bob"}"#)
        #expect(try get(port, "/api/whoami", ["Authorization: Bearer alice"]).body == #"{"token":"alice"}"#)
        let anonymous = try get(port, "/api/whoami")
        #expect(anonymous.status == 401 && anonymous.body.contains("the upstream refused these credentials (401)"))

        let socketA = try WebSocketClient(port: port, path: "/deltacast/ws", headers: ["Authorization: Bearer alice"])
        let socketB = try WebSocketClient(port: port, path: "/deltacast/ws", headers: ["Authorization: Bearer bob"])
        socketA.sendText(#"{"type":"subscribe","topic":"/api/whoami"}"#)
        socketB.sendText(#"{"type":"subscribe","topic":"/api/whoami"}"#)
        #expect(socketA.nextJSON()?["data"] == (try JSONParser.parse(Array(#"{"token":"alice"}"#.utf8))))
        #expect(socketB.nextJSON()?["data"] == (try JSONParser.parse(Array(#"{"token":"bob"}"#.utf8))))

        // Alice's token is user-1's here: user 2's notifications refuse it.
        let user = try WebSocketClient(port: port, path: "/deltacast/ws", headers: ["Authorization: Bearer user-1"])
        user.sendText(#"{"type":"subscribe","topic":"/api/users/2/notifications"}"#)
        let refused = try #require(user.nextJSON())
        #expect(refused.string("type") == "error" && refused.string("code") == "forbidden")
        user.sendText(#"{"type":"subscribe","topic":"/api/users/1/notifications"}"#)
        let own = try #require(user.nextJSON())
        #expect(own.string("type") == "snapshot" && own.string("topic") == "/api/users/1/notifications")
        user.sendText(#"{"type":"subscribe","topic":"/open"}"#)
        #expect(user.nextJSON()?.string("type") == "snapshot")
        #expect(try get(port, "/api/users/2/notifications", ["Authorization: Bearer user-1"]).status == 401)
        #expect(try get(port, "/api/users/2/notifications", ["Authorization: Bearer user-2"]).status == 200)
        // Single-topic SSE with a refused credential: the error event, then the stream ends.
        let stream = try EventStreamClient(port: port, path: "/api/users/3/notifications", headers: ["Authorization: Bearer user-1"])
        _ = stream.next()
        let error = try #require(stream.nextJSON())
        #expect(error.object.string("code") == "forbidden")
        #expect(stream.next() == nil)
    }

    /// The plain GET cache: ETag and 304; concurrent cold GETs share one upstream request; a
    /// topic lingers after its last use, then stops polling and is evicted (a new epoch next
    /// time), but never while it has a subscriber.
    @Test func plainGetCacheSingleflightAndLinger() throws {
        let simulator = try SimulatorProcess()
        try simulator.put("/c", document(1))
        try simulator.put("/slow", document(1))
        try simulator.control("POST", "/_sim/fail/slow?mode=slow&delay=500")
        let (process, port) = try startServeProcess(upstreamConfig(simulator.port, """
              - path: /c
                interval: 100ms
                linger: 1s
              - path: /slow
                interval: 1h
            """))
        defer { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        let first = try get(port, "/c")
        let etag = try #require(header(first.head, "ETag"))
        #expect(header(first.head, "Cache-Control") == "no-cache")
        #expect(header(first.head, "Content-Type") == "application/json")
        let again = try get(port, "/c", ["If-None-Match: \(etag)"])
        #expect(again.status == 304 && again.body.isEmpty)

        // 20 cold GETs at once: one upstream request, one state.
        let results = Locked<[String]>([])
        let group = DispatchGroup()
        for _ in 0..<20 {
            group.enter()
            Thread.detachNewThread {
                let response = try? get(port, "/slow")
                results.withLock { $0.append("\(response?.status ?? 0) \(header(response?.head ?? "", "ETag") ?? "")") }
                group.leave()
            }
        }
        group.wait()
        #expect(Set(results.withLock { $0 }).count == 1)
        #expect(results.withLock { $0.first?.hasPrefix("200 \"") } == true)
        #expect(try simulator.requests("/slow") == 1)

        // Linger: idle for 1 s → the topic is evicted (its poll job stops with it: PollerTests);
        // the next GET is a new epoch.
        let epoch = etag.dropFirst().prefix { $0 != "-" }
        #expect(try eventually(10) { try !statusTopics(port).contains { $0["name"] as? String == "/c" } }, "/c evicted after its linger")
        let revived = try get(port, "/c")
        #expect(revived.status == 200)
        #expect(header(revived.head, "ETag")?.dropFirst().prefix { $0 != "-" } != epoch)

        // A subscriber keeps it alive past the linger: 15 more polls at 100 ms span more than
        // the 1 s linger, and the epoch is the same.
        let stream = try EventStreamClient(port: port, path: "/c")
        _ = stream.next()
        let subscribed = try #require(stream.nextJSON()?.id)
        let count = try simulator.requests("/c")
        #expect(try eventually(20) { try simulator.requests("/c") >= count + 15 })
        #expect(header(try get(port, "/c").head, "ETag") == "\"\(subscribed)\"")
    }

    /// `POST /deltacast/refresh`: admin token required; re-polls now (an endpoint polled once an
    /// hour shows a change at once); 404 when the topic is not polled; 409 for publish ones.
    @Test func refreshRepollsNow() throws {
        let simulator = try SimulatorProcess()
        try simulator.put("/hourly", document(1))
        let (process, port) = try startServeProcess(upstreamConfig(simulator.port, """
              - path: /hourly
                interval: 1h
              - path: /live/{room}
                source: publish
            """))
        defer { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        func refresh(_ topic: String, token: String? = adminToken) throws -> (status: Int, head: String, body: String) {
            try httpRequest(port: port, "POST /deltacast/refresh?topic=\(topic) HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n" + (token.map { "Authorization: Bearer \($0)\r\n" } ?? "") + "\r\n")
        }
        #expect(try refresh("/hourly").status == 404)
        #expect(try get(port, "/hourly").body == document(1))
        try simulator.put("/hourly", document(2))
        #expect(try refresh("/hourly", token: nil).status == 401)
        #expect(try refresh("/hourly", token: "wrong-token-wrong-token").status == 403)
        let accepted = try refresh("/hourly")
        #expect(accepted.status == 202 && accepted.body == #"{"topic":"/hourly","refreshed":1}"#)
        #expect(try eventually { try get(port, "/hourly").body == document(2) })
        #expect(try refresh("/live/x").status == 409)
        #expect(try simulator.requests("/hourly") == 2)
    }

    /// A body with a non-JSON content type is stored as is and travels as a string snapshot; a
    /// JSON endpoint's body that stops parsing keeps the last good state (tested above).
    @Test func nonJSONBodiesTravelAsStringSnapshots() throws {
        let simulator = try SimulatorProcess()
        try simulator.control("PUT", "/_sim/docs/motd", body: "line one\nline two", contentType: "text/plain; charset=utf-8")
        let (process, port) = try startServeProcess(upstreamConfig(simulator.port, "  - path: /motd\n    interval: 100ms\n"))
        defer { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        let plain = try get(port, "/motd")
        #expect(plain.body == "line one\nline two")
        #expect(header(plain.head, "Content-Type") == "text/plain; charset=utf-8")
        let client = try WebSocketClient(port: port, path: "/deltacast/ws")
        client.sendText(#"{"type":"subscribe","topic":"/motd"}"#)
        #expect(client.nextJSON()?["data"] == .string("line one\nline two"))
        try simulator.control("PUT", "/_sim/docs/motd", body: "line three", contentType: "text/plain")
        let next = try #require(client.nextJSON())
        #expect(next.string("type") == "snapshot" && next["data"] == .string("line three"))
    }

    /// `upstream.max_concurrent` bounds the requests in flight: 6 slow topics, at most 2 at once.
    @Test func maxConcurrentBoundsTheLoadOnTheUpstream() throws {
        let simulator = try SimulatorProcess()
        for index in 0..<6 {
            try simulator.put("/m/\(index)", document(index))
            try simulator.control("POST", "/_sim/fail/m/\(index)?mode=slow&delay=300")
        }
        let yaml = upstreamConfig(simulator.port, "  - path: /m/{n}\n    interval: 1h\n").replacingOccurrences(of: "max_concurrent: 4", with: "max_concurrent: 2")
        let (process, port) = try startServeProcess(yaml)
        defer { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        let statuses = Locked<[Int]>([])
        let group = DispatchGroup()
        for index in 0..<6 {
            group.enter()
            Thread.detachNewThread {
                let status = (try? get(port, "/m/\(index)").status) ?? 0
                statuses.withLock { $0.append(status) }
                group.leave()
            }
        }
        group.wait()
        #expect(statuses.withLock { $0 } == [200, 200, 200, 200, 200, 200])
        let stats = try simulator.control("GET", "/_sim/stats")
        #expect(stats.contains(#""maxInFlight":2"#), "\(stats)")
    }
}

/// One client of the convergence test: subscribes over its transport, applies what arrives,
/// and drops the connection after a few events, resuming from its cursor next time.
final class ConvergenceClient {
    let port: Int
    let transport: String
    let slow: Bool
    var state: JSONValue?
    var cursor: String?
    var log: [String] = []

    init(port: Int, transport: String, slow: Bool) {
        self.port = port
        self.transport = transport
        self.slow = slow
    }

    /// Applies one event; false when the client must start over without a cursor.
    func apply(_ event: JSONObject) -> Bool {
        switch event.string("type") {
        case "snapshot":
            state = event["data"]
            cursor = event.string("cursor")
        case "patch":
            guard let state, event.string("base") == cursor else { log.append("base mismatch"); self.state = nil; cursor = nil; return false }
            do {
                self.state = try DeltacastServerTests.apply(event, to: state)
                cursor = event.string("cursor")
            } catch {
                log.append("patch failed: \(error)")
                self.state = nil
                cursor = nil
                return false
            }
        default:
            break
        }
        return true
    }

    func runSession(maxEvents: Int) {
        let since = cursor.map { "&since=\($0)" } ?? ""
        switch transport {
        case "ws":
            guard let socket = try? WebSocketClient(port: port, path: "/deltacast/ws", timeoutSeconds: 1, receiveBuffer: slow ? 4096 : nil) else { return }
            socket.sendText(#"{"type":"subscribe","topic":"/keyed"\#(cursor.map { #","since":"\#($0)""# } ?? "")}"#)
            for _ in 0..<maxEvents {
                if slow { usleep(50_000) }
                guard let event = socket.nextJSON(), apply(event) else { return }
            }
        case "sse":
            guard let stream = try? EventStreamClient(port: port, path: "/deltacast/sse?topic=/keyed\(since)", timeoutSeconds: 1) else { return }
            for _ in 0..<maxEvents {
                if slow { usleep(50_000) }
                guard let event = stream.nextJSON(), apply(event.object) else { return }
            }
        default:
            for _ in 0..<maxEvents {
                let target = "/deltacast/poll?topic=/keyed" + (cursor.map { "&since=\($0)" } ?? "") + "&wait=1"
                guard let response = try? get(port, target) else { return }
                if response.status == 204 { continue }
                guard response.status == 200, case .array(let events)? = try? JSONParser.parse(Array(response.body.utf8)) else { log.append("poll \(response.status)"); return }
                for case .object(let event) in events where !apply(event) { return }
                if slow { usleep(50_000) }
            }
        }
    }
}

@Suite(.serialized) struct MetricsTests {
    /// `/metrics` after real traffic: `promtool check metrics` accepts it, the counters moved
    /// with what happened (deliveries by transport, patches, a resume from the journal, polls
    /// by outcome with their latency histogram, an admin refusal), and no label names a topic
    /// or a credential (endpoint patterns only).
    @Test func metricsPassPromtoolAndCountWhatHappened() throws {
        let simulator = try SimulatorProcess()
        try simulator.put("/m/1", TransportTests.bigDocument(1))
        let (process, port) = try startServeProcess(upstreamConfig(simulator.port, "  - path: /m/{n}\n    interval: 100ms\n    auth: passthrough\n"))
        defer { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        let socket = try WebSocketClient(port: port, path: "/deltacast/ws", headers: ["Authorization: Bearer secret-token-123"])
        socket.sendText(#"{"type":"subscribe","topic":"/m/1"}"#)
        let snapshot = try #require(socket.nextJSON())
        try simulator.put("/m/1", TransportTests.bigDocument(2))
        #expect(socket.nextJSON()?.string("type") == "patch")
        let resumed = try WebSocketClient(port: port, path: "/deltacast/ws", headers: ["Authorization: Bearer secret-token-123"])
        resumed.sendText(#"{"type":"subscribe","topic":"/m/1","since":"\#(snapshot.string("cursor")!)"}"#)
        #expect(resumed.nextJSON()?.string("type") == "patch")
        try simulator.control("POST", "/_sim/fail/m/1?mode=status&status=503&count=1")
        #expect(socket.nextJSON()?.string("upstream") == "error")
        #expect(socket.nextJSON()?.string("upstream") == "ok")
        #expect(try publish(port: port, "/m/1", "{}", token: nil).status == 401)

        let metrics = try get(port, "/metrics")
        #expect(metrics.status == 200)
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("deltacast-metrics-\(getpid()).txt")
        try metrics.body.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let promtool = Process()
        promtool.executableURL = URL(fileURLWithPath: "/usr/bin/promtool")
        promtool.arguments = ["check", "metrics"]
        promtool.standardInput = try FileHandle(forReadingFrom: file)
        let output = Pipe()
        promtool.standardOutput = output
        promtool.standardError = output
        try promtool.run()
        let said = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        promtool.waitUntilExit()
        #expect(promtool.terminationStatus == 0, "promtool: \(said)")

        func value(_ sample: String) -> Double? {
            metrics.body.split(separator: "\n").first { $0.hasPrefix(sample + " ") }.flatMap { Double($0.split(separator: " ").last!) }
        }
        #expect((value(#"deltacast_deliveries_total{transport="websocket"}"#) ?? 0) >= 5)
        #expect((value(#"deltacast_changes_total{kind="patch"}"#) ?? 0) >= 1)
        #expect(value(#"deltacast_resumes_total{served="journal"}"#) == 1)
        #expect(value(#"deltacast_connections{mode="websocket"}"#) == 2)
        #expect(value(#"deltacast_upstream_polls_total{endpoint="/m/{n}",outcome="http_5xx"}"#) == 1)
        #expect((value(#"deltacast_upstream_polls_total{endpoint="/m/{n}",outcome="ok"}"#) ?? 0) >= 2)
        #expect((value(#"deltacast_upstream_poll_seconds_count{endpoint="/m/{n}"}"#) ?? 0) >= 3)
        #expect(value(#"deltacast_refusals_total{reason="admin_unauthorized"}"#) == 1)
        #expect((value("deltacast_bytes_saved_total") ?? 0) > 0)
        // Bounded labels: the pattern, never the topic, the credential or its digest.
        #expect(!metrics.body.contains("/m/1") && !metrics.body.contains("secret-token") && !metrics.body.contains(" #"))
    }
}

@Suite(.serialized) struct StatusTests {
    /// `GET /deltacast/status`: 401 without the admin token; JSON with each endpoint's topics
    /// (subscribers, cursor, upstream health); as SSE, an `event: status` each second whose
    /// numbers move with the topic; the page itself at `/deltacast/`.
    @Test func statusJSONAndStream() throws {
        try withServer(pushConfig) { port in
            #expect(try get(port, "/deltacast/status").status == 401)
            try publish(port: port, "/live/s", document(1))
            let stream = try EventStreamClient(port: port, path: "/live/s")
            _ = stream.next()
            let status = try get(port, "/deltacast/status", ["Authorization: Bearer \(adminToken)"])
            #expect(status.status == 200)
            guard case .object(let json) = try JSONParser.parse(Array(status.body.utf8)), case .array(let endpoints)? = json["endpoints"],
                  case .object(let live)? = endpoints.first, case .array(let topics)? = live["topics"], case .object(let topic)? = topics.first else {
                Issue.record("unexpected status: \(status.body)"); return
            }
            #expect(live.string("path") == "/live/{room}")
            #expect(topic.string("name") == "/live/s" && topic["subscribers"] == .number(JSONNumber(1)))
            #expect(topic.string("upstream") == "ok" && Cursor(topic.string("cursor") ?? "")?.seq == 1)
            #expect(topic["by_transport"] == (try JSONParser.parse(Array(#"{"websocket":0,"sse":1,"longpoll":0}"#.utf8))))
            #expect(json["slowest_consumers"] != nil)
            let page = try get(port, "/deltacast/")
            #expect(page.status == 200 && page.body.contains("Deltacast status"))

            let watcher = try EventStreamClient(port: port, path: "/deltacast/status", headers: ["Authorization: Bearer \(adminToken)"])
            #expect(watcher.head.hasPrefix("HTTP/1.1 200"))
            _ = watcher.next()  // retry:
            #expect(watcher.next()?.data.contains(#""name":"/live/s","subscribers":1,"by_transport":{"websocket":0,"sse":1,"longpoll":0}"#) == true)
            try publish(port: port, "/live/s", document(2))
            #expect(eventually(5) { watcher.next()?.data.contains("-2\",") == true })

            // A reader that never reads shows up among the slowest consumers.
            let stuck = try WebSocketClient(port: port, path: "/snap/big", subprotocol: nil, receiveBuffer: 4096)
            for version in 1...80 { try publish(port: port, "/snap/big", TransportTests.bigDocument(version)) }
            #expect(try eventually(5) {
                let body = try get(port, "/deltacast/status", ["Authorization: Bearer \(adminToken)"]).body
                return body.contains(#""slowest_consumers":[{"conn":"#) && body.contains(#""mode":"webSocket""#)
            }, "\((try? get(port, "/deltacast/status", ["Authorization: Bearer \(adminToken)"]).body.suffix(300)) ?? "")")
            _ = stuck
        }
    }
}

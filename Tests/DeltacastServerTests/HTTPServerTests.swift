import DeltacastBase
import DeltacastConfig
import Foundation
import Synchronization
import Testing
@testable import DeltacastServer
import DeltacastLoop
import DeltacastPolling
import DeltacastTestSupport

/// Starts a real server on loopback (port 0) with `yaml` and runs `body` against it.
func withServer(_ yaml: String, server extra: String = "", dashboard: Bool = false, _ body: (Int) throws -> Void) throws {
    let configuration = try Configuration.load(text: "listen: 127.0.0.1:0\nserver: { event_loops: 2\(extra) }\n" + yaml, file: "test.yaml", environment: [:])
    let server = try HTTPServer(configuration: configuration, dashboard: dashboard, topicSource: UpstreamPolling(configuration: configuration))
    let port = try server.start()
    defer { server.shutdown() }
    try body(port)
}

let endpoints = """
    upstream: { base: http://127.0.0.1:9, timeout: 300ms }
    endpoints:
      - path: /api/users/{user}/notifications
        params: { user: "[0-9]+" }
    cors: { origins: [https://dash.example] }

    """

/// Starts `deltacast serve` (the built executable) with `yaml` in its own process (client and
/// server each need a descriptor per connection, and a process may hold at most 20,000) and
/// returns it with the port it printed. The caller kills it.
func startServeProcess(_ yaml: String) throws -> (Process, Int) {
    try startDeltacast(["serve"], configuration: yaml)
}

/// Runs the built `deltacast` with `arguments` and returns it with the port its first line
/// names ("...listening on http://127.0.0.1:PORT").
func startDeltacast(_ arguments: [String], configuration: String? = nil) throws -> (Process, Int) {
    let child = try DeltacastChild(arguments, configuration: configuration)
    return (child.process, child.port!)
}

/// A `serve` configuration for tests that hold 10,000 connections: caps raised, timeouts long.
let manyConnectionsConfig = """
    listen: 127.0.0.1:0
    endpoints:
      - path: /live/{room}
        source: publish
    admin: { token: \(adminToken) }
    limits: { max_connections_per_ip: 20000, max_connections: 20000 }
    server: { idle_timeout: 10m, header_timeout: 10m }
    """

@Suite(.serialized) struct HTTPServerTests {
    @Test func keepAliveServesManyRequestsOnOneConnection() throws {
        try withServer(endpoints) { port in
            let client = try RawClient(port: port)
            for _ in 0..<3 {
                client.send("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
                let (texts, closed) = client.read(responses: 1)
                #expect(!closed)
                #expect(texts.first?.hasPrefix("HTTP/1.1 200 OK\r\nDate: ") == true)
                #expect(texts.first?.hasSuffix("{\"status\":\"ok\"}") == true)
            }
        }
    }

    /// A server built in-process, not from a file, has nothing to re-read: 400 saying so.
    @Test func reloadWithoutAConfigurationFileIsRefused() throws {
        try withServer("endpoints:\n  - path: /live/{room}\n    source: publish\nadmin: { token: \(adminToken) }\n") { port in
            let response = try httpRequest(port: port, "POST /deltacast/reload HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer \(adminToken)\r\nContent-Length: 0\r\n\r\n")
            #expect(response.status == 400)
            #expect(response.body.contains("this server was not started from a configuration file; nothing to reload"))
            #expect(try httpRequest(port: port, "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n").body.contains("deltacast_config_reloads_total{result=\"error\"} 1\n"))
        }
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() throws {
        try withServer(endpoints) { port in
            let client = try RawClient(port: port)
            client.send("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: a\r\n\r\nGET /readyz HTTP/1.1\r\nHost: a\r\n\r\n")
            let (texts, _) = client.read(responses: 3)
            #expect(texts.map { String($0.prefix(12)) } == ["HTTP/1.1 200", "HTTP/1.1 404", "HTTP/1.1 200"])
            #expect(texts[1].hasSuffix(#"{"error":"not_found","message":"no endpoint is configured at /nowhere"}"#))
            #expect(texts[2].hasSuffix(#"{"status":"ready"}"#))
        }
    }

    @Test(arguments: [
        ("GET /api/users/abc/notifications HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 400", #"invalid value for parameter 'user' in /api/users/abc/notifications; it must match [0-9]+"#),
        ("POST /api/users/42/notifications HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 405", "Allow: GET, HEAD, OPTIONS"),
        ("DELETE /healthz HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 405", "Allow: GET, HEAD"),
        ("GET /api/users/42/notifications HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 502", "could not connect to the upstream"),
        ("OPTIONS /api/users/42/notifications HTTP/1.1\r\nHost: a\r\nOrigin: https://dash.example\r\nAccess-Control-Request-Headers: authorization\r\n\r\n", "HTTP/1.1 204", "Access-Control-Allow-Origin: https://dash.example\r\nAccess-Control-Allow-Methods: GET, HEAD, OPTIONS\r\nAccess-Control-Allow-Headers: authorization"),
        ("OPTIONS /api/users/42/notifications HTTP/1.1\r\nHost: a\r\nOrigin: https://evil.example\r\n\r\n", "HTTP/1.1 403", "origin https://evil.example is not in cors.origins"),
        ("HEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 200", "Content-Length: 15\r\n\r\n"),
    ])
    func routesAnswerWithTheirStatus(_ request: String, _ status: String, _ detail: String) throws {
        try withServer(endpoints) { port in
            let client = try RawClient(port: port)
            client.send(request)
            let texts = request.hasPrefix("HEAD") ? [client.readHead()] : client.read(responses: 1).texts
            #expect(texts.first?.hasPrefix(status) == true, "\(texts)")
            #expect(texts.first?.contains(detail) == true, "\(texts)")
        }
    }

    @Test func malformedRequestGetsItsStatusAndIsClosedWhileOthersCarryOn() throws {
        try withServer(endpoints) { port in
            let good = try RawClient(port: port)
            let bad = try RawClient(port: port)
            bad.send("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
            let (texts, _) = bad.read(responses: 1)
            #expect(texts.first?.hasPrefix("HTTP/1.1 400 Bad Request") == true)
            #expect(texts.first?.contains("Connection: close") == true)
            #expect(texts.first?.hasSuffix(#"{"error":"bad_request","message":"both Content-Length and Transfer-Encoding"}"#) == true)
            #expect(bad.isClosedByPeer())
            good.send("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
            #expect(good.read(responses: 1).texts.first?.hasPrefix("HTTP/1.1 200") == true)
        }
    }

    /// Slowloris: one header byte at a time never completes; the header timeout answers 408
    /// and closes, while another client is served meanwhile.
    @Test func slowHeaderGets408WhileOthersAreServed() throws {
        try withServer(endpoints, server: ", header_timeout: 1s") { port in
            let slow = try RawClient(port: port)
            let other = try RawClient(port: port)
            let answerBox = Locked<[String]>([])
            let reader = BackgroundWork { let texts = slow.read(responses: 1).texts; answerBox.withLock { $0 = texts } }
            for byte in "GET /healthz HTTP/1.1\r\nHo" {
                slow.send(String(byte))
                other.send("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
                #expect(other.read(responses: 1).texts.first?.hasPrefix("HTTP/1.1 200") == true)
                if reader.isFinished { break }
                usleep(100_000)  // pacing the slow client, not waiting for a result
            }
            #expect(reader.wait(), "the slow client's read ends")
            let answer = answerBox.withLock { $0 }
            #expect(answer.first?.hasPrefix("HTTP/1.1 408 Request Timeout") == true, "\(answer)")
            #expect(slow.isClosedByPeer())
        }
    }

    @Test func connectionCapsAnswer503And429() throws {
        try withServer("limits: { max_connections: 3 }\n" + endpoints) { port in
            let held = try (0..<3).map { _ in try RawClient(port: port) }
            // Each loop has its own listener: an answer on every one shows every one accepted.
            for client in held {
                client.send("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
                _ = client.read(responses: 1)
            }
            let refused = try RawClient(port: port)
            let (texts, _) = refused.read(responses: 1)
            #expect(texts.first?.hasPrefix("HTTP/1.1 503 Service Unavailable") == true)
            #expect(texts.first?.contains("Retry-After: 1") == true)
        }
        try withServer("limits: { max_connections_per_ip: 2 }\n" + endpoints) { port in
            let held = try (0..<2).map { _ in try RawClient(port: port) }
            for client in held {
                client.send("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
                _ = client.read(responses: 1)
            }
            let refused = try RawClient(port: port)
            #expect(refused.read(responses: 1).texts.first?.hasPrefix("HTTP/1.1 429 Too Many Requests") == true)
        }
    }

    @Test func gracefulShutdownClosesIdleAndFinishesRequestsInFlight() throws {
        let configuration = try Configuration.load(
            text: "listen: 127.0.0.1:0\nserver: { event_loops: 1, shutdown_timeout: 5s }\n" + endpoints, file: "t.yaml", environment: [:])
        let server = try HTTPServer(configuration: configuration)
        let port = try server.start()
        let idle = try RawClient(port: port)
        let inFlight = try RawClient(port: port)
        idle.send("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        _ = idle.read(responses: 1)
        inFlight.send("GET /readyz HTTP/1.1\r\nHo")  // half a request when shutdown begins
        // With one loop, a probe answered after those bytes were sent means the loop has read them.
        let probe = try RawClient(port: port)
        probe.send("GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        _ = probe.read(responses: 1)
        let stopped = BackgroundWork { server.shutdown() }
        #expect(idle.isClosedByPeer())                 // idle: closed at once
        inFlight.send("st: a\r\n\r\n")                  // the request in flight completes...
        let (texts, _) = inFlight.read(responses: 1)
        // ...and /readyz already says 503 (a load balancer stops sending traffic at once)...
        #expect(texts.first?.hasPrefix("HTTP/1.1 503 Service Unavailable") == true)
        #expect(texts.first?.hasSuffix(#"{"status":"draining"}"#) == true)
        #expect(texts.first?.contains("Connection: close") == true)   // ...and is told to go
        #expect(inFlight.isClosedByPeer())
        #expect(stopped.wait(), "the shutdown completes")
        #expect((try? RawClient(port: port)) == nil)   // no longer accepting
    }

    /// Half a request and then the client's FIN: no byte can complete it, so the connection
    /// closes at once, not at `server.header_timeout` (an hour here; found by 30,000
    /// connect-then-leave clients in Tests/Security/exhaustion_test.py, whose half requests held
    /// descriptors for the header timeout). Complete requests before a FIN are still answered.
    @Test func halfARequestThenAFINIsClosedAtOnce() throws {
        try withServer(endpoints, server: ", header_timeout: 1h") { port in
            let half = try RawClient(port: port)
            half.send("GET /healthz HTTP/1.1\r\nHo")
            shutdown(half.fd, Int32(SHUT_WR))
            #expect(half.isClosedByPeer())
            let whole = try RawClient(port: port)
            whole.send("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /readyz HTTP/1.1\r\nHost: a\r\n\r\nGET /hea")
            shutdown(whole.fd, Int32(SHUT_WR))
            let (texts, closed) = whole.read(responses: 3)
            #expect(texts.count == 2 && closed, "\(texts)")
            #expect(texts.last?.hasSuffix(#"{"status":"ready"}"#) == true)
        }
    }

    /// `server.shutdown_timeout` reached: a client that never finishes its request (the header
    /// timeout is an hour here) does not hold the shutdown; at the deadline it is closed.
    @Test func shutdownEndsAtTheDeadlineWhenAClientNeverFinishes() throws {
        let configuration = try Configuration.load(
            text: "listen: 127.0.0.1:0\nserver: { event_loops: 1, shutdown_timeout: 1s, header_timeout: 1h }\n" + endpoints,
            file: "t.yaml", environment: [:])
        let server = try HTTPServer(configuration: configuration)
        let port = try server.start()
        let stuck = try RawClient(port: port)
        stuck.send("GET /healthz HTTP/1.1\r\nHo")
        let probe = try RawClient(port: port)
        probe.send("GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        _ = probe.read(responses: 1)  // one loop: the stuck client's bytes were read before this
        let stopped = BackgroundWork { server.shutdown() }
        #expect(stopped.wait(), "the shutdown completes although the request never does")
        #expect(stuck.isClosedByPeer())
    }

    /// The request limits as configured, end to end: `limits.max_request_line` → 414,
    /// `limits.max_header_bytes` and `limits.max_headers` → 431, `limits.max_message` on a
    /// request body → 413; each closes only that connection.
    @Test func configuredRequestLimitsAnswer414431And413() throws {
        let limits = "limits: { max_request_line: 1KiB, max_header_bytes: 2KiB, max_headers: 10, max_message: 1KiB }\n"
        try withServer(limits + "admin: { token: \(adminToken) }\n" + endpoints) { port in
            let good = try RawClient(port: port)
            let cases: [(String, String)] = [
                ("GET /" + String(repeating: "a", count: 1100) + " HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 414 URI Too Long"),
                ("GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + String(repeating: "b", count: 2100) + "\r\n\r\n", "HTTP/1.1 431 Request Header Fields Too Large"),
                ("GET / HTTP/1.1\r\nHost: a\r\n" + (1...10).map { "X-\($0): v\r\n" }.joined() + "\r\n", "HTTP/1.1 431 Request Header Fields Too Large"),
                ("POST /deltacast/publish?topic=/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer \(adminToken)\r\nContent-Length: 2000\r\n\r\n",
                 "HTTP/1.1 413 Content Too Large"),
            ]
            for (request, status) in cases {
                let bad = try RawClient(port: port)
                bad.send(request)
                let answer = bad.read(responses: 1).texts.first ?? ""
                #expect(answer.hasPrefix(status), "\(answer.prefix(120))")
                #expect(bad.isClosedByPeer())
                good.send("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
                #expect(good.read(responses: 1).texts.first?.hasPrefix("HTTP/1.1 200") == true)
            }
        }
    }

    /// A client still sending its body when the 413 comes (the body is past
    /// `limits.max_message`) reads the whole answer, may go on sending, and then reads the end
    /// of the stream: the server half-closes and discards what arrives (RFC 9112 §9.6). Closed
    /// at once, with the body unread, the socket answered with a reset instead. Other clients
    /// are served meanwhile.
    @Test func aClientStillSendingReadsItsErrorAnswerAndAnOrderlyClose() throws {
        try withServer("limits: { max_message: 1KiB }\nadmin: { token: \(adminToken) }\n" + endpoints) { port in
            let good = try RawClient(port: port)
            let client = try RawClient(port: port)
            // More than the server reads at once (64 KiB): bytes are still unread when it answers.
            let body = String(repeating: "x", count: 256 * 1024)
            let sentHead = client.sendAll("POST /deltacast/publish?topic=/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer \(adminToken)\r\nContent-Length: 1000000\r\n\r\n" + body)
            #expect(sentHead, "the head and the first 256 KiB of the body are sent")
            let answer = client.read(responses: 1).texts.first ?? ""
            #expect(answer.hasPrefix("HTTP/1.1 413 Content Too Large"), "\(answer.prefix(120))")
            #expect(answer.contains("Connection: close"))
            let sentMore = client.sendAll(body)
            #expect(sentMore, "more of the body is read and discarded, not reset")
            #expect(client.isClosedByPeer(), "the end of the stream, not a reset")
            // A real client's view: curl uploading 8 MiB at once (no `Expect: 100-continue`)
            // reports the 413. (On loopback curl read it before the change too: the raw client
            // above is what tells a linger from a reset.)
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("body-\(port).bin")
            try Data(count: 8 << 20).write(to: file)
            defer { try? FileManager.default.removeItem(at: file) }
            let status = try curl(["-o", "/dev/null", "-w", "%{http_code}", "-H", "Expect:", "-H", "Authorization: Bearer \(adminToken)",
                                   "--data-binary", "@" + file.path, "http://127.0.0.1:\(port)/deltacast/publish?topic=/x"])
            #expect(status == "413")
            good.send("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
            #expect(good.read(responses: 1).texts.first?.hasPrefix("HTTP/1.1 200") == true)
        }
    }

    /// A client that keeps sending after its closing answer is closed when the linger ends
    /// (2 s): lingering holds a descriptor for a bounded time, whatever the client does.
    @Test func aClientThatNeverStopsSendingIsClosedWhenTheLingerEnds() throws {
        try withServer(endpoints) { port in
            let client = try RawClient(port: port)
            client.send("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
            #expect(client.read(responses: 1).texts.first?.hasPrefix("HTTP/1.1 400 Bad Request") == true)
            // Bytes every 100 ms (pacing the client, not waiting for a result) until a send fails:
            // the server closed its side for good, with the client still sending, so a reset.
            var sends = 0
            while sends < 100, client.sendAll("more bytes that are not a request\r\n") {
                sends += 1
                usleep(100_000)
            }
            // Closed at once, the second send already meets the reset the first one drew.
            #expect(sends >= 2, "discarded while lingering: \(sends) sends")
            #expect(sends < 100, "closed within 10 s: the linger is bounded")
        }
    }

    /// Responses to a burst of pipelined requests exceed the send buffer many times over: the
    /// server pauses, drains, resumes, and answers every one in order on the same connection.
    @Test func pipelinedBurstBeyondTheSendBufferIsAnsweredInFull() throws {
        try withServer("limits: { send_buffer: 4KiB }\n" + endpoints) { port in
            let client = try RawClient(port: port)
            client.send(String(repeating: "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", count: 200) + "GET /readyz HTTP/1.1\r\nHost: a\r\n\r\n")
            let (texts, closed) = client.read(responses: 201)
            #expect(!closed)
            #expect(texts.count == 201)
            #expect(texts.prefix(200).allSatisfy { $0.hasPrefix("HTTP/1.1 200 OK") && $0.hasSuffix(#"{"status":"ok"}"#) })
            #expect(texts.last?.hasSuffix(#"{"status":"ready"}"#) == true)
        }
    }

    @Test func expectContinueGets100BeforeTheBody() throws {
        try withServer(endpoints) { port in
            let client = try RawClient(port: port)
            client.send("POST /healthz HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
            #expect(client.readHead() == "HTTP/1.1 100 Continue\r\n\r\n")
            client.send("{}")
            #expect(client.read(responses: 1).texts.first?.hasPrefix("HTTP/1.1 405 Method Not Allowed") == true)
        }
    }

    @Test func metricsAreInPrometheusTextFormat() throws {
        try withServer(endpoints) { port in
            let client = try RawClient(port: port)
            client.send("GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n")
            let text = client.read(responses: 1).texts.first ?? ""
            #expect(text.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"))
            #expect(text.contains("# TYPE deltacast_connections_open gauge\ndeltacast_connections_open 1\n"))
        }
    }

    @Test func idleKeepAliveConnectionsAreClosed() throws {
        try withServer(endpoints, server: ", idle_timeout: 1s") { port in
            let client = try RawClient(port: port)
            client.send("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
            _ = client.read(responses: 1)
            #expect(client.isClosedByPeer())  // blocks until the idle close (receive timeout 10 s)
        }
    }
}

/// The tests that hold 10,000 client descriptors in this process, one at a time: the process may
/// hold at most 20,000, and two of them running side by side (suites run in parallel) would
/// exhaust that and fail each other, and any test starting a connection meanwhile.
@Suite(.serialized) struct ManyConnectionsTests {
    /// 10,000 idle keep-alive connections are held by a `deltacast serve` process, then every
    /// one is served a request. (A separate process: client and server each need 10,000
    /// descriptors, and a process may hold at most 20,000.)
    @Test func tenThousandIdleConnectionsAreHeldAndThenServed() throws {
        let (process, port) = try startServeProcess(manyConnectionsConfig)
        defer { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }

        var clients: [RawClient] = []
        clients.reserveCapacity(10_000)
        for _ in 0..<10_000 { clients.append(try RawClient(port: port)) }
        var served = 0
        for batch in stride(from: 0, to: clients.count, by: 500) {
            let slice = clients[batch..<min(batch + 500, clients.count)]
            for client in slice { client.send("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n") }
            for client in slice where client.read(responses: 1).texts.first?.hasPrefix("HTTP/1.1 200 OK") == true { served += 1 }
        }
        #expect(served == 10_000)
    }
}

@Suite struct ClientLibraryRouteTests {
    /// `/deltacast.js` (classic), `/deltacast.mjs` (with an export) and `/deltacast.d.ts`:
    /// ETag, 304, a day of caching, 405 for other methods; `/` is the dashboard only when asked for.
    @Test func theLibraryIsServedWithAnETagAndTheDashboardOnlyInTheDemo() throws {
        try withServer(endpoints) { port in
            let script = try httpRequest(port: port, "GET /deltacast.js HTTP/1.1\r\nHost: a\r\n\r\n")
            #expect(script.status == 200)
            #expect(script.head.contains("Content-Type: text/javascript; charset=utf-8"))
            #expect(script.head.contains("Cache-Control: public, max-age=86400"))
            #expect(script.body.contains("global.Deltacast = Deltacast;") && !script.body.contains("export {"))
            let etag = try #require(script.head.split(separator: "\r\n").first { $0.hasPrefix("ETag: ") }?.dropFirst(6))
            let again = try httpRequest(port: port, "GET /deltacast.js HTTP/1.1\r\nHost: a\r\nIf-None-Match: \(etag)\r\n\r\n")
            #expect(again.status == 304 && again.body.isEmpty)
            let module = try httpRequest(port: port, "GET /deltacast.mjs HTTP/1.1\r\nHost: a\r\n\r\n")
            #expect(module.body.hasSuffix("\nconst Deltacast = globalThis.Deltacast;\nexport { Deltacast };\nexport default Deltacast;\n"))
            #expect(!module.head.contains("ETag: \(etag)"))
            #expect(try httpRequest(port: port, "POST /deltacast.js HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").status == 405)
            #expect(try httpRequest(port: port, "GET / HTTP/1.1\r\nHost: a\r\n\r\n").status == 404)
            // The declarations beside it: same caching, their own ETag, a TypeScript type.
            let declarations = try httpRequest(port: port, "GET /deltacast.d.ts HTTP/1.1\r\nHost: a\r\n\r\n")
            #expect(declarations.status == 200 && declarations.head.contains("Content-Type: application/typescript; charset=utf-8"))
            #expect(declarations.head.contains("Cache-Control: public, max-age=86400") && !declarations.head.contains("ETag: \(etag)"))
            #expect(declarations.body.contains("export declare class Deltacast<Topics extends object = {}>"))
            let typesETag = try #require(declarations.head.split(separator: "\r\n").first { $0.hasPrefix("ETag: ") }?.dropFirst(6))
            #expect(try httpRequest(port: port, "GET /deltacast.d.ts HTTP/1.1\r\nHost: a\r\nIf-None-Match: \(typesETag)\r\n\r\n").status == 304)
            #expect(try httpRequest(port: port, "DELETE /deltacast.d.ts HTTP/1.1\r\nHost: a\r\n\r\n").status == 405)
            #expect(try httpRequest(port: port, "GET /deltacast.ts HTTP/1.1\r\nHost: a\r\n\r\n").status == 404)
        }
        try withServer(endpoints, dashboard: true) { port in
            let page = try httpRequest(port: port, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            #expect(page.status == 200 && page.head.contains("Content-Type: text/html; charset=utf-8"))
            #expect(page.body.contains(#"<script src="/deltacast.js"></script>"#))
        }
    }
}

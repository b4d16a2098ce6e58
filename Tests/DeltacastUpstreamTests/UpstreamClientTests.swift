import DeltacastBase
import DeltacastClient
import DeltacastLoop
import DeltacastUpstream
import Foundation
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A loopback HTTP server that answers each request with what `respond` returns (raw bytes,
/// or nil to say nothing and keep the connection open) and records the request heads. With
/// `closeAfterAnswer`, it closes each connection after its first answer, without saying so in
/// the answer (a server dropping idle keep-alive connections).
final class ScriptedServer: @unchecked Sendable {
    let port: Int
    private let fd: Int32
    let heads = Locked<[String]>([])
    private let accepted = Atomic<Int>(0)
    /// Connections accepted so far.
    var connections: Int { accepted.load(ordering: .relaxed) }
    private let respond: @Sendable (String, Int) -> [UInt8]?
    private let closeAfterAnswer: Bool

    init(closeAfterAnswer: Bool = false, _ respond: @escaping @Sendable (_ head: String, _ index: Int) -> [UInt8]?) throws {
        self.closeAfterAnswer = closeAfterAnswer
        let (fd, port) = try Socket.listen(host: "127.0.0.1", port: 0, reusePort: false)
        self.fd = fd
        self.port = port
        self.respond = respond
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)
        Thread.detachNewThread { [self] in self.acceptLoop() }
    }

    func stop() { shutdown(fd, Int32(SHUT_RDWR)); close(fd) }

    private func acceptLoop() {
        while true {
            let client = accept(fd, nil, nil)
            guard client >= 0 else { return }
            accepted.add(1, ordering: .relaxed)
            Thread.detachNewThread { [self] in self.serve(client) }
        }
    }

    private func serve(_ client: Int32) {
        defer { close(client) }
        var buffer = [UInt8](repeating: 0, count: 65536)
        var pending: [UInt8] = []
        while true {
            let count = read(client, &buffer, buffer.count)
            guard count > 0 else { return }
            pending += buffer[0..<count]
            while let end = pending.firstRange(of: [13, 10, 13, 10]) {
                let head = String(decoding: pending[..<end.lowerBound], as: UTF8.self)
                pending.removeSubrange(..<end.upperBound)
                let index = heads.withLock { $0.append(head); return $0.count - 1 }
                guard let answer = respond(head, index) else { sleep(30); return }
                _ = answer.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if closeAfterAnswer { return }
            }
        }
    }

    static func response(_ status: String, headers: [String] = [], body: [UInt8]) -> [UInt8] {
        var text = "HTTP/1.1 \(status)\r\nContent-Length: \(body.count)\r\n"
        for header in headers { text += header + "\r\n" }
        return Array((text + "\r\n").utf8) + body
    }
}

/// Sends `requests` one after another through one client on a fresh loop (each after the
/// previous one's response) and returns the responses.
func fetchInSequence(_ requests: [UpstreamRequest]) throws -> [UpstreamResponse] {
    let loop = try EventLoop()
    try loop.start(name: "upstream-test")
    defer { loop.stop(); loop.join() }
    let responses = Locked<[UpstreamResponse]>([])
    let finished = DispatchSemaphore(value: 0)
    loop.execute {
        let client = UpstreamClient(loop: loop, maxConnections: 4)
        func next(_ index: Int) {
            guard index < requests.count else { _ = client; finished.signal(); return }
            client.fetch(requests[index]) { response in responses.withLock { $0.append(response) }; next(index + 1) }
        }
        next(0)
    }
    guard finished.wait(timeout: .now() + 30) == .success else {
        throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: "no completion within 30 s"])
    }
    return responses.withLock { $0 }
}

/// Runs `client.fetch` on a fresh loop and waits for the response.
func fetch(_ request: UpstreamRequest) throws -> UpstreamResponse {
    let loop = try EventLoop()
    try loop.start(name: "upstream-test")
    defer { loop.stop(); loop.join() }
    let answer = Handoff<UpstreamResponse>()
    loop.execute {
        let client = UpstreamClient(loop: loop, maxConnections: 4)
        client.fetch(request) { response in _ = client; answer.give(response) }
    }
    if let response = answer.wait(seconds: 20) { return response }
    throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: "no completion within 20 s"])
}

func request(_ port: Int, path: String = "/doc", timeout: Int = 5000, maxBody: Int = 1 << 20, headers: [(name: String, value: String)] = []) -> UpstreamRequest {
    UpstreamRequest(url: "http://127.0.0.1:\(port)\(path)", headers: headers, timeoutMilliseconds: timeout, maxBody: maxBody, followRedirects: false)
}

@Suite struct UpstreamClientTests {
    @Test func fetchesABodyWithHeadersAndSendsConfiguredOnes() throws {
        let server = try ScriptedServer { _, _ in ScriptedServer.response("200 OK", headers: ["Content-Type: application/json", "ETag: \"v1\""], body: Array("{\"a\":1}".utf8)) }
        defer { server.stop() }
        let response = try fetch(request(server.port, headers: [("Authorization", "Bearer s3cret")]))
        #expect(response.failure == nil)
        #expect(response.status == 200)
        #expect(response.body == Array("{\"a\":1}".utf8))
        #expect(response.header("ETag") == "\"v1\"")
        let head = server.heads.withLock { $0[0] }
        #expect(head.hasPrefix("GET /doc HTTP/1.1"))
        #expect(head.contains("Authorization: Bearer s3cret"))
        #expect(head.lowercased().contains("accept-encoding: "))
        #expect(head.contains("gzip"))
    }

    @Test func decodesAGzipBody() throws {
        // gzip of {"compressed":true}, made by Python's gzip.compress(mtime=0).
        let gzip: [UInt8] = [0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0xab, 0x56, 0x4a, 0xce, 0xcf, 0x2d,
                             0x28, 0x4a, 0x2d, 0x2e, 0x4e, 0x4d, 0x51, 0xb2, 0x2a, 0x29, 0x2a, 0x4d, 0xad, 0x05, 0x00, 0xf1,
                             0xea, 0x39, 0x95, 0x13, 0x00, 0x00, 0x00]
        let server = try ScriptedServer { _, _ in ScriptedServer.response("200 OK", headers: ["Content-Encoding: gzip"], body: gzip) }
        defer { server.stop() }
        let response = try fetch(request(server.port))
        #expect(response.failure == nil)
        #expect(String(decoding: response.body, as: UTF8.self) == "{\"compressed\":true}")
    }

    @Test func aBodyOverMaxBodyIsRefusedWhileReceiving() throws {
        let big = [UInt8](repeating: 0x20, count: 200_000)
        // Announced by Content-Length, and streamed chunked with no length at all.
        let announced = try ScriptedServer { _, _ in ScriptedServer.response("200 OK", body: big) }
        defer { announced.stop() }
        #expect(try fetch(request(announced.port, maxBody: 100_000)).failure == .tooLarge(limit: 100_000))
        let chunked = try ScriptedServer { _, _ in
            var out = Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
            for _ in 0..<20 { out += Array("2710\r\n".utf8) + [UInt8](repeating: 0x20, count: 10_000) + [13, 10] }
            return out + Array("0\r\n\r\n".utf8)
        }
        defer { chunked.stop() }
        #expect(try fetch(request(chunked.port, maxBody: 100_000)).failure == .tooLarge(limit: 100_000))
        #expect(try fetch(request(chunked.port, maxBody: 300_000)).body.count == 200_000)
    }

    @Test func aSilentUpstreamTimesOutAndARefusedOneSaysSo() throws {
        let silent = try ScriptedServer { _, _ in nil }
        defer { silent.stop() }
        #expect(try fetch(request(silent.port, timeout: 300)).failure == .timeout(milliseconds: 300))
        // A port nobody listens on: bind one, close it, connect to it.
        let (fd, port) = try Socket.listen(host: "127.0.0.1", port: 0, reusePort: false)
        close(fd)
        let refused = try fetch(request(port))
        guard case .connect(let message) = refused.failure else { Issue.record("expected a connect failure, got \(String(describing: refused.failure))"); return }
        #expect(message.lowercased().contains("connect"))
    }

    @Test func onlyTheHeadersThePollerReadsAreKept() throws {
        let headers = (0..<150).map { "X-Filler-\($0): \($0)" } + ["eTaG:  \"first\" \t", "Last-Modified: Tue, 01 Dec 2026 10:00:00 GMT", "Retry-After: 5"]
        let server = try ScriptedServer { _, _ in ScriptedServer.response("200 OK", headers: headers + ["Content-Type: application/json"], body: Array("{}".utf8)) }
        defer { server.stop() }
        let response = try fetch(request(server.port))
        #expect(response.failure == nil && response.body == Array("{}".utf8))
        #expect(response.headers.map(\.name) == ["content-type", "etag", "last-modified", "retry-after"])
        #expect(response.header("ETag") == "\"first\"")   // any case, trimmed
        #expect(response.header("retry-after") == "5")
        #expect(response.header("x-filler-1") == nil)
    }

    @Test func aRepeatedKeptHeaderKeepsItsFirstValue() throws {
        let repeated = ["ETag: \"first\""] + (1..<500).map { "ETag: \"\($0)\"" }
        let server = try ScriptedServer { _, _ in ScriptedServer.response("200 OK", headers: repeated, body: Array("{}".utf8)) }
        defer { server.stop() }
        let response = try fetch(request(server.port))
        #expect(response.failure == nil)
        #expect(response.headers.map(\.name) == ["etag"])   // one value per kept name, whatever the answer repeats
        #expect(response.etag == "\"first\"")
    }

    @Test func redirectsAreNotFollowedByDefault() throws {
        let server = try ScriptedServer { _, _ in ScriptedServer.response("302 Found", headers: ["Location: /login"], body: []) }
        defer { server.stop() }
        let response = try fetch(request(server.port))
        #expect(response.status == 302)
        #expect(server.heads.withLock { $0.count } == 1)
    }

    @Test func keepAliveReusesOneConnectionAcrossPolls() throws {
        let server = try ScriptedServer { _, _ in ScriptedServer.response("200 OK", body: Array("{}".utf8)) }
        defer { server.stop() }
        let responses = try fetchInSequence(Array(repeating: request(server.port), count: 5))
        #expect(responses.map(\.status) == Array(repeating: 200, count: 5))
        #expect(server.heads.withLock { $0.count } == 5)
        #expect(server.connections == 1)
    }

    @Test func aPeakOfRequestsLeavesAtMost64TransfersPooled() throws {
        let server = try ScriptedServer { _, _ in ScriptedServer.response("200 OK", body: Array("{}".utf8)) }
        defer { server.stop() }
        let loop = try EventLoop()
        try loop.start(name: "upstream-test")
        defer { loop.stop(); loop.join() }
        let pooled = Locked<(answered: Int, pooled: Int)>((0, -1))
        let finished = DispatchSemaphore(value: 0)
        loop.execute {
            let client = UpstreamClient(loop: loop, maxConnections: 4)
            for _ in 0..<100 {
                client.fetch(request(server.port)) { response in
                    // A transfer is back in the pool when its handler runs.
                    let done = pooled.withLock { state -> Bool in
                        if response.status == 200 { state.answered += 1 }
                        state.pooled = client.pooledTransfers
                        return state.answered == 100
                    }
                    if done { finished.signal() }
                }
            }
        }
        #expect(finished.wait(timeout: .now() + 30) == .success)
        #expect(pooled.withLock { $0 } == (100, 64))
    }

    /// Idle pooled connections stay registered with the loop; one the server closes must be
    /// noticed, and the next request must go out on a new connection, never wait on a socket
    /// number that was closed (the same number comes back for the next socket).
    @Test func aServerClosingIdleConnectionsGetsEachRequestOnANewOne() throws {
        let silent = try ScriptedServer(closeAfterAnswer: true) { _, _ in ScriptedServer.response("200 OK", body: Array("{}".utf8)) }
        defer { silent.stop() }
        let saying = try ScriptedServer { _, _ in ScriptedServer.response("200 OK", headers: ["Connection: close"], body: Array("{}".utf8)) }
        defer { saying.stop() }
        let requests = (0..<12).map { request($0 % 3 == 0 ? saying.port : silent.port, timeout: 10_000) }
        let responses = try fetchInSequence(requests)
        #expect(responses.map(\.status) == Array(repeating: 200, count: 12))
        #expect(responses.allSatisfy { $0.failure == nil })
        #expect(saying.connections == 4)
        #expect(silent.heads.withLock { $0.count } == 8)
    }

    @Test func conditionalHeadersGoOutOnceWithTheFixedOnesOnEveryRequest() throws {
        let server = try ScriptedServer { _, _ in ScriptedServer.response("304 Not Modified", body: []) }
        defer { server.stop() }
        var conditional = request(server.port, headers: [("Authorization", "Bearer user-7")])
        conditional.validators = UpstreamValidators(etag: "\"v9\"", lastModified: "Tue, 01 Dec 2026 10:00:00 GMT")
        var plain = conditional
        plain.validators = nil
        let responses = try fetchInSequence([conditional, conditional, plain, conditional])
        #expect(responses.map(\.status) == [304, 304, 304, 304])
        for (index, head) in server.heads.withLock({ $0 }).enumerated() {
            let lines = head.split(separator: "\r\n").dropFirst().map { $0.lowercased() }
            let expected = ["authorization: bearer user-7", "accept: application/json, */*;q=0.5", "user-agent: deltacast"]
                + (index == 2 ? [] : ["if-none-match: \"v9\"", "if-modified-since: tue, 01 dec 2026 10:00:00 gmt"])
            for line in expected { #expect(lines.filter { $0 == line }.count == 1, "request \(index): \(line)") }
            #expect(lines.filter { $0.hasPrefix("if-") }.count == expected.filter { $0.hasPrefix("if-") }.count)
        }
    }
}

@Suite struct PollerScheduleTests {
    @Test func backoffDoublesUpToTheCap() {
        #expect(Poller.Backoff.delay(interval: 1000, failures: 0) == 1000)
        #expect(Poller.Backoff.delay(interval: 1000, failures: 1) == 2000)
        #expect(Poller.Backoff.delay(interval: 1000, failures: 3) == 8000)
        #expect(Poller.Backoff.delay(interval: 1000, failures: 10) == Poller.Backoff.cap)
        #expect(Poller.Backoff.delay(interval: 1000, failures: 1000) == Poller.Backoff.cap)
        // An interval longer than the cap is never shortened by an error.
        #expect(Poller.Backoff.delay(interval: 120_000, failures: 2) == 120_000)
    }

    @Test func retryAfterTakesSecondsAndHTTPDates() {
        #expect(Poller.retryAfterMilliseconds("7") == 7000)
        #expect(Poller.retryAfterMilliseconds(" 0 ") == 0)
        #expect(Poller.retryAfterMilliseconds("-3") == nil)
        #expect(Poller.retryAfterMilliseconds("soon") == nil)
        #expect(Poller.retryAfterMilliseconds("Sun, 06 Nov 1994 08:49:37 GMT") == 0)  // in the past
        var now = time(nil) + 120
        var parts = tm()
        gmtime_r(&now, &parts)
        var text = [CChar](repeating: 0, count: 64)
        strftime(&text, 64, "%a, %d %b %Y %H:%M:%S GMT", &parts)
        let future = Poller.retryAfterMilliseconds(String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)) ?? 0
        #expect(future > 110_000 && future <= 120_000)
    }
}

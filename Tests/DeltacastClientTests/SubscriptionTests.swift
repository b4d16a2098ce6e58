import DeltacastClient
import DeltacastTestSupport
import Foundation
import Synchronization
import Testing

/// The Swift client library against a real `deltacast serve` (the built executable) on
/// loopback: each transport forced, negotiation when upgrades are refused, a refused topic as a
/// typed error, cancellation, resuming across a restart, and 1,000 subscriptions on one client.
@Suite(.serialized) struct SubscriptionTests {
    static let admin = "client-admin-token-0123456789"

    struct Item: Decodable, Sendable, Equatable { var id: Int; var price: Int }
    struct Prices: Decodable, Sendable, Equatable { var version: Int; var items: [Item] }

    static func configuration(port: Int = 0, transports: String = "[websocket, sse, longpoll]", extra: String = "") -> String {
        """
        listen: 127.0.0.1:\(port)
        transports: \(transports)
        admin: { token: \(admin) }
        auth:
          api_keys:
            - { key: reader-key-0123456789, subject: reader, scopes: [read] }
            - { key: other-key-0123456789, subject: other, scopes: [] }
        limits: { max_topics_per_connection: 2000, subscribe_rate: 1000/s, message_rate: 1000/s }
        endpoints:
          - path: /prices
            source: publish
            auth: none
            array_keys: { /items: id }
          - path: /secret
            source: publish
            auth: token
            scopes: [read]
          - path: /t/{n}
            source: publish
            auth: none
        \(extra)
        """
    }

    static func prices(_ version: Int) -> String {
        #"{"version":\#(version),"items":["# + (0..<20).map { #"{"id":\#($0),"price":\#(100 + $0 + ($0 == version % 20 ? version : 0))}"# }.joined(separator: ",") + #"],"note":"long enough that a change travels as a patch"}"#
    }

    static func expected(_ version: Int) -> Prices {
        Prices(version: version, items: (0..<20).map { Item(id: $0, price: 100 + $0 + ($0 == version % 20 ? version : 0)) })
    }

    /// `POST /deltacast/publish` with the admin token; the status.
    @discardableResult
    static func publish(_ port: Int, _ topic: String, _ body: String) throws -> Int {
        let connection = try ClientConnection(host: "127.0.0.1", port: port, timeout: 10)
        defer { connection.close() }
        let request = "POST /deltacast/publish?topic=\(topic) HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(admin)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        return try connection.exchange(Array(request.utf8)).status
    }

    /// A proxy of ``configuration(port:transports:extra:)`` with version 1 of `/prices` published.
    static func servingPrices() throws -> (proxy: DeltacastChild, port: Int) {
        let proxy = try DeltacastChild(["serve"], configuration: configuration())
        do {
            let port = try #require(proxy.port)
            try publish(port, "/prices", prices(1))
            return (proxy, port)
        } catch {
            proxy.stop()
            throw error
        }
    }

    static func get(_ port: Int, _ target: String) throws -> String {
        let connection = try ClientConnection(host: "127.0.0.1", port: port, timeout: 10)
        defer { connection.close() }
        let request = "GET \(target) HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(admin)\r\nConnection: close\r\n\r\n"
        return String(decoding: try connection.exchange(Array(request.utf8)).body, as: UTF8.self)
    }

    /// What `read` returns once `done` holds for it, for a change in the proxy that no event
    /// announces (its status page): read every 50 ms, at most 100 times; the last value read
    /// otherwise, for the caller's expectation to report.
    static func eventually<Value>(_ read: () throws -> Value, until done: (Value) -> Bool) async throws -> Value {
        var value = try read()
        for _ in 0..<100 where !done(value) {
            try await Task.sleep(for: .milliseconds(50))
            value = try read()
        }
        return value
    }

    func client(_ proxy: DeltacastChild, _ transports: [DeltacastClient.Transport], token: String? = nil) -> DeltacastClient {
        var options = DeltacastClient.Options()
        options.transports = transports
        options.initialBackoff = .milliseconds(100)
        options.maxBackoff = .milliseconds(500)
        options.pollWait = 2
        return DeltacastClient(url: URL(string: proxy.base)!, token: token, options: options)
    }

    @Test(arguments: DeltacastClient.Transport.allCases)
    func eachTransportForcedDeliversEveryStateDecoded(_ transport: DeltacastClient.Transport) async throws {
        let (proxy, port) = try Self.servingPrices()
        defer { proxy.stop() }
        let client = client(proxy, [transport])
        defer { client.close() }
        let (seen, cursors) = try await Self.fiveStates(client, port: port, on: transport)
        // Every version, decoded, each after the one before: the later ones came as patches
        // applied to the held state (a patch whose base is not the cursor is never applied).
        #expect(seen == (1...5).map(Self.expected))
        #expect(Set(cursors).count == 5)
    }

    /// The states of `/prices` as `client` decodes them, publishing versions 2 to 5 each once
    /// the one before arrived (version 1 is published already); checks at each state that the
    /// client is on `transport`.
    static func fiveStates(_ client: DeltacastClient, port: Int, on transport: DeltacastClient.Transport) async throws -> ([Prices], [String]) {
        var seen: [Prices] = []
        var cursors: [String] = []
        for try await update in client.updates("/prices", as: Prices.self) {
            guard case .state(let prices, let cursor) = update else { continue }
            seen.append(prices)
            cursors.append(cursor)
            #expect(client.transport == transport)
            if prices.version < 5 { try publish(port, "/prices", Self.prices(prices.version + 1)) } else { break }
        }
        return (seen, cursors)
    }

    @Test func aConsumerThatFallsBehindGetsTheNewest64UpdatesAndTheLatestState() async throws {
        let (proxy, port) = try Self.servingPrices()
        defer { proxy.stop() }
        let client = client(proxy, [.websocket])
        defer { client.close() }
        var slow = client.updates("/prices", as: Prices.self).makeAsyncIterator()
        guard case .state(let first, _)? = try await slow.next() else { Issue.record("no first state"); return }
        #expect(first.version == 1)
        // 100 more states while nobody reads; then a marker on another topic of the same
        // connection, which arrives after all of them.
        for version in 2...101 { try Self.publish(port, "/prices", Self.prices(version)) }
        try Self.publish(port, "/t/1", #"{"n":1}"#)
        for try await _ in client.subscribe("/t/1", as: [String: Int].self) { break }
        var versions: [Int] = []
        while let update = try await slow.next() {
            guard case .state(let prices, _) = update else { continue }
            versions.append(prices.version)
            if prices.version == 101 { break }
        }
        #expect(versions.count == 64)
        #expect(versions == Array(38...101))
    }

    @Test func withUpgradesRefusedTheClientNegotiatesSSE() async throws {
        let proxy = try DeltacastChild(["serve"], configuration: Self.configuration(transports: "[sse, longpoll]"))
        defer { proxy.stop() }
        let port = try #require(proxy.port)
        try Self.publish(port, "/prices", Self.prices(1))
        let client = client(proxy, DeltacastClient.Transport.allCases)
        defer { client.close() }
        for try await prices in client.subscribe("/prices", as: Prices.self) {
            #expect(prices == Self.expected(1))
            #expect(client.transport == .sse)
            break
        }
    }

    @Test func behindAMiddleboxThatSwallowsUpgradesTheClientFallsBackToSSE() async throws {
        let (proxy, port) = try Self.servingPrices()
        defer { proxy.stop() }
        let middlebox = try SwallowingMiddlebox(target: port)
        defer { middlebox.stop() }
        var options = DeltacastClient.Options()
        options.openTimeout = .seconds(1)
        let client = DeltacastClient(url: URL(string: "http://127.0.0.1:\(middlebox.port)")!, options: options)
        defer { client.close() }
        for try await prices in client.subscribe("/prices", as: Prices.self) {
            #expect(prices == Self.expected(1))
            #expect(client.transport == .sse)
            break
        }
        #expect(middlebox.swallowed == 1)
    }

    @Test(arguments: DeltacastClient.Transport.allCases)
    func aRefusedTopicEndsWithATypedError(_ transport: DeltacastClient.Transport) async throws {
        let proxy = try DeltacastChild(["serve"], configuration: Self.configuration())
        defer { proxy.stop() }
        try Self.publish(try #require(proxy.port), "/secret", #"{"s":1}"#)
        let outsider = client(proxy, [transport], token: "other-key-0123456789")
        defer { outsider.close() }
        await #expect(throws: DeltacastClient.SubscriptionError.self) {
            for try await _ in outsider.subscribe("/secret", as: [String: Int].self) {}
        }
        do {
            for try await _ in outsider.subscribe("/secret", as: [String: Int].self) {}
        } catch let error as DeltacastClient.SubscriptionError {
            guard case .refused(code: "forbidden", _) = error else { Issue.record("\(error)"); return }
        }
        do {
            for try await _ in outsider.subscribe("/nowhere", as: [String: Int].self) {}
            Issue.record("/nowhere delivered a state")
        } catch let error as DeltacastClient.SubscriptionError {
            #expect(error == .refused(code: "not_found", message: "no endpoint is configured at /nowhere"))
        }
        // The key that carries the scope reads it.
        let reader = client(proxy, [transport], token: "reader-key-0123456789")
        defer { reader.close() }
        for try await secret in reader.subscribe("/secret", as: [String: Int].self) {
            #expect(secret == ["s": 1])
            break
        }
    }

    @Test func cancellingTheTaskUnsubscribes() async throws {
        let (proxy, port) = try Self.servingPrices()
        defer { proxy.stop() }
        let client = client(proxy, [.websocket])
        defer { client.close() }
        let first = AsyncStream<Void>.makeStream()
        let task = Task {
            for try await _ in client.subscribe("/prices", as: Prices.self) { first.continuation.yield() }
        }
        for await _ in first.stream { break }
        #expect(try Self.get(port, "/deltacast/status").contains(#""name":"/prices","subscribers":1"#))
        task.cancel()
        // The unsubscribe reaches the proxy within a read tick of the client's thread.
        let status = try await Self.eventually({ try Self.get(port, "/deltacast/status") }, until: { $0.contains(#""name":"/prices","subscribers":0"#) })
        #expect(status.contains(#""name":"/prices","subscribers":0"#), "\(status)")
    }

    @Test func aRestartedProxyIsRejoinedAndItsNewStateArrives() async throws {
        let (probe, port) = try freeLoopbackPort()
        close(probe)
        var proxy = try DeltacastChild(["serve"], configuration: Self.configuration(port: port))
        defer { proxy.stop() }
        try Self.publish(port, "/prices", Self.prices(1))
        let client = client(proxy, [.websocket])
        defer { client.close() }
        var seen: [Int] = []
        for try await prices in client.subscribe("/prices", as: Prices.self) {
            seen.append(prices.version)
            if prices.version == 1 {
                try Self.publish(port, "/prices", Self.prices(2))
            } else if prices.version == 2 {
                // The proxy dies; a new one on the same port knows nothing of the old epoch.
                proxy.stop()
                proxy = try DeltacastChild(["serve"], configuration: Self.configuration(port: port))
                try Self.publish(port, "/prices", Self.prices(3))
            } else {
                break
            }
        }
        #expect(seen == [1, 2, 3])
    }

    struct TokenUnavailable: Error {}

    @Test func aTokenFunctionIsAskedBeforeEveryConnection() async throws {
        let (probe, port) = try freeLoopbackPort()
        close(probe)
        var proxy = try DeltacastChild(["serve"], configuration: Self.configuration(port: port))
        defer { proxy.stop() }
        try Self.publish(port, "/secret", #"{"s":1}"#)
        let calls = Atomic<Int>(0)
        let reasons = Mutex<[String]>([])
        var options = DeltacastClient.Options()
        options.transports = [.websocket]
        options.initialBackoff = .milliseconds(100)
        options.maxBackoff = .milliseconds(500)
        options.onConnection = { event in
            if case .disconnected(let reason) = event { reasons.withLock { $0.append(reason) } }
        }
        // The first call fails (the attempt fails with its reason, and the client tries again);
        // the others give the key that may read /secret.
        let client = DeltacastClient(url: URL(string: proxy.base)!, options: options) {
            if calls.add(1, ordering: .relaxed).newValue == 1 { throw TokenUnavailable() }
            return "reader-key-0123456789"
        }
        defer { client.close() }
        var seen: [Int] = []
        for try await secret in client.subscribe("/secret", as: [String: Int].self) {
            seen.append(secret["s"] ?? 0)
            guard secret["s"] == 1 else { break }
            // The proxy dies: the next connection asks the function again.
            proxy.stop()
            proxy = try DeltacastChild(["serve"], configuration: Self.configuration(port: port))
            try Self.publish(port, "/secret", #"{"s":2}"#)
        }
        #expect(seen == [1, 2])
        #expect(calls.load(ordering: .relaxed) >= 3)
        #expect(reasons.withLock { $0.first } == "the token function failed: TokenUnavailable()")
    }

    @Test func aTokenFunctionThatDoesNotAnswerFailsTheAttemptAtItsTimeout() async throws {
        let (proxy, _) = try Self.servingPrices()
        defer { proxy.stop() }
        let calls = Atomic<Int>(0)
        let reasons = Mutex<[String]>([])
        var options = DeltacastClient.Options()
        options.tokenTimeout = .milliseconds(200)
        options.initialBackoff = .milliseconds(50)
        options.maxBackoff = .milliseconds(50)
        options.onConnection = { event in
            if case .disconnected(let reason) = event { reasons.withLock { $0.append(reason) } }
        }
        // The first call hangs (until cancelled); the second answers.
        let client = DeltacastClient(url: URL(string: proxy.base)!, options: options) {
            if calls.add(1, ordering: .relaxed).newValue == 1 { try await Task.sleep(for: .seconds(3600)) }
            return "reader-key-0123456789"
        }
        defer { client.close() }
        for try await prices in client.subscribe("/prices", as: Prices.self) {
            #expect(prices == Self.expected(1))
            break
        }
        #expect(reasons.withLock { $0.first } == "the token function did not answer within 0.2 seconds (Options.tokenTimeout)")
    }

    @Test func subscribesTheProxyRefusesForItsRateAreSentAgainWhenItSays() async throws {
        // The proxy's defaults (subscribe_rate 50/s), a client pacing twice as fast.
        let proxy = try DeltacastChild(["serve"], configuration: Self.configuration().replacingOccurrences(of: ", subscribe_rate: 1000/s, message_rate: 1000/s", with: ""))
        defer { proxy.stop() }
        let port = try #require(proxy.port)
        for n in 0..<120 { try Self.publish(port, "/t/\(n)", #"{"n":\#(n)}"#) }
        var options = DeltacastClient.Options()
        options.transports = [.websocket]
        options.subscribeRate = 100
        let client = DeltacastClient(url: URL(string: proxy.base)!, options: options)
        defer { client.close() }
        let received = try await withThrowingTaskGroup(of: Int.self) { group in
            for n in 0..<120 {
                group.addTask {
                    for try await value in client.subscribe("/t/\(n)", as: [String: Int].self) { return value["n"] ?? -1 }
                    return -1
                }
            }
            var values: [Int] = []
            for try await value in group { values.append(value) }
            return values
        }
        #expect(received.sorted() == Array(0..<120))
    }

    @Test func oneClientHoldsAThousandSubscriptionsOnOneConnection() async throws {
        let proxy = try DeltacastChild(["serve"], configuration: Self.configuration())
        defer { proxy.stop() }
        let port = try #require(proxy.port)
        for n in 0..<1000 { try Self.publish(port, "/t/\(n)", #"{"n":\#(n)}"#) }
        try Self.publish(port, "/prices", Self.prices(1))
        var options = DeltacastClient.Options()
        options.transports = [.websocket]
        options.subscribeRate = 800
        let client = DeltacastClient(url: URL(string: proxy.base)!, options: options)
        defer { client.close() }
        // A subscription held for the whole test keeps the one connection open.
        let held = client.subscribe("/prices", as: Prices.self).makeAsyncIterator()
        _ = held
        // Each task reads its topic's first state and the transport it came by.
        let received = try await withThrowingTaskGroup(of: (Int, DeltacastClient.Transport?).self) { group in
            for n in 0..<1000 {
                group.addTask {
                    for try await value in client.subscribe("/t/\(n)", as: [String: Int].self) { return (value["n"] ?? -1, client.transport) }
                    return (-1, nil)
                }
            }
            var values: [(Int, DeltacastClient.Transport?)] = []
            for try await value in group { values.append(value) }
            return values
        }
        #expect(received.map(\.0).sorted() == Array(0..<1000))
        #expect(received.allSatisfy { $0.1 == .websocket })
        let status = try Self.get(port, "/deltacast/status")
        #expect(status.contains(#""name":"/prices","subscribers":1"#), "\(status)")
    }
}

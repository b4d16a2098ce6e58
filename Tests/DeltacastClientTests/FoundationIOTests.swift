@testable import DeltacastClient
import DeltacastTestSupport
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing

/// The client library on Foundation's `URLSession` (``DeltacastClient/IO/foundation``), the I/O
/// of Apple platforms, here on Linux against a real `deltacast serve`: SSE and long-poll
/// forced, negotiation past the WebSocket it does not carry, a refused topic, `close()` cutting
/// a held long-poll, and the bound on what may wait unread.
@Suite(.serialized) struct FoundationIOTests {
    typealias Fixture = SubscriptionTests

    func client(_ proxy: DeltacastChild, _ transports: [DeltacastClient.Transport], token: String? = nil, pollWait: Int = 2) -> DeltacastClient {
        var options = DeltacastClient.Options()
        options.io = .foundation
        options.transports = transports
        options.initialBackoff = .milliseconds(100)
        options.maxBackoff = .milliseconds(500)
        options.pollWait = pollWait
        return DeltacastClient(url: URL(string: proxy.base)!, token: token, options: options)
    }

    @Test(arguments: [DeltacastClient.Transport.sse, .longpoll])
    func eachTransportDeliversEveryStateDecoded(_ transport: DeltacastClient.Transport) async throws {
        let (proxy, port) = try Fixture.servingPrices()
        defer { proxy.stop() }
        let client = client(proxy, [transport])
        defer { client.close() }
        let (seen, cursors) = try await Fixture.fiveStates(client, port: port, on: transport)
        #expect(seen == (1...5).map(Fixture.expected))
        #expect(Set(cursors).count == 5)
    }

    @Test func negotiationGoesPastWebSocketToSSE() async throws {
        let (proxy, _) = try Fixture.servingPrices()
        defer { proxy.stop() }
        let client = client(proxy, DeltacastClient.Transport.allCases)
        defer { client.close() }
        for try await prices in client.subscribe("/prices", as: Fixture.Prices.self) {
            #expect(prices == Fixture.expected(1))
            #expect(client.transport == .sse)
            break
        }
    }

    @Test(arguments: [DeltacastClient.Transport.sse, .longpoll])
    func aForbiddenTopicEndsWithATypedError(_ transport: DeltacastClient.Transport) async throws {
        let proxy = try DeltacastChild(["serve"], configuration: Fixture.configuration())
        defer { proxy.stop() }
        try Fixture.publish(try #require(proxy.port), "/secret", #"{"s":1}"#)
        let outsider = client(proxy, [transport], token: "other-key-0123456789")
        defer { outsider.close() }
        do {
            for try await _ in outsider.subscribe("/secret", as: [String: Int].self) {}
            Issue.record("/secret delivered a state")
        } catch let error as DeltacastClient.SubscriptionError {
            guard case .refused(code: "forbidden", _) = error else { Issue.record("\(error)"); return }
        }
    }

    @Test func closeCutsAHeldLongPoll() async throws {
        let (proxy, port) = try Fixture.servingPrices()
        defer { proxy.stop() }
        // Held for up to 25 s: only close() ends it sooner.
        let client = client(proxy, [.longpoll], pollWait: 25)
        let first = AsyncStream<Void>.makeStream()
        let task = Task { () -> (any Error)? in
            do {
                for try await _ in client.subscribe("/prices", as: Fixture.Prices.self) { first.continuation.yield() }
                return nil
            } catch {
                return error
            }
        }
        for await _ in first.stream { break }
        // The next poll is held by the proxy now (its connection is open).
        #expect(try await Fixture.eventually({ try heldLongPolls(port) }, until: { $0 == 1 }) == 1)
        client.closeAndWait()
        #expect(await task.value as? DeltacastClient.SubscriptionError == .closed)
        #expect(client.transport == nil)
        // The held request's connection is gone from the proxy.
        #expect(try await Fixture.eventually({ try heldLongPolls(port) }, until: { $0 == 0 }) == 0)
    }

    /// The long-poll connections the proxy holds now (its status page's count).
    func heldLongPolls(_ port: Int) throws -> Int {
        let status = try JSONSerialization.jsonObject(with: Data(try Fixture.get(port, "/deltacast/status").utf8)) as? [String: Any]
        return ((status?["connections"] as? [String: Any])?["longpoll"] as? Int) ?? -1
    }

    @Test func whatWaitsUnreadIsBounded() async throws {
        let proxy = try DeltacastChild(["serve"], configuration: Fixture.configuration())
        defer { proxy.stop() }
        let port = try #require(proxy.port)
        let large = #"{"pad":""# + String(repeating: "x", count: 200_000) + #""}"#
        try Fixture.publish(port, "/t/1", large)
        // Nobody reads while the 200 KB body arrives: past 10,000 bytes the request ends.
        let request = FoundationRequest(URLRequest(url: URL(string: proxy.base + "/t/1")!), idleTimeout: 10, maximumUnread: 10_000)
        defer { request.cancel() }
        #expect(request.ending(within: 10) == .failed("more than 10000 bytes arrived unread"))
        // The same body with room for it arrives whole.
        let roomy = FoundationRequest(URLRequest(url: URL(string: proxy.base + "/t/1")!), idleTimeout: 10)
        defer { roomy.cancel() }
        let body = roomy.body(within: 10, tick: 0.05) { false }
        guard case .success(let bytes)? = body else { Issue.record("\(String(describing: body))"); return }
        #expect(bytes.count == large.utf8.count)
    }
}

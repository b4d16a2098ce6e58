import DeltacastConfig
import DeltacastHub
import DeltacastWire
import Testing
@_spi(Fuzzing) @testable import DeltacastServer

/// Each push session as a value type, on explicit times and real topics: no socket, no loop,
/// no sleep. What they return is what the connection does.
@Suite struct PushSessionTests {
    /// Actions as text, to compare whole sequences.
    static func describe(_ actions: [SessionAction]) -> [String] {
        actions.map { action in
            switch action {
            case .send(let bytes): "send \(text(bytes))"
            case .sendPastWatermark(let bytes): "sendPastWatermark \(text(bytes))"
            case .request(.message(let message)): "request \(message)"
            case .request(.refused(let event)): "refused \(String(decoding: event, as: UTF8.self))"
            case .request(.ignored): "ignored"
            case .keepForNextRequest(let bytes): "keep \(String(decoding: bytes, as: UTF8.self))"
            case .answer(_, let response): "answer \(response.status) \(String(decoding: response.body, as: UTF8.self))"
            case .finish(let reason): "finish \(reason.map { "\($0.level) \($0.code.map(String.init) ?? "-") \($0.text)" } ?? "-")"
            case .close(let reason): "close \(reason?.text ?? "-")"
            case .linger: "linger"
            }
        }
    }

    /// A frame as opcode and payload (a server frame is unmasked); other bytes as text.
    static func text(_ bytes: [UInt8]) -> String {
        guard bytes.count >= 2, bytes[0] & 0x80 != 0, bytes[1] & 0x80 == 0, Int(bytes[1] & 0x7F) == bytes.count - 2 else {
            return String(decoding: bytes, as: UTF8.self)
        }
        let payload = Array(bytes[2...])
        switch bytes[0] & 0x0F {
        case 0x8: return "close \(payload.count >= 2 ? Int(payload[0]) << 8 | Int(payload[1]) : 0) \(String(decoding: payload.dropFirst(2), as: UTF8.self))"
        case 0x9: return "ping"
        case 0xA: return "pong \(payload)"
        default: return "text \(String(decoding: payload, as: UTF8.self))"
        }
    }

    static func clientFrame(_ opcode: WebSocketOpcode, _ payload: [UInt8]) -> ArraySlice<UInt8> {
        WebSocketFrame.encode(opcode, payload: payload, maskKey: [1, 2, 3, 4])[...]
    }

    static func webSocket(_ kind: WebSocketSession.Kind) -> WebSocketSession {
        WebSocketSession(kind: kind, deflate: nil, compressor: nil, maximumMessage: 1 << 20, now: 0, pingInterval: 30_000, credentialHeaders: HTTPHeaders())
    }

    // MARK: WebSocket

    @Test func aWebSocketAnswersPingsAndTurnsMessagesIntoRequests() {
        var session = Self.webSocket(.multiplexed)
        let ping = session.received(Self.clientFrame(.ping, [7]), now: 10)
        #expect(Self.describe(ping) == ["send pong [7]"])
        let subscribe = session.received(Self.clientFrame(.text, Array(#"{"type":"subscribe","topic":"/live/a"}"#.utf8)), now: 20)
        #expect(Self.describe(subscribe) == [#"request subscribe(topic: "/live/a", since: nil)"#])
        let binary = session.received(Self.clientFrame(.binary, [1]), now: 30)
        #expect(Self.describe(binary).first?.hasPrefix(#"refused {"type":"error","code":"bad_request","message":"binary messages"#) == true)
        // Two frames in one read: both, in order.
        let two = session.received(Self.clientFrame(.ping, []) + Self.clientFrame(.text, Array(#"{"type":"unsubscribe","topic":"/live/a"}"#.utf8)), now: 40)
        #expect(Self.describe(two) == ["send pong []", #"request unsubscribe(topic: "/live/a")"#])
    }

    @Test func aSingleTopicWebSocketTakesOnlyAuthAndEchoSendsBack() {
        var single = Self.webSocket(.single)
        #expect(Self.describe(single.received(Self.clientFrame(.text, Array(#"{"type":"subscribe","topic":"/x"}"#.utf8)), now: 1)) == ["ignored"])
        #expect(Self.describe(single.received(Self.clientFrame(.text, Array(#"{"type":"auth","token":"t"}"#.utf8)), now: 2)) == [#"request auth(token: "t")"#])
        var echo = Self.webSocket(.echo)
        #expect(Self.describe(echo.received(Self.clientFrame(.text, Array("hi".utf8)), now: 1)) == ["send text hi"])
    }

    @Test func aWebSocketClosingHandshakeEndsInALingerOnlyWhenThePeerHasNotAnswered() {
        // The peer closes: our reply, then close once written (no linger).
        var answered = Self.webSocket(.multiplexed)
        let peerClose = answered.received(Self.clientFrame(.close, WebSocketFrame.closePayload(code: 1000, reason: "bye")), now: 1)
        #expect(Self.describe(peerClose) == ["send close 1000 ", "finish -"])
        #expect(Self.describe(answered.drained(closing: true)) == ["close -"])
        #expect(answered.drained(closing: false).isEmpty)
        // We close: our frame, past the watermark; then linger until the peer's close arrives.
        var ours = Self.webSocket(.multiplexed)
        #expect(Self.describe(ours.end(code: 4401, reason: "token expired")) == ["sendPastWatermark close 4401 token expired", "finish info 4401 token expired"])
        #expect(Self.describe(ours.end(code: 1008, reason: "again")) == ["finish info 1008 again"])   // one close frame only
        #expect(Self.describe(ours.drained(closing: true)) == ["linger"])
        let late = ours.receivedWhileLingering(Self.clientFrame(.text, Array("late".utf8)))
        let closed = ours.receivedWhileLingering(Self.clientFrame(.close, []))
        #expect(!late && closed)
        // Shutdown: 1012, logged at debug (an ordinary end).
        var draining = Self.webSocket(.single)
        #expect(Self.describe(draining.drain()) == ["sendPastWatermark close 1012 service restart", "finish debug 1012 service restart"])
    }

    @Test func aProtocolErrorClosesWithItsCode() {
        var session = Self.webSocket(.multiplexed)
        // An unmasked client frame (RFC 6455 §5.1): 1002.
        let actions = session.received(WebSocketFrame.encode(.text, payload: Array("x".utf8))[...], now: 1)
        #expect(Self.describe(actions).first?.hasPrefix("sendPastWatermark close 1002") == true)
        #expect(Self.describe(session.drained(closing: true)) == ["linger"])
    }

    @Test func aSilentWebSocketIsPingedThenClosedAndTrafficDefersIt() {
        var session = Self.webSocket(.multiplexed)
        #expect(Self.describe(session.tick(now: 29_999, silent: true)).isEmpty)
        #expect(Self.describe(session.tick(now: 30_000, silent: false)) == ["send ping"])
        _ = session.received(Self.clientFrame(.pong, []), now: 40_000)
        #expect(Self.describe(session.tick(now: 69_999, silent: false)).isEmpty)   // heard at 40 s
        #expect(Self.describe(session.tick(now: 70_000, silent: false)) == ["send ping"])
        #expect(Self.describe(session.tick(now: 100_000, silent: false)) == ["send ping"])
        #expect(Self.describe(session.tick(now: 130_000, silent: false)) == ["sendPastWatermark close 1008 no pong to two pings", "finish info 1008 no pong to two pings"])
    }

    @Test func onlyASingleTopicStreamEndsWithItsTopic() {
        var single = Self.webSocket(.single)
        #expect(Self.describe(single.subscriptionEnded(reason: "forbidden by the upstream")) == ["sendPastWatermark close 1008 forbidden by the upstream", "finish info 1008 forbidden by the upstream"])
        var multiplexed = Self.webSocket(.multiplexed)
        #expect(multiplexed.subscriptionEnded(reason: "forbidden by the upstream").isEmpty)
        var stream = EventStreamSession(multiplexed: false, retryMilliseconds: 3_000)
        #expect(Self.describe(stream.subscriptionEnded(reason: "gone")) == ["finish info - gone"])
        var streams = EventStreamSession(multiplexed: true, retryMilliseconds: 3_000)
        #expect(streams.subscriptionEnded(reason: "gone").isEmpty)
    }

    // MARK: Event stream

    @Test func anEventStreamHeartbeatsOnlyWhenSilentAndEndsWithARetryHint() {
        var stream = EventStreamSession(multiplexed: true, retryMilliseconds: 2_500)
        #expect(stream.tick(now: 1, silent: false).isEmpty)
        #expect(Self.describe(stream.tick(now: 2, silent: true)) == ["send : heartbeat\n\n"])
        #expect(Self.describe(stream.received(Array("ignored".utf8)[...], now: 3)).isEmpty)
        #expect(Self.describe(stream.drain()) == ["send retry: 2500\n\n", "finish -"])
        #expect(Self.describe(stream.drained(closing: true)) == ["close -"])   // nothing to wait for
        #expect(Self.describe(stream.end(code: 4401, reason: "token expired")) == ["finish info - token expired"])
        #expect(String(decoding: stream.event(Array("{}".utf8)), as: UTF8.self) == "event: error\ndata: {}\n\n")
    }

    @Test func aMultiplexedEventStreamListsEveryCursorInItsIDs() throws {
        let published = try SubscriptionSetTests.Published()
        let a = try published.subscribed("/live/a"), b = try published.subscribed("/live/b")
        let first = try published.publish(a, price: 1)
        let other = try published.publish(b, price: 1)
        var subscriptions = SubscriptionSet()
        subscriptions.insert(a, transport: .sse, since: first.cursor, current: first.cursor, listed: true)
        subscriptions.insert(b, transport: .sse, since: other.cursor, current: other.cursor, listed: true)
        let second = try published.publish(a, price: 2)
        _ = subscriptions.admit(second, queueFull: false)
        let frame = String(decoding: EventStreamSession(multiplexed: true, retryMilliseconds: 1).framing.frame(second, listedCursors: { subscriptions.listedCursors })!, as: UTF8.self)
        #expect(frame.hasPrefix("id: \(subscriptions.listedCursors)\n"))
        #expect(frame.hasSuffix(String(decoding: second.sseBody, as: UTF8.self)))
        #expect(subscriptions.listedCursors == "\(second.cursor!),\(other.cursor!)")
        // A single-topic stream's id is the change's own cursor.
        #expect(EventStreamSession(multiplexed: false, retryMilliseconds: 1).framing.frame(second, listedCursors: { subscriptions.listedCursors }) == second.sseEvent)
    }

    // MARK: Held long-poll

    static func request(_ text: String) throws -> HTTPRequestHead {
        var parser = HTTPRequestParser()
        parser.append(Array(text.utf8)[...])
        guard case .head(let request) = try parser.next() else { throw HTTPParseError(status: 400, reason: "no head") }
        return request
    }

    /// The n-th `since` goes with the n-th `topic`, whichever comes first in the query; a
    /// topic with no since of its own has none; an SSE resume's `Last-Event-ID` replaces them.
    @Test func eachSinceGoesWithTheTopicAtItsPlaceInWhateverOrder() throws {
        func topics(_ query: String, _ transport: Transport = .longpoll, lastEventID: String? = nil) throws -> [String] {
            let resume = lastEventID.map { "Last-Event-ID: \($0)\r\n" } ?? ""
            let head = try Self.request("GET /deltacast/poll?\(query) HTTP/1.1\r\nHost: a\r\n\(resume)\r\n")
            return Router.multiplexedTopics(head, transport: transport).map { "\($0.name)@\($0.since?.description ?? "-")" }
        }
        #expect(try topics("topic=/x&since=aaaa-1&topic=/y&since=bbbb-2") == ["/x@aaaa-1", "/y@bbbb-2"])
        #expect(try topics("since=aaaa-1&since=bbbb-2&topic=/x&topic=/y&topic=/z") == ["/x@aaaa-1", "/y@bbbb-2", "/z@-"])
        #expect(try topics("topic=/x&since=aaaa-1&since=bbbb-2&topic=/y") == ["/x@aaaa-1", "/y@bbbb-2"])
        #expect(try topics("topic=/x&topic=/y&since=cccc-3") == ["/x@cccc-3", "/y@-"])
        #expect(try topics("topic=/x&since=junk&topic=/y&since=dddd-4") == ["/x@-", "/y@dddd-4"])
        #expect(try topics("since=aaaa-1&topic=/x&topic=/y", .sse, lastEventID: ",eeee-5") == ["/x@-", "/y@eeee-5"])
    }

    @Test func theWaitIsWhatTheClientAskedForCappedByMaxWait() {
        #expect(HoldSession.wait(seconds: 25, maximum: 60_000) == 25_000)
        #expect(HoldSession.wait(seconds: 3_600, maximum: 60_000) == 60_000)
        #expect(HoldSession.wait(seconds: -5, maximum: 60_000) == 0)
    }

    /// A change, or a cold topic's first failure, that lands between the request's look at the
    /// topic and the hold's subscription reached no one: the hold answers at once instead of
    /// waiting for the deadline (a cold GET then got 504 instead of the upstream's 404 as 502).
    @Test func aHoldAnswersAtOnceWhenItsTopicMovedBeforeItSubscribed() {
        let one = Cursor(epoch: "e", seq: 1), two = Cursor(epoch: "e", seq: 2), other = Cursor(epoch: "f", seq: 1)
        #expect(!HoldSession.moved(.cold, since: nil, now: nil, failing: false))
        #expect(HoldSession.moved(.cold, since: nil, now: nil, failing: true))
        #expect(HoldSession.moved(.cold, since: nil, now: one, failing: false))
        #expect(!HoldSession.moved(.mirrored, since: one, now: one, failing: true))   // stale, unchanged: keep holding
        #expect(HoldSession.moved(.mirrored, since: one, now: two, failing: false))
        #expect(!HoldSession.moved(.multiplexed, since: two, now: two, failing: true))
        #expect(HoldSession.moved(.multiplexed, since: one, now: two, failing: false))
        #expect(HoldSession.moved(.multiplexed, since: nil, now: one, failing: false))
        #expect(HoldSession.moved(.multiplexed, since: one, now: other, failing: false))
    }

    @Test func aHoldIsAnsweredByKindWhenItsWaitEndsAndNotBefore() throws {
        let request = try Self.request("GET /api/items HTTP/1.1\r\nHost: x\r\n\r\n")
        let mirrored = HoldSession(kind: .mirrored, request: request, expiresAt: 25_000)
        #expect(mirrored.deadline == 25_000 && !mirrored.streams)
        #expect(mirrored.tick(now: 24_999, silent: true).isEmpty)
        #expect(Self.describe(mirrored.tick(now: 25_000, silent: false)) == ["answer 304 "])
        let cold = HoldSession(kind: .cold, request: request, expiresAt: 1)
        #expect(Self.describe(cold.tick(now: 1, silent: false)).first?.hasPrefix(#"answer 504 {"error":"upstream_timeout""#) == true)
        let multiplexed = HoldSession(kind: .multiplexed, request: request, expiresAt: 1)
        #expect(Self.describe(multiplexed.drain()) == ["answer 204 "])   // shutdown answers at once
        // A pipelined request waits for the answer.
        #expect(Self.describe(multiplexed.received(Array("GET /next".utf8)[...], now: 0)) == ["keep GET /next"])
    }

    @Test func aRequestWaitingForRedisIsAnswered503AtItsDeadlineAndKeepsPipelinedBytes() throws {
        let request = try Self.request("POST /deltacast/publish?topic=/live/a HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(ClusterWaitSession.waitMilliseconds(commandTimeout: 2000) == 9000)
        let waiting = ClusterWaitSession(request: request, expiresAt: 9000)
        #expect(waiting.deadline == 9000 && !waiting.streams && waiting.framing == .answering)
        #expect(waiting.tick(now: 8999, silent: true).isEmpty)
        let expired = Self.describe(waiting.tick(now: 9000, silent: false))
        #expect(expired.count == 1 && expired[0].hasPrefix(#"answer 503 {"error":"unavailable","message":"the cluster's Redis did not answer in time"#))
        #expect(Self.describe(waiting.drain()).first?.hasPrefix("answer 503") == true)   // shutdown answers at once
        #expect(Self.describe(waiting.received(Array("GET /next".utf8)[...], now: 0)) == ["keep GET /next"])
    }

    @Test func aHeldPollIsAnsweredByTheChangeOfItsTopic() throws {
        let published = try SubscriptionSetTests.Published()
        let topic = try published.subscribed("/live/a")
        let first = try published.publish(topic, price: 1)
        // A mirrored GET that held the current version: the next change answers with the body.
        var subscriptions = SubscriptionSet()
        subscriptions.insert(topic, transport: .longpoll, since: first.cursor, current: first.cursor)
        let mirrored = HoldSession(kind: .mirrored, request: try Self.request("GET /live/a HTTP/1.1\r\nHost: x\r\n\r\n"), expiresAt: 25_000)
        let second = try published.publish(topic, price: 2)
        guard case .answer(_, let response) = mirrored.deliver(second, subscriptions: { subscriptions }) else { Issue.record("no answer"); return }
        #expect(response.status == 200)
        #expect(response.headers["ETag"] == "\"\(second.cursor!)\"")
        #expect(String(decoding: response.body, as: UTF8.self).contains(#""p":2"#))
        // `/deltacast/poll` at the first cursor: the journaled patch, as a JSON array.
        let polled = HoldSession(kind: .multiplexed, request: try Self.request("GET /deltacast/poll?topic=/live/a HTTP/1.1\r\nHost: x\r\n\r\n"), expiresAt: 25_000)
        guard case .answer(_, let poll) = polled.deliver(second, subscriptions: { subscriptions }) else { Issue.record("no answer"); return }
        #expect(poll.status == 200 && poll.events == 1)
        #expect(poll.body == [0x5B] + second.event + [0x5D])
        // A cold GET with neither a state nor a failure yet has nothing to answer with.
        let cold = try published.hub.topic(named: "/live/cold", endpoint: 0)
        var coldSubscriptions = SubscriptionSet()
        coldSubscriptions.insert(cold, transport: .longpoll, since: nil, current: nil)
        #expect(HoldSession(kind: .cold, request: try Self.request("GET /live/cold HTTP/1.1\r\nHost: x\r\n\r\n"), expiresAt: 1).settle(coldSubscriptions, status: nil) == nil)
    }
}

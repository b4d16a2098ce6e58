import DeltacastConfig
import DeltacastHub
import DeltacastWire
import Testing
@_spi(Fuzzing) @testable import DeltacastServer

/// What a request means, decided with no socket: the credential it presents and what that may
/// read (``TopicAccess``), the admin requests (publish, refresh, ticket), and the multiplexed
/// transports' topic lists. The same replies reach clients through the proxy in Tests/Security
/// and the transport suites.
@Suite struct RequestTests {
    static let secret = "unit-secret-0123456789-0123456789-abcdef"
    static let now: Int64 = 1_800_000_000_000
    let configuration: Configuration
    let router: Router
    let authenticator: Authenticator

    init() throws {
        configuration = try Configuration.load(text: """
            admin: { token: admin-token-0123456789 }
            auth:
              jwt: { algorithm: HS256, secret: \(Self.secret) }
              api_keys:
                - { key: wallboard-key-0123456789, subject: wallboard, scopes: [prices:read] }
                - { key: reader-key-0123456789, subject: reader }
              max_tickets: 2
            limits: { ticket_rate: 2/m }
            endpoints:
              - { path: /prices, source: publish, scopes: [prices:read] }
              - path: /users/{user}/inbox
                source: publish
                allow: "params.user == claims.sub"
              - { path: /public, source: publish, auth: none }
              - { path: /polled, upstream: "http://127.0.0.1:9/polled" }
            """, file: "t.yaml", environment: [:])
        router = Router(configuration: configuration)
        authenticator = try Authenticator(configuration: configuration.auth)
    }

    var access: TopicAccess { TopicAccess(authenticator: authenticator, router: router, now: Self.now) }

    func endpoint(_ path: String) throws -> Configuration.Endpoint {
        try #require(configuration.endpoints.first { $0.path.text == path })
    }

    func head(_ target: String, _ headers: String = "", method: String = "GET") throws -> HTTPRequestHead {
        var parser = HTTPRequestParser()
        parser.append(Array("\(method) \(target) HTTP/1.1\r\nHost: x\r\n\(headers)\r\n".utf8)[...])
        guard case .head(let request) = try parser.next() else { throw HTTPParseError(status: 400, reason: "no head") }
        return request
    }

    /// An HS256 token for `subject` expiring at `exp` (Unix seconds).
    func jwt(_ subject: String, exp: Int64) throws -> String {
        let signed = Base64URL.encode(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8)) + "."
            + Base64URL.encode(Array("{\"sub\":\"\(subject)\",\"exp\":\(exp)}".utf8))
        let signature = try #require(Authenticator.hmacSHA256(key: Array(Self.secret.utf8), Array(signed.utf8)))
        return signed + "." + Base64URL.encode(signature)
    }

    func subject(_ credential: Credential) -> String? {
        if case .valid(let principal) = credential { return principal.subject }
        return nil
    }

    // MARK: Credentials

    @Test func aRequestPresentsABearerTokenASubprotocolTokenOrATicket() throws {
        let never: (String) -> Principal? = { _ in Issue.record("no ticket was presented"); return nil }
        #expect(subject(access.credential(try head("/prices", "Authorization: Bearer wallboard-key-0123456789\r\n"), redeem: never)) == "wallboard")
        let token = try jwt("alice", exp: Self.now / 1000 + 60)
        #expect(subject(access.credential(try head("/prices", "Sec-WebSocket-Protocol: deltacast.v1, token.\(token)\r\n"), redeem: never)) == "alice")
        guard case .anonymous = access.credential(try head("/prices"), redeem: never) else { Issue.record("not anonymous"); return }

        let bob = Principal(subject: "bob", claims: ["sub": "bob"], scopes: [], expiresAt: Self.now + 1)
        #expect(subject(access.credential(try head("/prices?ticket=t1.abc"), redeem: { $0 == "t1.abc" ? bob : nil })) == "bob")
        guard case .invalid(let unknown, explicit: true) = access.credential(try head("/prices?ticket=t1.zzz"), redeem: { _ in nil }) else {
            Issue.record("an unknown ticket was accepted"); return
        }
        #expect(unknown.hasPrefix("unknown, used or expired ticket"))
        let lapsed = Principal(subject: "bob", claims: ["sub": "bob"], scopes: [], expiresAt: Self.now)
        guard case .invalid(let expired, explicit: true) = access.credential(try head("/prices?ticket=t1.abc"), redeem: { _ in lapsed }) else {
            Issue.record("a ticket behind an expired token was accepted"); return
        }
        #expect(expired == "the token behind this ticket has expired")
    }

    @Test func aBadTokenIsExplicitOnlyWhenItCanOnlyBeMeantForTheProxy() throws {
        // A bearer header may be meant for the upstream (passthrough); a token. subprotocol cannot.
        guard case .invalid(_, explicit: false) = access.credential(try head("/prices", "Authorization: Bearer nope\r\n"), redeem: { _ in nil }),
              case .invalid(_, explicit: true) = access.credential(try head("/prices", "Sec-WebSocket-Protocol: token.nope\r\n"), redeem: { _ in nil })
        else { Issue.record("wrong explicitness"); return }
        // A proxy without auth sees every request as anonymous, tokens or not.
        let open = TopicAccess(authenticator: nil, router: router, now: Self.now)
        guard case .anonymous = open.credential(try head("/prices", "Authorization: Bearer wallboard-key-0123456789\r\n"), redeem: { _ in nil }) else {
            Issue.record("authenticated without auth"); return
        }
    }

    // MARK: Decisions

    @Test func scopesAndAllowRulesDecideWhatAPrincipalReads() throws {
        let wallboard = access.credential(try head("/", "Authorization: Bearer wallboard-key-0123456789\r\n"), redeem: { _ in nil })
        let reader = access.credential(try head("/", "Authorization: Bearer reader-key-0123456789\r\n"), redeem: { _ in nil })
        #expect(access.decision(try endpoint("/prices"), topicName: "/prices", credential: wallboard) == .allowed)
        guard case .denied(let missing) = access.decision(try endpoint("/prices"), topicName: "/prices", credential: reader) else {
            Issue.record("a principal without the scope read /prices"); return
        }
        #expect(missing.contains("prices:read"))
        let inbox = try endpoint("/users/{user}/inbox")
        #expect(access.decision(inbox, topicName: "/users/reader/inbox", credential: reader) == .allowed)
        guard case .denied = access.decision(inbox, topicName: "/users/wallboard/inbox", credential: reader) else {
            Issue.record("reader read another user's inbox"); return
        }
        #expect(access.decision(try endpoint("/public"), topicName: "/public", credential: .anonymous) == .allowed)
    }

    @Test func anonymousInvalidAndExpiredCredentialsAreUnauthenticated() throws {
        let prices = try endpoint("/prices")
        guard case .unauthenticated(let anonymous) = access.decision(prices, topicName: "/prices", credential: .anonymous),
              case .unauthenticated(let invalid) = access.decision(prices, topicName: "/prices", credential: .invalid("bad signature", explicit: false))
        else { Issue.record("not unauthenticated"); return }
        #expect(anonymous.hasPrefix("/prices needs a token") && invalid == "invalid token: bad signature")
        // A token that verified when the stream began, read again an hour later.
        let token = try jwt("carol", exp: Self.now / 1000 + 60)
        let carol = access.credential(try head("/", "Authorization: Bearer \(token)\r\n"), redeem: { _ in nil })
        #expect(subject(carol) == "carol")
        let later = TopicAccess(authenticator: authenticator, router: router, now: Self.now + 3_600_000)   // past exp and auth.jwt.leeway
        #expect(later.decision(try endpoint("/public"), topicName: "/public", credential: carol) == .allowed)
        guard case .unauthenticated(let expired) = later.decision(try endpoint("/users/{user}/inbox"), topicName: "/users/carol/inbox", credential: carol) else {
            Issue.record("an expired token still reads"); return
        }
        #expect(expired.hasPrefix("the token has expired"))
    }

    @Test func refusalsAre401WithAChallenge403OrAForbiddenEvent() throws {
        let missing = TopicAccess.response(.unauthenticated("/prices needs a token"))
        #expect(missing.status == 401 && missing.headers["WWW-Authenticate"] == "Bearer realm=\"deltacast\"")
        let invalid = TopicAccess.response(.unauthenticated("invalid token: bad signature"))
        #expect(invalid.status == 401 && invalid.headers["WWW-Authenticate"]?.contains("error=\"invalid_token\", error_description=\"invalid token: bad signature\"") == true)
        let denied = TopicAccess.response(.denied("no"))
        #expect(denied.status == 403 && String(decoding: denied.body, as: UTF8.self) == #"{"error":"forbidden","message":"no"}"#)
        #expect(TopicAccess.event(.allowed, topic: "/prices") == nil)
        let event = try #require(TopicAccess.event(.denied("no"), topic: "/prices"))
        #expect(String(decoding: event, as: UTF8.self).contains(#""code":"forbidden""#))
    }

    @Test func anAuthMessageRenewsOnlyWithAValidToken() throws {
        guard case .success(let principal) = access.renewal(try jwt("dave", exp: Self.now / 1000 + 600)) else { Issue.record("refused"); return }
        #expect(principal.subject == "dave")
        guard case .failure(let refusal) = access.renewal("nope") else { Issue.record("accepted"); return }
        #expect(String(decoding: refusal.bytes, as: UTF8.self).contains("the previous token stays in force"))
        guard case .failure(let needless) = TopicAccess(authenticator: nil, router: router, now: Self.now).renewal("x") else { Issue.record("accepted"); return }
        #expect(String(decoding: needless.bytes, as: UTF8.self).contains("auth messages are not needed"))
    }

    // MARK: Admin requests

    @Test func aPublishGoesOnlyToAPublishEndpointAndAFormBodyIsJSON() throws {
        let polled = PublishRequest(try head("/deltacast/publish?topic=/polled", method: "POST"), topicName: "/polled", source: .poll)
        #expect(polled.refusal()?.status == 409)
        let form = PublishRequest(try head("/deltacast/publish?topic=/public", "Content-Type: application/x-www-form-urlencoded\r\n", method: "POST"),
                                  topicName: "/public", source: .publish)
        #expect(form.refusal() == nil && form.contentType == "application/json")
        let text = PublishRequest(try head("/deltacast/publish?topic=/public", "Content-Type: text/plain\r\n", method: "POST"), topicName: "/public", source: .publish)
        #expect(text.contentType == "text/plain")

        let cursor = Cursor(epoch: "e1", seq: 3)
        let changed = form.response(.success(.changed(cursor)))
        #expect(changed.status == 200 && changed.headers["ETag"] == "\"e1-3\"")
        #expect(String(decoding: changed.body, as: UTF8.self) == #"{"topic":"/public","cursor":"e1-3","changed":true}"#)
        #expect(String(decoding: form.response(.success(.unchanged(cursor))).body, as: UTF8.self).hasSuffix(#""changed":false}"#))
        let unavailable = form.response(.failure(.clusterUnavailable("redis is down")))
        #expect(unavailable.status == 503 && unavailable.headers["Retry-After"] == "1")
        #expect(form.response(.failure(.invalidJSON("not JSON"))).status == 400)
    }

    @Test func aRefreshNudgesPolledTopicsOnly() {
        var asked: [String] = []
        let publish = RefreshRequest(topicName: "/public", source: .publish).response { asked.append($0); return 1 }
        #expect(publish.status == 409 && asked.isEmpty)
        #expect(RefreshRequest(topicName: "/polled", source: .poll).response { _ in 0 }.status == 404)
        let nudged = RefreshRequest(topicName: "/polled", source: .poll).response { asked.append($0); return 3 }
        #expect(nudged.status == 202 && asked == ["/polled"])
        #expect(String(decoding: nudged.body, as: UTF8.self) == #"{"topic":"/polled","refreshed":3}"#)
    }

    @Test func aTicketNeedsAValidBearerTokenAndIsRateLimitedAndCapped() throws {
        let limiter = KeyedRateLimiter(rate: configuration.limits.ticketRate)
        let tickets = TicketStore(lifetimeMilliseconds: 30_000, capacity: configuration.auth.maxTickets)
        func ask(_ headers: String, clock: Int64 = 0, clustered: Bool = false, store: TicketStore? = nil) throws -> TicketRequest.Reply {
            try TicketRequest(request: head("/deltacast/ticket", headers, method: "POST"))
                .reply(access: access, configuration: configuration, limiter: limiter, clock: clock, tickets: store ?? tickets, clustered: clustered)
        }
        guard case .refuse(.unauthenticated(let missing)) = try ask("") else { Issue.record("issued without a token"); return }
        #expect(missing == "POST /deltacast/ticket needs Authorization: Bearer TOKEN")
        guard case .refuse(.unauthenticated(let invalid)) = try ask("Authorization: Bearer nope\r\n") else { Issue.record("issued"); return }
        #expect(invalid.hasPrefix("invalid token:"))

        let bearer = "Authorization: Bearer reader-key-0123456789\r\n"
        guard case .respond(let first) = try ask(bearer) else { Issue.record("no ticket"); return }
        #expect(first.status == 200)
        let body = String(decoding: first.body, as: UTF8.self)
        #expect(body.hasPrefix(#"{"ticket":"t1."#) && body.hasSuffix(#","expires_in":30}"#))
        let ticket = String(body.split(separator: "\"")[3])
        #expect(tickets.redeem(ticket, now: Self.now)?.subject == "reader")
        // ticket_rate 2/min: the second is issued, the third waits 30 s.
        guard case .respond = try ask(bearer), case .rateLimited(let limited) = try ask(bearer) else { Issue.record("not rate limited"); return }
        #expect(limited.status == 429 && limited.headers["Retry-After"] == "30")

        // max_tickets 2: a third outstanding ticket is refused (another subject, so no rate limit).
        let full = TicketStore(lifetimeMilliseconds: 30_000, capacity: 2)
        let wallboard = "Authorization: Bearer wallboard-key-0123456789\r\n"
        _ = try ask(wallboard, clock: 60_000, store: full)
        _ = try ask(wallboard, clock: 60_000, store: full)
        guard case .respond(let capped) = try ask("Authorization: Bearer \(try jwt("erin", exp: Self.now / 1000 + 60))\r\n", store: full) else {
            Issue.record("no answer"); return
        }
        #expect(capped.status == 503 && full.count == 2)

        // Cluster mode: the ticket is stored in Redis before the answer goes out.
        guard case .store(let stored, let principal, let milliseconds, let answer) = try ask(wallboard, clock: 120_000, clustered: true) else {
            Issue.record("not stored"); return
        }
        #expect(principal.subject == "wallboard" && milliseconds == 30_000 && String(decoding: answer.body, as: UTF8.self).contains(stored))
        #expect(TicketRequest.unstored.status == 503)
    }

    // MARK: Multiplexed transports

    @Test func multiplexedTopicsAreMatchedAndDriftCountsOnlyNamedTopics() throws {
        let request = try head("/deltacast/sse?topic=/public&topic=/nowhere&topic=/users/ann/inbox&drift=/public&drift=/other")
        let (reply, drifted) = MultiplexedRequest(request: request, transport: .sse).reply(credential: { .anonymous }, router: router)
        #expect(drifted == ["/public"])
        guard case .stream(let topics, .anonymous) = reply else { Issue.record("\(reply)"); return }
        #expect(topics.map(\.name) == ["/public", "/nowhere", "/users/ann/inbox"])
        #expect(topics.map(\.endpoint) == [2, nil, 1])
        let poll = MultiplexedRequest(request: try head("/deltacast/poll?topic=/public"), transport: .longpoll).reply(credential: { .anonymous }, router: router).0
        guard case .poll(let polled, _) = poll else { Issue.record("\(poll)"); return }
        #expect(polled.count == 1)
    }

    @Test func aMultiplexedRequestWithoutTopicsIs400AndSpendsNoTicket() throws {
        var asked = 0
        let (reply, _) = MultiplexedRequest(request: try head("/deltacast/sse?ticket=t1.x"), transport: .sse)
            .reply(credential: { asked += 1; return .anonymous }, router: router)
        guard case .respond(let response) = reply else { Issue.record("\(reply)"); return }
        #expect(response.status == 400 && asked == 0)
        let refused = MultiplexedRequest(request: try head("/deltacast/poll?topic=/public&ticket=t1.x"), transport: .longpoll)
            .reply(credential: { .invalid("unknown ticket", explicit: true) }, router: router).0
        guard case .refuse(.unauthenticated("invalid token: unknown ticket")) = refused else { Issue.record("\(refused)"); return }
        // A WebSocket subscribes by message: the upgrade carries the credential only.
        let upgrade = MultiplexedRequest(request: try head("/deltacast/ws"), transport: .websocket).reply(credential: { .anonymous }, router: router).0
        guard case .upgrade(.anonymous) = upgrade else { Issue.record("\(upgrade)"); return }
    }

    // MARK: Mirrored endpoint paths

    @Test func aTopicPathIsAnUpgradeAStreamOrAPlainRead() throws {
        let all = Transport.allCases
        let allowed = AccessDecision.allowed
        let presented = Credential.valid(Principal(subject: "ann", claims: ["sub": "ann"], scopes: [], expiresAt: nil))
        let upgrade = try head("/prices", "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")
        // A protected endpoint's WebSocket keeps the token; another's does not (under passthrough it is the upstream's).
        guard case .upgrade(keeping: .valid) = TopicRequest(request: upgrade, topicName: "/prices").reply(presented: presented, access: allowed, protected: true, transports: all),
              case .upgrade(keeping: .anonymous) = TopicRequest(request: upgrade, topicName: "/prices").reply(presented: presented, access: allowed, protected: false, transports: all)
        else { Issue.record("upgrade"); return }
        guard case .respond(403, "forbidden", _) = TopicRequest(request: upgrade, topicName: "/prices").reply(presented: presented, access: allowed, protected: false, transports: [.sse])
        else { Issue.record("a disabled WebSocket transport upgraded"); return }

        let stream = try head("/prices?since=ep01-4", "Accept: text/event-stream\r\n")
        guard case .stream(let since) = TopicRequest(request: stream, topicName: "/prices").reply(presented: .anonymous, access: allowed, protected: false, transports: all)
        else { Issue.record("no stream"); return }
        #expect(since == Cursor(epoch: "ep01", seq: 4))
        // The browser's Last-Event-ID wins over ?since=.
        let resumed = try head("/prices?since=ep01-4", "Accept: text/event-stream\r\nLast-Event-ID: ep01-9\r\n")
        guard case .stream(let after) = TopicRequest(request: resumed, topicName: "/prices").reply(presented: .anonymous, access: allowed, protected: false, transports: all)
        else { Issue.record("no stream"); return }
        #expect(after == Cursor(epoch: "ep01", seq: 9))
        guard case .respond(406, "not_acceptable", _) = TopicRequest(request: stream, topicName: "/prices").reply(presented: .anonymous, access: allowed, protected: false, transports: [.longpoll])
        else { Issue.record("a disabled SSE transport streamed"); return }

        guard case .read = TopicRequest(request: try head("/prices"), topicName: "/prices").reply(presented: .anonymous, access: allowed, protected: false, transports: [])
        else { Issue.record("a plain GET was not read"); return }
        // A refusal comes before anything about the topic or its transports shows.
        guard case .refuse(.denied("no")) = TopicRequest(request: upgrade, topicName: "/prices").reply(presented: presented, access: .denied("no"), protected: true, transports: [])
        else { Issue.record("not refused"); return }
    }
}

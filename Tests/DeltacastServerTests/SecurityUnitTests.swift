import DeltacastConfig
import DeltacastWire
import Testing
@_spi(Fuzzing) @testable import DeltacastServer

/// The security pieces that have a seam a socket cannot reach cheaply: the token bucket's
/// clock, the keyed limiter's table cap, the ticket store's cap, base64url edge cases and
/// the ES256 signature conversion. Everything else is tested end to end in Tests/Security.
@Suite struct SecurityUnitTests {
    @Test func tokenBucketAllowsABurstThenRefillsAtTheRate() {
        let rate = Rate(count: 5, period: .seconds(1))
        var bucket = TokenBucket(rate: rate, now: 0)
        for _ in 0..<5 { #expect(bucket.take(rate: rate, now: 0) == nil) }
        #expect(bucket.take(rate: rate, now: 0) == 200)       // one token every 200 ms
        #expect(bucket.take(rate: rate, now: 100) == 100)
        #expect(bucket.take(rate: rate, now: 200) == nil)
        #expect(bucket.isFull(rate: rate, now: 200) == false)
        #expect(bucket.isFull(rate: rate, now: 1200))
    }

    @Test func keyedLimiterNeverHoldsMoreThanItsCapacity() {
        let limiter = KeyedRateLimiter(rate: Rate(count: 1, period: .seconds(60)), capacity: 100)
        for index in 0..<1000 { _ = limiter.take("user-\(index)", now: 0) }
        #expect(limiter.count <= 100)
        // A key still in the table is still limited.
        #expect(limiter.take("user-999", now: 0) != nil)
        // Full buckets are forgotten first: after a minute every bucket is full again.
        for index in 0..<100 { _ = limiter.take("later-\(index)", now: 120_000) }
        #expect(limiter.count <= 100)
    }

    @Test func ticketStoreIsCappedAndSingleUse() {
        let store = TicketStore(lifetimeMilliseconds: 1000, capacity: 3)
        let principal = Principal(subject: "alice", claims: ["sub": "alice"], scopes: [], expiresAt: nil)
        let tickets = (0..<3).compactMap { _ in store.issue(for: principal, now: 0) }
        #expect(tickets.count == 3 && Set(tickets).count == 3)
        #expect(store.issue(for: principal, now: 500) == nil)     // full
        #expect(store.redeem(tickets[0], now: 500)?.subject == "alice")
        #expect(store.redeem(tickets[0], now: 500) == nil)        // used
        #expect(store.redeem(tickets[1], now: 1500) == nil)       // expired
        #expect(store.issue(for: principal, now: 1500) != nil)    // expired ones make room
        #expect(store.count <= 3)
    }

    @Test func base64urlIsStrict() {
        #expect(Base64URL.decode(Array("aGk".utf8)[...]) == Array("hi".utf8))
        #expect(Base64URL.decode(Array("aGk=".utf8)[...]) == nil)   // padding is not base64url
        #expect(Base64URL.decode(Array("aG+k".utf8)[...]) == nil)   // '+' is base64, not base64url
        #expect(Base64URL.decode(Array("a".utf8)[...]) == nil)      // impossible length
        #expect(Base64URL.decode(Array("aGl".utf8)[...]) == nil)    // non-zero leftover bits
        #expect(Base64URL.encode(Array("hi?>".utf8)) == "aGk_Pg")
    }

    /// FuzzJWT found a signed token whose `exp` is finite but huge (or not finite) crashing the
    /// conversion that wrote the refusal's message. Each is refused with a reason.
    @Test(arguments: [("-1e300", "token expired more than 10^15 s ago"), ("1e999", "exp is not a finite number"),
                      ("1900000000, \"nbf\": 1e300", "token is not valid for another more than 10^15 s (nbf)")])
    func extremeTimeClaimsAreRefusedWithAReason(_ exp: String, _ reason: String) throws {
        let secret = "unit-secret-0123456789-0123456789-abcdef"
        let configuration = try Configuration.load(text: """
            auth:
              jwt: { algorithm: HS256, secret: \(secret) }
            endpoints:
              - { path: /a, source: publish }
            """, file: "t.yaml", environment: [:])
        let authenticator = try Authenticator(configuration: configuration.auth)
        let signed = Base64URL.encode(Array(#"{"alg":"HS256"}"#.utf8)) + "." + Base64URL.encode(Array("{\"sub\": \"a\", \"exp\": \(exp)}".utf8))
        let signature = try #require(Authenticator.hmacSHA256(key: Array(secret.utf8), Array(signed.utf8)))
        guard case .failure(let failure) = authenticator.authenticate(signed + "." + Base64URL.encode(signature), now: 1_800_000_000) else {
            Issue.record("accepted"); return
        }
        #expect(failure.reason == reason)
    }

    @Test func es256SignatureBecomesMinimalDER() {
        let r = [UInt8](repeating: 0, count: 31) + [0x80]   // leading zeros stripped, sign byte added
        let s = [UInt8](repeating: 0x7F, count: 32)
        let der = Authenticator.derSignature(r: r, s: s)
        #expect(der == [0x30, 0x26, 0x02, 0x02, 0x00, 0x80, 0x02, 0x20] + s)
    }
}

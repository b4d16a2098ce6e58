import DeltacastBase
import DeltacastConfig
import DeltacastCrypto
import DeltacastLoop
import DeltacastJSON
import DeltacastWire
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The outcome of checking one topic against a principal.
enum AccessDecision: Equatable {
    case allowed
    /// No credential, or one that did not verify: 401 / `forbidden` "needs a token".
    case unauthenticated(String)
    /// A verified credential that the endpoint's `scopes` or `allow` refuse: 403 / `forbidden`.
    case denied(String)
}

extension Principal {
    /// Whether this principal may read a topic of `endpoint` with these path parameters and
    /// topic query.
    func access(_ endpoint: Configuration.Endpoint, parameters: [String: String], query: String) -> AccessDecision {
        let missing = endpoint.scopes.filter { !scopes.contains($0) }
        if !missing.isEmpty {
            return .denied("the token lacks the scope\(missing.count > 1 ? "s" : "") \(missing.joined(separator: ", ")) that \(endpoint.path) requires")
        }
        if let rule = endpoint.allow, !RuleEvaluator(claims: claims, parameters: parameters, query: query).holds(rule) {
            return .denied("\(subject) may not read this topic (allow: \(rule))")
        }
        return .allowed
    }
}

/// Evaluates an ``AuthorizationRule`` over JSON values.
struct RuleEvaluator {
    let claims: JSONValue
    let parameters: [String: String]
    let query: String

    func holds(_ rule: AuthorizationRule) -> Bool {
        switch rule {
        case .and(let a, let b): return holds(a) && holds(b)
        case .or(let a, let b): return holds(a) || holds(b)
        case .not(let inner): return !holds(inner)
        case .truthy(let operand): return value(operand) == .bool(true)
        case .compare(let a, let op, let b):
            let left = value(a), right = value(b)
            switch op {
            case .equal: return Self.equal(left, right)
            case .notEqual: return !Self.equal(left, right)
            case .contains:
                switch right {
                case .array(let items): return items.contains { Self.equal(left, $0) }
                case .string(let list):
                    guard case .string(let needle) = left else { return false }
                    return list.split(separator: " ").contains { $0 == needle }
                default: return false
                }
            }
        }
    }

    /// JSON equality, except that a string equals a number it spells.
    static func equal(_ a: JSONValue, _ b: JSONValue) -> Bool {
        switch (a, b) {
        case (.string(let text), .number(let number)), (.number(let number), .string(let text)):
            guard let parsed = Double(text), text.allSatisfy({ $0.isNumber || $0 == "." || $0 == "-" }) else { return false }
            return parsed == number.doubleValue
        case (.number(let x), .number(let y)): return x.doubleValue == y.doubleValue
        default: return a == b
        }
    }

    private func value(_ operand: AuthorizationRule.Operand) -> JSONValue {
        switch operand {
        case .string(let text): return .string(text)
        case .number(let text): return .number(JSONNumber(unchecked: text))
        case .bool(let flag): return .bool(flag)
        case .null: return .null
        case .reference(.params, let path): return parameters[path[0]].map(JSONValue.string) ?? .null
        case .reference(.query, let path):
            return Router.firstQueryValue("?" + query, path[0]).map(JSONValue.string) ?? .null
        case .reference(.claims, let path):
            var current = claims
            for name in path {
                guard case .object(let object) = current, let next = object[name] else { return .null }
                current = next
            }
            return current
        }
    }
}

/// A token bucket: a burst of `rate.count`, refilled continuously at `rate.count` per period.
struct TokenBucket {
    private var tokens: Double
    private var updated: Int64

    init(rate: Rate, now: Int64) {
        tokens = Double(rate.count)
        updated = now
    }

    /// Takes one token: nil when allowed, else the milliseconds until one is available.
    mutating func take(rate: Rate, now: Int64) -> Int64? {
        let periodMilliseconds = Double(rate.period.wholeMilliseconds)
        let capacity = Double(rate.count)
        tokens = min(capacity, tokens + Double(now - updated) * capacity / periodMilliseconds)
        updated = now
        if tokens >= 1 { tokens -= 1; return nil }
        return Int64(((1 - tokens) * periodMilliseconds / capacity).rounded(.up))
    }

    /// Whether the bucket would be full at `now` (it can be forgotten).
    func isFull(rate: Rate, now: Int64) -> Bool {
        tokens + Double(now - updated) * Double(rate.count) / Double(rate.period.wholeMilliseconds) >= Double(rate.count)
    }
}

/// Token buckets by key (subject, admin token), shared by every loop. At most `capacity` keys:
/// full buckets are forgotten first; if all are in use, the oldest half is forgotten (which can
/// only let a client through early, never hold one back).
final class KeyedRateLimiter: Sendable {
    let rate: Rate
    private let capacity: Int
    private let buckets = Locked<[String: TokenBucket]>([:])

    init(rate: Rate, capacity: Int = 100_000) {
        self.rate = rate
        self.capacity = capacity
    }

    /// Nil when `key` may go on, else the milliseconds to wait.
    func take(_ key: String, now: Int64) -> Int64? {
        buckets.withLock { table in
            if table[key] == nil && table.count >= capacity {
                table = table.filter { !$0.value.isFull(rate: rate, now: now) }
                if table.count >= capacity { table = Dictionary(uniqueKeysWithValues: table.prefix(capacity / 2).map { ($0.key, $0.value) }) }
            }
            var bucket = table[key] ?? TokenBucket(rate: rate, now: now)
            let wait = bucket.take(rate: rate, now: now)
            table[key] = bucket
            return wait
        }
    }

    var count: Int { buckets.withLock { $0.count } }
}

/// Single-use tickets: `POST /deltacast/ticket` trades a bearer token for a random ticket valid
/// for `auth.ticket_ttl`, to put in an EventSource or WebSocket URL instead of the token.
final class TicketStore: Sendable {
    private struct Entry { let principal: Principal; let expires: Int64 }
    private let tickets = Locked<[String: Entry]>([:])
    private let lifetime: Int64
    private let capacity: Int

    /// In cluster mode tickets live in Redis too (the connection stores and takes them there),
    /// so one issued on any node is redeemed, once, on any node; this table still bounds what
    /// each node issues (`auth.max_tickets`).
    init(lifetimeMilliseconds: Int64, capacity: Int) {
        self.lifetime = lifetimeMilliseconds
        self.capacity = capacity
    }

    /// A new ticket for `principal`, or nil when `auth.max_tickets` are outstanding.
    func issue(for principal: Principal, now: Int64) -> String? {
        guard let random = SecureRandom.bytes(24) else { return nil }
        let ticket = "t1." + Base64URL.encode(random)
        return tickets.withLock { table -> String? in
            if table.count >= capacity { table = table.filter { $0.value.expires > now } }
            guard table.count < capacity else { return nil }
            table[ticket] = Entry(principal: principal, expires: now + lifetime)
            return ticket
        }
    }

    /// Redeems a ticket: its principal once, then never again.
    func redeem(_ ticket: String, now: Int64) -> Principal? {
        tickets.withLock { table -> Principal? in
            guard let entry = table.removeValue(forKey: ticket), entry.expires > now else { return nil }
            return entry.principal
        }
    }

    var count: Int { tickets.withLock { $0.count } }
}

/// Wall-clock time in Unix milliseconds (token `exp`, ticket lifetimes).
func unixMilliseconds() -> Int64 { WallClock.milliseconds() }

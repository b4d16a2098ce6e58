import DeltacastConfig
import DeltacastHub
import DeltacastWire

/// Who a request is and which topics it may read, decided with no socket: the credential a
/// request presents, an endpoint's answer to that credential, and how a refusal is said (a
/// 401 or 403 response, or a `forbidden` event).
///
/// Made for each question from the generation's authenticator and router (two references),
/// and the wall clock's time, so a test asks it at any time it likes.
struct TopicAccess {
    /// The proxy's client authentication (`auth`); nil when it has none and every request is
    /// anonymous.
    let authenticator: Authenticator?
    /// Matches a topic again for an endpoint's `allow` rule.
    let router: Router
    /// Wall-clock time in Unix milliseconds: tokens' `exp` and tickets' lifetimes are read
    /// against it.
    let now: Int64

    /// The credential `request` presents: `?ticket=` (`redeem` turns it into its principal,
    /// once), then `Authorization: Bearer`, then (WebSocket upgrades) a `token.<jwt>`
    /// subprotocol entry. Anonymous when the proxy has no `auth`.
    func credential(_ request: HTTPRequestHead, redeem: (String) -> Principal?) -> Credential {
        guard let authenticator else { return .anonymous }
        if let ticket = Router.firstQueryValue(request.target, "ticket") {
            guard let principal = redeem(ticket) else {
                return .invalid("unknown, used or expired ticket (a ticket is good for one connection, within auth.ticket_ttl)", explicit: true)
            }
            if let expiresAt = principal.expiresAt, expiresAt <= now { return .invalid("the token behind this ticket has expired", explicit: true) }
            return .valid(principal)
        }
        var token: String?
        var explicit = false
        if let bearer = request.headers.bearerToken {
            token = bearer
        } else if let entry = request.headers.tokens("Sec-WebSocket-Protocol").first(where: { $0.hasPrefix("token.") }) {
            token = String(entry.dropFirst(6))
            explicit = true
        }
        guard let token else { return .anonymous }
        switch authenticator.authenticate(token, now: Double(now) / 1000) {
        case .success(let principal): return .valid(principal)
        case .failure(let failure): return .invalid(failure.reason, explicit: explicit)
        }
    }

    /// Whether `credential` may read `topicName` of `endpoint`. Only `auth: token` endpoints
    /// ask: their `scopes`, then their `allow` rule on the topic's parameters and query.
    func decision(_ endpoint: Configuration.Endpoint, topicName: String, credential: Credential) -> AccessDecision {
        guard endpoint.auth == .token else { return .allowed }
        switch credential {
        case .anonymous:
            return .unauthenticated("\(topicName) needs a token: Authorization: Bearer, a token.<jwt> WebSocket subprotocol, an auth message, or ?ticket= from POST /deltacast/ticket")
        case .invalid(let reason, _):
            return .unauthenticated("invalid token: \(reason)")
        case .valid(let principal):
            if let expiresAt = principal.expiresAt, expiresAt <= now {
                return .unauthenticated("the token has expired; send a fresh one in an auth message")
            }
            // Scopes alone need no parameters: the topic is matched again only for a rule.
            guard endpoint.allow != nil else { return principal.access(endpoint, parameters: [:], query: "") }
            guard case .matched(_, _, let parameters) = router.matcher.match(topicName) else {
                return .denied("\(topicName) matches no endpoint")
            }
            let query = topicName.firstIndex(of: "?").map { String(topicName[topicName.index(after: $0)...]) } ?? ""
            return principal.access(endpoint, parameters: parameters, query: query)
        }
    }

    /// An `auth` message's token: its principal, or the `error` event that refuses it (the
    /// previous token stays in force).
    func renewal(_ token: String) -> Result<Principal, RefusalEvent> {
        guard let authenticator else {
            return .failure(RefusalEvent(bytes: DeltacastEvent.error(topic: nil, code: .badRequest,
                                                                     message: "this proxy has no client authentication (auth); auth messages are not needed")))
        }
        switch authenticator.authenticate(token, now: Double(now) / 1000) {
        case .failure(let failure):
            return .failure(RefusalEvent(bytes: DeltacastEvent.error(topic: nil, code: .forbidden,
                                                                     message: "auth: invalid token: \(failure.reason); the previous token stays in force")))
        case .success(let principal):
            return .success(principal)
        }
    }

    /// An `error` event refusing a request on a stream, as an `Error` so that it can be a
    /// `Result`'s failure.
    struct RefusalEvent: Error {
        let bytes: [UInt8]
    }

    /// 401 (with `WWW-Authenticate`, RFC 6750) or 403 for a refused plain request or handshake.
    static func response(_ decision: AccessDecision) -> RoutedResponse {
        switch decision {
        case .allowed:
            return .error(500, "internal", "allowed")
        case .unauthenticated(let reason):
            let challenge = reason.hasPrefix("invalid token") || reason.contains("expired")
                ? "Bearer realm=\"deltacast\", error=\"invalid_token\", error_description=\(String(decoding: jsonString(reason), as: UTF8.self))"
                : "Bearer realm=\"deltacast\""
            return .error(401, "unauthorized", reason, headers: ["WWW-Authenticate": challenge])
        case .denied(let reason):
            return .error(403, "forbidden", reason)
        }
    }

    /// The `error` event (`forbidden`) for a refused subscription; nil when it is allowed.
    static func event(_ decision: AccessDecision, topic: String) -> [UInt8]? {
        switch decision {
        case .allowed: return nil
        case .unauthenticated(let reason), .denied(let reason):
            return DeltacastEvent.error(topic: topic, code: .forbidden, message: reason)
        }
    }
}

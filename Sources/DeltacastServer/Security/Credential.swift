import DeltacastBase
import DeltacastConfig
import DeltacastHub
import DeltacastLoop
import DeltacastWire

/// What a request (or a WebSocket) presents to the proxy's own authentication.
enum Credential {
    case anonymous
    case valid(Principal)
    /// A credential was presented and refused; `explicit` when it can only have been meant for
    /// the proxy (a ticket or a `token.` subprotocol), not forwarded upstream under passthrough.
    case invalid(String, explicit: Bool)
}

/// A WebSocket's two token buckets, allocated on its first message.
final class ClientBuckets {
    var subscribe: TokenBucket
    var message: TokenBucket
    init(_ limits: Configuration.Limits, now: Int64) {
        subscribe = TokenBucket(rate: limits.subscribeRate, now: now)
        message = TokenBucket(rate: limits.messageRate, now: now)
    }
}

import DeltacastConfig
import DeltacastWire

/// One configuration in force and everything the server derives from it: routes, the
/// credential verifier, request limits, forwarded header names, and the keyed rate limiters.
/// A reload builds a new one (the build fails, and nothing changes, when a key cannot be
/// read) and hands it to every loop; connections read the one of their loop.
final class ServerGeneration: Sendable {
    let configuration: Configuration
    let router: Router
    /// Credential verification, when `auth` configures a key.
    let authenticator: Authenticator?
    let parserLimits: HTTPRequestParser.Limits
    /// Request headers some `auth: passthrough` endpoint forwards (a WebSocket keeps these of
    /// its upgrade request for later subscriptions).
    let passthroughHeaders: [String]
    /// Tickets per subject (`limits.ticket_rate`) and publishes per admin token
    /// (`limits.publish_rate`); carried over from the previous generation when the rate stayed.
    let ticketLimiter: KeyedRateLimiter
    let publishLimiter: KeyedRateLimiter

    init(configuration: Configuration, dashboard: Bool, previous: ServerGeneration? = nil) throws {
        self.configuration = configuration
        self.router = Router(configuration: configuration, dashboard: dashboard)
        self.authenticator = configuration.auth.isEnabled ? try Authenticator(configuration: configuration.auth) : nil
        let l = configuration.limits
        self.parserLimits = .init(maximumRequestLine: l.maxRequestLine, maximumHeaderBytes: l.maxHeaderBytes,
                                  maximumHeaderCount: l.maxHeaders, maximumBody: l.maxMessage)
        var forwarded: [String] = []
        for endpoint in configuration.endpoints where endpoint.auth == .passthrough {
            for name in endpoint.forwardHeaders where !forwarded.contains(where: { $0.lowercased() == name.lowercased() }) { forwarded.append(name) }
        }
        self.passthroughHeaders = forwarded
        if let previous, previous.configuration.limits.ticketRate == l.ticketRate {
            ticketLimiter = previous.ticketLimiter
        } else {
            ticketLimiter = KeyedRateLimiter(rate: l.ticketRate)
        }
        if let previous, previous.configuration.limits.publishRate == l.publishRate {
            publishLimiter = previous.publishLimiter
        } else {
            publishLimiter = KeyedRateLimiter(rate: l.publishRate)
        }
    }

    /// Settings a running server cannot change: they need a restart.
    func restartRequired(for new: Configuration) -> [String] {
        let old = configuration
        var keys: [String] = []
        if old.listen != new.listen { keys.append("listen") }
        if old.admin.listen != new.admin.listen { keys.append("admin.listen") }
        if old.tls?.certificate != new.tls?.certificate || old.tls?.key != new.tls?.key { keys.append("tls") }
        if old.server.eventLoops != new.server.eventLoops { keys.append("server.event_loops") }
        if old.upstream.maxConcurrent != new.upstream.maxConcurrent { keys.append("upstream.max_concurrent") }
        if old.logging.level != new.logging.level { keys.append("logging.level") }
        if old.auth.ticketTTL != new.auth.ticketTTL { keys.append("auth.ticket_ttl") }
        if old.auth.maxTickets != new.auth.maxTickets { keys.append("auth.max_tickets") }
        if old.cluster != new.cluster { keys.append("cluster") }
        return keys
    }
}

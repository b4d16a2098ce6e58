import DeltacastBase
import DeltacastConfig
import DeltacastHub
import DeltacastLoop
import DeltacastWire

/// A complete request's route (``Router``) and its answer: CORS headers, the access log.
extension HTTPConnection {
    /// Answers `request` by its route (again, once a ticket was redeemed in cluster mode).
    func route(_ request: HTTPRequestHead, body: [UInt8]) {
        let route = state.generation.router.route(request, draining: state.drainDeadline != nil,
                                              openConnections: state.context.openConnections.load(ordering: .relaxed),
                                              adminListener: onAdminListener, clusterAvailable: state.context.cluster?.isAvailable ?? true)
        switch route {
        case .respond(let response):
            if response.status == 401 || response.status == 403,
               ["/deltacast/publish", "/deltacast/refresh", "/deltacast/reload"].contains(where: { request.target.hasPrefix($0) }) {
                if response.status == 401 { state.context.metrics.adminUnauthorized.add(1, ordering: .relaxed) } else { state.context.metrics.adminForbidden.add(1, ordering: .relaxed) }
            }
            finish(request, response)
        case .status:
            serveStatus(request)
        case .topicTypes:
            finish(request, RoutedResponse(status: 200, headers: ["Content-Type": "application/typescript; charset=utf-8", "Cache-Control": "no-cache"],
                                           body: Array(TopicTypesSource.module(configuration: state.configuration, hub: state.context.hub).utf8)))
        case .report:
            finish(request, RoutedResponse(status: 200, headers: ["Content-Type": "application/json", "Cache-Control": "no-store"], body: state.context.reportJSON()))
        case .metrics:
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "text/plain; version=0.0.4; charset=utf-8")
            finish(request, RoutedResponse(status: 200, headers: headers, body: Array(state.context.metricsText(draining: state.drainDeadline != nil).utf8)))
        case .topic(let endpoint, let topic):
            if awaitTicket(request, body: body) { return }
            serveTopic(request, endpoint: endpoint, topicName: topic)
        case .multiplexed(let transport):
            if awaitTicket(request, body: body) { return }
            serveMultiplexed(request, transport: transport)
        case .publish(let endpoint, let topic):
            if let refusal = publishRefusal() { return finish(request, refusal) }
            publish(request, body: body, endpoint: endpoint, topicName: topic)
        case .refresh(let endpoint, let topic):
            if let refusal = publishRefusal() { return finish(request, refusal) }
            refresh(request, endpoint: endpoint, topicName: topic)
        case .ticket:
            issueTicket(request)
        case .reload:
            if let refusal = publishRefusal() { return finish(request, refusal) }
            switch state.context.reloadFromSource() {
            case .success(let report):
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: "application/json")
                finish(request, RoutedResponse(status: 200, headers: headers, body: Array(report.json.utf8)))
            case .failure(let error):
                finish(request, .error(400, "bad_request", error.message))
            }
        case .echo:
            upgrade(request, kind: .echo)
        }
    }

    /// Sends a complete response to `request` (CORS headers, access log, keep-alive).
    func finish(_ request: HTTPRequestHead, _ response: RoutedResponse) {
        var response = response
        if response.events > 0 {
            // A long-poll answer: `[` events joined by `,` `]`.
            state.counters.delivered(transport: .longpoll, count: response.events, bytes: response.body.count - 1 - response.events)
        }
        let close = response.close || !request.keepAlive || state.drainDeadline != nil
        addCORS(request, to: &response.headers)
        logAccess(request, status: response.status, bytes: request.method == "HEAD" ? 0 : response.body.count)
        write(response, headOnly: request.method == "HEAD", close: close)
    }

    func addCORS(_ request: HTTPRequestHead, to headers: inout HTTPHeaders) {
        if let origin = request.headers["Origin"], request.method != "OPTIONS" {
            if let allowed = state.configuration.cors.allowOriginHeader(for: origin) {
                headers.add(name: "Access-Control-Allow-Origin", value: allowed)
                headers.add(name: "Vary", value: "Origin")
            }
        }
    }

    func logAccess(_ request: HTTPRequestHead, status: Int, bytes: Int) {
        guard state.configuration.logging.access else { return }
        let milliseconds = MonotonicClock.milliseconds() - requests.headReceivedAt
        state.context.log.log(.info, "access", ["conn": .int(id), "method": .string(request.method), "path": .string(EventLog.redacted(request.target)),
                                               "status": .int(status), "bytes": .int(bytes), "duration_ms": .int(Int(milliseconds)), "peer": .string(peer)])
    }
}

public import DeltacastConfig
import DeltacastHub

/// Why a reload changed nothing.
public struct ReloadError: Error, Sendable, CustomStringConvertible {
    /// What went wrong: every configuration error (`file:line:col: message`, the line and a
    /// caret), or the key file that could not be read.
    public var message: String
    /// Creates an error.
    public init(message: String) { self.message = message }
    public var description: String { message }
}

/// What a reload did.
public struct ReloadReport: Sendable {
    /// Endpoint paths that serve from now on.
    public var added: [String]
    /// Endpoint paths whose subscriptions ended with `error` `not_found`.
    public var removed: [String]
    /// Endpoint paths whose settings changed, connections kept.
    public var changed: [String]
    /// Endpoints exactly as before: same epoch, journal and state.
    public var unchanged: Int
    /// Keys that differ in the file but take effect only after a restart.
    public var restartRequired: [String]

    /// The report as a JSON object (the `POST /deltacast/reload` answer).
    public var json: String {
        func list(_ items: [String]) -> String { "[" + items.map { String(decoding: jsonString($0), as: UTF8.self) }.joined(separator: ",") + "]" }
        return "{\"result\":\"ok\",\"added\":\(list(added)),\"removed\":\(list(removed)),\"changed\":\(list(changed)),"
            + "\"unchanged\":\(unchanged),\"restart_required\":\(list(restartRequired))}"
    }
}

extension HTTPServer {
    /// Re-reads the configuration file through ``configurationSource`` and applies it
    /// (SIGHUP, `POST /deltacast/reload`). A file that does not load changes nothing: the error
    /// is logged and returned. Counted in `deltacast_config_reloads_total{result}`.
    @discardableResult
    public func reloadFromSource() -> Result<ReloadReport, ReloadError> {
        guard let configurationSource else {
            return failedReload(ReloadError(message: "this server was not started from a configuration file; nothing to reload"))
        }
        switch configurationSource() {
        case .success(let configuration): return reload(configuration)
        case .failure(let error): return failedReload(error)
        }
    }

    /// Puts `new` in force without dropping a connection (DESIGN.md "Config", README "Live
    /// reload"): endpoints are matched by path; added ones serve at once; removed ones end their
    /// subscriptions with `not_found` and stop polling; changed ones apply to their topics
    /// (diff options, interval, upstream) and subscriptions the new `allow`/`scopes` refuse end
    /// with `forbidden`; unchanged ones keep epoch and journal. Limits, CORS and auth apply to
    /// new connections and renewals. Keys that need a restart are logged and reported.
    public func reload(_ new: Configuration) -> Result<ReloadReport, ReloadError> {
        reloading.withLock { _ in
            let previous = generation
            let next: ServerGeneration
            do {
                next = try ServerGeneration(configuration: new, dashboard: dashboard, previous: previous)
            } catch {
                return failedReload(ReloadError(message: "\(error)"))
            }
            let restart = previous.restartRequired(for: new)
            currentGeneration.withLock { $0 = next }
            let change = hub.reconfigure(new)
            topicSource?.reconfigure(new, ended: change.endedTopics, changed: change.changedTopics)
            let changedPaths = Set(change.changed)
            for state in delivery.states.withLock({ $0 }) {
                state.loop.execute { state.apply(next, changedEndpoints: changedPaths) }
            }
            metrics.reloadsSucceeded.add(1, ordering: .relaxed)
            log.log(.info, "config_reload", ["added": .string(change.added.joined(separator: " ")), "removed": .string(change.removed.joined(separator: " ")),
                                             "changed": .string(change.changed.joined(separator: " ")), "unchanged": .int(change.unchanged)])
            if !restart.isEmpty {
                log.log(.warn, "config_restart_required", ["keys": .string(restart.joined(separator: " ")),
                                                           "reason": .string("these settings keep their running values until the proxy restarts")])
            }
            return .success(ReloadReport(added: change.added, removed: change.removed, changed: change.changed,
                                         unchanged: change.unchanged, restartRequired: restart))
        }
    }

    private func failedReload(_ error: ReloadError) -> Result<ReloadReport, ReloadError> {
        metrics.reloadsFailed.add(1, ordering: .relaxed)
        log.log(.error, "config_reload_failed", ["reason": .string(error.message)])
        return .failure(error)
    }
}

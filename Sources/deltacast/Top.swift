import DeltacastClient
import DeltacastCommandLine
import DeltacastConfig
import DeltacastJSON
import DeltacastLoop
import Foundation

/// `deltacast top URL`: the status page's numbers in a terminal, refreshed each second with
/// plain ANSI (no dependency), for operators on a box without a browser.
enum TopCommand: Command {
    static let name = "top"
    static let summary = "a terminal view of the proxy's status, refreshed each second"
    static let usage = """
        usage: deltacast top URL [--token TOKEN] [--once] [--interval SECONDS] [--cacert FILE]

        Reads GET /deltacast/status from the proxy at URL (e.g. http://127.0.0.1:8080) with the
        admin token (--token, or the environment's DELTACAST_ADMIN_TOKEN) and shows connections,
        deliveries, bytes saved, RSS, and every endpoint's topics with their subscribers, last
        change and upstream health. Ctrl-C ends it; --once prints one view and exits. An
        https:// URL is verified against --cacert FILE, or the system's CA store.
        """
    static func run(_ arguments: [String]) throws(CommandLineArguments.UsageError) -> ExitStatus {
        let args = try CommandLineArguments(arguments, flags: ["--once"], options: ["--token", "--interval", "--cacert"])
        guard args.positionals.count == 1 else { throw .init(message: "expected URL") }
        guard let url = parseURL(args.positionals[0]) else {
            throw .init(message: "invalid URL '\(args.positionals[0])'; expected http://HOST:PORT or https://...")
        }
        let tls = url.scheme == "https" ? ClientConnection.TLSOptions(serverName: url.host, caFile: args.value("--cacert")) : nil
        let interval = Double(args.value("--interval") ?? "1") ?? 0
        guard interval >= 0.2 && interval <= 3600 else { throw .init(message: "--interval takes 0.2...3600 seconds") }
        guard let token = args.value("--token") ?? ProcessInfo.processInfo.environment["DELTACAST_ADMIN_TOKEN"] else {
            throw .init(message: "the status needs the admin token: --token TOKEN or DELTACAST_ADMIN_TOKEN")
        }
        let once = args.has("--once")
        while true {
            let view: String
            switch fetch(host: url.host, port: url.port, prefix: url.path, token: token, tls: tls) {
            case .failure(let error):
                printError("deltacast top: \(error.message)")
                return .failure
            case .success(let status):
                view = render(status)
            }
            if once { print(view, terminator: ""); return .success }
            print("\u{1B}[H\u{1B}[2J" + view, terminator: "")
            fflush(nil)
            usleep(UInt32(interval * 1_000_000))
        }
    }

    /// GETs `path` (an admin JSON route) with the admin token; the answer's JSON object.
    static func fetch(host: String, port: Int, prefix: String, token: String, tls: ClientConnection.TLSOptions? = nil,
                      path: String = "/deltacast/status") -> Result<JSONObject, TopError> {
        let connection: ClientConnection
        do { connection = try ClientConnection(host: host, port: port, timeout: 10, tls: tls) } catch { return .failure(TopError(error.message)) }
        defer { connection.close() }
        let response: ClientResponse
        do {
            response = try connection.exchange(PushRequest.get(target: prefix + path, host: "\(host):\(port)", headers: ["Authorization: Bearer \(token)"], close: true))
        } catch .failed(EFBIG) {
            return .failure(TopError("the answer to \(path) is larger than 64 MiB"))
        } catch {
            return .failure(TopError("no answer from \(host):\(port): \(error)"))
        }
        guard response.status == 200 else {
            return .failure(TopError("GET \(path) answered \(response.status): \(String(decoding: response.body, as: UTF8.self))"))
        }
        guard case .object(let object)? = try? JSONParser.parse(response.body) else { return .failure(TopError("the answer to \(path) is not a JSON object")) }
        return .success(object)
    }

    struct TopError: Error { let message: String; init(_ message: String) { self.message = message } }

    static func render(_ status: JSONObject) -> String {
        func int(_ value: JSONValue?) -> Int { if case .number(let n)? = value { return n.intValue ?? Int(n.doubleValue) } else { return 0 } }
        func text(_ value: JSONValue?) -> String { if case .string(let s)? = value { return s } else { return "–" } }
        func object(_ value: JSONValue?) -> JSONObject { if case .object(let o)? = value { return o } else { return JSONObject() } }
        func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
            let clipped = text.count > width ? String(text.prefix(width - 1)) + "…" : text
            let fill = String(repeating: " ", count: max(0, width - clipped.count))
            return right ? fill + clipped : clipped + fill
        }
        let connections = object(status["connections"]), deliveries = object(status["deliveries"])
        var out = "\u{1B}[1mdeltacast top\u{1B}[0m  up \(int(status["uptime_s"])) s   RSS \(String(format: "%.1f", Double(int(status["rss_bytes"])) / 1_048_576)) MiB\n"
        out += "connections \(int(connections["open"]))  (ws \(int(connections["websocket"])), sse \(int(connections["sse"])), long-poll \(int(connections["longpoll"])), http \(int(connections["http"])))\n"
        out += "deliveries  ws \(int(deliveries["websocket"]))  sse \(int(deliveries["sse"]))  long-poll \(int(deliveries["longpoll"]))   bytes saved \(int(status["bytes_saved"]))   conflations \(int(status["conflations"]))   slow closes \(int(status["slow_consumer_closes"]))\n"
        // Request budgets: what each origin allows, how much of it was used, what waits.
        func number(_ value: JSONValue?) -> Double { if case .number(let n)? = value { n.doubleValue } else { 0 } }
        if case .array(let budgets)? = status["budgets"] {
            for case .object(let budget) in budgets {
                let slowed = budget["slowed"] == .bool(true) ? "   \u{1B}[33mslowed (Retry-After)\u{1B}[0m" : ""
                out += "budget      \(text(budget["origin"]))  \(String(format: "%.0f", number(budget["allowed_per_s"])))/s of \(String(format: "%.0f", number(budget["rate_per_s"])))/s"
                    + "   used \(String(format: "%.0f", number(budget["used_ratio"]) * 100)) %   waiting \(int(budget["waiting"]))   deferred \(int(budget["deferred"]))\(slowed)\n"
            }
        }
        // Cluster mode: this node, Redis, the live nodes, and who leads (polls) each topic.
        var leaders: [String: String] = [:]
        if case .object(let cluster)? = status["cluster"] {
            let nodes: [String] = if case .array(let list)? = cluster["nodes"] { list.map { text($0) } } else { [] }
            let redis = text(cluster["redis"]) == "up" ? "redis up" : "\u{1B}[31mredis DOWN\u{1B}[0m"
            out += "cluster     node \(text(cluster["node"]))   \(redis)   nodes \(nodes.joined(separator: ", "))\n"
            let shards: [String] = if case .array(let list)? = cluster["shards"] {
                list.compactMap { if case .object(let shard) = $0 { "\(text(shard["address"])) (slots \(text(shard["slots"])))" } else { nil } }
            } else { [] }
            out += "            topics owned \(int(cluster["owned"]))   Redis commands/s \(int(cluster["redis_commands_per_second"]))   shards \(shards.joined(separator: ", "))\n"
            if case .array(let list)? = cluster["leaders"] {
                for case .object(let entry) in list { leaders[text(entry["topic"])] = text(entry["node"]) }
            }
        }
        out += "\n"
        out += "\u{1B}[7m" + pad("topic", 40) + pad("subs", 7, right: true) + pad("cursor", 18, right: true) + pad("changed", 10, right: true) + pad("bytes", 9, right: true) + "  upstream\u{1B}[0m\n"
        if case .array(let endpoints)? = status["endpoints"] {
            for case .object(let endpoint) in endpoints {
                let polls = object(endpoint["polls"]).map { "\($0.key) \(int($0.value))" }.joined(separator: ", ")
                out += "\u{1B}[1m\(text(endpoint["path"]))\u{1B}[0m  \(text(endpoint["source"])), \(int(endpoint["topic_count"])) topics" + (polls.isEmpty ? "" : ", polls: \(polls)") + "\n"
                if case .array(let topics)? = endpoint["topics"] {
                    for case .object(let topic) in topics.prefix(20) {
                        let ago: String = if case .number(let n)? = topic["last_change_ms_ago"] { String(format: "%.1fs", n.doubleValue / 1000) } else { "–" }
                        let health = text(topic["upstream"]) == "ok" ? "ok" : "\u{1B}[31m" + text(topic["problem"]) + "\u{1B}[0m"
                        let leader = leaders[text(topic["name"])].map { "  led by \($0)" } ?? ""
                        out += "  " + pad(text(topic["name"]), 38) + pad(String(int(topic["subscribers"])), 7, right: true) + pad(text(topic["cursor"]), 18, right: true)
                            + pad(ago, 10, right: true) + pad(String(int(topic["last_change_bytes"])), 9, right: true) + "  " + health + leader + "\n"
                    }
                }
            }
        }
        return out
    }
}

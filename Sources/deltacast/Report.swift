import DeltacastClient
import DeltacastCommandLine
import DeltacastConfig
import DeltacastJSON
import Foundation

/// `deltacast report URL`: what the proxy saved the upstream and its clients, measured since it
/// started, as Markdown (or the proxy's JSON with `--json`).
enum ReportCommand: Command {
    static let name = "report"
    static let summary = "the migration report: upstream requests made and avoided, bytes, detection delay"
    static let usage = """
        usage: deltacast report URL [--token TOKEN] [--json] [--cacert FILE]

        Reads GET /deltacast/report from the proxy at URL (e.g. http://127.0.0.1:8080) with the
        admin token (--token, or the environment's DELTACAST_ADMIN_TOKEN) and prints, per endpoint
        and for the topics that saved the most: the requests sent to the upstream, the requests
        the same clients would have sent polling it directly, the bytes sent against full
        bodies, the share of polls that found no change, and how long a change could wait
        upstream. Markdown on stdout; --json prints the proxy's JSON as it came. An https:// URL
        is verified against --cacert FILE, or the system's CA store.
        """

    static func run(_ arguments: [String]) throws(CommandLineArguments.UsageError) -> ExitStatus {
        let args = try CommandLineArguments(arguments, flags: ["--json"], options: ["--token", "--cacert"])
        guard args.positionals.count == 1 else { throw .init(message: "expected URL") }
        guard let url = parseURL(args.positionals[0]) else {
            throw .init(message: "invalid URL '\(args.positionals[0])'; expected http://HOST:PORT or https://...")
        }
        guard let token = args.value("--token") ?? ProcessInfo.processInfo.environment["DELTACAST_ADMIN_TOKEN"] else {
            throw .init(message: "the report needs the admin token: --token TOKEN or DELTACAST_ADMIN_TOKEN")
        }
        let tls = url.scheme == "https" ? ClientConnection.TLSOptions(serverName: url.host, caFile: args.value("--cacert")) : nil
        switch TopCommand.fetch(host: url.host, port: url.port, prefix: url.path, token: token, tls: tls, path: "/deltacast/report") {
        case .failure(let error):
            printError("deltacast report: \(error.message)")
            return .failure
        case .success(let report):
            print(args.has("--json") ? JSONValue.object(report).jsonText : markdown(report), terminator: args.has("--json") ? "\n" : "")
            return .success
        }
    }

    /// The report as Markdown: a table of endpoints with the total first, the topics that saved
    /// the most, the last hour's rates, and how each number is counted.
    static func markdown(_ report: JSONObject) -> String {
        func number(_ value: JSONValue?) -> Double? { if case .number(let n)? = value { n.doubleValue } else { nil } }
        func text(_ value: JSONValue?) -> String { if case .string(let s)? = value { s } else { "" } }
        func object(_ value: JSONValue?) -> JSONObject { if case .object(let o)? = value { o } else { JSONObject() } }
        func array(_ value: JSONValue?) -> [JSONValue] { if case .array(let a)? = value { a } else { [] } }
        func count(_ value: Double?) -> String {
            guard let value else { return "–" }
            return value == value.rounded() || abs(value) >= 100 ? grouped(Int(value.rounded())) : String(format: "%.1f", value)
        }
        func percent(_ value: Double?) -> String { value.map { String(format: "%.0f %%", $0 * 100) } ?? "–" }
        func bytes(_ value: Double?) -> String {
            guard let value else { return "–" }
            let units = ["B", "KiB", "MiB", "GiB", "TiB"]
            var scaled = value, unit = 0
            while scaled >= 1024 && unit < units.count - 1 { scaled /= 1024; unit += 1 }
            return unit == 0 ? "\(Int(value)) B" : String(format: "%.1f %@", scaled, units[unit])
        }
        func seconds(_ value: Double?) -> String {
            guard let value else { return "–" }
            return value < 1 ? "\(Int(value * 1000)) ms" : value == value.rounded() ? "\(Int(value)) s" : String(format: "%.1f s", value)
        }
        func cells(_ line: JSONObject) -> String {
            let sent = number(line["bytes_sent"]), full = number(line["bytes_full"])
            let share = full.flatMap { $0 > 0 ? (sent ?? 0) / $0 : nil }
            return "\(count(number(line["upstream_requests"]))) | \(count(number(line["direct_requests"]))) | "
                + "\(count(number(line["avoided_requests"]))) (\(percent(number(line["avoided_ratio"])))) | "
                + "\(count(number(line["mirrored_gets"]))) / \(count(number(line["pushes"]))) | "
                + "\(bytes(sent)) / \(bytes(full))\(share.map { " (\(percent($0)))" } ?? "") | \(percent(number(line["no_change_ratio"])))"
        }
        var out = "# Deltacast migration report\n\n"
        out += "Measured over \(duration(Int(number(report["uptime_s"]) ?? 0))), since the proxy started.\n\n"
        out += "| endpoint | upstream requests | direct polling would send | avoided | answered by the proxy (GET / push) | bytes sent / full bodies | polls with no change | change waited upstream (median ≤ / p90 ≤) |\n"
        out += "|---|---:|---:|---:|---:|---:|---:|---:|\n"
        out += "| **all** | " + cells(object(report["totals"])) + " | |\n"
        for case .object(let endpoint) in array(report["endpoints"]) {
            let detection = object(endpoint["detection"])
            let delay = number(detection["changes"]).map { $0 > 0 ? "\(seconds(number(detection["p50_le_s"]))) / \(seconds(number(detection["p90_le_s"])))" : "–" } ?? "–"
            out += "| `\(text(endpoint["path"]))` (every \(seconds((number(endpoint["interval_ms"]) ?? 0) / 1000))) | " + cells(endpoint) + " | \(delay) |\n"
        }
        let topics = array(report["topics"])
        if !topics.isEmpty {
            out += "\n## Topics that saved the most\n\n"
            out += "| topic | endpoint | upstream requests | direct polling would send | avoided | answered by the proxy (GET / push) | bytes sent / full bodies | polls with no change |\n"
            out += "|---|---|---:|---:|---:|---:|---:|---:|\n"
            for case .object(let topic) in topics.prefix(20) {
                out += "| `\(text(topic["name"]))` | `\(text(topic["endpoint"]))` | " + cells(topic) + " |\n"
            }
        }
        let samples = array(object(report["history"])["samples"]).compactMap { value -> [Double?]? in
            guard case .array(let fields) = value else { return nil }
            return fields.map { number($0) }
        }
        if !samples.isEmpty {
            func summary(_ index: Int) -> String {
                let values = samples.compactMap { $0.count > index ? $0[index] : nil }.sorted()
                guard !values.isEmpty else { return "–" }
                return "median \(count(values[values.count / 2]))/s, highest \(count(values.last!))/s"
            }
            let budget = samples.compactMap { $0.count > 3 ? $0[3] : nil }.max()
            out += "\n## The last \(duration(samples.count * Int(number(object(report["history"])["period_s"]) ?? 5)))\n\n"
            out += "- upstream requests: \(summary(1))\n- requests avoided: \(summary(2))\n"
            out += "- request budget: " + (budget.map { "at most \(percent($0)) used" } ?? "none configured") + "\n"
        }
        out += """

            Upstream requests are every request sent (polls, cold GETs, refreshes, change-index \
            reads). Direct polling counts each plain GET the proxy answered, and one request per \
            interval (an adaptive endpoint's minimum) for each push subscriber while it was \
            subscribed. A held GET counts as a GET when it comes and, answered by a change, as a \
            push. Bytes count push events (as JSON) and GET bodies against the full body each \
            would have fetched. A change waited upstream at most from the start \
            of the poll before the one that found it to its commit.

            """
        return out
    }

    private static func grouped(_ value: Int) -> String {
        let digits = String(abs(value))
        var out = ""
        for (offset, character) in digits.enumerated() {
            if offset > 0 && (digits.count - offset) % 3 == 0 { out += "," }
            out.append(character)
        }
        return (value < 0 ? "-" : "") + out
    }

    private static func duration(_ seconds: Int) -> String {
        seconds < 120 ? "\(seconds) s" : seconds < 7200 ? "\(seconds / 60) min" : "\(seconds / 3600) h \(seconds % 3600 / 60) min"
    }
}

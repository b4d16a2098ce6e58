import DeltacastConfig

/// Commands whose capability a later issue builds. They say so plainly instead of pretending,
/// and exit 69 (EX_UNAVAILABLE). `serve` still validates its configuration first.
enum ServeCommand: Command {
    static let name = "serve"
    static let summary = "run the proxy with a configuration file"
    static let usage = """
        usage: deltacast serve -c FILE

        Runs the proxy until SIGTERM or SIGINT, then shuts down gracefully: WebSocket, SSE and
        long-poll push, cached GETs, publish, probes. (Polling the upstream arrives with issue 6.)
          -c, --config FILE   the configuration file
        """
    static func run(_ arguments: [String]) throws(CommandLineArguments.UsageError) -> ExitStatus {
        let args = try CommandLineArguments(arguments, flags: [], options: ["--config"], aliases: ["-c": "--config"])
        guard args.positionals.isEmpty else { throw .init(message: "unexpected argument '\(args.positionals[0])'") }
        guard let path = args.value("--config") else { throw .init(message: "missing '-c FILE'") }
        let (configuration, status) = loadConfiguration(path: path, command: name)
        guard let configuration else { return status }
        return runServer(configuration, command: name)
    }
}

enum DemoCommand: Command {
    static let name = "demo"
    static let summary = "start the demo legacy API, the proxy in front of it and a live dashboard"
    static let usage = """
        usage: deltacast demo [-c FILE]

        Starts a simulated legacy API, the proxy in front of it (config/demo.yaml) and a live
        dashboard, and prints their URLs. Runs until Ctrl-C.
          -c, --config FILE   the proxy configuration (default config/demo.yaml)
        """
    static func run(_ arguments: [String]) throws(CommandLineArguments.UsageError) -> ExitStatus {
        let args = try CommandLineArguments(arguments, flags: [], options: ["--config"], aliases: ["-c": "--config"])
        guard args.positionals.isEmpty else { throw .init(message: "unexpected argument '\(args.positionals[0])'") }
        let path = args.value("--config") ?? "config/demo.yaml"
        let (configuration, status) = loadConfiguration(path: path, command: name)
        guard configuration != nil else { return status }
        printError("deltacast demo: \(path) is valid, but the demo needs the proxy's server and poller, which are not built yet (issues 4, 5 and 6; the dashboard: issue 7).")
        return .unavailable
    }
}

enum BenchCommand: Command {
    static let name = "bench"
    static let summary = "run a benchmark: json, http, fanout, throughput, connections, upstream"
    static let usage = """
        usage: deltacast bench KIND [options]

        Kinds: json [--rounds N] (parser, diff and patch sizes),
        http [--duration S] [--connections N] [--rounds N] (against nginx; needs nginx and wrk),
        fanout [--transport ws|sse] [--subscribers N] [--messages M] [--rate R] [--diff json-patch|snapshot]
        (run it under `taskset -c 1`: the server it starts is pinned to CPU 0),
        throughput | connections (issue 10),
        upstream (issue 6).
        """
    static func run(_ arguments: [String]) throws(CommandLineArguments.UsageError) -> ExitStatus {
        guard let kind = arguments.first else { throw .init(message: "expected a benchmark kind") }
        if kind == "json" { return try JSONBenchmark.run(Array(arguments.dropFirst())) }
        if kind == "http" { return try HTTPBenchmark.run(Array(arguments.dropFirst())) }
        if kind == "fanout" { return try FanoutBenchmark.run(Array(arguments.dropFirst())) }
        let owners = ["throughput": "issue 10",
                      "connections": "issue 10", "upstream": "issue 6"]
        guard let owner = owners[kind] else {
            throw .init(message: "unknown benchmark '\(kind)'; expected one of: json, http, \(owners.keys.sorted().joined(separator: ", "))")
        }
        printError("deltacast bench \(kind): not built yet (\(owner)).")
        return .unavailable
    }
}

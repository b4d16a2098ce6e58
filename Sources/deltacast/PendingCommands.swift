import DeltacastConfig

/// Commands whose capability a later issue builds. They say so plainly instead of pretending,
/// and exit 69 (EX_UNAVAILABLE). `serve` still validates its configuration first.
enum ServeCommand: Command {
    static let name = "serve"
    static let summary = "run the proxy with a configuration file"
    static let usage = """
        usage: deltacast serve -c FILE

        Runs the proxy until SIGTERM or SIGINT, then shuts down gracefully: WebSocket, SSE and
        long-poll push, cached GETs, polling the upstream, publish and refresh, probes.
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
        upstream [--clients N] [--duration S] [--interval-ms MS] (direct polling of the simulated
        API vs push through the proxy, same clients, one run).
        """
    static func run(_ arguments: [String]) throws(CommandLineArguments.UsageError) -> ExitStatus {
        guard let kind = arguments.first else { throw .init(message: "expected a benchmark kind") }
        if kind == "json" { return try JSONBenchmark.run(Array(arguments.dropFirst())) }
        if kind == "http" { return try HTTPBenchmark.run(Array(arguments.dropFirst())) }
        if kind == "fanout" { return try FanoutBenchmark.run(Array(arguments.dropFirst())) }
        if kind == "upstream" { return try UpstreamBenchmark.run(Array(arguments.dropFirst())) }
        let owners = ["throughput": "issue 10",
                      "connections": "issue 10"]
        guard let owner = owners[kind] else {
            throw .init(message: "unknown benchmark '\(kind)'; expected one of: json, http, fanout, upstream, \(owners.keys.sorted().joined(separator: ", "))")
        }
        printError("deltacast bench \(kind): not built yet (\(owner)).")
        return .unavailable
    }
}

import DeltacastConfig

/// `deltacast bench KIND`: dispatches to one of the benchmarks.
enum BenchCommand: Command {
    static let name = "bench"
    static let summary = "run a benchmark: json, http, fanout, throughput, connections, upstream"
    static let usage = """
        usage: deltacast bench KIND [options]

        Kinds: json [--rounds N] (parser, diff and patch sizes),
        http [--duration S] [--connections N] [--rounds N] (against nginx; needs nginx and wrk),
        fanout | throughput | connections: the load generator, against a `deltacast serve` it starts
        (pinned to CPU 0; run it under `taskset -c 1`) or any server given by URLs
        (examples/bench/run.sh runs Nchan and Pushpin side by side). Options:
        \(FanoutBenchmark.usage)
        upstream [--clients N] [--duration S] [--interval-ms MS] (direct polling of the simulated
        API vs push through the proxy, same clients, one run).
        """
    static func run(_ arguments: [String]) throws(CommandLineArguments.UsageError) -> ExitStatus {
        guard let kind = arguments.first else { throw .init(message: "expected a benchmark kind") }
        if kind == "json" { return try JSONBenchmark.run(Array(arguments.dropFirst())) }
        if kind == "http" { return try HTTPBenchmark.run(Array(arguments.dropFirst())) }
        if let mode = LoadGenerator.Mode(rawValue: kind) { return try FanoutBenchmark.run(mode, Array(arguments.dropFirst())) }
        if kind == "upstream" { return try UpstreamBenchmark.run(Array(arguments.dropFirst())) }
        throw .init(message: "unknown benchmark '\(kind)'; expected one of: json, http, fanout, throughput, connections, upstream")
    }
}

public import DeltacastCommandLine

/// `deltacast bench KIND`: the benchmarks, each measured side by side in one run.
public enum Benchmarks {
    /// The kinds and their options, for `deltacast bench --help`.
    public static let usage = """
        usage: deltacast bench KIND [options]

        Kinds: json [--rounds N] [--simdjson PATH] (parser, diff and patch sizes; with PATH, the
        same documents parsed by simdjson, built by examples/bench/run.sh json),
        http [--duration S] [--connections N] [--rounds N] (against nginx; needs nginx and wrk),
        fanout | throughput | connections: the load generator, against a `deltacast serve` it starts
        (pinned to CPU 0; run it under `taskset -c 1`) or any server given by URLs
        (examples/bench/run.sh runs Nchan and Pushpin side by side). Options:
        \(FanoutBenchmark.usage)
        coldstart: fanout of one 1 MB document to 10,000 waiting subscribers (the first state
        after a restart); the same options, these defaults: --messages 1 --size 1000000
        --subscribers 10000 --rate 1 --settle 0. It reports the time to the last byte (max ms) and the peak
        RSS (rss_peak), which shows whether the document is shared or copied per subscriber.
        upstream [--clients N] [--duration S] [--interval-ms MS] (direct polling of the simulated
        API vs push through the proxy, same clients, one run).
        polling [--topics N] [--duration S] [--interval-ms MS] [--max-concurrent N] [--c-loop PATH]
        (N per-user topics under auth: passthrough polled by the proxy, then by a C libcurl-multi
        loop if given; polls/s, CPU per poll, lateness, memory per topic; run under taskset -c 1).
        polling --workload zipf [--topics N] [--warmup S] [--duration S] [--rounds N] [--min-ms MS] [--max-ms MS] [--out DIR]
        (N topics changing at Zipf rates; adaptive intervals against the fixed interval that
        makes the same upstream request rate: detection delay, median and p99, by change rate).
        """

    /// Runs the benchmark `arguments` name, with its options.
    public static func run(_ arguments: [String]) throws(CommandLineArguments.UsageError) -> ExitStatus {
        guard let kind = arguments.first else { throw .init(message: "expected a benchmark kind") }
        let options = Array(arguments.dropFirst())
        if kind == "json" { return try JSONBenchmark.run(options) }
        if kind == "http" { return try HTTPBenchmark.run(options) }
        if let mode = LoadGenerator.Mode(rawValue: kind) { return try FanoutBenchmark.run(mode, options) }
        if kind == "coldstart" {
            return try FanoutBenchmark.run(.fanout, ["--messages", "1", "--size", "1000000", "--subscribers", "10000", "--rate", "1", "--settle", "0", "--label", "coldstart"] + options)
        }
        if kind == "upstream" { return try UpstreamBenchmark.run(options) }
        if kind == "polling" { return try PollingBenchmark.run(options) }
        throw .init(message: "unknown benchmark '\(kind)'; expected one of: json, http, fanout, throughput, connections, coldstart, upstream, polling")
    }
}

import DeltacastBench
import DeltacastCommandLine

/// `deltacast bench KIND`: the benchmarks live in DeltacastBench.
enum BenchCommand: Command {
    static let name = "bench"
    static let summary = "run a benchmark: json, http, fanout, throughput, connections, coldstart, upstream, polling"
    static let usage = Benchmarks.usage
    static func run(_ arguments: [String]) throws(CommandLineArguments.UsageError) -> ExitStatus {
        try Benchmarks.run(arguments)
    }
}

import DeltacastCommandLine
import DeltacastConfig
import DeltacastDiscovery
import DeltacastJSON
import DeltacastUpstream
import Foundation

/// `deltacast types -c FILE`: samples each polled endpoint, as `discover` does, and writes a
/// JSON Schema per endpoint and a TypeScript module with the topic map.
enum TypesCommand: Command {
    static let name = "types"
    static let summary = "sample each polled endpoint and write JSON Schemas and a TypeScript topic map"
    static let usage = """
        usage: deltacast types -c FILE [--samples N] [--interval DURATION] [--timeout DURATION]
                               [--param NAME=VALUE]... [-H 'Name: value']... [--out DIR]

        Fetches each polled endpoint of FILE N times, INTERVAL apart, and writes to DIR:
          ENDPOINT.schema.json   a JSON Schema (2020-12) of its answers: types, required
                                 members, enums for small closed sets of strings, integers,
                                 nulls, array items; where samples disagree, a union or an
                                 optional member, with a note of which samples showed what
          topics.d.ts            one TypeScript interface per endpoint, and `Topics`, the map
                                 for `new Deltacast<Topics>(url)` (templates included)
          --samples N          fetches per endpoint (1-50, default 3)
          --interval DURATION  time between them (default 1s; at most 1m)
          --timeout DURATION   time allowed for each request (default 5s; at most 1m)
          --param NAME=VALUE   a value for a path parameter ({NAME}) of templated endpoints
          -H, --header H       a request header, e.g. 'Authorization: Bearer ...' (repeatable),
                               for endpoints that need credentials (auth: passthrough)
          --out DIR            where to write (default: deltacast-types)
        An endpoint that cannot be sampled (a parameter without a value, credentials not given,
        a failed request, an answer that is not JSON) is named with the reason and typed
        `unknown`; the others are still written. Publish endpoints have nothing to sample.
        Exit 0 when every polled endpoint was sampled, 1 otherwise.
        """

    static func run(_ arguments: [String]) throws(CommandLineArguments.UsageError) -> ExitStatus {
        let args = try CommandLineArguments(arguments, flags: [], options: ["--config", "--samples", "--interval", "--timeout", "--param", "--header", "--out"],
                                            aliases: ["-c": "--config", "-H": "--header", "-n": "--samples"])
        guard args.positionals.isEmpty else { throw .init(message: "unexpected argument '\(args.positionals[0])'") }
        guard let path = args.value("--config") else { throw .init(message: "missing '-c FILE'") }
        let samples = try DiscoverCommand.bounded(args.value("--samples") ?? "3", "--samples", 1...50)
        let interval = try DiscoverCommand.duration(args.value("--interval") ?? "1s", "--interval", allowZero: true)
        let timeout = try DiscoverCommand.duration(args.value("--timeout") ?? "5s", "--timeout", allowZero: false)
        let headers = try DiscoverCommand.headers(args.values("--header"))
        var parameters: [String: String] = [:]
        for pair in args.values("--param") {
            guard let equals = pair.firstIndex(of: "="), equals != pair.startIndex else { throw .init(message: "invalid --param '\(pair)'; expected NAME=VALUE") }
            parameters[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
        }
        let out = args.value("--out") ?? "deltacast-types"
        let (loaded, status) = loadConfiguration(path: path, command: name)
        guard let configuration = loaded else { return status }
        let fetcher: Fetcher
        do { fetcher = try Fetcher() } catch {
            printError("deltacast types: cannot start the HTTP client: \(error)")
            return .failure
        }
        defer { fetcher.stop() }

        var endpoints: [TopicTypes.Endpoint] = []
        var failed = 0
        for endpoint in configuration.endpoints {
            let shown = endpoint.path.text
            guard endpoint.source == .poll else {
                endpoints.append(.init(path: shown, shape: nil, reason: "source: publish: nothing to sample"))
                print("  \(shown): source: publish, nothing to sample (unknown)")
                continue
            }
            let result = sample(endpoint, configuration: configuration, parameters: parameters, headers: headers,
                                samples: samples, interval: interval, timeout: timeout, fetcher: fetcher)
            switch result {
            case .success(let values):
                endpoints.append(.init(path: shown, shape: Shape(samples: values), samples: values.count))
                print("  \(shown): \(values.count) sample\(values.count == 1 ? "" : "s")")
            case .failure(let reason):
                failed += 1
                endpoints.append(.init(path: shown, shape: nil, reason: reason.text))
                printError("  \(shown): not typed: \(reason.text)")
            }
        }
        do {
            try write(endpoints, to: out, source: path)
        } catch {
            printError("deltacast types: cannot write to '\(out)': \(error)")
            return .failure
        }
        print("wrote \(out)/topics.d.ts and \(endpoints.filter { $0.shape != nil }.count) schema\(endpoints.filter { $0.shape != nil }.count == 1 ? "" : "s")"
              + (failed > 0 ? "; \(failed) endpoint\(failed == 1 ? "" : "s") could not be sampled" : ""))
        return failed == 0 ? .success : .failure
    }

    struct Reason: Error { var text: String }

    /// The endpoint's answers, parsed, or why there are none.
    static func sample(_ endpoint: Configuration.Endpoint, configuration: Configuration, parameters: [String: String], headers: [(name: String, value: String)],
                       samples: Int, interval: Int, timeout: Int, fetcher: Fetcher) -> Result<[JSONValue], Reason> {
        let missing = endpoint.path.parameterNames.filter { parameters[$0] == nil }
        guard missing.isEmpty else {
            return .failure(Reason(text: "needs a value for " + missing.map { "{\($0)}" }.joined(separator: ", ") + " (--param \(missing[0])=VALUE)"))
        }
        if endpoint.auth == .passthrough && !headers.contains(where: { header in endpoint.forwardHeaders.contains { $0.lowercased() == header.name.lowercased() } }) {
            return .failure(Reason(text: "auth: passthrough needs a user's credentials: pass them with -H 'Authorization: ...'"))
        }
        guard let url = endpoint.upstreamURL(base: configuration.upstream.base, parameters: parameters, topic: endpoint.path.text) else {
            return .failure(Reason(text: "no upstream URL (upstream.base is not set)"))
        }
        let request = UpstreamRequest(url: url, headers: configuration.upstream.headers + endpoint.headers + headers, timeoutMilliseconds: timeout,
                                      maxBody: endpoint.maxBody ?? configuration.upstream.maxBody, followRedirects: configuration.upstream.followRedirects)
        // A sample that fails is skipped (a flaky upstream still gets a type from the others);
        // with none left, the first failure is the reason.
        var values: [JSONValue] = []
        var failures: [String] = []
        for index in 0..<samples {
            if index > 0 { usleep(useconds_t(interval) * 1000) }
            let response = fetcher.fetch(request)
            if let failure = response.failure {
                failures.append("\(url): \(failure)")
            } else if !(200..<300).contains(response.status) {
                let hint = response.status == 401 || response.status == 403 ? ": pass credentials with -H" : ""
                failures.append("\(url) answered \(response.status)\(hint)")
            } else if let value = try? JSONParser.parse(response.body) {
                values.append(value)
            } else {
                failures.append("\(url) answered something that is not JSON (\(response.header("content-type") ?? "no content type"), \(response.body.count) bytes)")
            }
        }
        if values.isEmpty { return .failure(Reason(text: failures.first ?? "no sample")) }
        if !failures.isEmpty { printError("  \(endpoint.path.text): \(failures.count) of \(samples) samples skipped: \(failures[0])") }
        return .success(values)
    }

    static func write(_ endpoints: [TopicTypes.Endpoint], to directory: String, source: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let names = TopicTypes.names(for: endpoints.map(\.path))
        for (endpoint, name) in zip(endpoints, names) {
            guard let shape = endpoint.shape else { continue }
            let schema = shape.jsonSchema(title: name, description: "The answers of \(endpoint.path), from \(endpoint.samples) sample\(endpoint.samples == 1 ? "" : "s") (deltacast types).")
            try (TopicTypes.pretty(schema) + "\n").write(toFile: "\(directory)/\(name).schema.json", atomically: true, encoding: .utf8)
        }
        let module = TopicTypes.module(endpoints, header: "The topics of \(source), from their live answers (deltacast types).\nUse: new Deltacast<Topics>(url) with the declarations at /deltacast.d.ts.")
        try module.write(toFile: "\(directory)/topics.d.ts", atomically: true, encoding: .utf8)
    }
}

import DeltacastCommandLine
import DeltacastConfig
import DeltacastDiscovery
import DeltacastJSON
import DeltacastServer
import DeltacastTLS
import Foundation

/// `deltacast check -c FILE`: validates a configuration without starting anything.
enum CheckCommand: Command {
    static let name = "check"
    static let summary = "validate a configuration file and summarise its endpoints"
    static let usage = """
        usage: deltacast check -c FILE [--schema DIR [--param NAME=VALUE]... [-H 'Name: value']...]
               deltacast check --reference

        Validates FILE without starting anything. Exit 0 and a one-line summary of the
        endpoints, or exit 1 and every error found, each as file:line:column: message.
          -c, --config FILE   the configuration file
          --schema DIR        also fetch each polled endpoint once and check its answer against
                              the schema `deltacast types` wrote to DIR: every difference with
                              its JSON Pointer; exit 1 when one would break a typed client (a
                              type changed, a required member or enum value gone), 0 when the
                              answers only add members (they are listed)
          --param, -H         as for `deltacast types`
          --reference         print the configuration reference (Markdown) and exit
        """

    static func run(_ arguments: [String]) throws(CommandLineArguments.UsageError) -> ExitStatus {
        let args = try CommandLineArguments(arguments, flags: ["--reference"], options: ["--config", "--schema", "--param", "--header"], aliases: ["-c": "--config", "-H": "--header"])
        if args.has("--reference") {
            print(ConfigurationReference.markdown, terminator: "")
            return .success
        }
        guard args.positionals.isEmpty else { throw .init(message: "unexpected argument '\(args.positionals[0])'") }
        guard let path = args.value("--config") else { throw .init(message: "missing '-c FILE'") }
        let (configuration, status) = loadConfiguration(path: path, command: name)
        guard let configuration else { return status }
        // The key and certificate files are part of the configuration: load them too.
        if configuration.auth.isEnabled {
            do { _ = try Authenticator(configuration: configuration.auth) } catch {
                printError("\(path): \(error)")
                return .failure
            }
        }
        if let tls = configuration.tls {
            do { _ = try TLSContext(certificate: tls.certificate, key: tls.key) } catch {
                printError("\(path): \(error)")
                return .failure
            }
        }
        print("\(path): OK, \(summary(of: configuration))")
        guard let directory = args.value("--schema") else { return .success }
        return try checkSchemas(configuration, directory: directory, args: args)
    }

    /// `--schema DIR`: each polled endpoint's live answer against its stored schema.
    static func checkSchemas(_ configuration: Configuration, directory: String, args: CommandLineArguments) throws(CommandLineArguments.UsageError) -> ExitStatus {
        let headers = try DiscoverCommand.headers(args.values("--header"))
        var parameters: [String: String] = [:]
        for pair in args.values("--param") {
            guard let equals = pair.firstIndex(of: "="), equals != pair.startIndex else { throw .init(message: "invalid --param '\(pair)'; expected NAME=VALUE") }
            parameters[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
        }
        let fetcher: Fetcher
        do { fetcher = try Fetcher() } catch {
            printError("deltacast check: cannot start the HTTP client: \(error)")
            return .failure
        }
        defer { fetcher.stop() }
        let names = TopicTypes.names(for: configuration.endpoints.map(\.path.text))
        var breaking = 0, unchecked = 0
        for (endpoint, name) in zip(configuration.endpoints, names) where endpoint.source == .poll {
            let file = "\(directory)/\(name).schema.json"
            guard let data = FileManager.default.contents(atPath: file), let schema = try? JSONParser.parse(Array(data)) else {
                printError("  \(endpoint.path): no schema at \(file) (run deltacast types)")
                unchecked += 1
                continue
            }
            switch TypesCommand.sample(endpoint, configuration: configuration, parameters: parameters, headers: headers,
                                       samples: 1, interval: 0, timeout: 10_000, fetcher: fetcher) {
            case .failure(let reason):
                printError("  \(endpoint.path): not checked: \(reason.text)")
                unchecked += 1
            case .success(let values):
                let differences = SchemaCheck.differences(values[0], schema)
                if differences.isEmpty { print("  \(endpoint.path): matches \(file)") }
                for difference in differences {
                    if difference.severity == .breaking { breaking += 1 }
                    (difference.severity == .breaking ? printError : { print($0) })("  \(endpoint.path) \(difference)\(difference.severity == .breaking ? "" : " (added)")")
                }
            }
        }
        if breaking > 0 { printError("\(breaking) difference\(breaking == 1 ? "" : "s") would break a client typed from \(directory)") }
        return breaking == 0 && unchecked == 0 ? .success : .failure
    }

    /// `3 endpoints: /api/prices (poll 1s, json-patch), ...; transports websocket, sse`.
    static func summary(of configuration: Configuration) -> String {
        let endpoints = configuration.endpoints.map { endpoint in
            endpoint.source == .publish
                ? "\(endpoint.path) (publish, \(endpoint.diff.rawValue)\(endpoint.auth == .none ? "" : ", " + endpoint.auth.rawValue))"
                : "\(endpoint.path) (poll \(formatDuration(endpoint.interval)), \(endpoint.diff.rawValue)\(endpoint.auth == .none ? "" : ", " + endpoint.auth.rawValue))"
        }
        let count = configuration.endpoints.count
        var summary = "\(count) endpoint\(count == 1 ? "" : "s"): \(endpoints.joined(separator: ", ")); listen \(configuration.listen); transports \(configuration.transports.map(\.rawValue).joined(separator: ", "))"
        if let cluster = configuration.cluster {
            summary += "; cluster node \(cluster.node) on \(cluster.redis), lease \(formatDuration(cluster.effectiveLease(endpoints: configuration.endpoints))), keys \(cluster.keyPrefix):*"
        }
        return summary
    }
}

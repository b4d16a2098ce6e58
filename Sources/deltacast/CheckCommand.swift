import DeltacastCommandLine
import DeltacastConfig
import DeltacastServer
import DeltacastTLS

/// `deltacast check -c FILE`: validates a configuration without starting anything.
enum CheckCommand: Command {
    static let name = "check"
    static let summary = "validate a configuration file and summarise its endpoints"
    static let usage = """
        usage: deltacast check -c FILE
               deltacast check --reference

        Validates FILE without starting anything. Exit 0 and a one-line summary of the
        endpoints, or exit 1 and every error found, each as file:line:column: message.
          -c, --config FILE   the configuration file
          --reference         print the configuration reference (Markdown) and exit
        """

    static func run(_ arguments: [String]) throws(CommandLineArguments.UsageError) -> ExitStatus {
        let args = try CommandLineArguments(arguments, flags: ["--reference"], options: ["--config"], aliases: ["-c": "--config"])
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
        return .success
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

import DeltacastCluster
import DeltacastCommandLine
import DeltacastConfig
import DeltacastLoop
import DeltacastPolling
import DeltacastServer
import Dispatch
import Foundation

/// `deltacast serve -c FILE`.
enum ServeCommand: Command {
    static let name = "serve"
    static let summary = "run the proxy with a configuration file"
    static let usage = """
        usage: deltacast serve -c FILE

        Runs the proxy until SIGTERM or SIGINT, then shuts down gracefully: WebSocket, SSE and
        long-poll push, cached GETs, polling the upstream, publish and refresh, probes.
        SIGHUP (or POST /deltacast/reload) re-reads the file without dropping a connection.
          -c, --config FILE   the configuration file
        """
    static func run(_ arguments: [String]) throws(CommandLineArguments.UsageError) -> ExitStatus {
        ProcessSignals.block()
        let args = try CommandLineArguments(arguments, flags: [], options: ["--config"], aliases: ["-c": "--config"])
        guard args.positionals.isEmpty else { throw .init(message: "unexpected argument '\(args.positionals[0])'") }
        guard let path = args.value("--config") else { throw .init(message: "missing '-c FILE'") }
        let (configuration, status) = loadConfiguration(path: path, command: name)
        guard let configuration else { return status }
        return runServer(configuration, path: path, command: name)
    }
}

/// Starts the server for `configuration`, prints where it listens, and blocks until SIGTERM or
/// SIGINT, then shuts down gracefully (in-flight responses finish, within the deadline).
///
/// With `path`, SIGHUP and `POST /deltacast/reload` re-read that file and apply it without
/// dropping a connection (a broken file changes nothing); SIGHUP also re-reads the TLS files.
func runServer(_ configuration: Configuration, path: String?, command: String, dashboard: Bool = false, started: (Int) -> Void = { _ in }) -> ExitStatus {
    ProcessLimits.raiseOpenFiles()
    // The caller blocked SIGTERM, SIGINT and SIGHUP (ProcessSignals.block()) before any thread
    // started: whoever waits for the listening line may signal at once.
    let server: HTTPServer
    let port: Int
    do {
        // Cluster mode reaches Redis first: the shared salt names passthrough topics.
        let cluster = try configuration.cluster.map { settings throws(Cluster.StartError) in try Cluster(settings: settings, configuration: configuration) }
        server = try HTTPServer(configuration: configuration, dashboard: dashboard, topicSource: UpstreamPolling(configuration: configuration), cluster: cluster)
        if let path { server.configurationSource = { readConfiguration(path: path) } }
        port = try server.start()
    } catch {
        printError("deltacast \(command): cannot start: \(error)")
        return .failure
    }
    print("deltacast: listening on \(configuration.tls == nil ? "http" : "https")://\(HostPort(host: configuration.listen.host, port: port))")
    if let cluster = configuration.cluster {
        print("deltacast: cluster node \(cluster.node) on \(cluster.redis)")
    }
    if let admin = configuration.admin.listen, let adminPort = server.adminPort {
        print("deltacast: admin endpoints on http://\(HostPort(host: admin.host, port: adminPort))")
    }
    started(port)
    fflush(nil)
    let systemd = SystemdNotifier()
    systemd.notify("READY=1\nSTATUS=serving on port \(port)\nMAINPID=\(getpid())")
    // SIGHUP re-reads the configuration file, and the TLS certificate and key, without
    // dropping a connection; SIGTERM or SIGINT ends the wait.
    ProcessSignals.wait {
        systemd.notify("RELOADING=1\nMONOTONIC_USEC=\(SystemdNotifier.monotonicMicroseconds())")
        let outcome = server.reloadFromSource()
        server.reloadTLS()
        if case .failure(let error) = outcome {
            systemd.notify("READY=1\nSTATUS=reload failed, running the previous configuration: \(error.message.prefix { $0 != "\n" })")
        } else {
            systemd.notify("READY=1\nSTATUS=serving on port \(port)")
        }
    }
    systemd.notify("STOPPING=1")
    print("deltacast: shutting down")
    fflush(nil)
    server.shutdown()
    print("deltacast: stopped")
    return .success
}

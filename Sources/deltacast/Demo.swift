import DeltacastCommandLine
import DeltacastConfig
import DeltacastSimulator
import Dispatch
import Foundation

enum DemoCommand: Command {
    static let name = "demo"
    static let summary = "start a simulated legacy API and the proxy in front of it"
    static let usage = """
        usage: deltacast demo [-c FILE]

        Starts, in one process, a simulated legacy API on the port of the configuration's
        upstream.base (stock prices, per-user notifications behind a bearer token, a 1 MB
        inventory, a flaky endpoint) and the proxy in front of it, with the live dashboard at `/`,
        and prints the URLs to try.
        Runs until Ctrl-C.
          -c, --config FILE   the proxy configuration (default config/demo.yaml)
        """
    static func run(_ arguments: [String]) throws(CommandLineArguments.UsageError) -> ExitStatus {
        ProcessSignals.block()
        let args = try CommandLineArguments(arguments, flags: [], options: ["--config"], aliases: ["-c": "--config"])
        guard args.positionals.isEmpty else { throw .init(message: "unexpected argument '\(args.positionals[0])'") }
        let path = args.value("--config") ?? "config/demo.yaml"
        let (loaded, status) = loadConfiguration(path: path, command: name)
        guard let configuration = loaded else { return status }
        guard let base = configuration.upstream.base else {
            printError("deltacast demo: \(path) has no upstream.base; the simulated API listens on its port")
            return .failure
        }
        let simulator: LegacySimulator
        do {
            simulator = try LegacySimulator(host: base.host, port: base.port)
            try simulator.start()
        } catch {
            printError("deltacast demo: cannot start the simulated legacy API on \(base.host):\(base.port): \(error)")
            return .failure
        }
        defer { simulator.stop() }
        let token = configuration.admin.token ?? "(no admin.token: publish is off)"
        return runServer(configuration, path: path, command: name, dashboard: true) { port in
            let proxy = "http://\(HostPort(host: configuration.listen.host, port: port))"
            print("""
                deltacast demo: the simulated legacy API is at http://\(HostPort(host: base.host, port: simulator.port)); the proxy polls it.
                Open \(proxy)/ in a browser: the live dashboard (prices, notifications, inventory, the flaky endpoint).
                Or try:
                  curl -i \(proxy)/api/prices                      # cached body, ETag; polled once a second whoever asks
                  curl -N -H 'Accept: text/event-stream' \(proxy)/api/prices   # snapshot, then JSON Patches
                  \(invocation()) tail \(proxy)/api/prices --transport ws
                  curl -N -H 'Accept: text/event-stream' -H 'Authorization: Bearer user-42' \(proxy)/api/users/42/notifications
                  curl -i -H 'Authorization: Bearer user-7' \(proxy)/api/users/42/notifications   # 401: not user 42's token
                  curl -N -H 'Accept: text/event-stream' \(proxy)/api/flaky       # status events while it fails
                  curl -s \(proxy)/api/inventory | wc -c                          # 1 MB, changing one row every 5 s
                  curl -X POST -H 'Authorization: Bearer \(token)' -d '{"msg":"hi"}' '\(proxy)/deltacast/publish?topic=/live/lobby'
                Ctrl-C stops both.
                """)
        }
    }
}

enum SimulateCommand: Command {
    static let name = "simulate"
    static let summary = "run the simulated legacy API alone (tests, benchmarks)"
    static let usage = """
        usage: deltacast simulate [--listen HOST:PORT]

        Runs the demo's simulated legacy API alone until SIGTERM or SIGINT, and prints the URL it
        listens on. Besides its resources (/api/prices, /api/users/{id}/notifications,
        /api/whoami, /api/inventory, /api/flaky) it has control routes for tests:
        PUT /_sim/docs/PATH, POST|DELETE /_sim/fail/PATH?mode=..., GET /_sim/stats,
        POST /_sim/reset, POST /_sim/freeze (see LegacySimulator.swift).
          --listen HOST:PORT   default 127.0.0.1:0 (any free port)
        """
    static func run(_ arguments: [String]) throws(CommandLineArguments.UsageError) -> ExitStatus {
        ProcessSignals.block()
        let args = try CommandLineArguments(arguments, flags: [], options: ["--listen"], aliases: [:])
        guard args.positionals.isEmpty else { throw .init(message: "unexpected argument '\(args.positionals[0])'") }
        let listen = args.value("--listen") ?? "127.0.0.1:0"
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (0...65535).contains(port) else {
            throw .init(message: "--listen expects HOST:PORT, got '\(listen)'")
        }
        let simulator: LegacySimulator
        do {
            simulator = try LegacySimulator(host: String(listen[..<colon]), port: port)
            try simulator.start()
        } catch {
            printError("deltacast simulate: cannot start: \(error)")
            return .failure
        }
        print("simulator: listening on http://\(listen[..<colon]):\(simulator.port)")
        fflush(nil)
        waitForTermination()
        simulator.stop()
        return .success
    }
}

/// Blocks until SIGTERM or SIGINT (SIGHUP is taken and ignored). Call
/// ``ProcessSignals/block()`` first.
func waitForTermination() { ProcessSignals.wait(onHangUp: {}) }

/// SIGTERM, SIGINT and SIGHUP for the long-running commands (serve, demo, simulate): blocked in
/// every thread from the command's first line (threads inherit the mask), so one that arrives
/// while the server starts stays pending instead of killing the process or being lost, and
/// taken by `sigwait` on the thread that waits. (A Dispatch signal source registers
/// asynchronously after `resume()`: a SIGHUP sent right after the ready line could be missed.)
enum ProcessSignals {
    private static var set: sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for signalNumber in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&set, signalNumber) }
        return set
    }

    /// Blocks the three signals in the calling thread and every thread it creates afterwards.
    static func block() {
        var signals = set
        pthread_sigmask(SIG_BLOCK, &signals, nil)
    }

    /// Waits for SIGTERM or SIGINT; each SIGHUP before it calls `onHangUp` on this thread.
    static func wait(onHangUp: () -> Void) {
        var signals = set
        while true {
            var received: Int32 = 0
            guard sigwait(&signals, &received) == 0 else { continue }
            if received == SIGHUP { onHangUp(); continue }
            return
        }
    }
}

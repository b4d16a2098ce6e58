import DeltacastBase
import DeltacastClient
import DeltacastCommandLine
import DeltacastConfig
import DeltacastJSON
import Foundation

/// `deltacast tail URL TOPIC`: subscribes through the client library (the chosen transport, or
/// WebSocket, SSE, long-poll in turn), prints each event with a UTC timestamp, the topic's
/// state with `--state`, and reconnects from its cursor when the connection ends.
enum TailCommand: Command {
    static let name = "tail"
    static let summary = "subscribe to a topic like a client and print each event"
    static let usage = """
        usage: deltacast tail URL TOPIC [--transport ws|sse|poll] [--state] [--count N]
                              [--token TOKEN] [--cacert FILE]

        Subscribes to TOPIC on the proxy at URL (e.g. http://127.0.0.1:8080, or https://...)
        and prints each event as it arrives: an ISO 8601 UTC timestamp, then the event's JSON.
        When the connection ends it reconnects within 1 s and resumes from the last cursor.
          --transport ws|sse|poll   the transport (default: WebSocket, then SSE, then long-poll)
          --state                   after each event, print the document with it applied
          --count N                 exit after N events (default: run until Ctrl-C)
          --token TOKEN             sent as Authorization: Bearer (or $DELTACAST_TOKEN)
          --cacert FILE             CA certificates for https (default: the system's store)
        """

    static func run(_ arguments: [String]) throws(CommandLineArguments.UsageError) -> ExitStatus {
        let args = try CommandLineArguments(arguments, flags: ["--state"], options: ["--transport", "--count", "--token", "--cacert"])
        guard args.positionals.count == 2 else { throw .init(message: "expected URL and TOPIC") }
        if let transport = args.value("--transport"), !["ws", "sse", "poll"].contains(transport) {
            throw .init(message: "invalid transport '\(transport)'; expected ws, sse or poll")
        }
        guard let url = parseURL(args.positionals[0]) else {
            throw .init(message: "invalid URL '\(args.positionals[0])'; expected http://HOST:PORT[/prefix] or https://...")
        }
        let topic = args.positionals[1]
        guard topic.hasPrefix("/") else { throw .init(message: "invalid topic '\(topic)'; it is a path starting with /") }
        var count: Int?
        if let text = args.value("--count") {
            guard let value = Int(text), value > 0 else { throw .init(message: "invalid --count '\(text)'; expected a positive integer") }
            count = value
        }
        let token = args.value("--token") ?? ProcessInfo.processInfo.environment["DELTACAST_TOKEN"]
        var options = DeltacastClient.Options()
        if let transport = args.value("--transport") {
            options.transports = [["ws": .websocket, "sse": .sse, "poll": .longpoll][transport]!]
        }
        options.caFile = args.value("--cacert")
        // Reconnect after 1 s, from the cursor (the library keeps it).
        options.initialBackoff = .seconds(1)
        options.maxBackoff = .seconds(1)
        options.openTimeout = .seconds(10)
        var base = "\(url.scheme)://\(url.host == "localhost" ? "127.0.0.1" : url.host):\(url.port)\(url.path)"
        while base.hasSuffix("/") { base.removeLast() }
        return Tail(topic: topic, printState: args.flags.contains("--state"), count: count).run(url: URL(string: base)!, token: token, options: options)
    }
}

/// `tail` on the client library: every event of the topic as it arrives, the state after it
/// with `--state`, and what happened to the connection on standard error.
struct Tail {
    let topic: String
    let printState: Bool
    let count: Int?

    /// What ends the command, decided on the client's thread or the reading task.
    final class Outcome: @unchecked Sendable {
        let status = Locked<ExitStatus?>(nil)
        let failures = Locked(0)
        let received = Locked(false)
        let client = Locked<DeltacastClient?>(nil)

        /// Ends the command with `status` (the first decision stands).
        func end(_ status: ExitStatus, _ message: String? = nil) {
            let first = self.status.withLock { current -> Bool in
                guard current == nil else { return false }
                current = status
                return true
            }
            guard first else { return }
            if let message { printError("deltacast tail: \(message)") }
            client.withLock { $0 }?.close()
        }
    }

    func run(url: URL, token: String?, options base: DeltacastClient.Options) -> ExitStatus {
        let outcome = Outcome()
        var options = base
        options.onConnection = { event in
            guard case .disconnected(let reason) = event else { return }
            // A certificate that does not verify will not verify next time either.
            if reason.hasPrefix("TLS to ") { return outcome.end(.failure, reason) }
            let failures = outcome.failures.withLock { $0 += 1; return $0 }
            if failures > 1 && !outcome.received.withLock({ $0 }) { return outcome.end(.failure, reason) }
            printError("deltacast tail: \(reason); reconnecting in 1 s")
        }
        let client = DeltacastClient(url: url, token: token, options: options)
        outcome.client.withLock { $0 = client }
        let events = client.events(topic)
        let topic = self.topic, printState = self.printState, count = self.count
        // The command's main thread waits for the reading task (a command, not an event loop).
        let done = Handoff<Bool>()
        Task {
            defer { done.give(true) }
            var printed = 0
            do {
                for try await event in events {
                    outcome.received.withLock { $0 = true }
                    print("\(WallClock.timestamp()) \(event.json)")
                    if printState, let state = event.state { print("\(WallClock.timestamp()) state \(state.jsonText)") }
                    fflush(nil)
                    // An error event that ends the subscription is not counted: the refusal follows.
                    if event.json.hasPrefix(#"{"type":"error""#) { continue }
                    printed += 1
                    if let count, printed >= count { return outcome.end(.success) }
                }
            } catch DeltacastClient.SubscriptionError.refused(let code, _) {
                outcome.end(.failure, "the proxy refused \(topic): \(code)")
            } catch {
                outcome.end(.failure, "\(error)")
            }
        }
        _ = done.wait()
        // The process exits next: its exit must not tear OpenSSL down under a connection the
        // client's thread still holds.
        client.closeAndWait()
        return outcome.status.withLock { $0 } ?? .success
    }
}

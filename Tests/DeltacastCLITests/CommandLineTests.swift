import DeltacastTestSupport
import Foundation
import Testing

/// Runs the built `deltacast` executable as a user would, and captures what it prints.
struct DeltacastProcess {
    static let executable = TestPaths.executable
    static let repositoryRoot = TestPaths.repositoryRoot

    var status: Int32
    var stdout: String
    var stderr: String

    init(_ arguments: [String], environment: [String: String] = [:]) throws {
        let process = Process()
        process.executableURL = Self.executable
        process.arguments = arguments
        process.currentDirectoryURL = Self.repositoryRoot
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        status = process.terminationStatus
        stdout = String(decoding: outData, as: UTF8.self)
        stderr = String(decoding: errData, as: UTF8.self)
    }
}

@Suite struct CommandLineTests {
    @Test func checkAcceptsAGoodFileWithAOneLineSummary() throws {
        let run = try DeltacastProcess(["check", "-c", "config/deltacast.yaml"])
        #expect(run.status == 0)
        #expect(run.stdout.hasPrefix("config/deltacast.yaml: OK, 5 endpoints: /api/prices (poll 1s, json-patch, token), /api/users/{user}/notifications (poll 5s, merge-patch, passthrough)"))
        #expect(run.stdout.split(separator: "\n").count == 1)
    }

    @Test func checkReportsEveryErrorOfABadFileAndExitsOne() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("deltacast-bad-\(getpid()).yaml")
        try "listen: nowhere\nendpoints:\n  - path: /a\n    intervall: 1s\n".write(to: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: path) }
        let run = try DeltacastProcess(["check", "--config=\(path.path)"])
        #expect(run.status == 1)
        #expect(run.stdout.isEmpty)
        #expect(run.stderr.contains("\(path.path):1:9: invalid listen address 'nowhere'"))
        #expect(run.stderr.contains("\(path.path):4:5: unknown key 'intervall' in endpoint; did you mean 'interval'?\n    intervall: 1s\n    ^"))
        #expect(run.stderr.contains("missing required key 'upstream.base'"))
        #expect(run.stderr.hasSuffix("3 errors in \(path.path)\n"))
    }

    @Test func checkOfAMissingFileSaysSo() throws {
        let run = try DeltacastProcess(["check", "-c", "/nonexistent/deltacast.yaml"])
        #expect(run.status == 1)
        #expect(run.stderr.contains("cannot read '/nonexistent/deltacast.yaml'"))
    }

    @Test(arguments: [
        (["check", "--frobnicate"], "unknown option '--frobnicate'"),
        (["check", "-c"], "option '--config' needs a value"),
        (["check"], "missing '-c FILE'"),
        (["diff", "a.json"], "expected OLD.json and NEW.json"),
        (["tail", "http://127.0.0.1:1", "/t", "--transport", "carrier-pigeon"], "invalid transport 'carrier-pigeon'"),
        (["bench", "nothing"], "unknown benchmark 'nothing'"),
        (["explode"], "unknown command 'explode'"),
        ([], "usage: deltacast COMMAND"),
    ])
    func usageErrorsExitTwo(_ arguments: [String], _ message: String) throws {
        let run = try DeltacastProcess(arguments)
        #expect(run.status == 2)
        #expect(run.stderr.contains(message))
    }

    @Test(arguments: ["serve", "check", "demo", "tail", "bench", "diff", "patch"])
    func everyCommandHasHelp(_ command: String) throws {
        let run = try DeltacastProcess([command, "--help"])
        #expect(run.status == 0)
        #expect(run.stdout.hasPrefix("usage: deltacast \(command)"))
    }

    @Test func versionAndGeneralHelp() throws {
        let version = try DeltacastProcess(["--version"])
        #expect(version.status == 0)
        #expect(version.stdout.hasPrefix("deltacast "))
        let help = try DeltacastProcess(["--help"])
        #expect(help.status == 0)
        // Every command's name stands apart from its summary (the long ones once ran into it:
        // "simulaterun", "discoverpoll").
        for command in ["serve", "check", "demo", "simulate", "tail", "top", "bench", "diff", "patch", "discover"] {
            #expect(help.stdout.contains("\n  \(command)  "), "\(command) in \(help.stdout)")
        }
    }

    /// An unknown kind or an option out of range is a usage error (exit 2) naming what is allowed.
    @Test func benchKindsAndLimitsAreUsageErrors() throws {
        let unknown = try DeltacastProcess(["bench", "latency"])
        #expect(unknown.status == 2)
        #expect(unknown.stderr.contains("unknown benchmark 'latency'; expected one of: json, http, fanout, throughput, connections, coldstart, upstream, polling"))
        let tooMany = try DeltacastProcess(["bench", "fanout", "--subscribers", "50000"])
        #expect(tooMany.status == 2)
        #expect(tooMany.stderr.contains("--subscribers N (1...19000)"))
        let longSettle = try DeltacastProcess(["bench", "fanout", "--settle", "5000"])
        #expect(longSettle.status == 2)
        #expect(longSettle.stderr.contains("--settle S (fanout: S unmeasured messages first, default 20)"))
        let missingServer = try DeltacastProcess(["bench", "fanout", "--server-binary", "/nonexistent/deltacast"])
        #expect(missingServer.status == 2)
        #expect(missingServer.stderr.contains("--server-binary /nonexistent/deltacast: not an executable file"))
        let halfURL = try DeltacastProcess(["bench", "throughput", "--subscribe", "http://127.0.0.1:1/sub"])
        #expect(halfURL.status == 2)
        #expect(halfURL.stderr.contains("--subscribe and --publish take http://HOST:PORT/PATH URLs"))
        let hugeDocument = try DeltacastProcess(["bench", "coldstart", "--size", "5000000"])
        #expect(hugeDocument.status == 2)
        #expect(hugeDocument.stderr.contains("--size BYTES (message size, default 200, at most 4000000)"))
        let tooManyUsers = try DeltacastProcess(["bench", "polling", "--topics", "20000"])
        #expect(tooManyUsers.status == 2)
        #expect(tooManyUsers.stderr.contains("--topics 1...10000"))
    }

    @Test func checkReferencePrintsTheConfigurationTable() throws {
        let run = try DeltacastProcess(["check", "--reference"])
        #expect(run.status == 0)
        #expect(run.stdout.hasPrefix("| key | type | default | meaning |"))
        #expect(run.stdout.contains("| `limits.journal_entries` | integer | 256 |"))
    }
}

@Suite struct JSONCommandLineTests {
    func write(_ text: String, _ name: String) throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("deltacast-\(getpid())-\(name)")
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    @Test func diffPrintsThePatchTheProxyWouldPush() throws {
        let old = try write(#"{"generatedAt":"a","items":[{"id":1,"p":1},{"id":2,"p":2}]}"#, "old.json")
        let new = try write(#"{"generatedAt":"b","items":[{"id":0,"p":0},{"id":1,"p":1.50},{"id":2,"p":2}]}"#, "new.json")
        let run = try DeltacastProcess(["diff", old, new, "--array-key", "/items=id", "--ignore", "/generatedAt"])
        #expect(run.status == 0)
        #expect(run.stdout == #"[{"op":"replace","path":"/generatedAt","value":"b"},{"op":"add","path":"/items/0","value":{"id":0,"p":0}},{"op":"replace","path":"/items/1/p","value":1.50}]"# + "\n")
        #expect(run.stderr.hasPrefix("patch 156 bytes, document 77 bytes"))
        let merge = try DeltacastProcess(["diff", old, new, "--merge"])
        #expect(merge.status == 0)
        #expect(merge.stdout.hasPrefix(#"{"generatedAt":"b","items":["#))
    }

    @Test func diffOfIdenticalDocumentsIsEmpty() throws {
        let a = try write(#"{"a":1,"b":2}"#, "same-a.json")
        let b = try write(#"{"b":2,"a":1}"#, "same-b.json")
        let run = try DeltacastProcess(["diff", a, b])
        #expect(run.status == 0)
        #expect(run.stdout == "[]\n")
    }

    @Test func diffOfInvalidJSONExitsOneWithTheLocation() throws {
        let good = try write("{}", "good.json")
        let bad = try write("{\"a\":\n  [1,,2]}", "bad.json")
        let run = try DeltacastProcess(["diff", good, bad])
        #expect(run.status == 1)
        #expect(run.stderr.contains("bad.json: line 2, column 6 (byte 11): expected a value (object, array, string, number, true, false or null), found ','"))
    }

    @Test func patchAppliesAndReportsTheFailingOperation() throws {
        let document = try write(#"{"a":[1,2]}"#, "doc.json")
        let good = try write(#"[{"op":"add","path":"/a/-","value":3},{"op":"copy","from":"/a","path":"/b"}]"#, "good-patch.json")
        let run = try DeltacastProcess(["patch", document, good])
        #expect(run.status == 0)
        #expect(run.stdout == #"{"a":[1,2,3],"b":[1,2,3]}"# + "\n")
        let bad = try write(#"[{"op":"add","path":"/a/-","value":3},{"op":"test","path":"/a/0","value":9}]"#, "bad-patch.json")
        let failed = try DeltacastProcess(["patch", document, bad])
        #expect(failed.status == 1)
        #expect(failed.stdout.isEmpty)
        #expect(failed.stderr.contains("operation 1: test: value at '/a/0' is not equal to the expected value"))
        let merge = try write(#"{"a":null,"c":{"d":1}}"#, "merge.json")
        let merged = try DeltacastProcess(["patch", document, merge, "--merge"])
        #expect(merged.stdout == #"{"c":{"d":1}}"# + "\n")
    }

    @Test func badArrayKeyIsAUsageError() throws {
        let run = try DeltacastProcess(["diff", "a.json", "b.json", "--array-key", "items"])
        #expect(run.status == 2)
        #expect(run.stderr.contains("invalid --array-key 'items'; expected PATH=FIELD such as /items=id"))
    }
}

/// A `deltacast serve` (or `demo`) process started with `yaml`, and the first line it printed.
func startServe(_ yaml: String, command: String = "serve") throws -> DeltacastChild {
    try DeltacastChild([command], configuration: yaml)
}

@Suite struct ServeCommandTests {
    /// `deltacast serve` listens, answers probes to curl, and on SIGTERM shuts down and exits 0.
    @Test func serveAnswersHealthAndStopsOnSIGTERM() throws {
        let serve = try startServe("listen: 127.0.0.1:0\nendpoints:\n  - path: /live/{room}\n    source: publish\nlogging: { access: true }\n")
        let process = serve.process, out = serve.out
        defer { if process.isRunning { process.terminate() } }
        // The first line says where it listens.
        let text = serve.firstLine
        #expect(text.hasPrefix("deltacast: listening on http://127.0.0.1:"))
        let url = String(text.dropFirst("deltacast: listening on ".count).dropLast()) + "/healthz"
        let response = try curl(["-i", url])
        #expect(response.hasPrefix("HTTP/1.1 200 OK"))
        #expect(response.hasSuffix("{\"status\":\"ok\"}"))
        kill(process.processIdentifier, SIGTERM)
        let rest = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(rest.contains("deltacast: shutting down\ndeltacast: stopped"))
        // The access log: one JSON line per request, with method, path, status, bytes, duration.
        let access = try #require(rest.split(separator: "\n").first { $0.contains(#""event":"access""#) })
        #expect(access.hasPrefix(#"{"time":"20"#))
        #expect(access.contains(#"Z","level":"info","event":"access","conn":1,"method":"GET","path":"/healthz","status":200,"bytes":15,"duration_ms":"#))
        #expect(access.hasSuffix(#","peer":"127.0.0.1"}"#))
    }

    /// A full run at `debug` with the access log: every line is one JSON object with time, level
    /// and event; connect, subscribe, close, access and upstream_error appear; and no bearer
    /// token, cookie, admin token or ticket a client sent is written anywhere.
    @Test func logsAreJSONLinesWithoutSecrets() throws {
        let admin = "admin-secret-token-5d1e9a7c"
        let serve = try startServe("""
            listen: 127.0.0.1:0
            upstream: { base: http://127.0.0.1:9, timeout: 300ms }
            endpoints:
              - path: /live/{room}
                source: publish
              - path: /me
                auth: passthrough
            admin: { token: \(admin) }
            logging: { level: debug, access: true }

            """)
        defer { if serve.process.isRunning { kill(serve.process.processIdentifier, SIGKILL); serve.process.waitUntilExit() } }
        _ = try curl(["-X", "POST", "-H", "Authorization: Bearer \(admin)", "--data", #"{"a":1}"#, serve.base + "/deltacast/publish?topic=/live/x"])
        _ = try curl(["-X", "POST", "-H", "Authorization: Bearer wrong-admin-secret-0000", "--data", "{}", serve.base + "/deltacast/publish?topic=/live/x"])
        _ = try curl(["-H", "Authorization: Bearer bearer-secret-8f3b", "-H", "Cookie: session=cookie-secret-77aa", serve.base + "/me"])
        _ = try curl(["-N", "--max-time", "1", "-H", "Accept: text/event-stream", serve.base + "/deltacast/sse?topic=/live/x&ticket=ticket-secret-42c9&token=query-secret-1b2b"])
        kill(serve.process.processIdentifier, SIGTERM)
        let rest = String(decoding: serve.out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        serve.process.waitUntilExit()
        let lines = rest.split(separator: "\n").filter { $0.hasPrefix("{") }
        #expect(lines.count >= 8)
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object?["time"] is String && object?["level"] is String && object?["event"] is String, "\(line)")
        }
        let events = Set(lines.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["event"] as? String })
        for event in ["connect", "subscribe", "close", "access", "upstream_error"] { #expect(events.contains(event), "\(event) in \(events)") }
        for secret in ["admin-secret", "wrong-admin-secret", "bearer-secret", "cookie-secret", "ticket-secret", "query-secret"] {
            #expect(!rest.contains(secret), "\(secret) was logged")
        }
        #expect(rest.contains(#""path":"/deltacast/sse?topic=/live/x&ticket=…&token=…""#))
    }
}

@Suite struct TopCommandTests {
    /// `deltacast top --once` prints the proxy's status (connections, an endpoint and its topic
    /// with subscribers and cursor); a wrong token exits 1 with the proxy's answer.
    @Test func topPrintsTheStatusAndRefusesAWrongToken() throws {
        let token = "top-admin-token-0123456789"
        let serve = try startServe("listen: 127.0.0.1:0\nendpoints:\n  - path: /live/{room}\n    source: publish\nadmin: { token: \(token) }\n")
        defer { kill(serve.process.processIdentifier, SIGKILL); serve.process.waitUntilExit() }
        _ = try curl(["-X", "POST", "-H", "Authorization: Bearer \(token)", "--data", #"{"a":1}"#, serve.base + "/deltacast/publish?topic=/live/t"])
        let top = try DeltacastProcess(["top", serve.base, "--token", token, "--once"])
        #expect(top.status == 0)
        #expect(top.stdout.contains("/live/{room}"))
        #expect(top.stdout.contains("publish, 1 topics"))
        #expect(top.stdout.contains("/live/t"))
        let refused = try DeltacastProcess(["top", serve.base, "--token", "wrong-token-0000000000", "--once"])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("deltacast top: GET /deltacast/status answered 403"))
        let missing = try DeltacastProcess(["top", serve.base, "--once"], environment: ["DELTACAST_ADMIN_TOKEN": ""])
        #expect(missing.status == 1 || missing.status == 2)
    }
}

@Suite struct ListenConflictTests {
    /// A second `serve` on a port another process listens on exits 1 saying so, instead of
    /// sharing the port through SO_REUSEPORT.
    @Test func aSecondServeOnTheSamePortRefusesToStart() throws {
        let (probe, port) = try freeLoopbackPort()
        close(probe)
        let yaml = "listen: 127.0.0.1:\(port)\nendpoints:\n  - path: /live/{room}\n    source: publish\n"
        let first = try startServe(yaml)
        defer { kill(first.process.processIdentifier, SIGKILL); first.process.waitUntilExit() }
        #expect(first.firstLine.hasPrefix("deltacast: listening on http://127.0.0.1:\(port)"))
        let config = FileManager.default.temporaryDirectory.appendingPathComponent("deltacast-conflict-\(getpid()).yaml")
        try yaml.write(to: config, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: config) }
        let second = try DeltacastProcess(["serve", "-c", config.path])
        #expect(second.status == 1)
        #expect(second.stderr.contains("deltacast serve: cannot start: bind(127.0.0.1:\(port))"), "\(second.stderr)")
        #expect(second.stderr.contains("in use"), "\(second.stderr)")
    }
}

@Suite struct DemoCommandTests {
    /// `deltacast demo` with config/demo.yaml (ports moved to free ones): the simulated API and
    /// the proxy start in one process; prices are served and pushed, a stranger's token gets
    /// the upstream's 401, and SIGTERM stops both.
    @Test func demoServesTheSimulatedAPIThroughTheProxy() throws {
        let (probe, upstreamPort) = try freeLoopbackPort()
        close(probe)
        var yaml = try String(contentsOf: DeltacastProcess.repositoryRoot.appendingPathComponent("config/demo.yaml"), encoding: .utf8)
        yaml = yaml.replacingOccurrences(of: "listen: 127.0.0.1:8080", with: "listen: 127.0.0.1:0")
            .replacingOccurrences(of: "base: http://127.0.0.1:9000", with: "base: http://127.0.0.1:\(upstreamPort)")
        let demo = try startServe(yaml, command: "demo")
        defer { if demo.process.isRunning { kill(demo.process.processIdentifier, SIGKILL); demo.process.waitUntilExit() } }
        #expect(demo.firstLine.hasPrefix("deltacast: listening on http://127.0.0.1:"))
        let prices = try curl(["-i", demo.base + "/api/prices"])
        #expect(prices.hasPrefix("HTTP/1.1 200 OK"))
        #expect(prices.contains(#"{"id":"AAPL","price":"#))
        let stream = try curl(["-N", "--max-time", "3", "-H", "Accept: text/event-stream", demo.base + "/api/prices"])
        #expect(stream.contains("event: snapshot") && stream.contains("event: patch"))
        let stranger = try curl(["-i", "-H", "Authorization: Bearer user-7", demo.base + "/api/users/42/notifications"])
        #expect(stranger.hasPrefix("HTTP/1.1 401"))
        let owner = try curl(["-H", "Authorization: Bearer user-42", demo.base + "/api/users/42/notifications"])
        #expect(owner.contains(#""user":"42""#))
        kill(demo.process.processIdentifier, SIGTERM)
        let rest = String(decoding: demo.out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        demo.process.waitUntilExit()
        #expect(demo.process.terminationStatus == 0)
        #expect(rest.contains("the simulated legacy API is at http://127.0.0.1:\(upstreamPort)"))
        // The hint names the binary as it can be run from here (no `deltacast` on PATH).
        let root = DeltacastProcess.repositoryRoot.standardizedFileURL.path + "/"
        let executable = DeltacastProcess.executable.standardizedFileURL.path
        var expected = executable.hasPrefix(root) ? String(executable.dropFirst(root.count)) : executable
        let parts = expected.split(separator: "/")
        if parts.count == 4, parts[0] == ".build" { expected = ".build/\(parts[2])/deltacast" }
        #expect(rest.contains("\n  \(expected) tail http://127.0.0.1:"), "\(rest)")
        #expect(rest.contains("deltacast: stopped"))
    }
}

@Suite struct TailCommandTests {
    /// `deltacast tail` over each transport prints the snapshot, then the patch, each with the
    /// state after it, and with `--count 2` exits 0.
    @Test func tailPrintsEventsAndStateOverEveryTransport() throws {
        let serve = try startServe("listen: 127.0.0.1:0\nendpoints:\n  - path: /live/{room}\n    source: publish\nadmin: { token: tail-admin-token-0123456789 }\n")
        defer { kill(serve.process.processIdentifier, SIGKILL); serve.process.waitUntilExit() }
        let base = serve.base
        let document = { (price: Int) in #"{"items":[{"id":1,"p":\#(price)}],"note":"long enough for one price to travel as a patch"}"# }
        let publish = { (price: Int) throws in
            _ = try curl(["-X", "POST", "-H", "Authorization: Bearer tail-admin-token-0123456789", "--data", document(price), "\(base)/deltacast/publish?topic=/live/t"])
        }
        try publish(1)
        var tails: [(String, Process, Pipe)] = []
        for transport in ["ws", "sse", "poll"] {
            let tail = Process()
            tail.executableURL = DeltacastProcess.executable
            tail.arguments = ["tail", base, "/live/t", "--transport", transport, "--state", "--count", "2"]
            let pipe = Pipe()
            tail.standardOutput = pipe
            try tail.run()
            tails.append((transport, tail, pipe))
        }
        // Publish once all three are subscribed (the long-poller counts while it is held).
        #expect(try eventually(20) { try curl(["\(base)/metrics"]).contains("deltacast_subscriptions 3\n") })
        try publish(2)
        for (transport, tail, pipe) in tails {
            let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            tail.waitUntilExit()
            #expect(tail.terminationStatus == 0, "\(transport)")
            let lines = output.split(separator: "\n")
            #expect(lines.count == 4, "\(transport): \(output)")
            guard lines.count == 4 else { continue }
            // `2026-11-23T13:00:58.165Z {...}`: a UTC timestamp with milliseconds, then the event.
            #expect(lines.allSatisfy { $0.count > 25 && $0.dropFirst(23).hasPrefix("Z ") && $0.dropFirst(4).hasPrefix("-") })
            #expect(lines[0].contains(#"{"type":"snapshot","topic":"/live/t""#))
            #expect(lines[1].hasSuffix("state " + document(1)))
            #expect(lines[2].contains(#""type":"patch""#))
            #expect(lines[3].hasSuffix("state " + document(2)))
        }
        let refused = try DeltacastProcess(["tail", base, "/nowhere", "--transport", "ws"])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("the proxy refused /nowhere: not_found"))
    }

    /// Against a TLS proxy with API-key authentication: `tail https://...` verifies the
    /// certificate (`--cacert`), sends the token, and says plainly what went wrong without them.
    @Test func tailAndTopSpeakTLSAndTailSendsItsToken() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("deltacast-tail-tls-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let cert = directory.appendingPathComponent("cert.pem").path, key = directory.appendingPathComponent("key.pem").path
        let openssl = Process()
        openssl.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        openssl.arguments = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                             "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert]
        openssl.standardError = FileHandle.nullDevice
        try openssl.run()
        openssl.waitUntilExit()
        let admin = "tail-admin-token-0123456789"
        let serve = try startServe("""
            listen: 127.0.0.1:0
            tls: { certificate: \(cert), key: \(key) }
            auth: { api_keys: [{ key: tail-key-0123456789abcdef, subject: tail }] }
            admin: { token: \(admin) }
            endpoints:
              - path: /live/{room}
                source: publish
            """)
        defer { kill(serve.process.processIdentifier, SIGKILL); serve.process.waitUntilExit() }
        #expect(serve.base.hasPrefix("https://127.0.0.1:"))
        _ = try curl(["--cacert", cert, "-X", "POST", "-H", "Authorization: Bearer \(admin)", "--data", #"{"a":1}"#, serve.base + "/deltacast/publish?topic=/live/x"])
        for transport in ["ws", "sse", "poll"] {
            let ok = try DeltacastProcess(["tail", serve.base, "/live/x", "--transport", transport, "--count", "1", "--cacert", cert, "--token", "tail-key-0123456789abcdef"])
            #expect(ok.status == 0, "\(transport): \(ok.stderr)")
            #expect(ok.stdout.contains(#"{"type":"snapshot","topic":"/live/x""#), "\(transport)")
        }
        // Exiting must not tear OpenSSL down under the client's thread, still in a held TLS
        // long-poll: twenty exits in a row, each clean (a race here crashes about one in six).
        for _ in 0..<20 {
            let quick = try DeltacastProcess(["tail", serve.base, "/live/x", "--transport", "poll", "--count", "1", "--cacert", cert, "--token", "tail-key-0123456789abcdef"])
            #expect(quick.status == 0, "\(quick.stderr.prefix(500))")
        }
        let untrusted = try DeltacastProcess(["tail", serve.base, "/live/x", "--transport", "sse", "--count", "1", "--token", "tail-key-0123456789abcdef"])
        #expect(untrusted.status == 1)
        #expect(untrusted.stderr.contains("certificate verification failed: self-signed certificate"))
        let anonymous = try DeltacastProcess(["tail", serve.base, "/live/x", "--transport", "ws", "--count", "1", "--cacert", cert])
        #expect(anonymous.status == 1)
        #expect(anonymous.stderr.contains("forbidden"), "\(anonymous.stderr)")
        // `top` reads the status over the same verified TLS.
        let top = try DeltacastProcess(["top", serve.base, "--once", "--token", admin, "--cacert", cert])
        #expect(top.status == 0, "\(top.stderr)")
        #expect(top.stdout.contains("/live/x"))
        let untrustedTop = try DeltacastProcess(["top", serve.base, "--once", "--token", admin])
        #expect(untrustedTop.status == 1)
        #expect(untrustedTop.stderr.contains("certificate verification failed"))
    }
}

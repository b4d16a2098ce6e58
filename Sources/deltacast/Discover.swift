import DeltacastClient
import DeltacastCommandLine
import DeltacastConfig
import DeltacastDiscovery
import DeltacastJSON
import DeltacastLoop
import DeltacastUpstream
import Foundation

/// `deltacast discover URL`: polls a live endpoint a few times and proposes its endpoint block
/// (array keys, ignored fields), with what it measured (conditional requests, body and patch
/// sizes) and, in words, why it proposed each key and what it could not decide.
enum DiscoverCommand: Command {
    static let name = "discover"
    static let summary = "poll a live endpoint a few times and propose its endpoint block"
    static let usage = """
        usage: deltacast discover URL [--samples N] [--interval DURATION] [--timeout DURATION]
                                      [--header 'Name: value']... [--path PATH] [--types]

        Fetches URL N times, INTERVAL apart, and prints a ready-to-paste endpoint block:
        array_keys (for each array of objects, a field present, unique and stable in every
        element), ignore (fields that changed in every interval while the rest did not), and as
        comments: whether the upstream answers conditional requests (it sends one), the body
        size and the patch size measured against it, and why it proposed each key.
          --samples N          how many times to fetch (2-50, default 5)
          --interval DURATION  time between fetches (default 1s; at most 1m)
          --timeout DURATION   time allowed for each request (default 5s; at most 1m)
          -H, --header H       a request header, e.g. 'Authorization: Bearer ...' (repeatable)
          --path PATH          the path clients will use (default: the URL's path)
          --types              also print the answers' TypeScript type and JSON Schema
                               (as `deltacast types` writes them)
        Exit 0 with a proposal; 1 when the upstream cannot be fetched or answers an error.
        """

    static func run(_ arguments: [String]) throws(CommandLineArguments.UsageError) -> ExitStatus {
        let args = try CommandLineArguments(arguments, flags: ["--types"], options: ["--samples", "--interval", "--timeout", "--header", "--path"],
                                            aliases: ["-H": "--header", "-n": "--samples"])
        guard args.positionals.count == 1 else { throw .init(message: "expected one URL") }
        let url = args.positionals[0]
        guard url.hasPrefix("http://") || url.hasPrefix("https://") else { throw .init(message: "'\(url)' is not an http:// or https:// URL") }
        let samples = try bounded(args.value("--samples") ?? "5", "--samples", 2...50)
        let interval = try duration(args.value("--interval") ?? "1s", "--interval", allowZero: true)
        let timeout = try duration(args.value("--timeout") ?? "5s", "--timeout", allowZero: false)
        let headers = try Self.headers(args.values("--header"))
        let fetcher: Fetcher
        do { fetcher = try Fetcher() } catch {
            printError("deltacast discover: cannot start the HTTP client: \(error)")
            return .failure
        }
        defer { fetcher.stop() }
        let request = UpstreamRequest(url: url, headers: headers, timeoutMilliseconds: timeout, maxBody: 64 * 1024 * 1024, followRedirects: false)

        var bodies: [[UInt8]] = []
        var conditional: String?
        for index in 0..<samples {
            if index > 0 { usleep(useconds_t(interval) * 1000) }
            let response = fetcher.fetch(request)
            if let failure = response.failure {
                printError("deltacast discover: \(url): \(failure)")
                return .failure
            }
            guard (200..<300).contains(response.status) else {
                printError("deltacast discover: \(url) answered \(response.status); discover needs a 2xx answer" +
                           (response.status == 401 || response.status == 403 ? " (pass credentials with --header)" : ""))
                return .failure
            }
            bodies.append(response.body)
            if index == 0 { conditional = probeConditional(fetcher, request, first: response) }
        }
        let path = args.value("--path") ?? Self.path(of: url)
        let report = Discovery(bodies: bodies).report(path: path, url: url, intervalMilliseconds: interval, conditional: conditional)
        print(report)
        if args.has("--types") {
            let name = TopicTypes.names(for: [path])[0]
            guard let values = try? bodies.map({ try JSONParser.parse($0) }) else {
                print("\n// No types: the answers are not JSON.")
                return .success
            }
            let shape = Shape(samples: values)
            print("\n// TypeScript (from \(values.count) samples)\n" + TopicTypes.module([.init(path: path, shape: shape, samples: values.count)], header: "deltacast discover --types").split(separator: "\n", omittingEmptySubsequences: false).dropFirst(2).joined(separator: "\n"))
            print("// JSON Schema (2020-12)\n" + TopicTypes.pretty(shape.jsonSchema(title: name, description: "The answers of \(path), from \(values.count) samples (deltacast discover --types).")))
        }
        return .success
    }

    /// Sends one conditional request with the first answer's validator; says what happened.
    static func probeConditional(_ fetcher: Fetcher, _ request: UpstreamRequest, first: UpstreamResponse) -> String {
        var probe = request
        if let etag = first.header("ETag") {
            probe.headers.append(("If-None-Match", etag))
        } else if let modified = first.header("Last-Modified") {
            probe.headers.append(("If-Modified-Since", modified))
        } else {
            return "no: it sends neither ETag nor Last-Modified, so every poll transfers the whole body (the proxy still skips the diff of an identical body)"
        }
        let validator = probe.headers.last!
        let answer = fetcher.fetch(probe)
        if answer.status == 304 { return "yes: \(validator.name) → 304 Not Modified; an unchanged poll costs no body" }
        if answer.failure != nil { return "unknown: the conditional request failed (\(answer.failure!))" }
        return "no: \(validator.name) → \(answer.status) with a body\(answer.body == first.body ? " (the same one)" : "; the body had changed, so try again")"
    }

    static func path(of url: String) -> String {
        let afterScheme = url.drop { $0 != "/" }.dropFirst(2)
        let path = afterScheme.drop { $0 != "/" }.prefix { $0 != "?" && $0 != "#" }
        return path.isEmpty ? "/" : String(path)
    }

    /// `Name: value` options as header fields.
    static func headers(_ options: [String]) throws(CommandLineArguments.UsageError) -> [(name: String, value: String)] {
        var headers: [(name: String, value: String)] = []
        for header in options {
            guard let colon = header.firstIndex(of: ":"), isToken(String(header[..<colon])) else {
                throw .init(message: "invalid header '\(header)'; expected 'Name: value'")
            }
            headers.append((String(header[..<colon]), String(header[header.index(after: colon)...]).trimmingCharacters(in: .whitespaces)))
        }
        return headers
    }

    static func bounded(_ text: String, _ option: String, _ range: ClosedRange<Int>) throws(CommandLineArguments.UsageError) -> Int {
        guard let value = Int(text), range.contains(value) else {
            throw .init(message: "\(option) expects a whole number in \(range.lowerBound)...\(range.upperBound), got '\(text)'")
        }
        return value
    }

    /// Milliseconds of a duration option, at most one minute.
    static func duration(_ text: String, _ option: String, allowZero: Bool) throws(CommandLineArguments.UsageError) -> Int {
        guard let value = parseDuration(text), value <= .seconds(60), allowZero || value > .zero else {
            throw .init(message: "\(option) expects a duration up to 1m such as 500ms or 2s, got '\(text)'")
        }
        return Int(value.wholeMilliseconds)
    }
}

/// Synchronous requests through the upstream client the proxy polls with (libcurl multi on an
/// event loop of its own).
final class Fetcher: @unchecked Sendable {
    private let loop: EventLoop
    private var client: UpstreamClient?

    init() throws {
        loop = try EventLoop()
        try loop.start(name: "deltacast-discover")
        let ready = Handoff<Bool>()
        loop.execute { [self] in client = UpstreamClient(loop: loop, maxConnections: 1); ready.give(true) }
        _ = ready.wait()
    }

    /// Fetches `request`; blocks until its answer (bounded by the request's timeout).
    func fetch(_ request: UpstreamRequest) -> UpstreamResponse {
        let answer = Handoff<UpstreamResponse>()
        loop.execute { [self] in client!.fetch(request) { answer.give($0) } }
        return answer.wait()!
    }

    func stop() {
        loop.execute { [self] in client = nil }
        loop.stop()
        loop.join()
    }
}

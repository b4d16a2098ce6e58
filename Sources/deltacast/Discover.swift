import DeltacastCommandLine
import DeltacastConfig
import DeltacastJSON
import DeltacastLoop
import DeltacastUpstream
import Dispatch
import Foundation

/// `deltacast discover URL`: polls a live endpoint a few times and proposes its endpoint block
/// (array keys, ignored fields), with what it measured (conditional requests, body and patch
/// sizes) and, in words, why it proposed each key and what it could not decide.
enum DiscoverCommand: Command {
    static let name = "discover"
    static let summary = "poll a live endpoint a few times and propose its endpoint block"
    static let usage = """
        usage: deltacast discover URL [--samples N] [--interval DURATION] [--timeout DURATION]
                                      [--header 'Name: value']... [--path PATH]

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
        Exit 0 with a proposal; 1 when the upstream cannot be fetched or answers an error.
        """

    static func run(_ arguments: [String]) throws(CommandLineArguments.UsageError) -> ExitStatus {
        let args = try CommandLineArguments(arguments, flags: [], options: ["--samples", "--interval", "--timeout", "--header", "--path"],
                                            aliases: ["-H": "--header", "-n": "--samples"])
        guard args.positionals.count == 1 else { throw .init(message: "expected one URL") }
        let url = args.positionals[0]
        guard url.hasPrefix("http://") || url.hasPrefix("https://") else { throw .init(message: "'\(url)' is not an http:// or https:// URL") }
        let samples = try bounded(args.value("--samples") ?? "5", "--samples", 2...50)
        let interval = try duration(args.value("--interval") ?? "1s", "--interval", allowZero: true)
        let timeout = try duration(args.value("--timeout") ?? "5s", "--timeout", allowZero: false)
        var headers: [(name: String, value: String)] = []
        for header in args.values("--header") {
            guard let colon = header.firstIndex(of: ":"), isToken(String(header[..<colon])) else {
                throw .init(message: "invalid header '\(header)'; expected 'Name: value'")
            }
            headers.append((String(header[..<colon]), String(header[header.index(after: colon)...]).trimmingCharacters(in: .whitespaces)))
        }
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
        let ready = DispatchSemaphore(value: 0)
        loop.execute { [self] in client = UpstreamClient(loop: loop, maxConnections: 1); ready.signal() }
        ready.wait()
    }

    /// Fetches `request`; blocks until its answer (bounded by the request's timeout).
    func fetch(_ request: UpstreamRequest) -> UpstreamResponse {
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var result: UpstreamResponse?
        loop.execute { [self] in
            client!.fetch(request) { response in result = response; done.signal() }
        }
        done.wait()
        return result!
    }

    func stop() {
        loop.execute { [self] in client = nil }
        loop.stop()
        loop.join()
    }
}

/// What the samples say about an endpoint's shape.
struct Discovery {
    let bodies: [[UInt8]]

    /// One array of objects, found at `pattern` (indices of enclosing arrays are `*`).
    struct ArrayShape {
        var pattern: String
        /// Every instance of the array in every sample.
        var instances: [[JSONValue]] = []
    }

    /// The report: an endpoint block with comments.
    func report(path: String, url: String, intervalMilliseconds: Int, conditional: String?) -> String {
        let documents = bodies.map { try? JSONParser.parse($0) }
        var lines: [String] = []
        var notes: [String] = []
        let size = bodies.last!.count
        lines.append("  - path: \(path)")
        lines.append("    upstream: \(url)")
        lines.append("    interval: \(intervalMilliseconds < 100 ? "1s" : intervalMilliseconds % 1000 == 0 ? "\(intervalMilliseconds / 1000)s" : "\(intervalMilliseconds)ms")")
        guard documents.allSatisfy({ $0 != nil }) else {
            lines.append("    diff: snapshot")
            notes.append("the body is not JSON (\(size) bytes): the proxy sends each new version whole, as a snapshot whose data is a string")
            return render(lines, notes, conditional: conditional, size: size, patches: nil)
        }
        let samples = documents.map { $0! }
        var shapes: [String: ArrayShape] = [:]
        for sample in samples { Self.collectArrays(sample, pattern: [], into: &shapes) }
        var keys: [(pattern: String, field: String)] = []
        for shape in shapes.values.sorted(by: { $0.pattern < $1.pattern }) {
            let (field, reason) = Self.chooseKey(shape, samples: samples.count)
            let shown = shape.pattern.isEmpty ? "the root array" : shape.pattern
            if let field {
                keys.append((shape.pattern, field))
                notes.append("array_keys \(shown) → \(field): \(reason)")
            } else {
                notes.append("no key for \(shown): \(reason); its elements are matched by position")
            }
        }
        var options = DiffOptions(arrayKeys: keys.compactMap { key in (try? JSONPointerPattern(key.pattern)).map { ($0, key.field) } })
        var changedEvery: Set<String>?
        var changedAny: Set<String> = []
        for (old, new) in zip(samples, samples.dropFirst()) {
            let changed = Set(JSONDiff.diff(old, new, options: options).operations.compactMap(Self.leafPattern))
            changedEvery = changedEvery.map { $0.intersection(changed) } ?? changed
            changedAny.formUnion(changed)
        }
        let volatile = (changedEvery ?? []).sorted()
        let intervals = samples.count - 1
        if intervals < 2 {
            notes.append("with \(samples.count) samples there is one interval: too few to tell volatile fields from data (use --samples 3 or more)")
        } else if !volatile.isEmpty {
            notes.append("ignore \(volatile.joined(separator: ", ")): changed in all \(intervals) intervals"
                         + (changedAny == Set(volatile) ? " and nothing else changed" : " while other fields did not")
                         + "; remove any that clients must see")
        } else if changedAny.isEmpty {
            notes.append("nothing changed in \(intervals) intervals: no volatile field to ignore (sample longer to see real changes)")
        } else {
            notes.append("no field changed in every interval: nothing to ignore")
        }
        if intervals >= 2 { options.ignore = volatile.compactMap { try? JSONPointerPattern($0) } }
        if !keys.isEmpty {
            lines.append("    array_keys: { " + keys.map { "\($0.pattern.isEmpty ? "\"\"" : $0.pattern): \($0.field)" }.joined(separator: ", ") + " }")
        }
        if intervals >= 2 && !volatile.isEmpty { lines.append("    ignore: [\(volatile.joined(separator: ", "))]") }
        let patches = zip(samples, samples.dropFirst()).map { old, new in
            let diff = JSONDiff.diff(old, new, options: options)
            return diff.isChange ? diff.serializedSize : 0
        }
        return render(lines, notes, conditional: conditional, size: size, patches: patches)
    }

    private func render(_ lines: [String], _ notes: [String], conditional: String?, size: Int, patches: [Int]?) -> String {
        var out = lines
        out.append("    # conditional requests: \(conditional ?? "not probed")")
        if let patches {
            let changes = patches.filter { $0 > 0 }
            let summary = changes.isEmpty ? "no change in \(patches.count) interval\(patches.count == 1 ? "" : "s"): clients would receive nothing after the snapshot"
                : "patches \(changes.min()!)–\(changes.max()!) bytes (\(changes.count) of \(patches.count) intervals changed), \(String(format: "%.1f", Double(changes.reduce(0, +)) / Double(changes.count) * 100 / Double(max(size, 1))))% of the body on average"
            out.append("    # body \(size) bytes; \(summary)")
        } else {
            out.append("    # body \(size) bytes")
        }
        for note in notes { out.append("    # \(note)") }
        return out.joined(separator: "\n")
    }

    /// Records every array whose elements are all objects, by pointer pattern.
    static func collectArrays(_ value: JSONValue, pattern: [String], into shapes: inout [String: ArrayShape]) {
        switch value {
        case .object(let object):
            for (key, member) in object { collectArrays(member, pattern: pattern + [JSONPointer.escape(key)], into: &shapes) }
        case .array(let elements):
            if !elements.isEmpty, elements.allSatisfy({ if case .object = $0 { true } else { false } }) {
                let text = pattern.map { "/" + $0 }.joined()
                shapes[text, default: ArrayShape(pattern: text)].instances.append(elements)
            }
            for element in elements { collectArrays(element, pattern: pattern + ["*"], into: &shapes) }
        default:
            break
        }
    }

    /// Names that usually identify a record, best first.
    static let preferredNames = ["id", "uuid", "_id", "key", "sku", "code", "slug", "name"]

    /// The best key field of an array, or nil, and why.
    static func chooseKey(_ shape: ArrayShape, samples: Int) -> (String?, String) {
        guard let first = shape.instances.first?.first, case .object(let prototype) = first else { return (nil, "it is empty") }
        var candidates: [(field: String, kept: Double)] = []
        var refused: [String] = []
        for field in prototype.keys {
            var present = true, unique = true, scalar = true
            for instance in shape.instances {
                var seen: Set<JSONValue> = []
                for element in instance {
                    guard case .object(let object) = element, let value = object[field] else { present = false; break }
                    switch value {
                    case .string: break
                    case .number(let number) where number.intValue != nil: break
                    default: scalar = false
                    }
                    if !seen.insert(value).inserted { unique = false }
                }
            }
            guard present, scalar, unique else {
                if preferredNames.contains(field.lowercased()) {
                    refused.append("'\(field)' is \(!present ? "missing from some elements" : !scalar ? "not a string or whole number" : "not unique")")
                }
                continue
            }
            // Stable: the values that identify elements persist from one sample to the next
            // (a timestamp or a counter unique to each answer would not).
            var kept = 1.0
            for (old, new) in zip(shape.instances, shape.instances.dropFirst()) {
                let before = Set(old.compactMap { if case .object(let o) = $0 { o[field] } else { nil } })
                let after = Set(new.compactMap { if case .object(let o) = $0 { o[field] } else { nil } })
                kept = min(kept, Double(before.intersection(after).count) / Double(max(1, min(before.count, after.count))))
            }
            if kept < 0.5 {
                refused.append("'\(field)' is unique but not stable (most values change between samples)")
                continue
            }
            candidates.append((field, kept))
        }
        let elements = shape.instances.map(\.count).reduce(0, +)
        guard !candidates.isEmpty else {
            return (nil, refused.isEmpty ? "no field is present, unique and stable in all \(elements) elements" : refused.joined(separator: "; "))
        }
        candidates.sort { a, b in
            let ra = preferredNames.firstIndex(of: a.field.lowercased()) ?? preferredNames.count
            let rb = preferredNames.firstIndex(of: b.field.lowercased()) ?? preferredNames.count
            return ra != rb ? ra < rb : a.field < b.field
        }
        let chosen = candidates[0]
        var reason = "present, unique and a string or whole number in all \(elements) elements of \(shape.instances.count) arrays over \(samples) samples"
        reason += shape.instances.count > 1 ? ", and \(Int(chosen.kept * 100))% of its values persist between samples" : ""
        if preferredNames.contains(chosen.field.lowercased()) { reason += "; its name is one that usually identifies a record" }
        let others = candidates.dropFirst().map(\.field)
        if !others.isEmpty { reason += "; also possible: \(others.joined(separator: ", "))" }
        if shape.instances.allSatisfy({ $0.count < 2 }) { reason += " (but no array had two elements, so uniqueness is unproven)" }
        return (chosen.field, reason)
    }

    /// The pointer pattern of a value-changing operation (array indices as `*`), or nil for
    /// an operation that adds or removes elements (that is data, not a volatile field).
    static func leafPattern(_ operation: PatchOperation) -> String? {
        guard case .replace(let path, _) = operation else { return nil }
        return path.tokens.map { "/" + ($0.allSatisfy(\.isNumber) && !$0.isEmpty ? "*" : JSONPointer.escape($0)) }.joined()
    }
}

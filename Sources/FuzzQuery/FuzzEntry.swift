import DeltacastConfig
@_spi(Fuzzing) import DeltacastHub
@_spi(Fuzzing) import DeltacastServer
import DeltacastWire

/// libFuzzer entry point for what a multiplexed event stream or long-poll request names, and
/// for the topic paths in it. The input is a query string, then optionally a NUL and a
/// `Last-Event-ID` value; it goes through the real request parser. Then:
/// - the topics come back in order, one per `topic=` pair, each with the cursor at its place;
/// - written back as a canonical query, they read back the same;
/// - a topic path that matches an endpoint never gives an upstream URL whose path, decoded
///   once or twice, has another number of segments, a dot segment or a control byte.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzQuery(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let cut = bytes.firstIndex(of: 0) ?? size
    let query = String(decoding: bytes[..<cut], as: UTF8.self)
    let resume = cut < size ? String(decoding: bytes[(cut + 1)...], as: UTF8.self) : nil
    var request = "GET /deltacast/sse?\(query) HTTP/1.1\r\nHost: fuzz\r\n"
    if let resume { request += "Last-Event-ID: \(resume)\r\n" }
    guard let head = parseHead(request + "\r\n") else { return 0 }

    for transport in [Transport.sse, .longpoll] {
        let topics = Router.multiplexedTopics(head, transport: transport)
        precondition(topics.map(\.name) == Router.queryValues(head.target, "topic"), "topics lost or reordered")
        let canonical = topics.map { "topic=\(percentEncoded($0.name))&since=\($0.since?.description ?? "")" }.joined(separator: "&")
        guard let again = parseHead("GET /deltacast/poll?\(canonical) HTTP/1.1\r\nHost: fuzz\r\n\r\n") else {
            preconditionFailure("a canonical query does not parse: \(canonical)")
        }
        let reread = Router.multiplexedTopics(again, transport: .longpoll)
        precondition(reread.map(\.name) == topics.map(\.name) && reread.map(\.since) == topics.map(\.since), "the canonical query reads back differently")
        for (name, _) in topics { checkUpstream(name) }
    }
    return 0
}

private let configuration = try! Configuration.load(text: """
    upstream:
      base: http://127.0.0.1:9000
    endpoints:
      - path: /api/items/{id}
        upstream: /v1/items/{id}
      - path: /api/users/{user}/notifications
        upstream: /v1/users/{user}/inbox
        auth: passthrough
    """, file: "fuzz.yaml", environment: [:])
private let matcher = EndpointMatcher(endpoints: configuration.endpoints)

private func checkUpstream(_ name: String) {
    guard case .matched(let index, let topic, let parameters) = matcher.match(name) else { return }
    let endpoint = configuration.endpoints[index]
    guard let url = endpoint.upstreamURL(base: configuration.upstream.base, parameters: parameters, topic: topic) else {
        preconditionFailure("no upstream URL for \(topic)")
    }
    var path = Array(url.dropFirst("http://127.0.0.1:9000".count).prefix { $0 != "?" }.utf8)
    let segments = endpoint.upstream.segments.count
    for _ in 0..<3 {
        let pieces = path.split(separator: 0x2F, omittingEmptySubsequences: false).dropFirst()
        precondition(pieces.count == segments, "\(name) reaches the upstream as \(url): \(pieces.count) segments")
        precondition(!pieces.contains { $0.elementsEqual(".".utf8) || $0.elementsEqual("..".utf8) }, "\(name) walks the upstream path: \(url)")
        precondition(!path.contains { $0 < 0x20 || $0 == 0x7F || $0 == 0x5C }, "\(name) puts a control byte or backslash in \(url)")
        guard let decoded = EndpointMatcher.percentDecoded(String(decoding: path, as: UTF8.self)) else { return }
        path = decoded
    }
}

private func parseHead(_ text: String) -> HTTPRequestHead? {
    var parser = HTTPRequestParser()
    parser.append(Array(text.utf8)[...])
    guard case .head(let head)? = try? parser.next() else { return nil }
    return head
}

private func percentEncoded(_ text: String) -> String {
    var out = ""
    for byte in text.utf8 {
        let unreserved = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == 0x2F
        out += unreserved ? String(UnicodeScalar(byte)) : "%" + String(byte, radix: 16, uppercase: true).leftPadded
    }
    return out
}

private extension String {
    var leftPadded: String { count == 1 ? "0" + self : self }
}

import CCurl
public import DeltacastLoop
#if canImport(Glibc)
import Glibc
#endif

/// One GET to the legacy API.
public struct UpstreamRequest: Sendable {
    /// Absolute http(s) URL.
    public var url: String { didSet { wire = WireRequest(url: url, headers: headers) } }
    /// Request headers, in order (the conditional ones travel in ``validators``).
    public var headers: [(name: String, value: String)] { didSet { wire = WireRequest(url: url, headers: headers) } }
    /// The last accepted body's validators, sent as `If-None-Match` and `If-Modified-Since`.
    public var validators: UpstreamValidators?
    /// Connect-to-last-byte limit.
    public var timeoutMilliseconds: Int
    /// Largest decoded body accepted; the transfer is aborted as soon as it is exceeded.
    public var maxBody: Int
    /// Whether redirects are followed (at most 5).
    public var followRedirects: Bool
    /// A body to `POST` (a token request); nil for a `GET`.
    public var body: [UInt8]?
    /// The URL and headers as libcurl takes them, made once for every poll of the request.
    fileprivate private(set) var wire: WireRequest

    /// Creates a request.
    public init(url: String, headers: [(name: String, value: String)], timeoutMilliseconds: Int, maxBody: Int, followRedirects: Bool,
                body: [UInt8]? = nil, validators: UpstreamValidators? = nil) {
        self.url = url
        self.headers = headers
        self.timeoutMilliseconds = timeoutMilliseconds
        self.maxBody = maxBody
        self.followRedirects = followRedirects
        self.body = body
        self.validators = validators
        wire = WireRequest(url: url, headers: headers)
    }

    /// Every header the request sends: ``headers``, then the conditional ones.
    public var sentHeaders: [(name: String, value: String)] { headers + (validators?.headers ?? []) }
}

/// The validators of an accepted body (RFC 9110 §13.1), sent with the next request so that an
/// unchanged resource is answered `304`. Immutable; the poller makes one per accepted body, and
/// each request that carries it reuses its header lines.
public final class UpstreamValidators: Sendable {
    /// The entity tag, sent as `If-None-Match`.
    public let etag: String?
    /// The modification date, sent as `If-Modified-Since`.
    public let lastModified: String?
    fileprivate let lines: HeaderLines

    /// Validators from a response's `ETag` and `Last-Modified`; nil when it has neither.
    public init?(etag: String?, lastModified: String?) {
        guard etag != nil || lastModified != nil else { return nil }
        self.etag = etag
        self.lastModified = lastModified
        lines = HeaderLines((etag.map { ["If-None-Match: \($0)"] } ?? []) + (lastModified.map { ["If-Modified-Since: \($0)"] } ?? []))
    }

    /// The conditional headers, in order.
    public var headers: [(name: String, value: String)] {
        (etag.map { [("If-None-Match", $0)] } ?? []) + (lastModified.map { [("If-Modified-Since", $0)] } ?? [])
    }
}

/// Header lines as a libcurl list (`curl_slist`), built once and freed with the object, never
/// changed: a transfer puts the conditional lines in front of the fixed ones with nodes of its
/// own that point at these strings (``Transfer/headerList``).
private final class HeaderLines: @unchecked Sendable {
    let count: Int
    let nodes: UnsafeMutablePointer<curl_slist>

    init(_ lines: [String]) {
        count = lines.count
        nodes = .allocate(capacity: max(1, lines.count))
        for (index, line) in lines.enumerated() {
            nodes[index] = curl_slist(data: strdup(line), next: index + 1 < lines.count ? nodes + index + 1 : nil)
        }
    }

    deinit {
        for index in 0..<count { free(nodes[index].data) }
        nodes.deallocate()
    }

    var first: UnsafeMutablePointer<curl_slist>? { count > 0 ? nodes : nil }
}

/// A request's URL and fixed headers in libcurl's form. curl adds `Accept: */*` unless told
/// otherwise: a JSON API should see what we want.
private final class WireRequest: @unchecked Sendable {
    let url: UnsafeMutablePointer<CChar>
    let headers: HeaderLines

    init(url: String, headers: [(name: String, value: String)]) {
        self.url = strdup(url)
        var lines = headers.map { "\($0.name): \($0.value)" }
        if !headers.contains(where: { $0.name.utf8.count == 6 && $0.name.lowercased() == "accept" }) {
            lines.append("Accept: application/json, */*;q=0.5")
        }
        lines.append("User-Agent: deltacast")
        self.headers = HeaderLines(lines)
    }

    deinit { free(url) }
}

/// Why an upstream request produced no HTTP response.
public enum UpstreamFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// No complete answer within the timeout.
    case timeout(milliseconds: Int)
    /// The connection could not be made (refused, unreachable, name not resolved).
    case connect(String)
    /// The body exceeded the limit (bytes).
    case tooLarge(limit: Int)
    /// Anything else on the wire (reset, malformed response, bad encoding).
    case transport(String)
    /// The proxy could not get its own credential for the origin (an OAuth2 token endpoint that
    /// failed): no request was sent.
    case credentials(String)

    /// A message for status events and logs.
    public var description: String {
        switch self {
        case .timeout(let milliseconds): "upstream timed out after \(milliseconds) ms"
        case .connect(let message): "could not connect to the upstream: \(message)"
        case .tooLarge(let limit): "upstream body is larger than max_body (\(limit) bytes)"
        case .transport(let message): "upstream transfer failed: \(message)"
        case .credentials(let message): "no credentials for the upstream: \(message)"
        }
    }
}

/// What an upstream request produced.
public struct UpstreamResponse: Sendable {
    /// The HTTP status (0 with a failure).
    public var status: Int
    /// The decoded body.
    public var body: [UInt8]
    /// Set when there is no usable response.
    public var failure: UpstreamFailure?
    /// The headers anything reads, from the final response (the first value of each); the
    /// others are not kept.
    public var contentType: String?, etag: String?, lastModified: String?, retryAfter: String?

    /// A response (status 0 with a `failure`); of `headers`, the first value of each kept name.
    public init(status: Int, headers: [(name: String, value: String)], body: [UInt8], failure: UpstreamFailure?) {
        self.status = status
        self.body = body
        self.failure = failure
        for header in headers where self.header(header.name) == nil { keep(header.name.lowercased(), header.value) }
    }

    /// Keeps `value` when `name` (lowercase) is one of the kept headers.
    fileprivate mutating func keep(_ name: String, _ value: String) {
        switch name {
        case "content-type": contentType = value
        case "etag": etag = value
        case "last-modified": lastModified = value
        case "retry-after": retryAfter = value
        default: break
        }
    }

    /// The kept headers, names lowercased: `content-type`, `etag`, `last-modified`, `retry-after`.
    public var headers: [(name: String, value: String)] {
        [("content-type", contentType), ("etag", etag), ("last-modified", lastModified), ("retry-after", retryAfter)]
            .compactMap { name, value in value.map { (name, $0) } }
    }

    /// The value of a kept header (any case); nil for one that is absent or not kept.
    public func header(_ name: String) -> String? {
        switch name.lowercased() {
        case "content-type": contentType
        case "etag": etag
        case "last-modified": lastModified
        case "retry-after": retryAfter
        default: nil
        }
    }
}

/// libcurl's multi interface driven by one ``EventLoop``: curl tells us which sockets to watch
/// (`CURLMOPT_SOCKETFUNCTION`) and when to wake it (`CURLMOPT_TIMERFUNCTION`); the loop's epoll
/// and timer heap do the waiting. Connections stay alive in the multi handle's pool between
/// polls. Easy handles are reused, each with its ``Transfer``; a request's URL and headers are
/// made once (``UpstreamRequest``), so a poll answered `304` allocates next to nothing here.
///
/// Every method must be called on `loop`'s thread; completions run there too.
public final class UpstreamClient: @unchecked Sendable {
    /// The loop it runs on.
    public let loop: EventLoop
    private let multi: UnsafeMutableRawPointer
    /// Idle transfers, each with its easy handle; at most ``idleLimit`` are kept.
    private var idle: [Transfer] = []
    private static let idleLimit = 64
    /// The sockets curl asked us to watch, those of idle pooled connections still registered
    /// (parked), and idle watchers to reuse (at most ``idleLimit``).
    private var watchers: [Int32: SocketWatcher] = [:]
    private var idleWatchers: [SocketWatcher] = []
    private var timer: UInt64?
    /// What curl's timer runs; made once, not per `setTimer`.
    private var timerFired: () -> Void = {}
    private var transfers = 0

    /// `curl_global_init` runs once per process, before any handle exists.
    private static let globalInit: Void = { _ = curl_global_init(Int(CURL_GLOBAL_DEFAULT)) }()

    /// Creates the multi handle. `maxConnections` bounds the connection pool.
    public init(loop: EventLoop, maxConnections: Int) {
        _ = UpstreamClient.globalInit
        self.loop = loop
        multi = curl_multi_init()!
        let me = Unmanaged.passUnretained(self).toOpaque()
        _ = deltacast_curl_multi_set_socket(multi) { _, fd, what, client, _ in
            Unmanaged<UpstreamClient>.fromOpaque(client!).takeUnretainedValue().watch(fd, what: what)
            return 0
        }
        _ = deltacast_curl_multi_setopt_pointer(multi, CURLMOPT_SOCKETDATA, me)
        _ = deltacast_curl_multi_set_timer(multi) { _, milliseconds, client in
            Unmanaged<UpstreamClient>.fromOpaque(client!).takeUnretainedValue().setTimer(milliseconds)
            return 0
        }
        _ = deltacast_curl_multi_setopt_pointer(multi, CURLMOPT_TIMERDATA, me)
        _ = deltacast_curl_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, max(4, maxConnections))
        timerFired = { [unowned self] in
            self.timer = nil
            self.action(CURL_SOCKET_TIMEOUT, 0)
        }
    }

    /// Set while `deinit` lets curl close its pooled connections.
    private var tearingDown = false

    deinit {
        tearingDown = true
        idle.removeAll()
        curl_multi_cleanup(multi)
    }

    /// Requests in flight.
    public var inFlight: Int { transfers }

    /// Idle transfers kept for reuse (at most 64, whatever the peak of requests in flight).
    public var pooledTransfers: Int { idle.count }

    /// Starts `request`; `handler` hears how it ended, on the loop, whatever happens.
    public func fetch(_ request: UpstreamRequest, replyTo handler: any UpstreamResponseHandling) {
        loop.assertInLoop()
        let transfer = idle.popLast() ?? Transfer(client: Unmanaged.passUnretained(self).toOpaque())
        transfer.begin(request, handler: handler)
        let handle = transfer.handle
        // What differs between requests; the rest was set once, when the handle was made.
        _ = deltacast_curl_easy_setopt_pointer(handle, CURLOPT_URL, UnsafeMutableRawPointer(request.wire.url))
        _ = deltacast_curl_easy_setopt_long(handle, CURLOPT_TIMEOUT_MS, request.timeoutMilliseconds)
        _ = deltacast_curl_easy_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, request.timeoutMilliseconds)
        _ = deltacast_curl_easy_setopt_long(handle, CURLOPT_FOLLOWLOCATION, request.followRedirects ? 1 : 0)
        if let body = request.body {
            // A POST; curl copies the bytes (the size first: they may hold a zero byte).
            _ = deltacast_curl_easy_setopt_long(handle, CURLOPT_POSTFIELDSIZE, body.count)
            _ = body.withUnsafeBytes { deltacast_curl_easy_setopt_pointer(handle, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: $0.baseAddress)) }
            transfer.posted = true
        } else if transfer.posted {
            _ = deltacast_curl_easy_setopt_long(handle, CURLOPT_HTTPGET, 1)   // after a POST on this handle
            transfer.posted = false
        }
        _ = deltacast_curl_easy_setopt_pointer(handle, CURLOPT_HTTPHEADER, UnsafeMutableRawPointer(transfer.headerList))
        transfers += 1
        _ = Unmanaged.passRetained(transfer)   // released in `finish`
        let code = curl_multi_add_handle(multi, handle)
        if code != CURLM_OK {
            finish(handle, result: CURLE_FAILED_INIT)
        }
    }

    // MARK: curl callbacks

    /// curl's socket callback. A connection going back to the pool (`CURL_POLL_REMOVE`) while
    /// it waits for input stays registered, parked: its next request on it then costs no
    /// `epoll_ctl`. A parked socket that becomes readable (the server closed the idle
    /// connection) is dropped from epoll; curl finds the connection dead when it next picks it.
    /// curl closes its sockets through ``closed(_:)``, so a parked descriptor is never left
    /// behind for a new socket of the same number.
    private func watch(_ fd: Int32, what: Int32) {
        if what == CURL_POLL_REMOVE {
            guard let watcher = watchers[fd] else { return }
            if watcher.events == EventLoop.readable {
                watcher.parked = true
            } else {
                drop(fd, watcher)
            }
            return
        }
        var events: UInt32 = 0
        if what & CURL_POLL_IN != 0 { events |= EventLoop.readable }
        if what & CURL_POLL_OUT != 0 { events |= EventLoop.writable }
        if let watcher = watchers[fd] {
            watcher.parked = false
            guard watcher.events != events else { return }
            watcher.events = events
            try? loop.modify(fd, events: events)
        } else {
            let watcher = idleWatchers.popLast() ?? SocketWatcher(client: self)
            watcher.fd = fd
            watcher.events = events
            watcher.parked = false
            do {
                try loop.register(fd, events: events, handler: watcher)
            } catch {
                // A descriptor number the loop still knew from before.
                loop.deregister(fd)
                try? loop.register(fd, events: events, handler: watcher)
            }
            watchers[fd] = watcher
        }
    }

    /// Stops watching `fd`.
    private func drop(_ fd: Int32, _ watcher: SocketWatcher) {
        watchers[fd] = nil
        loop.deregister(fd)
        if idleWatchers.count < Self.idleLimit { idleWatchers.append(watcher) }
    }

    /// curl closes one of its sockets: forget it first, so the number is free for the next.
    /// When the client goes away off its loop's thread (a server shutting down), the loop's
    /// table is not ours to touch: the descriptor closes, which takes it out of epoll.
    fileprivate func closed(_ fd: Int32) {
        if let watcher = watchers[fd] {
            if tearingDown && !loop.inLoop { watchers[fd] = nil } else { drop(fd, watcher) }
        }
        close(fd)
    }

    /// Readiness on a watched socket: curl's, or a parked one to drop.
    fileprivate func ready(_ watcher: SocketWatcher, events: UInt32) {
        if watcher.parked {
            drop(watcher.fd, watcher)
            return
        }
        var mask: Int32 = 0
        if events & EventLoop.readable != 0 { mask |= CURL_CSELECT_IN }
        if events & EventLoop.writable != 0 { mask |= CURL_CSELECT_OUT }
        if events & EventLoop.failed != 0 { mask |= CURL_CSELECT_ERR }
        action(watcher.fd, mask)
    }

    private func setTimer(_ milliseconds: Int) {
        if let timer { loop.cancelTimer(timer); self.timer = nil }
        guard milliseconds >= 0 else { return }
        // curl must not be re-entered from its own callback: run on the next loop turn.
        timer = loop.schedule(afterMilliseconds: Int64(milliseconds), timerFired)
    }

    fileprivate func action(_ fd: Int32, _ mask: Int32) {
        var running: Int32 = 0
        _ = curl_multi_socket_action(multi, fd, mask, &running)
        var remaining: Int32 = 0
        while let message = curl_multi_info_read(multi, &remaining) {
            guard message.pointee.msg == CURLMSG_DONE, let handle = message.pointee.easy_handle else { continue }
            finish(handle, result: deltacast_curl_message_result(message))
        }
    }

    private func finish(_ handle: UnsafeMutableRawPointer, result: CURLcode) {
        var raw: UnsafeMutableRawPointer?
        _ = deltacast_curl_easy_getinfo_pointer(handle, CURLINFO_PRIVATE, &raw)
        let transfer = Unmanaged<Transfer>.fromOpaque(raw!).takeRetainedValue()
        var status = 0
        _ = deltacast_curl_easy_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        curl_multi_remove_handle(multi, handle)
        transfers -= 1
        var response = transfer.response
        response.status = status
        if transfer.tooLarge {
            response.failure = .tooLarge(limit: transfer.maxBody)
        } else if result != CURLE_OK {
            let message = String(cString: curl_easy_strerror(result))
            switch result {
            case CURLE_OPERATION_TIMEDOUT: response.failure = .timeout(milliseconds: transfer.timeout)
            case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY: response.failure = .connect(message)
            default: response.failure = .transport(message)
            }
        }
        if response.failure != nil { response.status = 0; response.body = [] }
        let handler = transfer.end()
        // Keep a few transfers for reuse, with their handles' options and caches.
        if idle.count < Self.idleLimit { idle.append(transfer) }
        handler?.upstreamResponded(response)
    }
}

/// One easy handle and the buffers of the transfer it runs, reached from curl's callbacks
/// through `CURLOPT_PRIVATE`; reused from request to request.
private final class Transfer {
    let handle: UnsafeMutableRawPointer
    private(set) var maxBody = 0
    private(set) var timeout = 0
    /// Whether the last request on the handle was a `POST`.
    var posted = false
    private var handler: (any UpstreamResponseHandling)?
    /// The request's header lines, alive while curl may read them.
    private var wire: WireRequest?
    private var validators: UpstreamValidators?
    /// The nodes that put the validators' lines (at most two) in front of the fixed ones.
    private let conditional = UnsafeMutablePointer<curl_slist>.allocate(capacity: 2)
    /// The request's whole header list, for `CURLOPT_HTTPHEADER`.
    private(set) var headerList: UnsafeMutablePointer<curl_slist>?
    /// The answer so far: status 0, the kept headers, the body.
    private(set) var response = UpstreamResponse(status: 0, headers: [], body: [], failure: nil)
    private(set) var tooLarge = false

    /// A new easy handle with the options every request shares; `client` hears when curl
    /// closes a socket.
    init(client: UnsafeMutableRawPointer) {
        handle = curl_easy_init()!
        _ = deltacast_curl_easy_setopt_string(handle, CURLOPT_PROTOCOLS_STR, "http,https")
        _ = deltacast_curl_easy_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
        _ = deltacast_curl_easy_setopt_long(handle, CURLOPT_MAXREDIRS, 5)
        // "" asks for every encoding this libcurl decodes (gzip, deflate...): bodies arrive decoded.
        _ = deltacast_curl_easy_setopt_string(handle, CURLOPT_ACCEPT_ENCODING, "")
        _ = deltacast_curl_easy_set_write(handle) { data, size, count, user in
            Unmanaged<Transfer>.fromOpaque(user!).takeUnretainedValue().receiveBody(data!, size * count)
        }
        _ = deltacast_curl_easy_set_header(handle) { data, size, count, user in
            Unmanaged<Transfer>.fromOpaque(user!).takeUnretainedValue().receiveHeader(data!, size * count)
        }
        _ = deltacast_curl_easy_set_closesocket(handle) { client, fd in
            Unmanaged<UpstreamClient>.fromOpaque(client!).takeUnretainedValue().closed(fd)
            return 0
        }
        _ = deltacast_curl_easy_setopt_pointer(handle, CURLOPT_CLOSESOCKETDATA, client)
        let me = Unmanaged.passUnretained(self).toOpaque()
        _ = deltacast_curl_easy_setopt_pointer(handle, CURLOPT_PRIVATE, me)
        _ = deltacast_curl_easy_setopt_pointer(handle, CURLOPT_WRITEDATA, me)
        _ = deltacast_curl_easy_setopt_pointer(handle, CURLOPT_HEADERDATA, me)
    }

    deinit {
        curl_easy_cleanup(handle)
        conditional.deallocate()
    }

    func begin(_ request: UpstreamRequest, handler: any UpstreamResponseHandling) {
        self.handler = handler
        wire = request.wire
        validators = request.validators
        maxBody = request.maxBody
        timeout = request.timeoutMilliseconds
        tooLarge = false
        headerList = request.wire.headers.first
        if let lines = request.validators?.lines {
            for index in (0..<lines.count).reversed() {
                conditional[index] = curl_slist(data: lines.nodes[index].data, next: headerList)
                headerList = conditional + index
            }
        }
    }

    /// Lets go of the request; returns who hears the response.
    func end() -> (any UpstreamResponseHandling)? {
        defer { handler = nil; wire = nil; validators = nil; response = UpstreamResponse(status: 0, headers: [], body: [], failure: nil) }
        return handler
    }

    /// Returning less than `count` makes curl abort the transfer (`CURLE_WRITE_ERROR`).
    func receiveBody(_ data: UnsafeMutablePointer<CChar>, _ count: Int) -> Int {
        if response.body.count + count > maxBody { tooLarge = true; return 0 }
        data.withMemoryRebound(to: UInt8.self, capacity: count) { response.body.append(contentsOf: UnsafeBufferPointer(start: $0, count: count)) }
        return count
    }

    /// The response headers anything reads (``UpstreamResponse/header(_:)``): the rest are
    /// skipped without making a string of them.
    private static let contentType = Array("content-type".utf8), etag = Array("etag".utf8)
    private static let lastModified = Array("last-modified".utf8), retryAfter = Array("retry-after".utf8)
    private static let contentLength = Array("content-length".utf8)

    func receiveHeader(_ data: UnsafeMutablePointer<CChar>, _ count: Int) -> Int {
        data.withMemoryRebound(to: UInt8.self, capacity: count) { start in
            let line = UnsafeBufferPointer(start: start, count: count)
            if count >= 5 && line[0] == 0x48 && line[1] == 0x54 && line[2] == 0x54 && line[3] == 0x50 && line[4] == 0x2F {
                // "HTTP/": a new response (a redirect, a 100) whose headers replace the last's.
                response.contentType = nil; response.etag = nil; response.lastModified = nil; response.retryAfter = nil
                return count
            }
            guard let colon = line.firstIndex(of: 0x3A) else { return count }
            let name = UnsafeBufferPointer(rebasing: line[..<colon])
            var valueStart = colon + 1, valueEnd = count
            func blank(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A }
            while valueStart < valueEnd && blank(line[valueStart]) { valueStart += 1 }
            while valueEnd > valueStart && blank(line[valueEnd - 1]) { valueEnd -= 1 }
            let value = UnsafeBufferPointer(rebasing: line[valueStart..<valueEnd])
            if Self.equalsIgnoringCase(name, Self.contentLength) {
                // Announced larger than `max_body`: refused before the body comes.
                guard !value.isEmpty, value.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return count }
                var length = 0
                for digit in value {
                    length = length * 10 + Int(digit - 0x30)
                    if length > maxBody { tooLarge = true; return 0 }
                }
                return count
            }
            func keep(_ field: inout String?) { if field == nil { field = String(decoding: value, as: UTF8.self) } }
            switch name.count {
            case 4 where Self.equalsIgnoringCase(name, Self.etag): keep(&response.etag)
            case 11 where Self.equalsIgnoringCase(name, Self.retryAfter): keep(&response.retryAfter)
            case 12 where Self.equalsIgnoringCase(name, Self.contentType): keep(&response.contentType)
            case 13 where Self.equalsIgnoringCase(name, Self.lastModified): keep(&response.lastModified)
            default: break
            }
            return count
        }
    }

    /// Whether `bytes` spell the lowercase ASCII `lowercase`, in any case.
    private static func equalsIgnoringCase(_ bytes: UnsafeBufferPointer<UInt8>, _ lowercase: [UInt8]) -> Bool {
        guard bytes.count == lowercase.count else { return false }
        for index in 0..<bytes.count {
            let byte = bytes[index]
            if (byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte) != lowercase[index] { return false }
        }
        return true
    }
}

/// Forwards readiness on one of curl's sockets to the client.
private final class SocketWatcher: EventLoopHandler {
    var fd: Int32 = -1
    /// What it is registered for.
    var events: UInt32 = 0
    /// Its connection is idle in curl's pool.
    var parked = false
    unowned let client: UpstreamClient
    init(client: UpstreamClient) { self.client = client }
    func handle(events: UInt32) { client.ready(self, events: events) }
}

extension String {
    /// Without leading and trailing characters of `set`.
    func trimmingCharacters(in set: String) -> String {
        let characters = Set(set)
        var slice = Substring(self)
        while let first = slice.first, characters.contains(first) { slice.removeFirst() }
        while let last = slice.last, characters.contains(last) { slice.removeLast() }
        return String(slice)
    }
}

import CCurl
public import DeltacastLoop
#if canImport(Glibc)
import Glibc
#endif

/// One GET to the legacy API.
public struct UpstreamRequest: Sendable {
    /// Absolute http(s) URL.
    public var url: String
    /// Request headers, conditional ones included, in order.
    public var headers: [(name: String, value: String)]
    /// Connect-to-last-byte limit.
    public var timeoutMilliseconds: Int
    /// Largest decoded body accepted; the transfer is aborted as soon as it is exceeded.
    public var maxBody: Int
    /// Whether redirects are followed (at most 5).
    public var followRedirects: Bool
    /// A body to `POST` (a token request); nil for a `GET`.
    public var body: [UInt8]?

    /// Creates a request.
    public init(url: String, headers: [(name: String, value: String)], timeoutMilliseconds: Int, maxBody: Int, followRedirects: Bool,
                body: [UInt8]? = nil) {
        self.url = url
        self.headers = headers
        self.timeoutMilliseconds = timeoutMilliseconds
        self.maxBody = maxBody
        self.followRedirects = followRedirects
        self.body = body
    }
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
    /// Response headers of the final response, names lowercased, in order.
    public var headers: [(name: String, value: String)]
    /// The decoded body.
    public var body: [UInt8]
    /// Set when there is no usable response.
    public var failure: UpstreamFailure?

    /// A response (status 0 with a `failure`).
    public init(status: Int, headers: [(name: String, value: String)], body: [UInt8], failure: UpstreamFailure?) {
        self.status = status
        self.headers = headers
        self.body = body
        self.failure = failure
    }

    /// The first value of a header (case-insensitive name).
    public func header(_ name: String) -> String? {
        let lowered = name.lowercased()
        return headers.first { $0.name == lowered }?.value
    }
}

/// libcurl's multi interface driven by one ``EventLoop`` (DESIGN.md "Threads"): curl tells us
/// which sockets to watch (`CURLMOPT_SOCKETFUNCTION`) and when to wake it
/// (`CURLMOPT_TIMERFUNCTION`); the loop's epoll and timer heap do the waiting. Connections stay
/// alive in the multi handle's pool between polls; easy handles are reused.
///
/// Every method must be called on `loop`'s thread; completions run there too.
public final class UpstreamClient: @unchecked Sendable {
    /// The loop it runs on.
    public let loop: EventLoop
    private let multi: UnsafeMutableRawPointer
    private var idleHandles: [UnsafeMutableRawPointer] = []
    private var watchers: [Int32: SocketWatcher] = [:]
    private var timer: UInt64?
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
    }

    deinit {
        for handle in idleHandles { curl_easy_cleanup(handle) }
        curl_multi_cleanup(multi)
    }

    /// Requests in flight.
    public var inFlight: Int { transfers }

    /// Starts `request`; `completion` runs on the loop when it ends, whatever happens.
    public func fetch(_ request: UpstreamRequest, completion: @escaping (UpstreamResponse) -> Void) {
        loop.assertInLoop()
        let handle = idleHandles.popLast() ?? Self.makeHandle()
        let transfer = Transfer(handle: handle, maxBody: request.maxBody, timeout: request.timeoutMilliseconds, completion: completion)
        let pointer = Unmanaged.passRetained(transfer).toOpaque()
        // What differs between requests; the rest was set once, when the handle was made.
        _ = deltacast_curl_easy_setopt_string(handle, CURLOPT_URL, request.url)
        _ = deltacast_curl_easy_setopt_long(handle, CURLOPT_TIMEOUT_MS, request.timeoutMilliseconds)
        _ = deltacast_curl_easy_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, request.timeoutMilliseconds)
        _ = deltacast_curl_easy_setopt_long(handle, CURLOPT_FOLLOWLOCATION, request.followRedirects ? 1 : 0)
        if let body = request.body {
            // A POST; curl copies the bytes (the size first: they may hold a zero byte).
            _ = deltacast_curl_easy_setopt_long(handle, CURLOPT_POSTFIELDSIZE, body.count)
            _ = body.withUnsafeBytes { deltacast_curl_easy_setopt_pointer(handle, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: $0.baseAddress)) }
        } else {
            _ = deltacast_curl_easy_setopt_long(handle, CURLOPT_HTTPGET, 1)   // after a POST on this handle
        }
        _ = deltacast_curl_easy_setopt_pointer(handle, CURLOPT_PRIVATE, pointer)
        _ = deltacast_curl_easy_setopt_pointer(handle, CURLOPT_WRITEDATA, pointer)
        _ = deltacast_curl_easy_setopt_pointer(handle, CURLOPT_HEADERDATA, pointer)
        var list: UnsafeMutablePointer<curl_slist>?
        for header in request.headers { list = curl_slist_append(list, "\(header.name): \(header.value)") }
        // curl adds `Accept: */*` unless told otherwise; a JSON API should see what we want.
        if !request.headers.contains(where: { $0.name.utf8.count == 6 && $0.name.lowercased() == "accept" }) {
            list = curl_slist_append(list, "Accept: application/json, */*;q=0.5")
        }
        list = curl_slist_append(list, "User-Agent: deltacast")
        transfer.headerList = list
        _ = deltacast_curl_easy_setopt_pointer(handle, CURLOPT_HTTPHEADER, UnsafeMutableRawPointer(list))
        transfers += 1
        let code = curl_multi_add_handle(multi, handle)
        if code != CURLM_OK {
            finish(handle, result: CURLE_FAILED_INIT)
        }
    }

    /// A new easy handle with the options every request shares.
    private static func makeHandle() -> UnsafeMutableRawPointer {
        let handle = curl_easy_init()!
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
        return handle
    }

    // MARK: curl callbacks

    private func watch(_ fd: Int32, what: Int32) {
        if what == CURL_POLL_REMOVE {
            if watchers.removeValue(forKey: fd) != nil { loop.deregister(fd) }
            return
        }
        var events: UInt32 = 0
        if what & CURL_POLL_IN != 0 { events |= EventLoop.readable }
        if what & CURL_POLL_OUT != 0 { events |= EventLoop.writable }
        if watchers[fd] != nil {
            try? loop.modify(fd, events: events)
        } else {
            let watcher = SocketWatcher(fd: fd, client: self)
            do {
                try loop.register(fd, events: events, handler: watcher)
            } catch {
                // A descriptor number curl reused before telling us it closed the old one.
                loop.deregister(fd)
                try? loop.register(fd, events: events, handler: watcher)
            }
            watchers[fd] = watcher
        }
    }

    private func setTimer(_ milliseconds: Int) {
        if let timer { loop.cancelTimer(timer); self.timer = nil }
        guard milliseconds >= 0 else { return }
        // curl must not be re-entered from its own callback: run on the next loop turn.
        timer = loop.schedule(afterMilliseconds: Int64(milliseconds)) { [unowned self] in
            self.timer = nil
            self.action(CURL_SOCKET_TIMEOUT, 0)
        }
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
        curl_slist_free_all(transfer.headerList)
        transfer.headerList = nil
        transfers -= 1
        var response = UpstreamResponse(status: status, headers: transfer.headers, body: transfer.body, failure: nil)
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
        // Keep a few handles for reuse, with their options and caches.
        if idleHandles.count < 64 { idleHandles.append(handle) } else { curl_easy_cleanup(handle) }
        transfer.completion(response)
    }
}

/// One transfer's buffers, reached from curl's callbacks through `CURLOPT_PRIVATE`.
private final class Transfer {
    let handle: UnsafeMutableRawPointer
    let maxBody: Int
    let timeout: Int
    let completion: (UpstreamResponse) -> Void
    var headerList: UnsafeMutablePointer<curl_slist>?
    var headers: [(name: String, value: String)] = []
    var body: [UInt8] = []
    var tooLarge = false

    init(handle: UnsafeMutableRawPointer, maxBody: Int, timeout: Int, completion: @escaping (UpstreamResponse) -> Void) {
        self.handle = handle
        self.maxBody = maxBody
        self.timeout = timeout
        self.completion = completion
    }

    /// Returning less than `count` makes curl abort the transfer (`CURLE_WRITE_ERROR`).
    func receiveBody(_ data: UnsafeMutablePointer<CChar>, _ count: Int) -> Int {
        if body.count + count > maxBody { tooLarge = true; return 0 }
        data.withMemoryRebound(to: UInt8.self, capacity: count) { body.append(contentsOf: UnsafeBufferPointer(start: $0, count: count)) }
        return count
    }

    /// The response headers anything reads (``UpstreamResponse/header(_:)``): the rest are
    /// skipped without making a string of them, so a poll's answer costs a few allocations,
    /// not a few per header.
    static let keptHeaders: [(bytes: [UInt8], name: String)] = ["content-type", "etag", "last-modified", "retry-after"].map { (Array($0.utf8), $0) }
    private static let contentLength = Array("content-length".utf8)

    func receiveHeader(_ data: UnsafeMutablePointer<CChar>, _ count: Int) -> Int {
        data.withMemoryRebound(to: UInt8.self, capacity: count) { start in
            let line = UnsafeBufferPointer(start: start, count: count)
            if count >= 5 && line[0] == 0x48 && line[1] == 0x54 && line[2] == 0x54 && line[3] == 0x50 && line[4] == 0x2F {
                headers.removeAll(keepingCapacity: true)   // "HTTP/": a new response (redirect, 100)
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
            guard let kept = Self.keptHeaders.first(where: { Self.equalsIgnoringCase(name, $0.bytes) }) else { return count }
            if headers.count < Self.keptHeaders.count * 2 { headers.append((kept.name, String(decoding: value, as: UTF8.self))) }
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

/// Forwards readiness on one of curl's sockets to `curl_multi_socket_action`.
private final class SocketWatcher: EventLoopHandler {
    let fd: Int32
    unowned let client: UpstreamClient
    init(fd: Int32, client: UpstreamClient) { self.fd = fd; self.client = client }
    func handle(events: UInt32) {
        var mask: Int32 = 0
        if events & EventLoop.readable != 0 { mask |= CURL_CSELECT_IN }
        if events & EventLoop.writable != 0 { mask |= CURL_CSELECT_OUT }
        if events & EventLoop.failed != 0 { mask |= CURL_CSELECT_ERR }
        client.action(fd, mask)
    }
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

import DeltacastBase
public import DeltacastJSON
public import Foundation
#if DELTACAST_SOCKETS && canImport(Glibc)
import Glibc
#endif

/// A Deltacast client for apps: typed subscriptions as async sequences.
///
/// ```swift
/// let client = DeltacastClient(url: URL(string: "https://proxy.example.com")!, token: jwt)
/// for try await prices in client.subscribe("/api/prices", as: Prices.self) { render(prices) }
/// ```
///
/// Every subscription shares one connection. The client tries each transport of
/// ``Options/transports`` in order (WebSocket, then SSE, then long-poll) and uses the first
/// that opens within ``Options/openTimeout``; when the connection drops it waits a random
/// time up to a ceiling that doubles from ``Options/initialBackoff`` to ``Options/maxBackoff``
/// (full jitter), reconnects, and resumes every topic from its cursor. Patches and merge
/// patches are applied to the JSON state; a patch whose base is not the state's cursor is
/// never applied (the topic is subscribed again for a snapshot). Each new state is decoded
/// into the subscription's `Decodable` type.
///
/// A subscription ends with ``SubscriptionError`` when the proxy refuses it (forbidden, not
/// found, a bad request, too many), or when a state does not decode. Cancelling the task that
/// iterates it (or dropping the sequence) unsubscribes. ``close()`` ends them all.
///
/// The I/O runs on a thread of the client's own, behind the ``Transport`` choice; the public
/// API uses Foundation types only.
public final class DeltacastClient: @unchecked Sendable {
    /// The push transports, in the order they are tried by default.
    public enum Transport: String, Sendable, CaseIterable {
        case websocket, sse, longpoll
    }

    public struct Options: Sendable {
        public var transports: [Transport] = Transport.allCases
        /// How long a transport may take to open before the next is tried.
        public var openTimeout: Duration = .seconds(4)
        public var initialBackoff: Duration = .seconds(1)
        public var maxBackoff: Duration = .seconds(30)
        /// How long a token function may take before the connection attempt fails (and is
        /// tried again after the backoff).
        public var tokenTimeout: Duration = .seconds(30)
        /// How long a long-poll request is held, seconds.
        public var pollWait = 25
        /// Subscribe messages per second on a WebSocket (and as many at once): under the
        /// proxy's default `limits.subscribe_rate` (50/s) and `limits.message_rate` (200/s),
        /// which close a connection that exceeds them. A subscribe the proxy still refuses for
        /// its rate is sent again when it says.
        public var subscribeRate = 40
        /// A CA file for https (nil: the system's store). The sockets I/O only: on Linux the
        /// Foundation I/O refuses a secure proxy with one.
        public var caFile: String?
        /// The I/O under the transports: ``IO/sockets`` on Linux, ``IO/foundation`` on Apple
        /// platforms.
        public var io: IO = .platformDefault
        /// Called (on the client's thread) when a connection opens, and when one ends or cannot
        /// be made (the client then tries again after its backoff): an app's "offline" marker,
        /// a command's log.
        public var onConnection: (@Sendable (ConnectionEvent) -> Void)?
        public init() {}
    }

    /// The I/O the transports run on.
    public enum IO: Sendable {
        /// The client's own sockets and TLS (OpenSSL): WebSocket, SSE and long-poll. Built on
        /// Linux; where it is not built (Apple platforms), a client that asks for it connects
        /// with no transport and says why.
        case sockets
        /// Foundation's `URLSession`: SSE and long-poll. A WebSocket is refused (the client
        /// goes on to SSE); TLS is the system's.
        case foundation

        /// ``sockets`` where it is built (Linux), ``foundation`` elsewhere.
        public static var platformDefault: IO {
            #if DELTACAST_SOCKETS
            .sockets
            #else
            .foundation
            #endif
        }
    }

    /// What happened to the connection.
    public enum ConnectionEvent: Sendable, Equatable {
        case connected(Transport)
        /// A connection ended, or none could be made: why (the last transport's reason).
        case disconnected(reason: String)
    }

    /// One event of a topic as the proxy sent it, and the state after it.
    public struct TopicEvent: Sendable {
        /// The event's JSON text.
        public let json: String
        /// The state once a snapshot or a patch is applied; nil for other events (and for a
        /// patch that did not follow the state: the topic is subscribed again).
        public let state: JSONValue?
    }

    /// What a subscription delivers besides states.
    public enum Update<State: Sendable>: Sendable {
        /// A new state, and its cursor (`EPOCH-SEQ`).
        case state(State, cursor: String)
        /// The upstream failed (`stale`: the state is the last good one) or recovered.
        case status(stale: Bool, http: Int?, message: String?)
    }

    /// Why a subscription ended.
    public enum SubscriptionError: Error, Equatable, CustomStringConvertible {
        /// The proxy refused it: `forbidden`, `not_found`, `bad_request` or `too_many`, with its message.
        case refused(code: String, message: String)
        /// A state could not be decoded into the subscription's type.
        case undecodable(cursor: String, reason: String)
        /// ``DeltacastClient/close()`` was called.
        case closed

        public var description: String {
            switch self {
            case .refused(let code, let message): "\(code): \(message)"
            case .undecodable(let cursor, let reason): "the state at \(cursor) does not decode: \(reason)"
            case .closed: "the client was closed"
            }
        }
    }

    let endpoint: ProxyEndpoint
    /// Where each connection's token comes from.
    private let credentials: Credentials
    let options: Options
    let state = Locked(ClientState())
    private var worker: Thread?

    private enum Credentials {
        case fixed(String?)
        case provided(@Sendable () async throws -> String)
    }

    /// A client of the proxy at `url` (`http://` or `https://`, with any base path). `token`
    /// (a JWT or an API key) is sent with every connection.
    public init(url: URL, token: String? = nil, options: Options = Options()) {
        self.endpoint = ProxyEndpoint(url: url)
        self.credentials = .fixed(token)
        self.options = options
    }

    /// A client whose token comes from `token` before every connection: after a disconnect,
    /// and when the proxy ends a stream because the token expired, the next connection carries
    /// a fresh one. When the function throws or takes longer than ``Options/tokenTimeout``, that
    /// attempt fails with the reason (``Options/onConnection`` hears it) and the client tries
    /// again after its backoff.
    public init(url: URL, options: Options = Options(), token: @escaping @Sendable () async throws -> String) {
        self.endpoint = ProxyEndpoint(url: url)
        self.credentials = .provided(token)
        self.options = options
    }

    /// The token for the next connection, on the client's thread (which may wait: it is the
    /// client's own, not an event loop).
    private func connectionToken() -> Result<String?, TokenFailure> {
        let provide: @Sendable () async throws -> String
        switch credentials {
        case .fixed(let token): return .success(token)
        case .provided(let function): provide = function
        }
        let answer = Handoff<Result<String?, TokenFailure>>()
        let task = Task {
            do {
                answer.give(.success(try await provide()))
            } catch {
                answer.give(.failure(TokenFailure(message: "the token function failed: \(error)")))
            }
        }
        let timeout = options.tokenTimeout
        guard let result = answer.wait(seconds: timeout.seconds) else {
            task.cancel()
            return .failure(TokenFailure(message: "the token function did not answer within \(timeout) (Options.tokenTimeout)"))
        }
        return result
    }

    private struct TokenFailure: Error { let message: String }

    deinit { close() }

    /// The transport in use, once connected.
    public var transport: Transport? { state.withLock { $0.transport } }

    /// The states of `topic`, decoded as `State`, from its current one on.
    public func subscribe<State: Decodable & Sendable>(_ topic: String, as type: State.Type = State.self) -> AsyncThrowingStream<State, any Error> {
        let updates = self.updates(topic, as: type)
        return AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    for try await update in updates {
                        if case .state(let value, _) = update { continuation.yield(value) }
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// The states of `topic` with their cursors, and its upstream's status events.
    public func updates<State: Decodable & Sendable>(_ topic: String, as type: State.Type = State.self) -> AsyncThrowingStream<Update<State>, any Error> {
        let (stream, continuation) = AsyncThrowingStream<Update<State>, any Error>.makeStream(bufferingPolicy: .bufferingNewest(64))
        let decoder = JSONDecoder()
        let sink = TopicSink(
            deliver: { value, cursor in
                do {
                    let decoded = try decoder.decode(State.self, from: Data(value.serialized()))
                    continuation.yield(.state(decoded, cursor: cursor))
                    return true
                } catch {
                    continuation.finish(throwing: SubscriptionError.undecodable(cursor: cursor, reason: "\(error)"))
                    return false
                }
            },
            status: { stale, http, message in continuation.yield(.status(stale: stale, http: http, message: message)) },
            end: { error in continuation.finish(throwing: error) })
        let id = state.withLock { $0.add(topic: topic, sink: sink) }
        continuation.onTermination = { [weak self] _ in self?.remove(topic: topic, id: id) }
        startIfNeeded()
        return stream
    }

    /// Every event of `topic` as the proxy sends it (snapshots, patches, status and error
    /// events), each with the state after it: what `deltacast tail` prints.
    public func events(_ topic: String) -> AsyncThrowingStream<TopicEvent, any Error> {
        let (stream, continuation) = AsyncThrowingStream<TopicEvent, any Error>.makeStream(bufferingPolicy: .bufferingNewest(256))
        let sink = TopicSink(deliver: { _, _ in true }, status: { _, _, _ in }, end: { error in continuation.finish(throwing: error) },
                             raw: { json, state in continuation.yield(TopicEvent(json: String(decoding: json, as: UTF8.self), state: state)) })
        let id = state.withLock { $0.add(topic: topic, sink: sink) }
        continuation.onTermination = { [weak self] _ in self?.remove(topic: topic, id: id) }
        startIfNeeded()
        return stream
    }

    /// Ends every subscription (each with ``SubscriptionError/closed``) and the connection:
    /// a read or a held long-poll in progress is cut at once.
    public func close() {
        let sinks = state.withLock { state -> [TopicSink] in
            state.closed = true
            // Under the lock: the session clears it under the lock before closing the socket,
            // so the descriptor cannot be another's by now.
            #if DELTACAST_SOCKETS
            if let fd = state.activeSocket { shutdown(fd, Int32(SHUT_RDWR)) }
            #endif
            state.activeRequest?.cancel()
            defer { state.topics = [:] }
            return state.topics.values.map(\.sink)
        }
        for sink in sinks { sink.end(SubscriptionError.closed) }
    }

    /// ``close()``, then waits (blocking, up to `timeout`) until the client's thread has let go
    /// of its connection: for a command about to exit, whose exit must not tear OpenSSL down
    /// under a connection still in use. Not for an async context or the client's callbacks.
    public func closeAndWait(timeout: Duration = .seconds(2)) {
        close()
        let deadline = Date().addingTimeInterval(timeout.seconds)
        while state.withLock({ $0.running }) && Date() < deadline { usleep(5_000) }
    }

    private func remove(topic: String, id: Int) {
        state.withLock { state in
            guard state.topics[topic]?.id == id else { return }
            state.topics[topic] = nil
            state.changed = true
        }
    }

    private func startIfNeeded() {
        let start = state.withLock { state -> Bool in
            guard !state.running, !state.closed else { return false }
            state.running = true
            return true
        }
        guard start else { return }
        let thread = Thread { [weak self] in self?.run() }
        thread.name = "deltacast-client"
        worker = thread
        thread.start()
    }

    /// The connection loop, on the client's thread: connect with the first transport that
    /// opens, carry the session until it ends, back off, again; until closed or no topic is left.
    private func run() {
        var attempt = 0
        while true {
            let active = state.withLock { state -> Bool in
                if state.closed || state.topics.isEmpty { state.running = false; state.transport = nil; return false }
                return true
            }
            guard active else { return }
            var opened = false
            var reason = "no transport to try"
            switch connectionToken() {
            case .failure(let failure):
                reason = failure.message
            case .success(let token):
                for transport in options.transports {
                    let session = Session(client: self, transport: transport, token: token)
                    switch session.run() {
                    case .refused(let why):
                        reason = why
                        continue
                    case .ended(let wasOpen, let why):
                        opened = wasOpen
                        reason = why
                    }
                    break
                }
            }
            state.withLock { $0.transport = nil }
            if !state.withLock({ $0.closed || $0.topics.isEmpty }) { options.onConnection?(.disconnected(reason: reason)) }
            if opened { attempt = 0 }
            let ceiling = min(options.maxBackoff.seconds, options.initialBackoff.seconds * pow(2, Double(min(attempt, 30))))
            attempt += 1
            let delay = Double.random(in: 0...ceiling)
            let deadline = Date().addingTimeInterval(delay)
            while Date() < deadline {
                if state.withLock({ $0.closed || $0.topics.isEmpty }) { break }
                Thread.sleep(forTimeInterval: min(0.05, max(0, deadline.timeIntervalSinceNow)))
            }
        }
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// Where a subscription's updates go (called on the client's thread).
struct TopicSink: Sendable {
    /// A new state; false when it did not decode (the subscription then ended).
    let deliver: @Sendable (JSONValue, String) -> Bool
    let status: @Sendable (Bool, Int?, String?) -> Void
    let end: @Sendable (any Error) -> Void
    /// Every event of the topic as received, with the state after it (``DeltacastClient/events(_:)``).
    var raw: (@Sendable ([UInt8], JSONValue?) -> Void)? = nil
}

/// What the client holds, under its lock.
struct ClientState {
    struct Topic {
        var id: Int
        var sink: TopicSink
        var document: JSONValue?
        var cursor: String?
        /// Subscribed on the current connection.
        var sent = false
        /// A subscribe refused by `limits.subscribe_rate` is sent again at this time (seconds
        /// since the reference date).
        var retryAt: Double?
    }
    var topics: [String: Topic] = [:]
    var nextID = 0
    var closed = false
    var running = false
    /// The topic set changed since the session last looked (SSE and long-poll reconnect).
    var changed = false
    var transport: DeltacastClient.Transport?
    /// The topics the current WebSocket subscribed (to unsubscribe those that leave).
    var webSocketSubscribed: Set<String> = []
    /// The socket of the connection in use (``DeltacastClient/close()`` shuts it down).
    var activeSocket: Int32?
    /// The Foundation I/O's request in progress (``DeltacastClient/close()`` cancels it).
    var activeRequest: FoundationRequest?

    mutating func add(topic: String, sink: TopicSink) -> Int {
        nextID += 1
        if let previous = topics[topic] { previous.sink.end(DeltacastClient.SubscriptionError.closed) }
        topics[topic] = Topic(id: nextID, sink: sink)
        changed = true
        return nextID
    }
}

/// The proxy's address, split for the connection.
struct ProxyEndpoint: Sendable {
    var secure: Bool
    var host: String
    var port: Int
    /// The base path, without a trailing slash.
    var basePath: String

    init(url: URL) {
        secure = url.scheme == "https"
        host = url.host ?? "127.0.0.1"
        port = url.port ?? (secure ? 443 : 80)
        var path = url.path
        while path.hasSuffix("/") { path.removeLast() }
        basePath = path
    }

    var hostHeader: String { (port == (secure ? 443 : 80)) ? host : "\(host):\(port)" }
}

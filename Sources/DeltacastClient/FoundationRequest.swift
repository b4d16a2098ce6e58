import DeltacastBase
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// One request over Foundation's `URLSession` whose answer the client's thread reads as it
/// arrives, with a timeout per read: the SSE stream and the long-polls of the Foundation I/O
/// (``DeltacastClient/IO/foundation``). The session's delegate queue appends what arrives; the
/// client's thread takes it. What waits unread is bounded by ``maximumUnread``: past it the
/// request is cancelled and ends with that reason.
final class FoundationRequest: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    /// What has arrived and not been taken, the response's status, and why the request ended.
    private struct Received {
        var status: Int?
        var bytes: [UInt8] = []
        /// nil while the request runs.
        var ended: Ending?
    }

    /// The most bytes that may wait unread: 64 MiB (the SSE parser's longest line).
    let maximumUnread: Int
    private let received = Locked(Received())
    private let arrived = DispatchSemaphore(value: 0)
    private var session: URLSession?
    private var task: URLSessionDataTask?

    /// Starts `request`; `idleTimeout` seconds without a byte end it.
    init(_ request: URLRequest, idleTimeout: Double, maximumUnread: Int = 64 << 20) {
        self.maximumUnread = maximumUnread
        super.init()
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = idleTimeout
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        configuration.httpMaximumConnectionsPerHost = 1
        let session = URLSession(configuration: configuration, delegate: self, delegateQueue: nil)
        self.session = session
        task = session.dataTask(with: request)
        task?.resume()
    }

    /// Ends the request now (``DeltacastClient/close()``, or its reader is done with it).
    func cancel() {
        task?.cancel()
        session?.invalidateAndCancel()
    }

    /// How a request ended.
    enum Ending: Equatable {
        /// The whole body arrived.
        case finished
        /// It failed, or was cancelled: why.
        case failed(String)
    }

    /// What one wait gave.
    enum Read {
        /// Bytes of the body (perhaps none: the wait passed).
        case bytes([UInt8])
        /// The request ended, and its last bytes were taken before.
        case ended(Ending)
    }

    /// The response's status once its head arrived, or why the request ended first; nil when
    /// neither happened within `timeout` seconds.
    func status(within timeout: Double) -> Result<Int, RequestFailure>? {
        let deadline = DispatchTime.now() + timeout
        while true {
            let (status, ended) = received.withLock { ($0.status, $0.ended) }
            if let status { return .success(status) }
            if case .failed(let why)? = ended { return .failure(RequestFailure(message: why)) }
            if ended == .finished { return .failure(RequestFailure(message: "the answer ended before its head")) }
            if arrived.wait(timeout: deadline) == .timedOut { return nil }
        }
    }

    /// The response's status, once its head arrived.
    var responseStatus: Int? { received.withLock { $0.status } }

    /// How the request ended, once it has, waiting up to `timeout` seconds; takes no bytes.
    func ending(within timeout: Double) -> Ending? {
        let deadline = DispatchTime.now() + timeout
        while true {
            if let ended = received.withLock({ $0.ended }) { return ended }
            if arrived.wait(timeout: deadline) == .timedOut { return nil }
        }
    }

    /// Why a request ended before its response's head.
    struct RequestFailure: Error { let message: String }

    /// The bytes that arrived, waiting up to `timeout` seconds for some.
    func read(waiting timeout: Double) -> Read {
        let deadline = DispatchTime.now() + timeout
        while true {
            let taken = received.withLock { state -> Read? in
                if !state.bytes.isEmpty {
                    defer { state.bytes = [] }
                    return .bytes(state.bytes)
                }
                return state.ended.map { Read.ended($0) }
            }
            if let taken { return taken }
            if arrived.wait(timeout: deadline) == .timedOut { return .bytes([]) }
        }
    }

    /// The whole body, once the request ended within `timeout` seconds; `stop` is asked every
    /// `tick` seconds and ends the wait (nil) when it says so.
    func body(within timeout: Double, tick: Double, stop: () -> Bool) -> Result<[UInt8], RequestFailure>? {
        var body: [UInt8] = []
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if stop() { return nil }
            switch read(waiting: tick) {
            case .bytes(let bytes): body += bytes
            case .ended(.finished): return .success(body)
            case .ended(.failed(let why)): return .failure(RequestFailure(message: why))
            }
        }
        return .failure(RequestFailure(message: "no answer within \(Int(timeout)) s"))
    }

    // MARK: URLSessionDataDelegate (on the session's queue)

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                    completionHandler: @escaping (URLSession.ResponseDisposition) -> Void) {
        received.withLock { $0.status = (response as? HTTPURLResponse)?.statusCode ?? 0 }
        arrived.signal()
        completionHandler(.allow)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        let overflow = received.withLock { state -> Bool in
            guard state.bytes.count + data.count <= maximumUnread else {
                state.ended = .failed("more than \(maximumUnread) bytes arrived unread")
                return true
            }
            state.bytes += data
            return false
        }
        if overflow { dataTask.cancel() }
        arrived.signal()
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: (any Error)?) {
        received.withLock { state in
            if state.ended == nil { state.ended = error.map { .failed(($0 as NSError).localizedDescription) } ?? .finished }
        }
        arrived.signal()
        session.finishTasksAndInvalidate()
    }
}

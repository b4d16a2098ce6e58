import DeltacastLoop
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A TCP middlebox on loopback that passes plain HTTP through to `target` and swallows
/// WebSocket upgrades: it reads them and never answers, as proxies that do not know WebSocket
/// do. A client must fall back after its own open timeout. One thread per direction of each
/// connection; ``stop()`` closes everything it opened.
public final class SwallowingMiddlebox: @unchecked Sendable {
    public let port: Int
    private let listener: Int32
    private let target: Int
    private let opened = NSLock()
    private var descriptors: [Int32] = []
    private var stopped = false
    private var upgrades = 0
    /// Upgrades swallowed so far.
    public var swallowed: Int {
        opened.lock()
        defer { opened.unlock() }
        return upgrades
    }

    public init(target: Int) throws {
        (listener, port) = try Socket.listen(host: "127.0.0.1", port: 0, reusePort: false)
        self.target = target
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    private func track(_ fd: Int32) -> Bool {
        opened.lock()
        defer { opened.unlock() }
        guard !stopped else { return false }
        descriptors.append(fd)
        return true
    }

    private func acceptLoop() {
        while true {
            var ready = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&ready, 1, 100) >= 0 else { return }
            opened.lock()
            let done = stopped
            opened.unlock()
            if done { return }
            guard ready.revents != 0, let accepted = try? Socket.accept(listener) else { continue }
            let flags = fcntl(accepted.fd, F_GETFL)
            _ = fcntl(accepted.fd, F_SETFL, flags & ~O_NONBLOCK)
            guard track(accepted.fd) else { close(accepted.fd); return }
            Thread.detachNewThread { [self] in serve(accepted.fd) }
        }
    }

    private func serve(_ client: Int32) {
        var head: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !head.contains(subsequence: [13, 10, 13, 10]) {
            let count = read(client, &buffer, buffer.count)
            guard count > 0 else { return }
            head += buffer[0..<count]
        }
        if String(decoding: head, as: UTF8.self).lowercased().contains("upgrade: websocket") {
            opened.lock()
            upgrades += 1
            opened.unlock()
            while read(client, &buffer, buffer.count) > 0 {}   // never answered
            return
        }
        guard let upstream = try? Socket.connect(port: target, receiveTimeoutSeconds: 0), track(upstream) else { return }
        let flags = fcntl(upstream, F_GETFL)
        _ = fcntl(upstream, F_SETFL, flags & ~O_NONBLOCK)
        _ = head.withUnsafeBytes { write(upstream, $0.baseAddress, $0.count) }
        Thread.detachNewThread { Self.pump(from: upstream, to: client) }
        Self.pump(from: client, to: upstream)
    }

    private static func pump(from source: Int32, to destination: Int32) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = read(source, &buffer, buffer.count)
            guard count > 0 else { break }
            var offset = 0
            while offset < count {
                let sent = buffer[offset..<count].withUnsafeBytes { send(destination, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                guard sent > 0 else { return }
                offset += sent
            }
        }
        shutdown(destination, Int32(SHUT_WR))
    }

    /// Closes the listener and every connection.
    public func stop() {
        opened.lock()
        stopped = true
        let all = descriptors
        descriptors = []
        opened.unlock()
        for fd in all { shutdown(fd, Int32(SHUT_RDWR)); close(fd) }
        close(listener)
    }
}

extension Array where Element == UInt8 {
    func contains(subsequence: [UInt8]) -> Bool {
        guard count >= subsequence.count else { return false }
        return (0...(count - subsequence.count)).contains { self[$0..<($0 + subsequence.count)].elementsEqual(subsequence) }
    }
}

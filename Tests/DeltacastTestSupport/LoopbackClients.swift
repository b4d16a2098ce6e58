import DeltacastClient
import DeltacastLoop
public import Foundation
#if canImport(Glibc)
import Glibc
#endif

// The process, port and client helpers the test targets share.

/// A raw loopback client: sends bytes, reads until the peer closes or `count` responses came.
/// `@unchecked Sendable`: one descriptor, used by one thread at a time in these tests.
public final class RawClient: @unchecked Sendable {
    public let fd: Int32
    public init(port: Int) throws {
        fd = try Socket.connect(port: port)
    }
    deinit { close(fd) }
    public func send(_ text: String) { _ = sendAll(text) }
    /// Sends every byte of `text` (blocking); false when the connection refused them (a reset,
    /// a peer that closed).
    @discardableResult
    public func sendAll(_ text: String) -> Bool {
        Array(text.utf8).withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let sent = Glibc.send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
                if sent < 0 && errno == EINTR { continue }
                guard sent > 0 else { return false }
                offset += sent
            }
            return true
        }
    }
    /// Reads until `responses` complete responses (Content-Length framed) arrived, or EOF.
    public func read(responses: Int) -> (texts: [String], closed: Bool) {
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        var closed = false
        while true {
            let parsed = Self.split(data)
            if parsed.count >= responses { return (parsed, false) }
            let n = readRetryingInterrupts(fd, &buffer, buffer.count)
            if n <= 0 { closed = true; break }
            data += buffer[0..<n]
        }
        return (Self.split(data), closed)
    }
    /// Reads one response head (for HEAD, whose body is announced but not sent).
    public func readHead() -> String {
        var data: [UInt8] = []
        var byte: UInt8 = 0
        while !(data.count >= 4 && Array(data.suffix(4)) == [13, 10, 13, 10]) {
            guard readRetryingInterrupts(fd, &byte, 1) == 1 else { break }
            data.append(byte)
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// Whether the server closed the connection in order: the read returns 0, the end of the
    /// stream. A reset fails it: the server lingers after a closing answer (RFC 9112 §9.6), so
    /// bytes a client was still sending (the slowloris test's last byte crossing the 408) are
    /// read and discarded, never answered with a reset. A server that keeps the connection
    /// open fails here too: the read blocks until the receive timeout.
    public func isClosedByPeer() -> Bool {
        var byte: UInt8 = 0
        return readRetryingInterrupts(fd, &byte, 1) == 0
    }
    /// Splits bytes into complete responses framed by Content-Length.
    public static func split(_ data: [UInt8]) -> [String] {
        var results: [String] = []
        var start = 0
        let separator: [UInt8] = [13, 10, 13, 10]
        while start < data.count {
            guard let headEnd = (start..<max(start, data.count - 3)).first(where: { Array(data[$0..<$0 + 4]) == separator }) else { break }
            let head = String(decoding: data[start..<headEnd], as: UTF8.self)
            let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
            let end = headEnd + 4 + length
            guard end <= data.count else { break }
            results.append(String(decoding: data[start..<end], as: UTF8.self))
            start = end
        }
        return results
    }
}

/// A free loopback port: a bound socket (the caller closes it) and its number.
public func freeLoopbackPort() throws -> (Int32, Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
    return (fd, Int(UInt16(bigEndian: address.sin_port)))
}

/// Runs curl with `arguments` and returns its output.
public func curl(_ arguments: [String]) throws -> String {
    let curl = Process()
    curl.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
    curl.arguments = ["-s", "--max-time", "10"] + arguments
    let out = Pipe()
    curl.standardOutput = out
    try curl.run()
    let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    curl.waitUntilExit()
    return text
}

/// Waits until `condition` holds, checking every 20 ms, for at most `seconds`.
@discardableResult
public func eventually(_ seconds: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try condition() { return true }
        usleep(20_000)
    }
    return try condition()
}


/// Work on its own thread that a test waits for (a blocking read, a shutdown) without polling.
public final class BackgroundWork: Sendable {
    private let finished = Handoff<Bool>()

    /// Starts `body` on a new thread.
    public init(_ body: @escaping @Sendable () -> Void) {
        Thread.detachNewThread { [finished] in
            body()
            finished.give(true)
        }
    }

    /// Whether `body` has returned.
    public var isFinished: Bool { finished.isGiven }

    /// Waits for `body` to return, at most `seconds`; false on timeout.
    @discardableResult
    public func wait(seconds: Double = 60) -> Bool { finished.wait(seconds: seconds) != nil }
}

/// `read`, again when a signal interrupted it.
func readRetryingInterrupts(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
    while true {
        let n = Glibc.read(fd, buffer, count)
        if n >= 0 || errno != EINTR { return n }
    }
}

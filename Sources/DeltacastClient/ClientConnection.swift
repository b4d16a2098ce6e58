// The sockets I/O, built where DELTACAST_SOCKETS is defined (Linux; see Package.swift).
#if DELTACAST_SOCKETS
import DeltacastLoop
package import DeltacastTLS
#if canImport(Glibc)
import Glibc
#endif

/// A blocking client connection, through TLS for https: what `tail`, `top` and the tests talk
/// to the proxy with. Every read is bounded by the socket's receive timeout.
package final class ClientConnection: @unchecked Sendable {
    package let fd: Int32
    package let tls: TLSStream?
    private var closed = false

    /// Why a connection could not be made.
    package enum Failure: Error, CustomStringConvertible {
        /// TCP failed (refused, unreachable, timed out).
        case connect(String)
        /// The TLS handshake or the certificate's verification failed.
        case tls(String)
        package var message: String { switch self { case .connect(let text), .tls(let text): text } }
        package var description: String { message }
    }

    /// The TLS a connection uses: the name the certificate must carry, and a CA file (nil: the
    /// system's store).
    package struct TLSOptions: Sendable {
        package var serverName: String
        package var caFile: String?
        package init(serverName: String, caFile: String?) { self.serverName = serverName; self.caFile = caFile }
    }

    /// Wraps a connected socket (a test's, with its own options).
    package init(fd: Int32, tls: TLSStream? = nil) {
        self.fd = fd
        self.tls = tls
    }

    /// Connects (with `SO_RCVTIMEO` of `timeout` seconds) and, for https, verifies the server.
    package convenience init(host: String, port: Int, timeout: Int, tls: TLSOptions? = nil, receiveBuffer: Int32? = nil) throws(Failure) {
        let fd: Int32
        do { fd = try Socket.connect(host: host, port: port, receiveTimeoutSeconds: timeout, receiveBuffer: receiveBuffer) } catch {
            throw .connect("cannot connect to \(host):\(port): \(error)")
        }
        guard let tls else { self.init(fd: fd); return }
        do {
            self.init(fd: fd, tls: try TLSStream.client(fd: fd, host: tls.serverName, caFile: tls.caFile))
        } catch {
            Glibc.close(fd)
            throw .tls("TLS to \(tls.serverName):\(port): \(error)")
        }
    }

    deinit { close() }

    /// Sends every byte; false when the connection failed.
    @discardableResult
    package func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { raw in
                tls.map { $0.write(raw) } ?? Glibc.send(fd, raw.baseAddress, raw.count, Int32(MSG_NOSIGNAL))
            }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    /// Reads what is there: > 0 bytes, 0 at the end, -1 on an error or timeout (errno says).
    /// A read a signal interrupted is tried again.
    package func read(into chunk: inout [UInt8]) -> Int {
        chunk.withUnsafeMutableBytes { raw -> Int in
            guard let tls else {
                while true {
                    let n = Glibc.read(fd, raw.baseAddress, raw.count)
                    if n >= 0 || errno != EINTR { return n }
                }
            }
            let n = tls.read(into: raw)
            // A TLS read that would block on a blocking socket means SO_RCVTIMEO passed.
            if n < 0 { errno = n == -1 ? EAGAIN : EIO; return -1 }
            return n
        }
    }

    /// Closes the socket (after TLS close_notify); idempotent.
    package func close() {
        guard !closed else { return }
        closed = true
        tls?.shutdown()
        Glibc.close(fd)
    }
}

/// Reads a response head, then raw bytes, from a ``ClientConnection``.
package struct ResponseReader {
    package let connection: ClientConnection
    private var buffer: [UInt8] = []

    /// Why reading stopped.
    package enum Failure: Error, CustomStringConvertible {
        /// The peer closed the connection.
        case closed
        /// No byte within the receive timeout.
        case timedOut
        /// The read failed (errno).
        case failed(Int32)
        package var description: String {
            switch self {
            case .closed: "the proxy closed the connection"
            case .timedOut: "no data within the receive timeout"
            case .failed(let code): "read failed: errno \(code)"
            }
        }
    }

    package init(_ connection: ClientConnection) { self.connection = connection }

    /// The response head (up to the blank line), as text.
    package mutating func head() throws(Failure) -> String {
        while true {
            if let end = ByteSearch.first(of: [13, 10, 13, 10], in: buffer) {
                let text = String(decoding: buffer[..<end], as: UTF8.self)
                buffer.removeFirst(end + 4)
                return text
            }
            buffer += try more()
        }
    }

    /// The bytes read past the head.
    package mutating func takeRest() -> [UInt8] {
        defer { buffer = [] }
        return buffer
    }

    /// The next bytes from the connection.
    package func more() throws(Failure) -> [UInt8] {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = connection.read(into: &chunk)
        if n == 0 { throw .closed }
        if n < 0 { throw errno == EAGAIN || errno == EWOULDBLOCK ? .timedOut : .failed(errno) }
        return Array(chunk[0..<n])
    }
}

/// Finding byte patterns (a head's end, an event's end) in received bytes, without copying:
/// the receive paths of the clients and the load generator.
package enum ByteSearch {
    /// The offset of the first `pattern` in `bytes` at or after `start`.
    package static func first(of pattern: [UInt8], in bytes: UnsafeBufferPointer<UInt8>, from start: Int = 0) -> Int? {
        guard !pattern.isEmpty, bytes.count >= pattern.count else { return nil }
        var index = start
        while index <= bytes.count - pattern.count {
            if bytes[index] == pattern[0] {
                var match = true
                for offset in 1..<pattern.count where bytes[index + offset] != pattern[offset] { match = false; break }
                if match { return index }
            }
            index += 1
        }
        return nil
    }

    /// The offset of the first `pattern` in `bytes` at or after `start`.
    package static func first(of pattern: [UInt8], in bytes: [UInt8], from start: Int = 0) -> Int? {
        bytes.withUnsafeBufferPointer { first(of: pattern, in: $0, from: start) }
    }
}

/// A whole response to a request sent with `Connection: close`.
package struct ClientResponse: Sendable {
    package let status: Int
    package let head: String
    package let body: [UInt8]
}

extension ClientConnection {
    /// Sends `request` (which asks the server to close) and reads the response to its end.
    /// Throws ``ResponseReader/Failure`` when no head arrives, or `.failed(EFBIG)` past
    /// `maximumBytes`.
    package func exchange(_ request: [UInt8], maximumBytes: Int = 64 << 20) throws(ResponseReader.Failure) -> ClientResponse {
        guard send(request) else { throw .failed(EPIPE) }
        var reader = ResponseReader(self)
        let head = try reader.head()
        var body = reader.takeRest()
        while true {
            do { body += try reader.more() } catch .closed { break }
            if body.count > maximumBytes { throw .failed(EFBIG) }
        }
        return ClientResponse(status: PushRequest.status(of: head), head: head, body: body)
    }
}
#endif

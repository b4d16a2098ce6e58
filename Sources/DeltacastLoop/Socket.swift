import CSystemLinux
#if canImport(Glibc)
import Glibc
#endif

/// Socket helpers: listeners, accepting, options. Every failure names its call and errno.
public enum Socket {
    /// Ignores SIGPIPE once for the process (writes also pass MSG_NOSIGNAL).
    public static let ignoreSIGPIPE: Void = { signal(SIGPIPE, SIG_IGN); return () }()

    /// A non-blocking listening TCP socket on `host:port` (an IPv4 or IPv6 literal, or
    /// `localhost`), with SO_REUSEADDR and, when `reusePort`, SO_REUSEPORT so each event loop
    /// can have its own listener on the same port.
    /// - Returns: the descriptor and the bound port (useful with port 0).
    public static func listen(host: String, port: Int, reusePort: Bool, backlog: Int32 = 4096) throws(SystemError) -> (fd: Int32, port: Int) {
        _ = ignoreSIGPIPE
        let resolved = host == "localhost" ? "127.0.0.1" : host
        var storage = sockaddr_storage()
        var length: socklen_t
        let family: Int32
        if resolved.contains(":") {
            family = AF_INET6
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = UInt16(port).bigEndian
            guard inet_pton(AF_INET6, resolved, &address.sin6_addr) == 1 else { throw SystemError("inet_pton(\(host))", errno: EINVAL) }
            withUnsafeBytes(of: address) { source in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: source) } }
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        } else {
            family = AF_INET
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = UInt16(port).bigEndian
            guard inet_pton(AF_INET, resolved, &address.sin_addr) == 1 else { throw SystemError("inet_pton(\(host))", errno: EINVAL) }
            withUnsafeBytes(of: address) { source in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: source) } }
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
        }
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if reusePort { setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size)) }
        let bound = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard bound == 0 else { let error = SystemError("bind(\(host):\(port))"); close(fd); throw error }
        guard Glibc.listen(fd, backlog) == 0 else { let error = SystemError("listen"); close(fd); throw error }
        return (fd, try localPort(fd))
    }

    /// A blocking IPv4 client socket connected to `host:port`, whose reads time out after
    /// `receiveTimeoutSeconds` (so a client that waits on a silent server fails, never hangs).
    /// Used by load generators and tests.
    /// `receiveBuffer` (bytes), when given, is set before connecting, so the advertised window
    /// stays small: a test's way to be a slow reader.
    public static func connect(host: String = "127.0.0.1", port: Int, receiveTimeoutSeconds: Int = 10,
                               receiveBuffer: Int32? = nil) throws(SystemError) -> Int32 {
        _ = ignoreSIGPIPE
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket") }
        if var size = receiveBuffer { setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size)) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else { close(fd); throw SystemError("inet_pton(\(host))", errno: EINVAL) }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else { let error = SystemError("connect(\(host):\(port))"); close(fd); throw error }
        var timeout = timeval(tv_sec: receiveTimeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    /// The local port a socket is bound to.
    public static func localPort(_ fd: Int32) throws(SystemError) -> Int {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        guard result == 0 else { throw SystemError("getsockname") }
        return withUnsafeBytes(of: storage) { raw in
            Int(UInt16(bigEndian: raw.load(fromByteOffset: 2, as: UInt16.self)))
        }
    }

    /// Accepts one connection (non-blocking, close-on-exec, TCP_NODELAY), returning its
    /// descriptor and the peer's address text, or nil when none is pending (EAGAIN).
    public static func accept(_ listener: Int32) throws(SystemError) -> (fd: Int32, peer: String)? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        while true {
            let fd = withUnsafeMutablePointer(to: &storage) { pointer in
                accept4(listener, pointer, &length, Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
            }
            if fd >= 0 {
                var one: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                return (fd, peerText(storage))
            }
            switch errno {
            case EINTR, ECONNABORTED: continue
            case EAGAIN: return nil
            default: throw SystemError("accept4")
            }
        }
    }

    static func peerText(_ storage: sockaddr_storage) -> String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        return withUnsafeBytes(of: storage) { raw -> String in
            let family = Int32(raw.load(as: sa_family_t.self))
            let offset = family == AF_INET6 ? 8 : 4
            _ = inet_ntop(family, raw.baseAddress! + offset, &buffer, socklen_t(buffer.count))
            return String(cString: buffer)
        }
    }
}

/// Bytes waiting to be written to one connection, flushed with `writev`. Bounded: past
/// `hardLimit` the caller must drop or close (``enqueue(_:)`` says so), and the high/low
/// watermarks tell producers when to pause and resume.
public struct OutboundQueue {
    /// The first pending buffer (empty when nothing is pending), which may be partly written.
    /// It is held apart from the others because it is usually the only one: a fan-out queues
    /// one change per connection and writes it, and keeping it in the queue itself spares each
    /// delivery a visit to a second heap object (an array of buffers) on each of 10,000
    /// connections.
    private var head: [UInt8] = []
    /// The buffers after `head`, in order.
    private var rest: [[UInt8]] = []
    private var firstOffset = 0
    /// Pending buffers in all.
    private var count: Int { head.isEmpty ? 0 : 1 + rest.count }
    /// Bytes pending.
    public private(set) var pendingBytes = 0
    /// Above this, producers should pause (e.g. conflate).
    public let highWatermark: Int
    /// Below this, producers may resume.
    public let lowWatermark: Int
    /// Never hold more than this.
    public let hardLimit: Int

    /// A queue with the given limits.
    public init(highWatermark: Int, lowWatermark: Int, hardLimit: Int) {
        self.highWatermark = highWatermark
        self.lowWatermark = lowWatermark
        self.hardLimit = hardLimit
    }

    /// Whether nothing is pending.
    public var isEmpty: Bool { pendingBytes == 0 }
    /// Whether producers should pause.
    public var isAboveHighWatermark: Bool { pendingBytes > highWatermark }
    /// Whether paused producers may resume.
    public var isBelowLowWatermark: Bool { pendingBytes < lowWatermark }

    /// Adds bytes; returns false (and adds nothing) when that would pass the hard limit. An
    /// empty queue takes one buffer of any size (a document larger than the limit must still
    /// be sendable; its size is bounded where it was made), so the queue never holds more than
    /// the larger of the hard limit and one buffer.
    public mutating func enqueue(_ bytes: [UInt8]) -> Bool {
        guard !bytes.isEmpty else { return true }
        guard pendingBytes == 0 || pendingBytes + bytes.count <= hardLimit else { return false }
        if head.isEmpty { head = bytes } else { rest.append(bytes) }
        pendingBytes += bytes.count
        return true
    }

    /// The outcome of a flush.
    public enum FlushResult: Equatable {
        /// Everything was written.
        case drained
        /// The socket is full; wait for EPOLLOUT.
        case wouldBlock
        /// The peer is gone or the socket failed.
        case failed(Int32)
    }

    /// Writes as much as the socket takes, up to 64 buffers per sendmsg call (a socket only).
    public mutating func flush(to fd: Int32) -> FlushResult {
        while pendingBytes > 0 {
            let written: Int
            if rest.isEmpty {
                // The usual case (one change for this connection): one send, no iovec. send and
                // sendmsg rather than write and writev: they reach the socket without the VFS
                // layer's file-position handling, which in a threaded process costs an atomic
                // per call (fdget_pos; about a tenth of the kernel's time in a fan-out profile).
                let offset = firstOffset
                written = head.withUnsafeBytes { raw in send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL)) }
            } else {
                // Several buffers (coalesced changes): one sendmsg of up to 64, the iovecs on the stack.
                let count = min(self.count, 64)
                written = withUnsafeTemporaryAllocation(of: iovec.self, capacity: count) { vectors in
                    // Each buffer stays pinned (inside its withUnsafeBytes) until writev returns.
                    func pinned(_ index: Int) -> Int {
                        if index == count {
                            var message = msghdr()
                            message.msg_iov = vectors.baseAddress
                            message.msg_iovlen = count
                            return sendmsg(fd, &message, Int32(MSG_NOSIGNAL))
                        }
                        return (index == 0 ? head : rest[index - 1]).withUnsafeBytes { raw in
                            let start = index == 0 ? firstOffset : 0
                            vectors[index] = iovec(iov_base: UnsafeMutableRawPointer(mutating: raw.baseAddress! + start), iov_len: raw.count - start)
                            return pinned(index + 1)
                        }
                    }
                    return pinned(0)
                }
            }
            if written < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN { return .wouldBlock }
                return .failed(errno)
            }
            consume(written)
        }
        return .drained
    }

    /// Writes through `write` (a TLS session): the first buffer alone when it is the only one or
    /// at least `scratch.count` bytes, else up to `scratch.count` bytes of several buffers
    /// copied into `scratch`, so small changes share one TLS record. `write` returns the bytes
    /// taken, -1 when it would block, or another negative value on failure. A retry after -1
    /// passes the same bytes again, possibly followed by more (what TLS requires).
    public mutating func flush(scratch: inout [UInt8], write: (UnsafeRawBufferPointer) -> Int) -> FlushResult {
        while pendingBytes > 0 {
            let written: Int
            if rest.isEmpty || head.count - firstOffset >= scratch.count {
                let offset = firstOffset
                written = head.withUnsafeBytes { write(UnsafeRawBufferPointer(rebasing: $0[offset...])) }
            } else {
                var filled = 0
                scratch.withUnsafeMutableBytes { target in
                    for index in 0..<count where filled < target.count {
                        let buffer = index == 0 ? head : rest[index - 1]
                        let start = index == 0 ? firstOffset : 0
                        let count = min(buffer.count - start, target.count - filled)
                        buffer.withUnsafeBytes { source in
                            (target.baseAddress! + filled).copyMemory(from: source.baseAddress! + start, byteCount: count)
                        }
                        filled += count
                    }
                }
                written = scratch.withUnsafeBytes { write(UnsafeRawBufferPointer(rebasing: $0[0..<filled])) }
            }
            if written == -1 { return .wouldBlock }
            if written < 0 { return .failed(EIO) }
            consume(written)
        }
        return .drained
    }

    private mutating func consume(_ count: Int) {
        var remaining = count
        pendingBytes -= count
        while remaining > 0, !head.isEmpty {
            let left = head.count - firstOffset
            if remaining >= left {
                remaining -= left
                head = rest.isEmpty ? [] : rest.removeFirst()
                firstOffset = 0
            } else {
                firstOffset += remaining
                remaining = 0
            }
        }
    }
}

extension Socket {
    /// Starts a non-blocking TCP connect to `host` (a name or an address, resolved with
    /// `getaddrinfo`) and `port`. Returns the descriptor; the connection is complete when it
    /// becomes writable and ``connectError(_:)`` says 0. Used by clients on an event loop.
    public static func startConnect(host: String, port: Int) throws(SystemError) -> Int32 {
        _ = ignoreSIGPIPE
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let first = list else { throw SystemError("getaddrinfo(\(host))", errno: EHOSTUNREACH) }
        defer { freeaddrinfo(list) }
        let fd = socket(first.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket") }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let result = Glibc.connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen)
        if result != 0 && errno != EINPROGRESS {
            let error = SystemError("connect(\(host):\(port))")
            close(fd)
            throw error
        }
        return fd
    }

    /// The outcome of a non-blocking connect once the socket is writable: 0, or the errno.
    public static func connectError(_ fd: Int32) -> Int32 {
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 else { return errno }
        return error
    }
}

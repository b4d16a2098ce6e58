import DeltacastBase
import DeltacastLoop
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Tells systemd about the service's state (`Type=notify`, sd_notify(3)) without libsystemd:
/// one datagram per message to the AF_UNIX socket named by `NOTIFY_SOCKET` (a path, or an
/// abstract name written with a leading `@`). Without `NOTIFY_SOCKET` it does nothing.
struct SystemdNotifier {
    /// The socket address, or nil when not started by systemd.
    let path: String?

    init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        let value = environment["NOTIFY_SOCKET"] ?? ""
        path = value.hasPrefix("/") || value.hasPrefix("@") ? value : nil
    }

    /// Sends `state` (e.g. `READY=1`, `STOPPING=1`); returns false when it could not be sent.
    @discardableResult
    func notify(_ state: String) -> Bool {
        guard let path else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in raw.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count)
        let payload = Array(state.utf8)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                payload.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), address, length) }
            }
        }
        return sent == payload.count
    }

    /// `MONOTONIC_USEC=...`: the monotonic clock now, as `Type=notify-reload` wants with `RELOADING=1`.
    static func monotonicMicroseconds() -> UInt64 { MonotonicClock.nanoseconds() / 1000 }
}

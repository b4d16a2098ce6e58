#if canImport(Glibc)
import Glibc
#endif

/// A failed system call: its name and errno, e.g. `bind: Address already in use (errno 98)`.
public struct SystemError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The call that failed.
    public var call: String
    /// Its errno.
    public var errno: Int32
    /// Captures the current errno for `call`.
    public init(_ call: String) {
        self.call = call
        self.errno = Glibc.errno
    }
    /// An error with an explicit errno (for calls that return it, like pthread_create).
    public init(_ call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }
    /// `call: strerror (errno N)`.
    public var description: String { "\(call): \(String(cString: strerror(errno))) (errno \(errno))" }
}

public import DeltacastBase
public import DeltacastLoop
import COpenSSL
public import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Why a TLS context could not be built (a file that is missing, unreadable or mismatched).
public struct TLSError: Error, Sendable, CustomStringConvertible {
    /// What failed, with OpenSSL's reason.
    public let message: String
    public var description: String { message }

    package init(message: String) { self.message = message }

    package init(_ what: String) {
        var reasons: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            reasons.append(String(cString: buffer))
        }
        message = reasons.isEmpty ? what : "\(what): \(reasons.joined(separator: "; "))"
    }
}

/// The server's TLS settings: TLS 1.2 and 1.3 only, forward-secret AEAD ciphers, no
/// compression or renegotiation, ALPN `http/1.1`. ``reload()`` builds a new context from the
/// files (SIGHUP); connections keep the context they started with, new ones get the new one.
public final class TLSContext: Sendable {
    private let certificatePath: String
    private let keyPath: String
    /// The current `SSL_CTX *` (as an address: raw pointers are not Sendable).
    private let current: Locked<UInt>
    /// When the current certificate expires (Unix seconds), for logs and the status page.
    public let notAfter: Locked<Int64>

    /// Mozilla's "intermediate" TLS 1.2 list: ECDHE key exchange, AES-GCM and ChaCha20 only.
    static let tls12Ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

    /// Loads the certificate chain and key; throws naming the file that failed.
    public init(certificate: String, key: String) throws(TLSError) {
        certificatePath = certificate
        keyPath = key
        let (context, expiry) = try TLSContext.build(certificate: certificate, key: key)
        current = Locked(UInt(bitPattern: context))
        notAfter = Locked(expiry)
    }

    deinit {
        SSL_CTX_free(OpaquePointer(bitPattern: current.withLock { $0 }))
    }

    /// Re-reads the files. On failure the current context stays and the error says why.
    /// Returns the new certificate's expiry (Unix seconds).
    @discardableResult
    public func reload() throws(TLSError) -> Int64 {
        let (context, expiry) = try TLSContext.build(certificate: certificatePath, key: keyPath)
        let old = current.withLock { value -> UInt in
            let old = value
            value = UInt(bitPattern: context)
            return old
        }
        notAfter.withLock { $0 = expiry }
        // Live connections hold their own reference to the old context.
        SSL_CTX_free(OpaquePointer(bitPattern: old))
        return expiry
    }

    /// A server-side session for an accepted socket.
    public func session(fd: Int32) -> TLSStream? {
        let ssl: OpaquePointer? = current.withLock { SSL_new(OpaquePointer(bitPattern: $0)) }
        guard let ssl else { return nil }
        SSL_set_fd(ssl, fd)
        SSL_set_accept_state(ssl)
        return TLSStream(ssl: ssl)
    }

    private static func build(certificate: String, key: String) throws(TLSError) -> (OpaquePointer, Int64) {
        ERR_clear_error()
        guard let context = SSL_CTX_new(TLS_server_method()) else { throw TLSError("SSL_CTX_new") }
        guard deltacast_ssl_ctx_set_min_tls12(context) == 1 else { SSL_CTX_free(context); throw TLSError("TLS 1.2 minimum") }
        _ = SSL_CTX_set_options(context, UInt64(deltacast_ssl_server_options()))
        _ = deltacast_ssl_ctx_set_modes(context)
        guard SSL_CTX_set_cipher_list(context, tls12Ciphers) == 1 else { SSL_CTX_free(context); throw TLSError("cipher list") }
        guard SSL_CTX_use_certificate_chain_file(context, certificate) == 1 else {
            SSL_CTX_free(context); throw TLSError("tls.certificate \(certificate): cannot load a PEM certificate chain")
        }
        guard SSL_CTX_use_PrivateKey_file(context, key, SSL_FILETYPE_PEM) == 1 else {
            SSL_CTX_free(context); throw TLSError("tls.key \(key): cannot load a PEM private key")
        }
        guard SSL_CTX_check_private_key(context) == 1 else {
            SSL_CTX_free(context); throw TLSError("tls.key \(key) does not match the certificate in \(certificate)")
        }
        SSL_CTX_set_alpn_select_cb(context, { _, out, outLength, offered, offeredLength, _ in
            // Pick http/1.1 when offered (Chromium offers h2 first); otherwise no ALPN at all.
            guard let offered, let out, let outLength else { return SSL_TLSEXT_ERR_NOACK }
            var index = 0
            while index < Int(offeredLength) {
                let length = Int(offered[index])
                if length == 8, index + 9 <= Int(offeredLength),
                   Array(UnsafeBufferPointer(start: offered + index + 1, count: 8)) == Array("http/1.1".utf8) {
                    out.pointee = offered + index + 1
                    outLength.pointee = 8
                    return SSL_TLSEXT_ERR_OK
                }
                index += 1 + length
            }
            return SSL_TLSEXT_ERR_NOACK
        }, nil)
        var expiry: Int64 = 0
        if let leaf = SSL_CTX_get0_certificate(context), let time = X509_get0_notAfter(leaf) {
            var days: Int32 = 0, seconds: Int32 = 0
            if ASN1_TIME_diff(&days, &seconds, nil, time) == 1 {
                expiry = Int64(Glibc.time(nil)) + Int64(days) * 86_400 + Int64(seconds)
            }
        }
        return (context, expiry)
    }
}

/// One TLS session over a non-blocking socket: handshake, read and write report "would block"
/// so the event loop waits for the right readiness.
public final class TLSStream {
    package let ssl: OpaquePointer
    package var established = false

    package init(ssl: OpaquePointer) { self.ssl = ssl }
    deinit { SSL_free(ssl) }

    public enum Progress: Equatable { case done, wantRead, wantWrite, failed(String) }

    /// Advances the handshake.
    public func handshake() -> Progress {
        ERR_clear_error()
        let result = SSL_do_handshake(ssl)
        if result == 1 { established = true; return .done }
        return progress(result)
    }

    private func progress(_ result: Int32) -> Progress {
        let code = SSL_get_error(ssl, result)
        switch code {
        case SSL_ERROR_WANT_READ: return .wantRead
        case SSL_ERROR_WANT_WRITE: return .wantWrite
        case SSL_ERROR_ZERO_RETURN: return .failed("closed by the peer")
        default:
            let error = ERR_get_error()
            ERR_clear_error()
            if error == 0 { return .failed(code == SSL_ERROR_SYSCALL ? "connection reset" : "TLS error \(code)") }
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(error, &buffer, buffer.count)
            return .failed(String(cString: buffer))
        }
    }

    /// Reads decrypted bytes: a count > 0; 0 at a clean close; -1 when it would block; -2 on error.
    public func read(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        ERR_clear_error()
        let count = SSL_read(ssl, buffer.baseAddress, Int32(min(buffer.count, Int(Int32.max))))
        if count > 0 { return Int(count) }
        switch progress(count) {
        case .wantRead, .wantWrite: return -1
        case .failed(let reason) where reason == "closed by the peer": return 0
        default: return -2
        }
    }

    /// Writes: bytes taken (> 0); -1 when it would block; -2 on error.
    public func write(_ bytes: UnsafeRawBufferPointer) -> Int {
        guard bytes.count > 0 else { return 0 }
        ERR_clear_error()
        let count = SSL_write(ssl, bytes.baseAddress, Int32(min(bytes.count, 1 << 30)))
        if count > 0 { return Int(count) }
        switch progress(count) {
        case .wantRead, .wantWrite: return -1
        default: return -2
        }
    }

    /// Sends close_notify once, without waiting for the peer's.
    public func shutdown() {
        if established { ERR_clear_error(); _ = SSL_shutdown(ssl); ERR_clear_error() }
    }
}

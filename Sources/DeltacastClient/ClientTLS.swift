// The sockets I/O, built where DELTACAST_SOCKETS is defined (Linux; see Package.swift).
#if DELTACAST_SOCKETS
import COpenSSL
package import DeltacastTLS

/// Client sessions (`tail`, `top`, the load generator): TLS 1.2 and up over a connected,
/// blocking socket.
extension TLSStream {
    /// A client context that verifies nothing: for the load generator against a test
    /// certificate on loopback, never for real traffic.
    private static let benchmarkClientContext: UInt = {
        let context = SSL_CTX_new(TLS_client_method())!
        _ = deltacast_ssl_ctx_set_client_modes(context)
        SSL_CTX_set_verify(context, SSL_VERIFY_NONE, nil)
        return UInt(bitPattern: context)
    }()

    /// A client session on a connected socket, handshaken while the socket still blocks (the
    /// load generator makes its connections before it measures). Nil if the handshake fails.
    package static func benchmarkClient(fd: Int32) -> TLSStream? {
        guard let ssl = SSL_new(OpaquePointer(bitPattern: benchmarkClientContext)) else { return nil }
        SSL_set_fd(ssl, fd)
        let stream = TLSStream(ssl: ssl)
        guard SSL_connect(ssl) == 1 else { ERR_clear_error(); return nil }
        stream.established = true
        return stream
    }

    /// A verifying client session on a connected, blocking socket (`deltacast tail`): the
    /// system's CA store or `caFile`, the host name checked against the certificate, SNI sent.
    /// Throws the verification error in words (e.g. "certificate has expired").
    package static func client(fd: Int32, host: String, caFile: String?) throws(TLSError) -> TLSStream {
        ERR_clear_error()
        guard let context = SSL_CTX_new(TLS_client_method()) else { throw TLSError("SSL_CTX_new") }
        defer { SSL_CTX_free(context) }   // the session keeps its own reference
        _ = deltacast_ssl_ctx_set_min_tls12(context)
        let loaded = caFile.map { SSL_CTX_load_verify_locations(context, $0, nil) } ?? SSL_CTX_set_default_verify_paths(context)
        guard loaded == 1 else { throw TLSError("cannot load the CA certificates \(caFile ?? "(system store)")") }
        SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
        guard let ssl = SSL_new(context) else { throw TLSError("SSL_new") }
        let stream = TLSStream(ssl: ssl)
        SSL_set_fd(ssl, fd)
        // SNI carries names only (RFC 6066); SSL_set1_host checks a name or an IP address.
        if !host.allSatisfy({ $0.isNumber || $0 == "." || $0 == ":" }) { _ = deltacast_ssl_set_sni(ssl, host) }
        _ = SSL_set1_host(ssl, host)
        guard SSL_connect(ssl) == 1 else {
            let result = SSL_get_verify_result(ssl)
            if result != X509_V_OK { ERR_clear_error(); throw TLSError(message: "certificate verification failed: \(String(cString: X509_verify_cert_error_string(result)))") }
            throw TLSError("TLS handshake with \(host) failed")
        }
        stream.established = true
        return stream
    }
}
#endif

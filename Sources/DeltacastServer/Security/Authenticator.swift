import COpenSSL
public import DeltacastConfig
import DeltacastCrypto
import DeltacastJSON
import DeltacastWire
#if canImport(Glibc)
import Glibc
#endif

/// Who a verified credential stands for: the token's claims (an API key's are `sub` and
/// `scope`), its scopes, and when it stops being valid. A class: a push connection holds one
/// pointer to it, not the claims inline (idle memory per connection is a budget).
public final class Principal: Sendable {
    /// `claims.sub` (an API key's `subject`).
    public let subject: String
    /// The JWT payload; an API key gets `{"sub":..., "scope":...}`.
    let claims: JSONValue
    /// From `scope` (space-separated), `scp` or `scopes`.
    let scopes: Set<String>
    /// `exp` plus `auth.jwt.leeway`, in Unix milliseconds: when the proxy stops accepting the
    /// token. Nil for an API key.
    public let expiresAt: Int64?

    init(subject: String, claims: JSONValue, scopes: Set<String>, expiresAt: Int64?) {
        self.subject = subject
        self.claims = claims
        self.scopes = scopes
        self.expiresAt = expiresAt
    }

    /// As a ticket stored in Redis carries it (cluster mode): `{"sub","claims","scopes","exp"}`.
    var serialized: [UInt8] {
        let object: JSONValue = ["sub": .string(subject), "claims": claims, "scopes": .array(scopes.sorted().map { .string($0) }),
                                 "exp": expiresAt.map { .number(JSONNumber(Int($0))) } ?? .null]
        return object.serialized()
    }

    /// The principal ``serialized`` wrote, or nil for anything else.
    static func deserialized(_ bytes: [UInt8]) -> Principal? {
        guard case .object(let object)? = try? JSONParser.parse(bytes), case .string(let subject)? = object["sub"],
              let claims = object["claims"], case .array(let scopes)? = object["scopes"] else { return nil }
        var expiresAt: Int64?
        if case .number(let number)? = object["exp"] { expiresAt = number.intValue.map(Int64.init) }
        return Principal(subject: subject, claims: claims, scopes: Set(scopes.compactMap { if case .string(let text) = $0 { text } else { nil } }),
                         expiresAt: expiresAt)
    }
}

/// Why a presented credential was refused (the 401's `error_description`, or an `error` event).
public struct AuthenticationFailure: Error, Sendable, CustomStringConvertible {
    /// What is wrong, e.g. "token expired 42 s ago".
    public let reason: String
    public var description: String { reason }
}

/// Verifies bearer credentials: JSON Web Tokens (one algorithm and its key, `exp`/`nbf` with
/// leeway, `iss`, `aud`) and static API keys. Immutable after `init`; safe from any loop.
public final class Authenticator: @unchecked Sendable {
    private let jwt: Configuration.JWT?
    /// HS256 secret bytes.
    private let secret: [UInt8]
    /// RS256/ES256 public key (owned; freed in deinit).
    private let publicKey: OpaquePointer?
    /// API keys by the SHA-256 of the key: a lookup that compares digests, not secrets.
    private let apiKeys: [[UInt8]: Principal]
    /// Longest token accepted: 8 KiB (a header block is 16 KiB).
    static let maximumTokenBytes = 8 * 1024

    /// Loads the configured key. Throws a message naming the key when it is unusable.
    public init(configuration: Configuration.Auth) throws(AuthenticationFailure) {
        jwt = configuration.jwt
        secret = Array((configuration.jwt?.secret ?? "").utf8)
        var keys: [[UInt8]: Principal] = [:]
        for key in configuration.apiKeys {
            let claims: JSONValue = ["sub": .string(key.subject), "scope": .string(key.scopes.joined(separator: " "))]
            keys[SHA256.digest(Array(key.key.utf8))] = Principal(subject: key.subject, claims: claims, scopes: Set(key.scopes), expiresAt: nil)
        }
        apiKeys = keys
        if let jwt = configuration.jwt, jwt.algorithm != .hs256, let text = jwt.publicKey {
            publicKey = try Authenticator.loadPublicKey(text, algorithm: jwt.algorithm)
        } else {
            publicKey = nil
        }
    }

    deinit { if let publicKey { EVP_PKEY_free(publicKey) } }

    /// Verifies a bearer credential at `now` (Unix seconds).
    public func authenticate(_ token: String, now: Double) -> Result<Principal, AuthenticationFailure> {
        let bytes = Array(token.utf8)
        guard bytes.count <= Self.maximumTokenBytes else { return .failure(.init(reason: "token is longer than 8 KiB")) }
        if let principal = apiKeys[SHA256.digest(bytes)] { return .success(principal) }
        guard let jwt else { return .failure(.init(reason: "unknown API key")) }
        do {
            return .success(try verify(bytes, jwt: jwt, now: now))
        } catch {
            return .failure(error)
        }
    }

    private func verify(_ token: [UInt8], jwt: Configuration.JWT, now: Double) throws(AuthenticationFailure) -> Principal {
        let parts = token.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 3 else {
            throw .init(reason: apiKeys.isEmpty ? "malformed token: a JWT has three base64url parts separated by '.'" : "unknown API key or malformed JWT")
        }
        guard let headerBytes = Base64URL.decode(parts[0]), case .object(let header)? = try? JSONParser.parse(headerBytes, limits: .init(maximumDepth: 8, maximumBytes: 4096)) else {
            throw .init(reason: "malformed token: the header is not base64url JSON")
        }
        guard case .string(let alg)? = header["alg"] else { throw .init(reason: "malformed token: the header has no alg") }
        guard alg != "none" && alg != "None" && alg != "NONE" else { throw .init(reason: "alg none is never accepted") }
        guard alg == jwt.algorithm.rawValue else {
            throw .init(reason: "alg \(alg) does not match the configured \(jwt.algorithm.rawValue)")
        }
        if header["crit"] != nil { throw .init(reason: "the header has crit extensions this proxy does not understand") }
        guard let signature = Base64URL.decode(parts[2]) else { throw .init(reason: "malformed token: the signature is not base64url") }
        let signed = Array(token[token.startIndex..<parts[1].endIndex])
        guard checkSignature(signature, of: signed, algorithm: jwt.algorithm) else { throw .init(reason: "bad signature") }
        guard let payloadBytes = Base64URL.decode(parts[1]), case .object(let payload)? = try? JSONParser.parse(payloadBytes, limits: .init(maximumDepth: 16, maximumBytes: 8192)) else {
            throw .init(reason: "malformed token: the payload is not a base64url JSON object")
        }
        let leeway = Double(jwt.leeway.components.seconds)
        guard case .number(let expNumber)? = payload["exp"] else { throw .init(reason: "the token has no numeric exp claim; tokens must expire") }
        let exp = expNumber.doubleValue
        guard exp.isFinite else { throw .init(reason: "exp is not a finite number") }
        guard now < exp + leeway else { throw .init(reason: "token expired \(Self.seconds(now - exp)) s ago") }
        if let nbfValue = payload["nbf"] {
            guard case .number(let nbf) = nbfValue, nbf.doubleValue.isFinite else { throw .init(reason: "nbf is not a number") }
            guard now + leeway >= nbf.doubleValue else { throw .init(reason: "token is not valid for another \(Self.seconds(nbf.doubleValue - now)) s (nbf)") }
        }
        if let issuer = jwt.issuer {
            guard case .string(let iss)? = payload["iss"], iss == issuer else {
                throw .init(reason: "issuer \(Self.describe(payload["iss"])) is not the configured \(issuer)")
            }
        }
        if let audience = jwt.audience {
            let audiences: [String] = switch payload["aud"] {
            case .string(let one)?: [one]
            case .array(let many)?: many.compactMap { if case .string(let text) = $0 { text } else { nil } }
            default: []
            }
            guard audiences.contains(audience) else {
                throw .init(reason: "audience \(Self.describe(payload["aud"])) does not include the configured \(audience)")
            }
        }
        guard case .string(let subject)? = payload["sub"], !subject.isEmpty else { throw .init(reason: "the token has no sub claim") }
        return Principal(subject: subject, claims: .object(payload), scopes: Self.scopes(payload),
                         expiresAt: Int64(min(exp + leeway, 1e15) * 1000))
    }

    /// Whole seconds for a message; a claim can be any finite double (`exp: -1e300` once
    /// crashed the conversion to Int, found by FuzzJWT).
    static func seconds(_ value: Double) -> String {
        abs(value) < 1e15 ? String(Int(value)) : "more than 10^15"
    }

    private static func describe(_ value: JSONValue?) -> String {
        guard let value else { return "(none)" }
        return String(decoding: value.serialized(), as: UTF8.self)
    }

    /// `scope` (space-separated, RFC 8693), `scp` (string or array) and `scopes` (array).
    private static func scopes(_ payload: JSONObject) -> Set<String> {
        var result: Set<String> = []
        for name in ["scope", "scp", "scopes"] {
            switch payload[name] {
            case .string(let text)?: for piece in text.split(separator: " ") { result.insert(String(piece)) }
            case .array(let items)?: for case .string(let text) in items { result.insert(text) }
            default: break
            }
        }
        return result
    }

    private func checkSignature(_ signature: [UInt8], of data: [UInt8], algorithm: JWTAlgorithm) -> Bool {
        switch algorithm {
        case .hs256:
            guard let digest = HMACSHA256.authenticationCode(key: secret, data) else { return false }
            return HMACSHA256.equal(digest, signature)
        case .rs256, .es256:
            guard let publicKey else { return false }
            var der = signature
            if algorithm == .es256 {
                // JWS carries r||s (32 bytes each); OpenSSL verifies a DER ECDSA-Sig-Value.
                guard signature.count == 64 else { return false }
                der = Self.derSignature(r: Array(signature[0..<32]), s: Array(signature[32..<64]))
            }
            guard let context = EVP_MD_CTX_new() else { return false }
            defer { EVP_MD_CTX_free(context) }
            guard EVP_DigestVerifyInit(context, nil, EVP_sha256(), nil, publicKey) == 1 else { return false }
            return EVP_DigestVerify(context, der, der.count, data, data.count) == 1
        }
    }

    /// DER `SEQUENCE { INTEGER r, INTEGER s }` from big-endian unsigned r and s.
    static func derSignature(r: [UInt8], s: [UInt8]) -> [UInt8] {
        func integer(_ value: [UInt8]) -> [UInt8] {
            var bytes = Array(value.drop { $0 == 0 })
            if bytes.isEmpty { bytes = [0] }
            if bytes[0] & 0x80 != 0 { bytes.insert(0, at: 0) }
            return [0x02, UInt8(bytes.count)] + bytes
        }
        let body = integer(r) + integer(s)
        return [0x30, UInt8(body.count)] + body
    }

    /// HMAC-SHA256 of `data` under `key` (the HS256 signature), or nil if OpenSSL fails.
    @_spi(Fuzzing) public static func hmacSHA256(key: [UInt8], _ data: [UInt8]) -> [UInt8]? {
        HMACSHA256.authenticationCode(key: key, data)
    }

    /// A PEM public key or certificate, from a file path or from the text itself.
    private static func loadPublicKey(_ text: String, algorithm: JWTAlgorithm) throws(AuthenticationFailure) -> OpaquePointer {
        var pem = Array(text.utf8)
        if !text.hasPrefix("-----BEGIN") {
            guard let contents = readFile(text, limit: 1 << 20) else {
                throw .init(reason: "auth.jwt.public_key: cannot read \(text) (expected a PEM file, or PEM text starting with -----BEGIN)")
            }
            pem = contents
        }
        func read<T>(_ body: (OpaquePointer) -> T?) -> T? {
            pem.withUnsafeBytes { raw -> T? in
                guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else { return nil }
                defer { BIO_free(bio) }
                return body(bio)
            }
        }
        var key: OpaquePointer? = read { PEM_read_bio_PUBKEY($0, nil, nil, nil) }
        if key == nil, let certificate = read({ PEM_read_bio_X509($0, nil, nil, nil) }) {
            key = X509_get_pubkey(certificate)
            X509_free(certificate)
        }
        ERR_clear_error()
        guard let key else { throw .init(reason: "auth.jwt.public_key: no PEM public key or certificate found") }
        let type = EVP_PKEY_get_base_id(key)
        switch algorithm {
        case .rs256 where type != deltacast_evp_pkey_rsa():
            EVP_PKEY_free(key); throw .init(reason: "auth.jwt.public_key: RS256 needs an RSA key")
        case .rs256 where EVP_PKEY_get_bits(key) < 2048:
            let bits = EVP_PKEY_get_bits(key)   // read before the key is freed
            EVP_PKEY_free(key); throw .init(reason: "auth.jwt.public_key: the RSA key has \(bits) bits; RS256 needs 2048 or more")
        case .es256:
            var name = [CChar](repeating: 0, count: 64)
            var length = 0
            guard type == deltacast_evp_pkey_ec(), EVP_PKEY_get_group_name(key, &name, name.count, &length) == 1,
                  ["prime256v1", "P-256", "secp256r1"].contains(String(cString: name)) else {
                EVP_PKEY_free(key); throw .init(reason: "auth.jwt.public_key: ES256 needs an EC key on curve P-256")
            }
        default:
            break
        }
        return key
    }
}

/// Reads a whole file of at most `limit` bytes.
func readFile(_ path: String, limit: Int) -> [UInt8]? {
    guard let file = fopen(path, "rb") else { return nil }
    defer { fclose(file) }
    var result: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 16 * 1024)
    while true {
        let count = fread(&chunk, 1, chunk.count, file)
        if count == 0 { break }
        result += chunk[0..<count]
        if result.count > limit { return nil }
    }
    return result
}

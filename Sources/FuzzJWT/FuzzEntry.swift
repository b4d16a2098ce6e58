import DeltacastConfig
import DeltacastJSON
import DeltacastWire
@_spi(Fuzzing) import DeltacastServer

/// libFuzzer entry point for JWT parsing and verification (HS256, with issuer and audience).
/// The first byte picks the mode:
/// - even: the rest is a bearer token as a client sends it; it is refused with a reason or,
///   never in practice, accepted;
/// - odd: the rest is a header and a payload separated by a NUL, signed with the configured
///   secret, so the claim checks are reached. An accepted token has `alg` HS256, a numeric
///   `exp` still inside the leeway, a non-empty `sub`, the issuer and the audience; the same
///   token with one signature bit flipped is always refused, with "bad signature".
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJWT(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let rest = Array(bytes.dropFirst())
    if bytes[0] & 1 == 0 {
        if case .failure(let failure) = authenticator.authenticate(String(decoding: rest, as: UTF8.self), now: now) {
            precondition(!failure.reason.isEmpty, "a refusal without a reason")
        }
        return 0
    }
    let cut = rest.firstIndex(of: 0) ?? rest.count
    let signed = Base64URL.encode(Array(rest[..<cut])) + "." + Base64URL.encode(Array(rest[min(cut + 1, rest.count)...]))
    let signature = Authenticator.hmacSHA256(key: secret, Array(signed.utf8))!
    switch authenticator.authenticate(signed + "." + Base64URL.encode(signature), now: now) {
    case .success(let principal):
        let header = try? JSONParser.parse(Array(rest[..<cut]))
        let payload = try? JSONParser.parse(Array(rest[min(cut + 1, rest.count)...]))
        guard case .object(let fields)? = header, fields["alg"] == .string("HS256"), case .object(let claims)? = payload,
              case .number(let exp)? = claims["exp"] else {
            preconditionFailure("accepted without alg HS256 and a numeric exp")
        }
        precondition(now < exp.doubleValue + 30 && principal.expiresAt! > Int64(now * 1000), "accepted after exp + leeway")
        precondition(claims["sub"] == .string(principal.subject) && !principal.subject.isEmpty, "accepted without sub")
        precondition(claims["iss"] == .string("https://issuer.example"), "accepted without the issuer")
        var tampered = signature
        tampered[Int(bytes[0] >> 1) % 32] ^= 0x01
        guard case .failure(let failure) = authenticator.authenticate(signed + "." + Base64URL.encode(tampered), now: now) else {
            preconditionFailure("accepted with a flipped signature bit")
        }
        precondition(failure.reason == "bad signature", "a tampered token refused for \(failure.reason)")
    case .failure(let failure):
        precondition(!failure.reason.isEmpty, "a refusal without a reason")
    }
    return 0
}

private let now = 1_800_000_000.0
private let secret = Array("fuzz-secret-0123456789-0123456789-abcdef".utf8)
private let authenticator = try! Authenticator(configuration: Configuration.load(text: """
    upstream:
      base: http://127.0.0.1:9000
    auth:
      jwt:
        algorithm: HS256
        secret: \(String(decoding: secret, as: UTF8.self))
        issuer: https://issuer.example
        audience: deltacast
    endpoints:
      - path: /api/prices
    """, file: "fuzz.yaml", environment: [:]).auth)

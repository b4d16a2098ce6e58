import DeltacastConfig
import DeltacastJSON
import DeltacastUpstream
import DeltacastWire

/// OAuth2 client credentials (RFC 6749 §4.4) for one origin's requests.
///
/// - One token is shared by every poll of the origin. It is fetched when a poll first needs it;
///   concurrent polls wait for that one fetch.
/// - It is refreshed in the background at 80 % of its life (`expires_in`), and dropped when a
///   request with it was answered `401` (the poller sends that poll once more, with a new one).
/// - It is never sent past its expiry, counted from when the token request was sent, less half
///   a second for the way back. A token without `expires_in` is used until a `401`.
/// - A token endpoint that fails (an error status, `invalid_client`, an answer that is not a
///   token, no answer): the polls that wait fail with the reason, so their topics get a
///   `status` event with `stale: true` and back off; the next fetch waits 1 s, doubling to 60 s.
/// - The client secret and the tokens never appear in a reason, a log line or a metric.
///
/// Runs on the poller's thread, on its clock.
final class OAuth2ClientCredentials: UpstreamAuthorizing {
    let settings: Configuration.Upstream.OAuth2
    private let fetcher: any UpstreamFetching
    private let clock: any PollClock
    private let timeoutMilliseconds: Int
    private var token: (value: String, expiresAt: Int64, refreshAt: Int64)?
    private var waiting: [(Result<String, UpstreamFailure>) -> Void] = []
    private var fetching = false
    private var failures = 0
    private var retryAt: Int64 = 0
    private var lastFailure: UpstreamFailure?

    /// Token fetches since the start, and those that failed (for the tests' and `/metrics`' sake).
    private(set) var fetches = 0
    private(set) var failedFetches = 0

    init(settings: Configuration.Upstream.OAuth2, fetcher: any UpstreamFetching, clock: any PollClock, timeoutMilliseconds: Int) {
        self.settings = settings
        self.fetcher = fetcher
        self.clock = clock
        self.timeoutMilliseconds = timeoutMilliseconds
    }

    func authorization(_ completion: @escaping (Result<String, UpstreamFailure>) -> Void) {
        let now = clock.nowMilliseconds
        if let token, now < token.expiresAt {
            if now >= token.refreshAt { fetch() }
            return completion(.success("Bearer " + token.value))
        }
        token = nil
        if !fetching, now < retryAt, let lastFailure { return completion(.failure(lastFailure)) }
        waiting.append(completion)
        fetch()
    }

    func rejected(_ value: String) {
        if let token, "Bearer " + token.value == value { self.token = nil }
    }

    private func fetch() {
        guard !fetching, clock.nowMilliseconds >= retryAt else { return }
        fetching = true
        fetches += 1
        let sentAt = clock.nowMilliseconds
        var form = "grant_type=client_credentials"
        if let scope = settings.scope { form += "&scope=" + Self.formEncoded(scope) }
        if let audience = settings.audience { form += "&audience=" + Self.formEncoded(audience) }
        // client_secret_basic (RFC 6749 §2.3.1): id and secret form-encoded, then Basic.
        let basic = Base64.encode(Array((Self.formEncoded(settings.clientID) + ":" + Self.formEncoded(settings.clientSecret)).utf8))
        let request = UpstreamRequest(url: settings.tokenURL.description,
                                      headers: [("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json"), ("Authorization", "Basic " + basic)],
                                      timeoutMilliseconds: timeoutMilliseconds, maxBody: 64 * 1024, followRedirects: false, body: Array(form.utf8))
        fetcher.fetch(request) { [weak self] response in
            guard let self else { return }
            self.fetching = false
            let result = Self.token(from: response)
            let now = self.clock.nowMilliseconds
            switch result {
            case .success(let (value, expiresIn)):
                self.failures = 0
                self.retryAt = 0
                self.lastFailure = nil
                if let expiresIn {
                    let life = expiresIn * 1000
                    self.token = (value, sentAt + life - 500, sentAt + life * 4 / 5)
                } else {
                    self.token = (value, .max, .max)
                }
            case .failure(let failure):
                self.failedFetches += 1
                self.failures += 1
                self.retryAt = now + min(60_000, Int64(1000) << min(self.failures - 1, 6))
                self.lastFailure = failure
            }
            let waiters = self.waiting
            self.waiting = []
            for waiter in waiters {
                if let token = self.token, now < token.expiresAt {
                    waiter(.success("Bearer " + token.value))
                } else {
                    waiter(.failure(self.lastFailure ?? .credentials("the token endpoint gave no usable token")))
                }
            }
        }
    }

    /// The access token and its `expires_in` (seconds) from a token response, or why not. The
    /// reasons name the endpoint's status and `error` code, never a secret or a token.
    static func token(from response: UpstreamResponse) -> Result<(String, Int64?), UpstreamFailure> {
        if case .tooLarge(let limit)? = response.failure {
            return .failure(.credentials("the OAuth2 token endpoint's answer is larger than \(limit) bytes"))
        }
        if let failure = response.failure { return .failure(.credentials("the OAuth2 token endpoint did not answer: \(failure)")) }
        let parsed = try? JSONParser.parse(response.body)
        guard response.status == 200 else {
            var code = ""
            if case .object(let object)? = parsed, case .string(let error)? = object["error"] {
                code = " (" + String(error.prefix(64).filter { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) + ")"
            }
            return .failure(.credentials("the OAuth2 token endpoint answered \(response.status)\(code)"))
        }
        guard case .object(let object)? = parsed else {
            return .failure(.credentials("the OAuth2 token endpoint's answer is not a JSON object"))
        }
        guard case .string(let value)? = object["access_token"], !value.isEmpty, value.utf8.count <= 16384,
              value.allSatisfy({ $0.isASCII && !$0.isWhitespace && $0 != "\u{7F}" && ($0.asciiValue ?? 0) >= 0x21 }) else {
            return .failure(.credentials("the OAuth2 token endpoint's answer has no usable access_token"))
        }
        if case .string(let type)? = object["token_type"], type.lowercased() != "bearer" {
            return .failure(.credentials("the OAuth2 token endpoint gave a token of type '\(type.prefix(32))', not Bearer"))
        }
        var expiresIn: Int64?
        switch object["expires_in"] {
        case .number(let number)?:
            guard let seconds = number.intValue, seconds >= 1 else {
                return .failure(.credentials("the OAuth2 token endpoint's expires_in is not a positive number of seconds"))
            }
            expiresIn = Int64(min(seconds, 365 * 86_400))
        case .string(let text)?:
            // Some servers quote it.
            guard let seconds = Int64(text), seconds >= 1 else {
                return .failure(.credentials("the OAuth2 token endpoint's expires_in is not a positive number of seconds"))
            }
            expiresIn = min(seconds, 365 * 86_400)
        default:
            expiresIn = nil
        }
        return .success((value, expiresIn))
    }

    /// `application/x-www-form-urlencoded` (unreserved characters kept, space as `+`).
    static func formEncoded(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: " "):
                out += "+"
            default:
                let digits = Array("0123456789ABCDEF")
                out += "%" + String(digits[Int(byte >> 4)]) + String(digits[Int(byte & 15)])
            }
        }
        return out
    }
}

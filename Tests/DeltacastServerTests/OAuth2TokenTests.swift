@testable import DeltacastPolling
import DeltacastUpstream
import Testing

/// What a token endpoint's answer may hold, and the error each bad one gets (never showing the
/// token or a secret). The answer itself is read with a 64 KiB limit.
@Suite struct OAuth2TokenTests {
    func answer(_ body: String, status: Int = 200, failure: UpstreamFailure? = nil) -> Result<(String, Int64?), UpstreamFailure> {
        OAuth2ClientCredentials.token(from: UpstreamResponse(status: status, headers: [], body: Array(body.utf8), failure: failure))
    }

    func reason(_ result: Result<(String, Int64?), UpstreamFailure>) -> String? {
        if case .failure(.credentials(let message)) = result { return message }
        return nil
    }

    @Test func aGoodAnswer() throws {
        let (token, expiresIn) = try answer(#"{"access_token":"abc.DEF-123","token_type":"Bearer","expires_in":"120"}"#).get()
        #expect(token == "abc.DEF-123")
        #expect(expiresIn == 120)
        #expect(try answer(#"{"access_token":"t","expires_in":999999999}"#).get().1 == 365 * 86_400)   // capped at a year
        #expect(try answer(#"{"access_token":"t"}"#).get().1 == nil)   // used until a 401
    }

    @Test func anAccessTokenOfMoreThan16KiBIsRefused() throws {
        let limit = String(repeating: "a", count: 16_384)
        #expect(try answer(#"{"access_token":"\#(limit)"}"#).get().0 == limit)
        let over = answer(#"{"access_token":"\#(limit)a"}"#)
        #expect(reason(over) == "the OAuth2 token endpoint's answer has no usable access_token")
    }

    @Test func anAnswerLargerThan64KiBIsRefusedWithoutShowingIt() {
        // The client stops reading at the limit; what the poller then reports.
        let result = answer("", status: 0, failure: .tooLarge(limit: 64 * 1024))
        #expect(reason(result) == "the OAuth2 token endpoint's answer is larger than 65536 bytes")
    }

    @Test func badAnswersNameTheirProblem() {
        #expect(reason(answer("{not json")) == "the OAuth2 token endpoint's answer is not a JSON object")
        #expect(reason(answer(#"["access_token"]"#)) == "the OAuth2 token endpoint's answer is not a JSON object")
        #expect(reason(answer(#"{"access_token":""}"#)) == "the OAuth2 token endpoint's answer has no usable access_token")
        #expect(reason(answer(#"{"access_token":"has space"}"#)) == "the OAuth2 token endpoint's answer has no usable access_token")
        #expect(reason(answer(#"{"access_token":42}"#)) == "the OAuth2 token endpoint's answer has no usable access_token")
        #expect(reason(answer(#"{"access_token":"t","token_type":"mac"}"#)) == "the OAuth2 token endpoint gave a token of type 'mac', not Bearer")
        #expect(reason(answer(#"{"access_token":"t","expires_in":0}"#)) == "the OAuth2 token endpoint's expires_in is not a positive number of seconds")
        #expect(reason(answer(#"{"access_token":"t","expires_in":"soon"}"#)) == "the OAuth2 token endpoint's expires_in is not a positive number of seconds")
        // An error answer names the status and the RFC 6749 error code, filtered to a safe word.
        #expect(reason(answer(#"{"error":"invalid_client<script>","error_description":"secret s3cr3t"}"#, status: 401))
                == "the OAuth2 token endpoint answered 401 (invalid_clientscript)")
    }
}

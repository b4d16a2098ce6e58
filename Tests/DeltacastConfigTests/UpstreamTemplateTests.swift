import Testing
@testable import DeltacastConfig

/// Real upstream shapes: a fixed query in the template, `{param}` in query values, an absolute
/// URL per endpoint with its own headers, and the root pointer as an array key.
@Suite struct UpstreamTemplateTests {
    func endpoint(_ yaml: String, base: String? = "http://127.0.0.1:9000/legacy") throws -> (Configuration.Endpoint, URLValue?) {
        let text = (base.map { "upstream: { base: \($0) }\n" } ?? "") + "endpoints:\n" + yaml
        let configuration = try Configuration.load(text: text, file: "t.yaml", environment: [:])
        return (configuration.endpoints[0], configuration.upstream.base)
    }

    @Test func aFixedQueryStringIsSentAsWritten() throws {
        let (e, base) = try endpoint("  - path: /prices\n    upstream: /rw/prices.json?_shape=objects&_size=max\n")
        #expect(e.upstreamURL(base: base, parameters: [:], topic: "/prices") == "http://127.0.0.1:9000/legacy/rw/prices.json?_shape=objects&_size=max")
    }

    @Test func parametersFillPathSegmentsAndQueryValues() throws {
        let (e, base) = try endpoint("  - path: /customers/{id}/orders/{state}\n    upstream: /v1/orders/{state}?customer={id}&format=json\n")
        #expect(e.upstreamURL(base: base, parameters: ["id": "42", "state": "open"], topic: "/customers/42/orders/open")
                == "http://127.0.0.1:9000/legacy/v1/orders/open?customer=42&format=json")
    }

    @Test func aParameterCannotAddAQueryPair() throws {
        let (e, base) = try endpoint("  - path: /customers/{id}\n    upstream: /v1/orders?customer={id}\n")
        #expect(e.upstreamURL(base: base, parameters: ["id": "1&admin=true#x+y"], topic: "/customers/x")
                == "http://127.0.0.1:9000/legacy/v1/orders?customer=1%26admin%3Dtrue%23x%2By")
        // Already-encoded escapes in the client's segment stay as they are.
        #expect(e.upstreamURL(base: base, parameters: ["id": "a%20b"], topic: "/customers/x") == "http://127.0.0.1:9000/legacy/v1/orders?customer=a%20b")
    }

    @Test func clientQueryParametersFollowTheFixedOnesInTopicOrder() throws {
        let (e, base) = try endpoint("  - path: /orders\n    upstream: /v1/orders?status=open\n    query: [page, sort]\n")
        #expect(e.upstreamURL(base: base, parameters: [:], topic: "/orders?page=2&sort=date") == "http://127.0.0.1:9000/legacy/v1/orders?status=open&page=2&sort=date")
        #expect(e.upstreamURL(base: base, parameters: [:], topic: "/orders") == "http://127.0.0.1:9000/legacy/v1/orders?status=open")
    }

    @Test func anAbsoluteUpstreamOverridesTheBaseAndNeedsNone() throws {
        let (e, _) = try endpoint("""
              - path: /billing/{id}
                upstream: https://billing.internal:8443/api/v2/invoices/{id}?expand=lines
                headers: { X-Api-Key: k1, Accept: application/json }

            """, base: nil)
        #expect(e.upstreamOrigin?.description == "https://billing.internal:8443")
        #expect(e.polls(base: nil))
        #expect(e.upstreamURL(base: nil, parameters: ["id": "7"], topic: "/billing/7") == "https://billing.internal:8443/api/v2/invoices/7?expand=lines")
        #expect(e.headers.map(\.name) == ["X-Api-Key", "Accept"])
        let (root, _) = try endpoint("  - path: /status\n    upstream: http://127.0.0.1:9001?verbose=1\n", base: nil)
        #expect(root.upstreamURL(base: nil, parameters: [:], topic: "/status") == "http://127.0.0.1:9001/?verbose=1")
    }

    @Test func theRootPointerKeysABareArray() throws {
        let (e, _) = try endpoint("  - path: /rows\n    array_keys: { \"\": id, /*/tags: name }\n")
        #expect(e.arrayKeys.map(\.path) == ["", "/*/tags"])
    }
}

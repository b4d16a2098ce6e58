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

/// `cluster.redis`: every accepted form, and the refusals with their words.
@Suite struct RedisURLTests {
    @Test func acceptedForms() throws {
        #expect(try Configuration.RedisURL.parse("redis://127.0.0.1").get() == .init(host: "127.0.0.1"))
        #expect(try Configuration.RedisURL.parse("redis://cache.internal:6380/2").get() == .init(host: "cache.internal", port: 6380, database: 2))
        #expect(try Configuration.RedisURL.parse("redis://:s3cret@10.0.0.5:6379/0").get() == .init(host: "10.0.0.5", password: "s3cret"))
        #expect(try Configuration.RedisURL.parse("redis://proxy:p@ss@[::1]:7000").get() == .init(host: "::1", port: 7000, user: "proxy", password: "p@ss"))
        // The password never shows in logs or the status page.
        #expect("\(try Configuration.RedisURL.parse("redis://:s3cret@h:1/3").get())" == "redis://:***@h:1/3")
    }

    @Test func clusterSeeds() throws {
        let url = try Configuration.RedisURL.parse("redis-cluster://:pw@10.0.0.1:7000,10.0.0.2,[::1]:7002").get()
        #expect(url.isCluster && url.host == "10.0.0.1" && url.port == 7000 && url.password == "pw")
        #expect(url.seeds == [.init(host: "10.0.0.1", port: 7000), .init(host: "10.0.0.2", port: 6379), .init(host: "::1", port: 7002)])
        #expect("\(url)" == "redis-cluster://:***@10.0.0.1:7000,10.0.0.2:6379,[::1]:7002")
        #expect(try Configuration.RedisURL.parse("redis-cluster://h:1/0").get().seeds.count == 1)
        #expect(try !Configuration.RedisURL.parse("redis://h:1").get().isCluster)
    }

    @Test(arguments: [
        ("http://127.0.0.1:6379", "'http://127.0.0.1:6379' is not a redis:// or redis-cluster:// URL; expected redis://[:password@]host:port[/db] or redis-cluster://[:password@]host:port,host:port"),
        ("redis://a:1,b:2", "a redis:// URL names one server; for a Redis Cluster's seeds use redis-cluster://host:port,host:port"),
        ("redis-cluster://a:1,,b:2", "an empty seed in 'a:1,,b:2'; separate seeds with one comma"),
        ("redis-cluster://a:1,b:70000", "'70000' is not a port (1-65535)"),
        ("redis-cluster://a:1/2", "a Redis Cluster has only database 0; leave out '/2'"),
        ("redis-cluster://" + (1...65).map { "h\($0):7000" }.joined(separator: ","), "65 seeds; name at most 64 (any few primaries will do: the rest are read from the slot map)"),
        ("redis://", "the redis URL names no host"),
        ("redis://h:0", "'0' is not a port (1-65535)"),
        ("redis://h/x", "'x' is not a database number; expected /0, /1, ..."),
        ("redis://h?timeout=1", "a redis URL takes no query or fragment"),
        ("redis://:@h", "the redis URL has an empty password"),
        ("redis://[::1", "an IPv6 address in a redis URL needs its closing ]"),
    ])
    func refusals(_ text: String, _ message: String) {
        guard case .failure(let error) = Configuration.RedisURL.parse(text) else { Issue.record("\(text) accepted"); return }
        #expect(error.text == message)
    }

    @Test func theLeaseDefaultsToThreeShortestIntervalsAndAtLeastOneSecond() throws {
        let fast = try Configuration.load(text: "cluster: { redis: redis://h }\nupstream: { base: http://u }\nendpoints:\n  - path: /a\n    interval: 200ms\n  - path: /b\n    interval: 2s\n", file: "c.yaml", environment: [:])
        #expect(fast.cluster?.effectiveLease(endpoints: fast.endpoints) == .seconds(1))
        let slow = try Configuration.load(text: "cluster: { redis: redis://h, node: web-1 }\nupstream: { base: http://u }\nendpoints:\n  - path: /a\n    interval: 2s\n", file: "c.yaml", environment: [:])
        #expect(slow.cluster?.effectiveLease(endpoints: slow.endpoints) == .seconds(6))
        #expect(slow.cluster?.node == "web-1" && slow.cluster?.keyPrefix == "deltacast")
        let publishOnly = try Configuration.load(text: "cluster: { redis: redis://h }\nendpoints:\n  - path: /a\n    source: publish\n", file: "c.yaml", environment: [:])
        #expect(publishOnly.cluster?.effectiveLease(endpoints: publishOnly.endpoints) == .seconds(3))
        #expect(publishOnly.cluster?.node.isEmpty == false)
    }
}


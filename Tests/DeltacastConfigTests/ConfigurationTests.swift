import Foundation
import Testing
@testable import DeltacastConfig

/// Every file in Malformed/ starts with `# expect: LINE:COLUMN: MESSAGE`, the first error the
/// proxy must report for it.
let malformedFiles: [String] = (try? FileManager.default.contentsOfDirectory(atPath: fixtures.appendingPathComponent("Malformed").path))?.filter { $0.hasSuffix(".yaml") }.sorted() ?? []

@Suite struct ConfigurationTests {
    @Test func corpusHasAtLeastFortyMalformedFiles() {
        #expect(malformedFiles.count >= 40)
    }

    @Test(arguments: malformedFiles)
    func malformedFileGetsItsExactError(_ name: String) throws {
        let text = try String(contentsOf: fixtures.appendingPathComponent("Malformed/\(name)"), encoding: .utf8)
        let firstLine = try #require(text.split(separator: "\n").first)
        let expected = try #require(firstLine.hasPrefix("# expect: ") ? String(firstLine.dropFirst(10)) : nil)
        do {
            _ = try Configuration.load(text: text, file: name, environment: testEnvironment)
            Issue.record("\(name) was accepted")
        } catch {
            let first = try #require(error.errors.first)
            #expect("\(first.location.line):\(first.location.column): \(first.message)" == expected)
            #expect(first.location.file == name)
            // The description shows the offending line and a caret under the column.
            let lines = first.description.split(separator: "\n", omittingEmptySubsequences: false)
            #expect(lines.count == 3)
            #expect(lines.last?.count == first.location.column)
        }
    }

    @Test func everyErrorIsReportedNotJustTheFirst() {
        let text = """
            listen: nowhere
            upstream: { base: http://127.0.0.1:9000, timeout: forever }
            endpoints:
              - path: /a
                intervall: 1s
              - path: /b
                diff: jsonpatch
            limits: { max_message: huge }
            """
        do {
            _ = try Configuration.load(text: text, file: "many.yaml", environment: [:])
            Issue.record("accepted")
        } catch {
            #expect(error.errors.map { "\($0.location.line):\($0.location.column)" } == ["1:9", "2:51", "5:5", "7:11", "8:24"])
        }
    }

    @Test func defaultsApplyWhenKeysAreOmitted() throws {
        let c = try Configuration.load(text: "upstream: { base: http://127.0.0.1:9000/legacy/ }\nendpoints:\n  - path: /api/users/{id}\n", file: "f", environment: [:])
        #expect(c.listen == HostPort(host: "127.0.0.1", port: 8080))
        #expect(c.upstream.base?.path == "/legacy")
        #expect(c.upstream.timeout == .seconds(5))
        #expect(c.transports == [.websocket, .sse, .longpoll])
        #expect(c.limits.journalEntries == 256)
        #expect(c.limits.journalBytes == 8 * 1024 * 1024)
        #expect(c.server.sseHeartbeat == .seconds(15))
        let endpoint = try #require(c.endpoints.first)
        #expect(endpoint.upstream.text == "/api/users/{id}")
        #expect(endpoint.interval == .seconds(1))
        #expect(endpoint.effectiveJitter == .milliseconds(100))
        #expect(endpoint.linger == .seconds(30))
        #expect(endpoint.diff == .jsonPatch)
        #expect(endpoint.parameterNames == ["id"])
    }

    @Test func exampleConfigurationDecodesEveryKey() throws {
        let text = try String(contentsOf: repositoryRoot.appendingPathComponent("config/deltacast.yaml"), encoding: .utf8)
        let c = try Configuration.load(text: text, file: "config/deltacast.yaml", environment: ["LEGACY_API_TOKEN": "t0k"])
        #expect(c.upstream.headers.first?.value == "Bearer t0k")
        #expect(c.endpoints.count == 5)
        #expect(c.upstream.budget?.description == "500/s")
        #expect(c.upstream.budgets.map(\.origin) == ["https://billing.internal:8443"] && c.upstream.budgets[0].rate.description == "50/s")
        #expect(c.upstream.budget(forOrigin: "http://127.0.0.1:9000")?.count == 500)
        #expect(c.endpoints[4].upstreamOrigin?.origin == "https://billing.internal:8443")
        #expect(c.endpoints[4].changes == .init(upstream: "https://billing.internal:8443/v2/changes?since={cursor}", every: .seconds(1),
                                                cursor: "/next", topics: "/changed/*/account"))
        #expect(c.endpoints[0].arrayKeys.first?.path == "/items")
        #expect(c.endpoints[0].arrayKeys.first?.field == "id")
        #expect(c.endpoints[0].ignore == ["/generatedAt"])
        #expect(c.endpoints[0].maxBody == 2 * 1024 * 1024)
        #expect(c.endpoints[1].upstream.text == "/v1/users/{user}/notifications")
        #expect(c.endpoints[1].params["user"] == "[0-9]+")
        #expect(c.endpoints[1].auth == .passthrough)
        #expect(c.endpoints[1].diff == .mergePatch)
        #expect(c.endpoints[2].arrayKeys.first?.path == "/groups/*/members")
        #expect(c.endpoints[3].source == .publish)
        #expect(c.cors.origins.count == 2)
        #expect(c.server.eventLoops == nil)
        // The example is the documentation: it must mention every key of the reference.
        for key in ConfigurationReference.keys {
            #expect(text.contains("\(key.name):"), "config/deltacast.yaml does not show '\(key.path)'")
        }
    }

    @Test(arguments: ["config/deltacast.yaml", "config/demo.yaml", "examples/minimal.yaml", "examples/passthrough.yaml", "examples/publish-only.yaml",
                      "examples/cluster/node1.yaml", "examples/cluster/node2.yaml", "examples/cluster/node3.yaml"])
    func everyShippedConfigurationValidates(_ path: String) throws {
        let text = try String(contentsOf: repositoryRoot.appendingPathComponent(path), encoding: .utf8)
        let configuration = try Configuration.load(text: text, file: path, environment: ["DELTACAST_ADMIN_TOKEN": "example-admin-token-0123456789"])
        if path.hasPrefix("examples/cluster/") {
            #expect(configuration.cluster?.node == "node" + path.dropFirst("examples/cluster/node".count).prefix(1))
        }
    }

    @Test func readmeReferenceMatchesTheTypedConfiguration() throws {
        let readme = try String(contentsOf: repositoryRoot.appendingPathComponent("README.md"), encoding: .utf8)
        #expect(readme.contains(ConfigurationReference.markdown), "README's configuration reference is out of date: paste `swift run deltacast check --reference`")
    }

    /// Every limit and timeout in the reference (a size, rate, duration or count, except the
    /// schedule and hint values below) has a row in the limits table of Reliability.md (the DocC catalogue), and the test it
    /// names exists in the file it names.
    @Test func everyLimitIsReachedByATestNamedInTheCatalogue() throws {
        let catalogue = try String(contentsOf: repositoryRoot.appendingPathComponent("Sources/deltacast/Deltacast.docc/Reliability.md"), encoding: .utf8)
        let table = try #require(catalogue.range(of: "<!-- limits:begin -->").flatMap { begin in
            catalogue.range(of: "<!-- limits:end -->").map { catalogue[begin.upperBound..<$0.lowerBound] }
        }, "Reliability.md has no limits table")
        var cited: [String: (file: String, test: String)] = [:]
        for line in table.split(separator: "\n") where line.hasPrefix("| `") {
            let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "`")) }
            try #require(cells.count == 3, "\(line)")
            for key in cells[0].components(separatedBy: "`, `") { cited[key] = (cells[1], cells[2]) }
        }
        let notLimits: Set = ["server.event_loops", "server.sse_retry", "endpoints[].interval", "endpoints[].jitter", "endpoints[].changes.every",
                                 "endpoints[].interval.min", "endpoints[].interval.max"]
        let limitTypes: Set = ["duration", "size", "integer", "rate", "integer or `auto`"]
        let limits = ConfigurationReference.keys.filter { limitTypes.contains($0.type) && !notLimits.contains($0.path) }.map(\.path)
        #expect(limits.count > 30)
        for key in limits {
            guard let (file, test) = cited[key] else {
                Issue.record("the limits table in Reliability.md has no test for \(key)")
                continue
            }
            let source = try? String(contentsOf: repositoryRoot.appendingPathComponent(file), encoding: .utf8)
            #expect(source?.contains(test) == true, "\(key): \(test) is not in \(file)")
        }
        #expect(Set(cited.keys).subtracting(limits).isEmpty, "rows for keys that are not limits: \(Set(cited.keys).subtracting(limits))")
    }

    @Test func valueParsers() {
        #expect(parseDuration("250ms") == .milliseconds(250))
        #expect(parseDuration("2m") == .seconds(120))
        #expect(parseDuration("1h") == .seconds(3600))
        #expect(parseDuration("1.5s") == nil)
        #expect(parseSize("512B") == 512)
        #expect(parseSize("64KiB") == 65536)
        #expect(parseSize("8MiB") == 8 << 20)
        #expect(parseSize("99999999999GiB") == nil)
        #expect(parseHostPort("[::1]:8080") == HostPort(host: "::1", port: 8080))
        #expect(parseHostPort(":9000") == HostPort(host: "0.0.0.0", port: 9000))
        #expect(parseURL("https://api.example.com")?.port == 443)
        #expect(parseURL("http://user@host/") == nil)
        #expect(formatDuration(.milliseconds(1500)) == "1500ms")
        #expect(formatSize(1 << 20) == "1MiB")
    }
}

extension Configuration.Endpoint {
    var parameterNames: [String] { path.parameterNames }
}

@Suite struct AuthorizationRuleTests {
    @Test func precedenceAndNormalForm() throws {
        #expect(try AuthorizationRule.parse("params.user == claims.sub || 'admin' in claims.roles && !claims.banned").description
                == "params.user == claims.sub || \"admin\" in claims.roles && !claims.banned")
        #expect(try AuthorizationRule.parse("claims[\"https://x.test/roles\"] != null") == .compare(.reference(root: .claims, path: ["https://x.test/roles"]), .notEqual, .null))
        #expect(try AuthorizationRule.parse("query.currency == 'EUR'").parameterNames == [])
        #expect(try AuthorizationRule.parse("params.a == params.b").parameterNames == ["a", "b"])
    }

    /// What `deltacast check` prints parses back to the same rule. FuzzAllow found the first
    /// two failing: 18 negations printed as `!(!(…))` nested past the 32-level limit, and a
    /// long `&&` chain printed a parenthesis per operator.
    @Test(arguments: [
        String(repeating: "!", count: 18) + "2",
        (1...40).map { "claims.c\($0)" }.joined(separator: " && "),
        "'a\\\"b' in claims[\"https://x.test/roles\"] || !(claims.a || claims.b) && (claims.c || claims.d)",
        "claims.a || (claims.b || claims.c)",
        "!(claims.a && claims.b) && claims[\"\"] == -1.5",
    ])
    func normalFormParsesBackToTheSameRule(_ text: String) throws {
        let rule = try AuthorizationRule.parse(text)
        #expect(try AuthorizationRule.parse(rule.description) == rule)
    }

    @Test(arguments: [
        ("params.user = claims.sub", 12, "'=' is not an operator; use '==' to compare"),
        ("params.user ==", 14, "expected a value (params.NAME, claims.NAME, query.NAME, a string or a number), found the end of the expression"),
        ("claims", 6, "'claims' needs a member, e.g. claims.sub"),
        ("params.user.x == 1", 13, "params.user is a string; it has no members"),
        ("(params.user == claims.sub", 26, "expected ')'"),
        ("claims.sub == 'x", 14, "unterminated string"),
        ("claims.sub == claims.a claims.b", 23, "unexpected 'c'; expected &&, || or the end of the expression"),
        ("env.HOME == 'x'", 0, "unknown name 'env'; a reference starts with params., claims. or query."),
    ])
    func errorsNameTheCharacter(_ text: String, _ offset: Int, _ message: String) {
        #expect(throws: AuthorizationRule.ParseError(offset: offset, message: message)) { try AuthorizationRule.parse(text) }
    }

    @Test func depthAndLengthAreBounded() {
        #expect(throws: AuthorizationRule.ParseError.self) { try AuthorizationRule.parse(String(repeating: "(", count: 40) + "claims.a") }
        #expect(throws: AuthorizationRule.ParseError.self) { try AuthorizationRule.parse(String(repeating: "!", count: 40) + "claims.a") }
        #expect(throws: AuthorizationRule.ParseError.self) { try AuthorizationRule.parse(String(repeating: "claims.a || ", count: 100) + "claims.a") }
    }

    @Test func rates() {
        #expect(parseRate("20/s") == Rate(count: 20, period: .seconds(1)))
        #expect(parseRate("30/m")?.description == "30/m")
        #expect(parseRate("0/s") == nil)
        #expect(parseRate("5/d") == nil)
        #expect(parseRate("5") == nil)
    }
}

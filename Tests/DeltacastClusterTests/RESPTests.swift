import DeltacastHub
import Testing
@testable import DeltacastCluster

/// The RESP2 codec, byte by byte and at every split point, and every malformed reply with the
/// error it gets.
@Suite struct RESPDecoderTests {
    /// Replies as Redis writes them, and what they decode to.
    static let replies: [(bytes: String, value: RESPValue)] = [
        ("+OK\r\n", .simple("OK")),
        ("-NOSCRIPT No matching script\r\n", .error("NOSCRIPT No matching script")),
        (":-42\r\n", .integer(-42)),
        ("$5\r\nhe\r\no\r\n", .bulk(Array("he\r\no".utf8))),
        ("$0\r\n\r\n", .bulk([])),
        ("$-1\r\n", .bulk(nil)),
        ("*-1\r\n", .array(nil)),
        ("*0\r\n", .array([])),
        ("*3\r\n$7\r\nmessage\r\n$17\r\ndeltacast:changes\r\n$11\r\nabc e1x2 17\r\n",
         .array([.bulk(Array("message".utf8)), .bulk(Array("deltacast:changes".utf8)), .bulk(Array("abc e1x2 17".utf8))])),
        ("*2\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\ne\r\n$2\r\n{}\r\n$-1\r\n",
         .array([.array([.bulk(Array("1-0".utf8)), .array([.bulk([101]), .bulk(Array("{}".utf8))])]), .bulk(nil)])),
    ]

    func decodeAll(_ bytes: [UInt8], splitAt points: [Int]) throws -> [RESPValue] {
        var decoder = RESPDecoder()
        var values: [RESPValue] = []
        var start = 0
        for point in points + [bytes.count] {
            decoder.append(bytes[start..<point])
            start = point
            while let value = try decoder.next() { values.append(value) }
        }
        #expect(decoder.bufferedByteCount == 0)
        return values
    }

    @Test func everyReplyDecodesWhereverTheBytesSplit() throws {
        let stream = Array(Self.replies.map(\.bytes).joined().utf8)
        let expected = Self.replies.map(\.value)
        #expect(try decodeAll(stream, splitAt: []) == expected)
        for point in 0...stream.count { #expect(try decodeAll(stream, splitAt: [point]) == expected, "split at \(point)") }
        #expect(try decodeAll(stream, splitAt: Array(0..<stream.count)) == expected)   // a byte at a time
        for (bytes, value) in Self.replies { #expect(RESPEncoder.encode(value) == Array(bytes.utf8)) }
    }

    @Test func aCommandIsAnArrayOfBulkStrings() {
        #expect(RESPEncoder.command(["SET", "k", "a b"]) == Array("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\na b\r\n".utf8))
        #expect(RESPEncoder.command([[0, 13, 10]]) == Array("*1\r\n$3\r\n".utf8) + [0, 13, 10] + [13, 10])
    }

    @Test(arguments: [
        ("%2\r\n", "unknown type byte 0x25 (RESP3 or not Redis?)"),
        (":12a\r\n", "'12a' is not an integer"),
        (":\r\n", "'' is not an integer"),
        ("$-5\r\n", "a bulk length of -5"),
        ("*-2\r\n", "an array length of -2"),
        ("$3\r\nabcXY", "a bulk string not ended by CRLF"),
        ("+OK\rX", "a CR not followed by LF"),
        ("$1048577\r\n", "a bulk string of 1048577 bytes (limit 1048576)"),
        ("*1000001\r\n", "an array of 1000001 elements (limit 1000000)"),
        ("*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", "arrays nested deeper than 3"),
        ("+" + String(repeating: "a", count: 2000), "a line longer than 1024 bytes"),
    ])
    func malformedRepliesAreErrorsNotAllocations(_ bytes: String, _ message: String) {
        var decoder = RESPDecoder(limits: .init(maximumBulk: 1 << 20, maximumElements: 1_000_000, maximumDepth: 3, maximumLine: 1024))
        decoder.append(Array(bytes.utf8))
        #expect(throws: RESPError(message)) { try decoder.next() }
        // The error sticks: a connection that saw it must close, not guess where the next reply starts.
        decoder.append(Array("+OK\r\n".utf8))
        #expect(throws: RESPError(message)) { try decoder.next() }
    }

    @Test func repliesAccessors() {
        #expect(RESPValue.bulk(Array("17".utf8)).integer == 17)
        #expect(RESPValue.integer(3).integer == 3)
        #expect(RESPValue.simple("x").text == "x")
        #expect(RESPValue.bulk(nil).isNil && RESPValue.array(nil).isNil && !RESPValue.array([]).isNil)
        #expect(RESPValue.array([.integer(1)]).elements == [.integer(1)])
    }
}

/// The scripts are what Redis runs: their SHA-1 must be the one `EVALSHA` names.
@Suite struct ClusterScriptTests {
    @Test func scriptNamesAreTheirSHA1() {
        #expect(ClusterScript.allCases.count == 8)
        for script in ClusterScript.allCases { #expect(script.sha.count == 40 && script.sha.allSatisfy { $0.isHexDigit }) }
        #expect(Set(ClusterScript.allCases.map(\.sha)).count == 8)
    }

    @Test func upstreamProblemsRoundTripThroughRedisAndOddTextIsNoProblem() {
        for problem in [UpstreamProblem(kind: .status, http: 503, message: "upstream answered 503"),
                        UpstreamProblem(kind: .timeout, http: nil, message: "no answer within 5000 ms"),
                        UpstreamProblem(kind: .forbidden, http: 401, message: "the upstream refused these credentials (401)"),
                        UpstreamProblem(kind: .invalidBody, http: 200, message: "upstream body is not valid JSON: x y z")] {
            #expect(Cluster.problem(decoding: Cluster.encode(problem)) == problem)
        }
        for text in ["", "status", "status 503", "melted 500 it broke", "\u{0} - -"] {
            #expect(Cluster.problem(decoding: text) == nil, "\(text)")
        }
    }

    @Test func topicTagsAreHashTagsAndStable() {
        let tag = Cluster.tag("/api/users/7/notifications #0a1b2c")
        #expect(tag.count == 16 && tag.allSatisfy { $0.isHexDigit })
        #expect(tag == Cluster.tag("/api/users/7/notifications #0a1b2c"))
        #expect(tag != Cluster.tag("/api/users/8/notifications #0a1b2c"))
        // A key holding braces cannot break the hash tag: the tag is hex.
        #expect(!Cluster.tag("/{x}").contains("{"))
    }
}

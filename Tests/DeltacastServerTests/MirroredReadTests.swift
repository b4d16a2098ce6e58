import DeltacastHub
import DeltacastWire
import Testing
@testable import DeltacastServer

/// A plain GET of a mirrored topic, decided with no socket: the reply for each state of the
/// topic and each request header that matters.
@Suite struct MirroredReadTests {
    let settings = MirroredRead.Settings(longPoll: true, maxWait: 30_000, firstPollWait: 7_000)
    let cursor = Cursor(epoch: "e1", seq: 7)
    var current: MirroredRead.TopicState { .current(cursor: cursor, body: Array(#"{"a":1}"#.utf8), contentType: "application/json", stale: false) }

    func read(_ headers: String = "", settings: MirroredRead.Settings? = nil) throws -> MirroredRead {
        var parser = HTTPRequestParser()
        parser.append(Array("GET /api/prices HTTP/1.1\r\nHost: x\r\n\(headers)\r\n".utf8)[...])
        guard case .head(let request) = try parser.next() else { throw HTTPParseError(status: 400, reason: "no head") }
        return MirroredRead(request: request, topicName: "/api/prices", settings: settings ?? self.settings)
    }

    func response(_ reply: MirroredRead.Reply) -> RoutedResponse? {
        if case .respond(let response) = reply { return response }
        return nil
    }

    @Test func aCurrentStateIs200WithItsCursorAsETag() throws {
        let (reply, counted) = try read().reply(current)
        let answer = try #require(response(reply))
        #expect(answer.status == 200 && answer.body == Array(#"{"a":1}"#.utf8))
        #expect(answer.headers["ETag"] == "\"\(cursor)\"" && answer.headers["Content-Type"] == "application/json")
        #expect(answer.headers["Cache-Control"] == "no-cache" && answer.headers["Deltacast-Stale"] == nil)
        #expect(counted?.sent == 7 && counted?.full == 7)
        let stale = try read().reply(.current(cursor: cursor, body: [], contentType: "application/json", stale: true)).0
        #expect(response(stale)?.headers["Deltacast-Stale"] == "true")
    }

    @Test func aMatchingIfNoneMatchIs304() throws {
        for header in ["\"\(cursor)\"", "W/\"\(cursor)\"", "\"other\", \"\(cursor)\"", "*"] {
            let (reply, counted) = try read("If-None-Match: \(header)\r\n").reply(current)
            let answer = try #require(response(reply))
            #expect(answer.status == 304 && answer.body.isEmpty && answer.headers["Content-Type"] == nil, "\(header)")
            #expect(counted?.sent == 0 && counted?.full == 7)
        }
        let other = try read("If-None-Match: \"e1-6\"\r\n").reply(current).0
        #expect(response(other)?.status == 200)
    }

    @Test func preferWaitHoldsA304UpToMaxWait() throws {
        let (reply, counted) = try read("If-None-Match: \"\(cursor)\"\r\nPrefer: wait=5\r\n").reply(current)
        guard case .hold(.mirrored, let at, let milliseconds) = reply else { Issue.record("\(reply)"); return }
        #expect(at == cursor && milliseconds == 5_000)
        #expect(counted?.full == 0)   // the held request's answer carries no full body to count
        guard case .hold(_, _, let capped) = try read("If-None-Match: \"\(cursor)\"\r\nPrefer: wait=600\r\n").reply(current).0 else { Issue.record("no hold"); return }
        #expect(capped == 30_000)
        // Without long-poll enabled, or without a match, there is nothing to hold.
        let disabled = MirroredRead.Settings(longPoll: false, maxWait: 30_000, firstPollWait: 7_000)
        #expect(try response(read("If-None-Match: \"\(cursor)\"\r\nPrefer: wait=5\r\n", settings: disabled).reply(current).0)?.status == 304)
        #expect(try response(read("Prefer: wait=5\r\n").reply(current).0)?.status == 200)
    }

    @Test func noStateYetWaitsForTheFirstPollOrTellsWhy() throws {
        guard case .hold(.cold, nil, 7_000) = try read().reply(.firstPollPending).0 else { Issue.record("no cold hold"); return }
        let timeout = try #require(response(read().reply(.failing(UpstreamProblem(kind: .timeout, http: nil, message: "no answer in 5s"))).0))
        #expect(timeout.status == 504 && timeout.headers["Retry-After"] == "1")
        #expect(String(decoding: timeout.body, as: UTF8.self).contains("\"upstream_timeout\""))
        let failing = try #require(response(read().reply(.failing(UpstreamProblem(kind: .status, http: 500, message: "HTTP 500"))).0))
        #expect(failing.status == 502 && String(decoding: failing.body, as: UTF8.self).contains("\"upstream_error\""))
        let forbidden = try #require(response(read().reply(.failing(UpstreamProblem(kind: .forbidden, http: 401, message: "denied"))).0))
        #expect(forbidden.status == 401 && forbidden.headers["Retry-After"] == nil)
        let unpublished = try #require(response(read().reply(.unpublished).0))
        #expect(unpublished.status == 404 && String(decoding: unpublished.body, as: UTF8.self).contains("nothing has been published to /api/prices yet"))
    }
}

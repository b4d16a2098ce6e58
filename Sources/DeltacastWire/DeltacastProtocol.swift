import DeltacastJSON

/// A topic cursor, `EPOCH-SEQ` (DESIGN.md: epoch is 4–12 characters of `[a-z0-9]`, seq a
/// decimal integer starting at 1).
public struct Cursor: Sendable, Hashable, CustomStringConvertible {
    /// The topic's history this cursor belongs to.
    public var epoch: String
    /// The position in that history.
    public var seq: Int

    /// Creates a cursor.
    public init(epoch: String, seq: Int) { self.epoch = epoch; self.seq = seq }

    /// Parses `EPOCH-SEQ`; nil when it is not one.
    public init?(_ text: some StringProtocol) {
        // By bytes: every valid cursor is ASCII, and this runs on every poll and resume.
        let utf8 = Substring(text).utf8
        guard let dash = utf8.lastIndex(of: UInt8(ascii: "-")) else { return nil }
        let epoch = utf8[..<dash], digits = utf8[utf8.index(after: dash)...]
        guard (4...12).contains(epoch.count), (1...18).contains(digits.count) else { return nil }
        for byte in epoch {
            guard (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x30 && byte <= 0x39) else { return nil }
        }
        var seq = 0
        for digit in digits {
            guard digit >= 0x30 && digit <= 0x39 else { return nil }
            seq = seq * 10 + Int(digit - 0x30)   // at most 18 digits: no overflow
        }
        self.epoch = String(decoding: epoch, as: UTF8.self)
        self.seq = seq
    }

    /// `EPOCH-SEQ`.
    public var description: String { "\(epoch)-\(seq)" }

    /// A `Last-Event-ID` (or `?last_event_id=`) value: one cursor per topic, comma-separated,
    /// in the order the topics were named; nil where a piece is not a cursor. Empty for "".
    public static func list(lastEventID value: String) -> [Cursor?] {
        guard !value.isEmpty else { return [] }
        return value.split(separator: ",", omittingEmptySubsequences: false).map { Cursor($0) }
    }
}

/// The Deltacast v1 events, serialised exactly as DESIGN.md shows them: one JSON object,
/// the same bytes on every transport.
public enum DeltacastEvent {
    /// `{"type":"snapshot","topic":T,"cursor":C,"data":D}`; `data` is the serialised document.
    /// With `digest` (an endpoint's `digest: true`), `"digest":"HEX"` follows `data`.
    public static func snapshot(topic: String, cursor: Cursor, data: [UInt8], digest: String? = nil) -> [UInt8] {
        var output = header("snapshot", topic)
        output += Array(",\"cursor\":\"\(cursor)\",\"data\":".utf8)
        output += data
        if let digest { output += Array(",\"digest\":\"\(digest)\"".utf8) }
        output.append(0x7D)
        return output
    }

    /// `{"type":"patch",...,"patch":[...]}` (or `"merge":{...}` when `merge`).
    /// With `digest`, `"digest":"HEX"` (of the document the patch results in) follows.
    public static func patch(topic: String, cursor: Cursor, base: Cursor, patch: [UInt8], merge: Bool = false, digest: String? = nil) -> [UInt8] {
        var output = header("patch", topic)
        output += Array(",\"cursor\":\"\(cursor)\",\"base\":\"\(base)\",\"\(merge ? "merge" : "patch")\":".utf8)
        output += patch
        if let digest { output += Array(",\"digest\":\"\(digest)\"".utf8) }
        output.append(0x7D)
        return output
    }

    /// `{"type":"status","topic":T,"upstream":"error","http":N,"message":M,"stale":true}`, or
    /// `"upstream":"ok"` when `error` is nil.
    public static func status(topic: String, error: (http: Int?, message: String)?) -> [UInt8] {
        var output = header("status", topic)
        if let error {
            output += Array(",\"upstream\":\"error\"".utf8)
            if let http = error.http { output += Array(",\"http\":\(http)".utf8) }
            output += Array(",\"message\":".utf8)
            JSONValue.writeString(error.message, to: &output)
            output += Array(",\"stale\":true}".utf8)
        } else {
            output += Array(",\"upstream\":\"ok\"}".utf8)
        }
        return output
    }

    /// `{"type":"status","topic":T,"cluster":"unavailable"}` (Redis cannot be reached: what the
    /// node holds may be behind) or `"cluster":"ok"` once it can again.
    public static func clusterStatus(topic: String, available: Bool) -> [UInt8] {
        header("status", topic) + Array(",\"cluster\":\"\(available ? "ok" : "unavailable")\"}".utf8)
    }

    /// Error codes of `error` events.
    public enum ErrorCode: String, Sendable {
        case forbidden, notFound = "not_found", badRequest = "bad_request", tooMany = "too_many", expired
    }

    /// `{"type":"error","topic":T,"code":C,"message":M}` (`topic` omitted when nil).
    public static func error(topic: String?, code: ErrorCode, message: String) -> [UInt8] {
        var output: [UInt8] = Array("{\"type\":\"error\"".utf8)
        if let topic { output += Array(",\"topic\":".utf8); JSONValue.writeString(topic, to: &output) }
        output += Array(",\"code\":\"\(code.rawValue)\",\"message\":".utf8)
        JSONValue.writeString(message, to: &output)
        output.append(0x7D)
        return output
    }

    private static func header(_ type: String, _ topic: String) -> [UInt8] {
        var output: [UInt8] = Array("{\"type\":\"\(type)\",\"topic\":".utf8)
        JSONValue.writeString(topic, to: &output)
        return output
    }
}

/// A message a client sends on the multiplexed WebSocket.
public enum ClientMessage: Sendable, Equatable {
    /// Start receiving a topic, optionally resuming after `since` (an unparseable or empty
    /// `since` counts as none: the subscription starts with a snapshot).
    case subscribe(topic: String, since: Cursor?)
    /// Stop receiving a topic.
    case unsubscribe(topic: String)
    /// A fresh credential for the connection.
    case auth(token: String)
    /// The client's state of a topic did not match a change's `digest` (at `cursor`): it is
    /// resubscribing without `since`. The proxy counts it (`deltacast_client_drift_total`).
    case drift(topic: String, cursor: Cursor?)

    /// Parses one text message; the error says what is wrong, for a `bad_request` event.
    public static func parse(_ bytes: [UInt8]) -> Result<ClientMessage, ClientMessageError> {
        let value: JSONValue
        do {
            value = try JSONParser.parse(bytes, limits: .init(maximumDepth: 16, maximumBytes: 64 * 1024))
        } catch {
            return .failure(ClientMessageError(topic: nil, message: "message is not valid JSON: \(error)"))
        }
        guard case .object(let object) = value else {
            return .failure(ClientMessageError(topic: nil, message: "message must be a JSON object"))
        }
        guard case .string(let type)? = object["type"] else {
            return .failure(ClientMessageError(topic: nil, message: "message needs a string \"type\""))
        }
        var topic: String?
        if let field = object["topic"] {
            guard case .string(let text) = field else { return .failure(ClientMessageError(topic: nil, message: "\"topic\" must be a string")) }
            topic = text
        }
        switch type {
        case "subscribe", "unsubscribe":
            guard let topic, topic.hasPrefix("/") else {
                return .failure(ClientMessageError(topic: topic, message: "\(type) needs a \"topic\" path starting with /"))
            }
            if type == "unsubscribe" { return .success(.unsubscribe(topic: topic)) }
            var since: Cursor?
            switch object["since"] {
            case nil, .null?: break
            case .string(let text)?: since = Cursor(text)
            default: return .failure(ClientMessageError(topic: topic, message: "\"since\" must be a cursor string"))
            }
            return .success(.subscribe(topic: topic, since: since))
        case "drift":
            guard let topic, topic.hasPrefix("/") else {
                return .failure(ClientMessageError(topic: topic, message: "drift needs a \"topic\" path starting with /"))
            }
            var cursor: Cursor?
            if case .string(let text)? = object["cursor"] { cursor = Cursor(text) }
            return .success(.drift(topic: topic, cursor: cursor))
        case "auth":
            guard case .string(let token)? = object["token"] else {
                return .failure(ClientMessageError(topic: nil, message: "auth needs a string \"token\""))
            }
            return .success(.auth(token: token))
        default:
            return .failure(ClientMessageError(topic: topic, message: "unknown message type \"\(type)\"; expected subscribe, unsubscribe, auth or drift"))
        }
    }
}

/// Why a client message was refused.
public struct ClientMessageError: Error, Sendable, Equatable {
    /// The topic it named, if it named one.
    public var topic: String?
    /// What is wrong.
    public var message: String
}

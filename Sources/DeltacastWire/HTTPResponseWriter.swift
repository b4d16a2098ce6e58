/// Serializes HTTP/1.1 responses: a status line, headers, and a body framed by
/// `Content-Length` or chunked transfer coding.
///
/// ```
/// HTTP/1.1 200 OK\r\n
/// Date: Mon, 23 Nov 2026 10:00:00 GMT\r\n
/// Content-Length: 2\r\n
/// \r\n
/// {}
/// ```
public enum HTTPResponseWriter {
    /// The standard reason phrase of a status code.
    public static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 100: "Continue"
        case 101: "Switching Protocols"
        case 200: "OK"
        case 204: "No Content"
        case 304: "Not Modified"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 413: "Content Too Large"
        case 414: "URI Too Long"
        case 417: "Expectation Failed"
        case 426: "Upgrade Required"
        case 429: "Too Many Requests"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        case 505: "HTTP Version Not Supported"
        default: "Status \(status)"
        }
    }

    /// A whole response with a `Content-Length` body (also used for bodyless statuses, which
    /// get no `Content-Length` when 1xx, 204 or 304).
    ///
    /// - Parameters:
    ///   - status: the status code.
    ///   - headers: fields to send, in order (`Content-Length` is added here).
    ///   - body: the body bytes; for HEAD, pass `headOnly` to send only the length.
    ///   - date: the `Date` field value (from ``HTTPDate``), or nil to omit it.
    ///   - headOnly: a response to HEAD: the length of `body` is announced, the bytes not sent.
    public static func response(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: some Collection<UInt8> = [UInt8](),
                                date: String? = nil, headOnly: Bool = false) -> [UInt8] {
        response(status: status, headers: headers, body: Array(body), date: date, headOnly: headOnly)
    }

    /// ``response(status:headers:body:date:headOnly:)`` for an array body: one allocation,
    /// sized for the head and the body, and one copy of the body.
    public static func response(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8],
                                date: String? = nil, headOnly: Bool = false) -> [UInt8] {
        let bodyless = status < 200 || status == 204 || status == 304
        let sendsBody = !bodyless && !headOnly
        var output = statusLine(status, headers: headers, date: date, reserving: sendsBody ? body.count : 0)
        if !bodyless {
            append("Content-Length: ", to: &output)
            appendDecimal(body.count, to: &output)
            output.append(contentsOf: [0x0D, 0x0A])
        }
        output.append(contentsOf: [0x0D, 0x0A])
        if sendsBody { output.append(contentsOf: body) }
        return output
    }

    /// A response head announcing a chunked body; follow it with ``chunk(_:)`` and ``lastChunk``.
    public static func chunkedHead(status: Int, headers: HTTPHeaders = HTTPHeaders(), date: String? = nil) -> [UInt8] {
        var output = statusLine(status, headers: headers, date: date)
        append("Transfer-Encoding: chunked\r\n\r\n", to: &output)
        return output
    }

    /// One chunk: hex size, CRLF, data, CRLF. An empty `data` yields nothing (it would end the body).
    public static func chunk(_ data: some Collection<UInt8>) -> [UInt8] {
        guard !data.isEmpty else { return [] }
        var output = Array(String(data.count, radix: 16).utf8)
        output.append(contentsOf: [0x0D, 0x0A])
        output.append(contentsOf: data)
        output.append(contentsOf: [0x0D, 0x0A])
        return output
    }

    /// A head with no framing header added: for `101 Switching Protocols` and for streams
    /// whose body ends when the connection closes (`Connection: close` in `headers`).
    public static func head(status: Int, headers: HTTPHeaders = HTTPHeaders(), date: String? = nil) -> [UInt8] {
        var output = statusLine(status, headers: headers, date: date)
        output.append(contentsOf: [0x0D, 0x0A])
        return output
    }

    /// The chunk that ends a chunked body (no trailers).
    public static let lastChunk: [UInt8] = Array("0\r\n\r\n".utf8)

    private static func statusLine(_ status: Int, headers: HTTPHeaders, date: String?, reserving bodyCount: Int = 0) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(192 + bodyCount)
        append("HTTP/1.1 ", to: &output)
        appendDecimal(status, to: &output)
        output.append(0x20)
        append(reasonPhrase(status), to: &output)
        output.append(contentsOf: [0x0D, 0x0A])
        if let date {
            append("Date: ", to: &output)
            append(date, to: &output)
            output.append(contentsOf: [0x0D, 0x0A])
        }
        for (name, value) in headers {
            append(name, to: &output)
            output.append(contentsOf: [0x3A, 0x20])
            append(value, to: &output)
            output.append(contentsOf: [0x0D, 0x0A])
        }
        return output
    }

    private static func append(_ text: String, to output: inout [UInt8]) { output.append(contentsOf: text.utf8) }

    /// A non-negative integer's decimal digits, with no intermediate String.
    private static func appendDecimal(_ value: Int, to output: inout [UInt8]) {
        guard value >= 0 else { return append(String(value), to: &output) }
        if value >= 10 { appendDecimal(value / 10, to: &output) }
        output.append(UInt8(truncatingIfNeeded: 0x30 + value % 10))
    }
}

/// The `Date` header value (RFC 9110 IMF-fixdate), formatted at most once per second.
public struct HTTPDate: Sendable {
    private var cachedSecond: Int = .min
    private var cached = ""

    /// Creates an empty cache.
    public init() {}

    /// The value for `secondsSince1970`, reformatted only when the second changes.
    public mutating func value(secondsSince1970: Int) -> String {
        if secondsSince1970 != cachedSecond {
            cachedSecond = secondsSince1970
            cached = Self.format(secondsSince1970: secondsSince1970)
        }
        return cached
    }

    /// Formats `Sun, 06 Nov 1994 08:49:37 GMT`.
    public static func format(secondsSince1970: Int) -> String {
        let days = secondsSince1970 >= 0 ? secondsSince1970 / 86400 : (secondsSince1970 - 86399) / 86400
        let secondOfDay = secondsSince1970 - days * 86400
        let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][((days % 7) + 7) % 7]
        // Civil from days (Howard Hinnant's algorithm).
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthPrime = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthPrime + 2) / 5 + 1
        let month = monthPrime < 10 ? monthPrime + 3 : monthPrime - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(weekday), \(two(day)) \(months[month - 1]) \(year) \(two(secondOfDay / 3600)):\(two(secondOfDay / 60 % 60)):\(two(secondOfDay % 60)) GMT"
    }
}

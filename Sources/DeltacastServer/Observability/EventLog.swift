import DeltacastBase
public import DeltacastConfig
import DeltacastLoop
#if canImport(Glibc)
import Glibc
#endif

/// Structured logs: one JSON object per line on standard output, `{"time":...,"level":...,
/// "event":...}` then the event's fields (connection id, topic, transport, reason, code...).
/// Lines below `logging.level` are not built at all. Nothing a client sends as a credential is
/// ever a field: request targets are logged with every query value blanked except `topic` and
/// `since`, and no header value is logged.
public struct EventLog: Sendable {
    /// The lowest level written.
    public let level: LogLevel

    /// A log writing `level` and above.
    public init(level: LogLevel) { self.level = level }

    /// Whether `level` is written.
    public func enabled(_ level: LogLevel) -> Bool { level >= self.level }

    /// Writes one line when `level` is enabled. Values are strings or integers.
    public func log(_ level: LogLevel, _ event: String, _ fields: KeyValuePairs<String, LogValue> = [:]) {
        guard enabled(level) else { return }
        var line = "{\"time\":\"" + Self.timestamp() + "\",\"level\":\"\(level.rawValue)\",\"event\":" + Self.quoted(event)
        for (key, value) in fields {
            line += ",\"\(key)\":"
            switch value {
            case .string(let text): line += Self.quoted(text)
            case .int(let number): line += String(number)
            }
        }
        line += "}\n"
        _ = line.utf8CString.withUnsafeBufferPointer { Glibc.write(1, $0.baseAddress, $0.count - 1) }
    }

    /// A request target safe to log: the path, and of the query only `topic` and `since`
    /// values (others, such as `ticket` or `token`, become `…`).
    static func redacted(_ target: String) -> String {
        guard let mark = target.firstIndex(of: "?") else { return target }
        let query = target[target.index(after: mark)...].split(separator: "&").map { pair -> String in
            let name = pair.prefix { $0 != "=" }
            return name == "topic" || name == "since" || !pair.contains("=") ? String(pair) : name + "=…"
        }
        return String(target[..<mark]) + "?" + query.joined(separator: "&")
    }

    static func quoted(_ text: String) -> String { String(decoding: jsonString(text), as: UTF8.self) }

    /// UTC, milliseconds: `2026-11-23T17:02:41.027Z`.
    static func timestamp() -> String { WallClock.timestamp() }
}

/// A log field's value.
public enum LogValue: Sendable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral {
    case string(String), int(Int)
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
}

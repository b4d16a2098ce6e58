#if canImport(Glibc)
import Glibc
#endif

// Value parsers: public, for the command line and the modules above reuse them.

/// Parses `250ms`, `5s`, `2m`, `1h` (a non-negative integer and a unit).
public func parseDuration(_ text: String) -> Duration? {
    let digits = text.prefix { $0.isASCII && $0.isNumber }
    guard !digits.isEmpty, digits.count <= 9, let number = Int64(digits) else { return nil }
    switch text.dropFirst(digits.count) {
    case "ms": return .milliseconds(number)
    case "s": return .seconds(number)
    case "m": return .seconds(number * 60)
    case "h": return .seconds(number * 3600)
    default: return nil
    }
}

/// Parses `512B`, `64KiB`, `8MiB`, `1GiB` (also `KB`/`MB`/`GB`, powers of 1000, and a bare
/// number of bytes).
public func parseSize(_ text: String) -> Int? {
    let digits = text.prefix { $0.isASCII && $0.isNumber }
    guard !digits.isEmpty, digits.count <= 12, let number = Int(digits) else { return nil }
    let units: [Substring: Int] = ["": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30,
                                   "KB": 1000, "MB": 1_000_000, "GB": 1_000_000_000]
    guard let factor = units[text.dropFirst(digits.count)] else { return nil }
    let (product, overflow) = number.multipliedReportingOverflow(by: factor)
    return overflow || product > 1 << 40 ? nil : product
}

/// Parses `host:port`, `[v6]:port` or `:port` (all interfaces).
public func parseHostPort(_ text: String) -> HostPort? {
    var host: Substring
    var portText: Substring
    if text.hasPrefix("[") {
        guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
        host = text[text.index(after: text.startIndex)..<close]
        portText = text[text.index(close, offsetBy: 2)...]
        guard host.contains(":") else { return nil }
    } else {
        guard let colon = text.lastIndex(of: ":") else { return nil }
        host = text[..<colon]
        portText = text[text.index(after: colon)...]
        if host.contains(":") { return nil }
        if host.isEmpty { host = "0.0.0.0" }
    }
    guard !portText.isEmpty, portText.allSatisfy({ $0.isASCII && $0.isNumber }), let port = Int(portText), port <= 65535,
          host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || ".-:_".contains($0)) }) else { return nil }
    return HostPort(host: String(host), port: port)
}

/// Parses an absolute `http`/`https` URL without query or fragment.
public func parseURL(_ text: String) -> URLValue? {
    let scheme: String
    if text.hasPrefix("http://") { scheme = "http" } else if text.hasPrefix("https://") { scheme = "https" } else { return nil }
    let rest = text.dropFirst(scheme.count + 3)
    guard !rest.contains("?"), !rest.contains("#"), !rest.contains(" ") else { return nil }
    let authority = rest.prefix { $0 != "/" }
    var path = String(rest.dropFirst(authority.count))
    while path.hasSuffix("/") { path.removeLast() }
    let defaultPort = scheme == "http" ? 80 : 443
    let hostPort: HostPort?
    if authority.hasSuffix("]") || !authority.contains(":") {
        var host = String(authority)
        if host.hasPrefix("[") { host = String(host.dropFirst().dropLast()) }
        hostPort = host.isEmpty ? nil : HostPort(host: host, port: defaultPort)
    } else {
        hostPort = parseHostPort(String(authority))
    }
    guard let hostPort, !hostPort.host.isEmpty, !authority.contains("@") else { return nil }
    var description = text
    while description.hasSuffix("/") { description.removeLast() }
    return URLValue(scheme: scheme, host: hostPort.host, port: hostPort.port, path: path, description: description)
}

/// True for an RFC 9110 token (header names, methods).
public func isToken(_ text: String) -> Bool {
    !text.isEmpty && text.unicodeScalars.allSatisfy { scalar in
        scalar.isASCII && (scalar.properties.isAlphabetic || scalar.properties.numericType != nil
                           || "!#$%&'*+-.^_`|~".unicodeScalars.contains(scalar))
    }
}

func isValidOrigin(_ text: String) -> Bool {
    if text == "*" { return true }
    guard let url = parseURL(text) else { return false }
    return url.path.isEmpty && !text.hasSuffix("/")
}

/// The allowed name nearest to `word` by edit distance, if it is near enough to be a typo.
func closest(_ word: String, among candidates: [String]) -> String? {
    let a = Array(word.lowercased())
    var best: (String, Int)?
    for candidate in candidates {
        let b = Array(candidate.lowercased())
        var previous = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var row = [i] + Array(repeating: 0, count: b.count)
            for j in stride(from: 1, through: b.count, by: 1) {
                row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = row
        }
        let distance = a.isEmpty ? b.count : previous[b.count]
        if distance <= max(2, candidate.count / 3), distance < (best?.1 ?? Int.max) { best = (candidate, distance) }
    }
    return best?.0
}

extension String {
    func replacingUnderscores() -> String { filter { $0 != "_" } }
}

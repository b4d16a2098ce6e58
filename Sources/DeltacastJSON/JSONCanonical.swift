/// RFC 8785, the JSON Canonicalization Scheme: what a document's digest is computed over, so a
/// client in any language can recompute it from the value it holds. No whitespace; object
/// members sorted by the UTF-16 code units of their names; strings with the minimal escapes of
/// ECMAScript's `JSON.stringify`; numbers as ECMAScript's `Number.prototype.toString` writes
/// the IEEE 754 double they denote (a number beyond the double range, which JCS refuses,
/// becomes `null`, as `JSON.stringify` writes what `JSON.parse` made of it: Infinity).
extension JSONValue {
    /// The canonical serialization (RFC 8785).
    public func canonicalized() -> [UInt8] {
        var out: [UInt8] = []
        JSONCanonical.write(self, into: &out)
        return out
    }
}

enum JSONCanonical {
    static func write(_ value: JSONValue, into out: inout [UInt8]) {
        switch value {
        case .null: out += Array("null".utf8)
        case .bool(let flag): out += Array((flag ? "true" : "false").utf8)
        case .number(let number): out += Array(ecmaScriptText(number).utf8)
        case .string(let text): JSONValue.writeString(text, to: &out)
        case .array(let items):
            out.append(0x5B)
            for (index, item) in items.enumerated() {
                if index > 0 { out.append(0x2C) }
                write(item, into: &out)
            }
            out.append(0x5D)
        case .object(let object):
            out.append(0x7B)
            let members = object.members.sorted { $0.key.utf16.lexicographicallyPrecedes($1.key.utf16) }
            for (index, member) in members.enumerated() {
                if index > 0 { out.append(0x2C) }
                JSONValue.writeString(member.key, to: &out)
                out.append(0x3A)
                write(member.value, into: &out)
            }
            out.append(0x7D)
        }
    }

    /// A number's text as ECMAScript writes the double it denotes.
    static func ecmaScriptText(_ number: JSONNumber) -> String {
        let text = number.text
        // Integers of up to 15 digits are exact doubles: only a sign of zero or leading zeros
        // (which JSON does not allow anyway) could change, so skip the conversion.
        if text.utf8.count <= 16, let value = Int(text), value.magnitude < 1_000_000_000_000_000 { return String(value) }
        if isAlreadyCanonical(text) { return text }
        return ecmaScriptText(Double(text) ?? .nan)
    }

    /// A plain decimal (`-?I.F`, no exponent) with at most 15 significant digits, no trailing
    /// zero in F and at most five zeros after `0.`: any such text denotes a double whose
    /// shortest round-trip digits are its own (DBL_DIG is 15), which ECMAScript writes just so.
    /// Most prices and ratios take this path instead of a conversion.
    static func isAlreadyCanonical(_ text: String) -> Bool {
        var bytes = text.utf8[...]
        if bytes.first == 0x2D { bytes = bytes.dropFirst() }
        guard let point = bytes.firstIndex(of: 0x2E) else { return false }
        let integer = bytes[..<point], fraction = bytes[bytes.index(after: point)...]
        guard !integer.isEmpty, !fraction.isEmpty, fraction.last != 0x30,
              integer.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), fraction.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return false }
        if integer.count > 1 && integer.first == 0x30 { return false }
        if integer.elementsEqual([0x30]) {
            let zeros = fraction.prefix { $0 == 0x30 }.count
            return zeros <= 5 && fraction.count - zeros <= 15
        }
        return integer.count + fraction.count <= 15
    }

    /// ECMAScript's Number::toString(x) (ECMA-262 §6.1.6.1.20) from the shortest digits that
    /// round-trip, which Swift's `description` gives.
    static func ecmaScriptText(_ value: Double) -> String {
        guard value.isFinite else { return "null" }
        if value == 0 { return "0" }
        var text = value.magnitude.description
        var exponent = 0
        if let mark = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            exponent = Int(text[text.index(after: mark)...])!
            text = String(text[..<mark])
        }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        var digits = Array((parts[0] + (parts.count > 1 ? parts[1] : "")).utf8)
        var n = parts[0].count + exponent          // the value is 0.DIGITS × 10^n
        while digits.first == 0x30 { digits.removeFirst(); n -= 1 }
        while digits.last == 0x30 { digits.removeLast() }
        let k = digits.count
        let s = String(decoding: digits, as: UTF8.self)
        let out: String
        if k <= n && n <= 21 {
            out = s + String(repeating: "0", count: n - k)
        } else if 0 < n && n <= 21 {
            out = String(s.prefix(n)) + "." + String(s.dropFirst(n))
        } else if -6 < n && n <= 0 {
            out = "0." + String(repeating: "0", count: -n) + s
        } else {
            let e = n - 1
            out = (k == 1 ? s : String(s.prefix(1)) + "." + String(s.dropFirst())) + "e" + (e < 0 ? "-" : "+") + String(e.magnitude)
        }
        return value < 0 ? "-" + out : out
    }
}

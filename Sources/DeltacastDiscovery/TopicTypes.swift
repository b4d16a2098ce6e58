public import DeltacastJSON

/// The types of an configuration's topics: one TypeScript interface per endpoint and a topic
/// map for `new Deltacast<Topics>(…)`, in which a path template (`/api/users/{id}/feed`)
/// becomes a template-literal key (`` `/api/users/${string}/feed` ``).
public enum TopicTypes {
    /// One endpoint: its client path, and the shape of its answers, or why there is none.
    public struct Endpoint {
        public var path: String
        public var shape: Shape?
        /// Why no shape (the answers were not JSON, the request failed, credentials missing).
        public var reason: String?
        /// How many samples the shape is made of.
        public var samples: Int

        public init(path: String, shape: Shape?, reason: String? = nil, samples: Int = 0) {
            self.path = path
            self.shape = shape
            self.reason = reason
            self.samples = samples
        }
    }

    /// Interface names for `paths`, in order: the last literal segment in PascalCase
    /// (`/api/prices` → `Prices`), with earlier segments prefixed while two would be equal,
    /// and a number as the last resort.
    public static func names(for paths: [String]) -> [String] {
        let segments = paths.map { path in
            path.split(separator: "/").filter { !$0.hasPrefix("{") }.map { pascalCase(String($0)) }.filter { !$0.isEmpty }
        }
        var taken = 1
        var names = segments.map { $0.suffix(taken).joined() }
        while taken < (segments.map(\.count).max() ?? 1), Set(names).count < names.count {
            taken += 1
            names = segments.map { $0.suffix(taken).joined() }
        }
        var seen: [String: Int] = [:]
        return names.map { base in
            var name = base.isEmpty ? "Root" : base
            if name.first!.isNumber { name = "T" + name }
            seen[name, default: 0] += 1
            return seen[name]! > 1 ? name + String(seen[name]!) : name
        }
    }

    /// `user-notifications` → `UserNotifications`; anything not a letter or digit separates words.
    static func pascalCase(_ text: String) -> String {
        text.split(whereSeparator: { !($0.isASCII && ($0.isLetter || $0.isNumber)) })
            .map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
    }

    /// The topic map's key for `path`: a literal, or a template literal for a template.
    public static func topicKey(_ path: String) -> String {
        guard path.contains("{") else { return Shape.quoted(path) }
        var key = ""
        var inside = false
        for character in path {
            if character == "{" { inside = true; key += "${string}"; continue }
            if character == "}" { inside = false; continue }
            if !inside { key += character == "`" || character == "\\" || character == "$" ? "\\\(character)" : String(character) }
        }
        return "[topic: `\(key)`]"
    }

    /// The TypeScript module: each endpoint's interface (or `unknown`, with why), then `Topics`.
    public static func module(_ endpoints: [Endpoint], header: String) -> String {
        let names = names(for: endpoints.map(\.path))
        var lines = header.split(separator: "\n", omittingEmptySubsequences: false).map { "// " + $0 }
        lines.append("")
        for (endpoint, name) in zip(endpoints, names) {
            if let shape = endpoint.shape {
                let type = shape.typeScript()
                lines.append("/** `\(endpoint.path)`: from \(endpoint.samples) sample\(endpoint.samples == 1 ? "" : "s"). */")
                lines.append(shape.kinds == [.object] ? "export interface \(name) \(type)" : "export type \(name) = \(type);")
            } else {
                lines.append("/** `\(endpoint.path)`: no type: \(endpoint.reason ?? "no sample"). */")
                lines.append("export type \(name) = unknown;")
            }
            lines.append("")
        }
        lines.append("/** Every topic's state type: `new Deltacast<Topics>(url)` types each subscription. */")
        lines.append("export interface Topics {")
        for (endpoint, name) in zip(endpoints, names) {
            lines.append("    \(topicKey(endpoint.path)): \(name);")
        }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }

    /// `value` as indented JSON (two spaces), for schema files people read.
    public static func pretty(_ value: JSONValue, indent: String = "") -> String {
        let inner = indent + "  "
        switch value {
        case .array(let elements) where !elements.isEmpty:
            if elements.allSatisfy({ if case .string = $0 { return true }; return false }) {
                return "[" + elements.map { String(decoding: $0.serialized(), as: UTF8.self) }.joined(separator: ", ") + "]"
            }
            return "[\n" + elements.map { inner + pretty($0, indent: inner) }.joined(separator: ",\n") + "\n\(indent)]"
        case .object(let object) where !object.isEmpty:
            return "{\n" + object.members.map { member in
                var key: [UInt8] = []
                JSONValue.writeString(member.key, to: &key)
                return inner + String(decoding: key, as: UTF8.self) + ": " + pretty(member.value, indent: inner)
            }.joined(separator: ",\n") + "\n\(indent)}"
        default:
            return String(decoding: value.serialized(), as: UTF8.self)
        }
    }
}

/// Checks an answer against a schema that ``Shape/jsonSchema(title:description:)`` wrote (the
/// subset of JSON Schema 2020-12 it uses: `type`, `enum`, `properties`, `required`, `items`,
/// `anyOf`). Each difference names the JSON Pointer where it is.
public enum SchemaCheck {
    public struct Difference: Sendable, Equatable, CustomStringConvertible {
        /// Breaks a client typed from the schema (a type changed, a required member missing, a
        /// value outside the enumeration), or only adds to it (a member the schema lacks).
        public enum Severity: String, Sendable { case breaking, added }
        public var pointer: String
        public var severity: Severity
        public var message: String
        public var description: String { "\(pointer.isEmpty ? "(root)" : pointer): \(message)" }
    }

    /// The differences between `value` and `schema`, in document order; at most `limit`.
    public static func differences(_ value: JSONValue, _ schema: JSONValue, limit: Int = 100) -> [Difference] {
        var found: [Difference] = []
        check(value, schema, pointer: "", into: &found, limit: limit)
        return found
    }

    static func kind(of value: JSONValue) -> String {
        switch value {
        case .null: "null"
        case .bool: "boolean"
        case .number(let number): number.text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) ? "number" : "integer"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }

    static func escape(_ token: String) -> String {
        token.replacing("~", with: "~0").replacing("/", with: "~1")
    }

    static func shown(_ value: JSONValue) -> String {
        let text = String(decoding: value.serialized(), as: UTF8.self)
        return text.count > 60 ? String(text.prefix(57)) + "..." : text
    }

    private static func check(_ value: JSONValue, _ schema: JSONValue, pointer: String, into found: inout [Difference], limit: Int) {
        guard found.count < limit, case .object(let rules) = schema else { return }
        if case .array(let branches)? = rules["anyOf"] {
            // The branch of the value's kind decides; none of its kind is a type change.
            let actual = kind(of: value)
            let matching = branches.first { branch in
                guard case .object(let rule) = branch, case .string(let type)? = rule["type"] else { return false }
                return type == actual || (type == "number" && actual == "integer")
            }
            guard let matching else {
                let expected = branches.compactMap { branch -> String? in
                    if case .object(let rule) = branch, case .string(let type)? = rule["type"] { return type }
                    return nil
                }
                found.append(Difference(pointer: pointer, severity: .breaking, message: "expected \(expected.joined(separator: " or ")), found \(actual) \(shown(value))"))
                return
            }
            return check(value, matching, pointer: pointer, into: &found, limit: limit)
        }
        let allowed: [String]
        switch rules["type"] {
        case .string(let type)?: allowed = [type]
        case .array(let types)?: allowed = types.compactMap { if case .string(let type) = $0 { return type }; return nil }
        default: allowed = []
        }
        let actual = kind(of: value)
        if !allowed.isEmpty, !allowed.contains(actual), !(actual == "integer" && allowed.contains("number")) {
            found.append(Difference(pointer: pointer, severity: .breaking, message: "expected \(allowed.joined(separator: " or ")), found \(actual) \(shown(value))"))
            return
        }
        if case .array(let values)? = rules["enum"], case .string = value, !values.contains(value) {
            let listed = values.map(shown).joined(separator: ", ")
            found.append(Difference(pointer: pointer, severity: .breaking, message: "\(shown(value)) is not one of \(listed)"))
        }
        switch value {
        case .array(let elements):
            if let items = rules["items"] {
                for (index, element) in elements.enumerated() where found.count < limit {
                    check(element, items, pointer: pointer + "/\(index)", into: &found, limit: limit)
                }
            }
        case .object(let object):
            let properties: JSONObject
            if case .object(let listed)? = rules["properties"] { properties = listed } else { properties = JSONObject() }
            if case .array(let required)? = rules["required"] {
                for case .string(let name) in required where object[name] == nil && found.count < limit {
                    found.append(Difference(pointer: pointer + "/" + escape(name), severity: .breaking, message: "the required member is missing"))
                }
            }
            for (name, member) in object.members where found.count < limit {
                if let rule = properties[name] {
                    check(member, rule, pointer: pointer + "/" + escape(name), into: &found, limit: limit)
                } else if rules["properties"] != nil {
                    found.append(Difference(pointer: pointer + "/" + escape(name), severity: .added, message: "a member the schema does not have (\(kind(of: member)))"))
                }
            }
        default:
            break
        }
    }
}

/// Why a patch could not be read or applied.
public struct JSONPatchError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong, naming the operation and path.
    public var message: String
    /// Index of the failing operation in the patch, when applying.
    public var operationIndex: Int?
    /// Creates an error.
    public init(_ message: String, operationIndex: Int? = nil) {
        self.message = message
        self.operationIndex = operationIndex
    }
    /// The message, prefixed with the operation's index when known.
    public var description: String {
        operationIndex.map { "operation \($0): \(message)" } ?? message
    }
}

/// One RFC 6902 operation.
public enum PatchOperation: Sendable, Hashable {
    case add(path: JSONPointer, value: JSONValue)
    case remove(path: JSONPointer)
    case replace(path: JSONPointer, value: JSONValue)
    case move(from: JSONPointer, path: JSONPointer)
    case copy(from: JSONPointer, path: JSONPointer)
    case test(path: JSONPointer, value: JSONValue)

    /// The operation as a JSON object, members in the order `op`, `from`, `path`, `value`.
    public var json: JSONValue {
        switch self {
        case .add(let path, let value): ["op": "add", "path": .string(path.description), "value": value]
        case .remove(let path): ["op": "remove", "path": .string(path.description)]
        case .replace(let path, let value): ["op": "replace", "path": .string(path.description), "value": value]
        case .move(let from, let path): ["op": "move", "from": .string(from.description), "path": .string(path.description)]
        case .copy(let from, let path): ["op": "copy", "from": .string(from.description), "path": .string(path.description)]
        case .test(let path, let value): ["op": "test", "path": .string(path.description), "value": value]
        }
    }
}

/// JSON Patch (RFC 6902): reading, writing and applying.
public enum JSONPatch {
    /// Reads a patch document: an array of operation objects.
    /// - Throws: ``JSONPatchError`` naming the operation and the missing or bad member.
    public static func operations(from document: JSONValue) throws(JSONPatchError) -> [PatchOperation] {
        guard case .array(let elements) = document else {
            throw JSONPatchError("a JSON Patch must be an array of operations, found \(document.typeName)")
        }
        var result: [PatchOperation] = []
        result.reserveCapacity(elements.count)
        for (index, element) in elements.enumerated() {
            guard case .object(let object) = element else {
                throw JSONPatchError("an operation must be an object, found \(element.typeName)", operationIndex: index)
            }
            func pointer(_ name: String) throws(JSONPatchError) -> JSONPointer {
                guard let member = object[name] else { throw JSONPatchError("missing '\(name)'", operationIndex: index) }
                guard case .string(let text) = member else { throw JSONPatchError("'\(name)' must be a string", operationIndex: index) }
                do { return try JSONPointer(text) } catch { throw JSONPatchError(error.message, operationIndex: index) }
            }
            func value() throws(JSONPatchError) -> JSONValue {
                guard let member = object["value"] else { throw JSONPatchError("missing 'value'", operationIndex: index) }
                return member
            }
            guard case .string(let op) = object["op"] ?? .null else {
                throw JSONPatchError("missing 'op' (a string)", operationIndex: index)
            }
            switch op {
            case "add": result.append(.add(path: try pointer("path"), value: try value()))
            case "remove": result.append(.remove(path: try pointer("path")))
            case "replace": result.append(.replace(path: try pointer("path"), value: try value()))
            case "move": result.append(.move(from: try pointer("from"), path: try pointer("path")))
            case "copy": result.append(.copy(from: try pointer("from"), path: try pointer("path")))
            case "test": result.append(.test(path: try pointer("path"), value: try value()))
            default: throw JSONPatchError("unknown op '\(op)'; expected add, remove, replace, move, copy or test", operationIndex: index)
            }
        }
        return result
    }

    /// The patch as a JSON array.
    public static func json(_ operations: [PatchOperation]) -> JSONValue { .array(operations.map(\.json)) }

    /// The patch's compact serialization.
    public static func serialized(_ operations: [PatchOperation]) -> [UInt8] { json(operations).serialized() }

    /// Applies `operations` to `document` atomically: all of them, or, when one fails, none
    /// (the caller's document is a value and is left as it was).
    /// - Throws: ``JSONPatchError`` with the failing operation's index.
    public static func apply(_ operations: [PatchOperation], to document: JSONValue) throws(JSONPatchError) -> JSONValue {
        var result = document
        for (index, operation) in operations.enumerated() {
            do {
                try apply(operation, to: &result)
            } catch {
                throw JSONPatchError(error.message, operationIndex: index)
            }
        }
        return result
    }

    private static func apply(_ operation: PatchOperation, to document: inout JSONValue) throws(JSONPatchError) {
        switch operation {
        case .add(let path, let value):
            try add(value, at: path.tokens[...], in: &document, pointer: path)
        case .remove(let path):
            _ = try remove(at: path.tokens[...], in: &document, pointer: path)
        case .replace(let path, let value):
            guard path.resolve(in: document) != nil else { throw JSONPatchError("replace: path '\(path)' does not exist") }
            if path.tokens.isEmpty { document = value; return }
            _ = try remove(at: path.tokens[...], in: &document, pointer: path)
            try add(value, at: path.tokens[...], in: &document, pointer: path, replacing: true)
        case .move(let from, let path):
            if path.tokens.count > from.tokens.count && Array(path.tokens.prefix(from.tokens.count)) == from.tokens {
                throw JSONPatchError("move: cannot move '\(from)' into its own child '\(path)'")
            }
            guard from.resolve(in: document) != nil else { throw JSONPatchError("move: from '\(from)' does not exist") }
            if from == path { return }
            let value = try remove(at: from.tokens[...], in: &document, pointer: from)
            try add(value, at: path.tokens[...], in: &document, pointer: path)
        case .copy(let from, let path):
            guard let value = from.resolve(in: document) else { throw JSONPatchError("copy: from '\(from)' does not exist") }
            try add(value, at: path.tokens[...], in: &document, pointer: path)
        case .test(let path, let value):
            guard let actual = path.resolve(in: document) else { throw JSONPatchError("test: path '\(path)' does not exist") }
            guard actual.isNumericallyEqual(to: value) else { throw JSONPatchError("test: value at '\(path)' is not equal to the expected value") }
        }
    }

    /// Adds at `tokens`: sets an object member, or inserts into an array (`-` appends).
    private static func add(
        _ value: JSONValue, at tokens: ArraySlice<String>, in node: inout JSONValue, pointer: JSONPointer, replacing: Bool = false
    ) throws(JSONPatchError) {
        guard let token = tokens.first else { node = value; return }
        let rest = tokens.dropFirst()
        switch node {
        case .object(var object):
            if rest.isEmpty {
                node = .null
                object[token] = value
                node = .object(object)
                return
            }
            guard var child = object[token] else { throw JSONPatchError("add: parent of '\(pointer)' does not exist") }
            node = .null
            object[token] = .null
            defer { object[token] = child; node = .object(object) }
            try add(value, at: rest, in: &child, pointer: pointer, replacing: replacing)
        case .array(var elements):
            if rest.isEmpty {
                let index: Int
                if token == "-" {
                    index = elements.count
                } else {
                    guard let parsed = JSONPointer.arrayIndex(token), parsed <= elements.count else {
                        throw JSONPatchError("add: index '\(token)' is out of bounds or not an index at '\(pointer)'")
                    }
                    index = parsed
                }
                node = .null
                elements.insert(value, at: index)
                node = .array(elements)
                return
            }
            guard let index = JSONPointer.arrayIndex(token), index < elements.count else {
                throw JSONPatchError("add: parent of '\(pointer)' does not exist")
            }
            var child = elements[index]
            node = .null
            elements[index] = .null
            defer { elements[index] = child; node = .array(elements) }
            try add(value, at: rest, in: &child, pointer: pointer, replacing: replacing)
        default:
            throw JSONPatchError("add: parent of '\(pointer)' is not an object or array")
        }
    }

    /// Removes and returns the value at `tokens`.
    private static func remove(
        at tokens: ArraySlice<String>, in node: inout JSONValue, pointer: JSONPointer
    ) throws(JSONPatchError) -> JSONValue {
        guard let token = tokens.first else { throw JSONPatchError("remove: cannot remove the whole document") }
        let rest = tokens.dropFirst()
        switch node {
        case .object(var object):
            guard var child = object[token] else { throw JSONPatchError("remove: path '\(pointer)' does not exist") }
            node = .null
            if rest.isEmpty {
                object[token] = nil
                node = .object(object)
                return child
            }
            object[token] = .null
            defer { object[token] = child; node = .object(object) }
            return try remove(at: rest, in: &child, pointer: pointer)
        case .array(var elements):
            guard let index = JSONPointer.arrayIndex(token), index < elements.count else {
                throw JSONPatchError("remove: path '\(pointer)' does not exist")
            }
            node = .null
            if rest.isEmpty {
                let removed = elements.remove(at: index)
                node = .array(elements)
                return removed
            }
            var child = elements[index]
            elements[index] = .null
            defer { elements[index] = child; node = .array(elements) }
            return try remove(at: rest, in: &child, pointer: pointer)
        default:
            throw JSONPatchError("remove: path '\(pointer)' does not exist")
        }
    }
}

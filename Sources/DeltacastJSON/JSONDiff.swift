/// What the diff needs to know about a document's shape.
public struct DiffOptions: Sendable {
    /// Arrays whose elements are identified by a member (`array_keys: { /items: id }`).
    public var arrayKeys: [(pattern: JSONPointerPattern, field: String)]
    /// Volatile paths (and everything under them) that never count as a change.
    public var ignore: [JSONPointerPattern]
    /// Largest `old × new` element product the LCS table may cover for one unkeyed array
    /// (after trimming the common prefix and suffix); past it, elements are compared by
    /// position. Default 4 million cells: about 16 MiB of table, a few milliseconds.
    public var maximumLCSCells: Int

    /// Creates options.
    public init(arrayKeys: [(pattern: JSONPointerPattern, field: String)] = [], ignore: [JSONPointerPattern] = [],
                maximumLCSCells: Int = 4_000_000) {
        self.arrayKeys = arrayKeys
        self.ignore = ignore
        self.maximumLCSCells = maximumLCSCells
    }
}

/// The outcome of a diff.
public struct DiffResult: Sendable {
    /// The operations turning the old document into the new one (ignored paths included when
    /// there is a real change, so clients converge); empty when nothing outside ignored paths
    /// changed.
    public var operations: [PatchOperation]
    /// Whether anything outside the ignored paths changed.
    public var isChange: Bool { !operations.isEmpty }
    /// The patch's compact serialized size in bytes, so the caller can send a snapshot instead
    /// when the patch is not smaller than the document.
    public var serializedSize: Int
}

/// Computes JSON Patches (RFC 6902) between documents.
public enum JSONDiff {
    /// The patch turning `old` into `new`: `apply(diff(a, b).operations, a) == b`, except that a
    /// change confined to ignored paths yields an empty patch (the stored document then stays
    /// `a`: convergence holds modulo ignored paths).
    public static func diff(_ old: JSONValue, _ new: JSONValue, options: DiffOptions = .init()) -> DiffResult {
        diff(old, new, options)
    }

    /// The same patch between two parsed documents, from their tapes: an unchanged subtree costs
    /// one comparison of its bytes, and only what changed is decoded. Strings compare by code
    /// point (RFC 6902), so a change between canonically equivalent spellings is a change.
    public static func diff(_ old: JSONDocument, _ new: JSONDocument, options: DiffOptions = .init()) -> DiffResult {
        old.withRoot { old in new.withRoot { new in diff(old, new, options) } }
    }

    private static func diff<Node: JSONDiffNode>(_ old: Node, _ new: Node, _ options: DiffOptions) -> DiffResult {
        var differ = Differ<Node>(options: options)
        var path: [String] = []
        differ.diff(old, new, path: &path)
        let operations = differ.realChange ? differ.operations : []
        return DiffResult(operations: operations, serializedSize: JSONPatch.serialized(operations).count)
    }
}

/// What the diff needs of a value; ``JSONValue`` and ``JSONDocumentNode`` have it.
protocol JSONDiffNode: Hashable {
    var isObject: Bool { get }
    var isArray: Bool { get }
    /// An object's members in order, each name once.
    func members() -> [(key: String, value: Self)]
    /// An array's elements.
    func elements() -> [Self]
    /// The element's identity in a keyed array: its `field` member's string ("s…") or number
    /// ("n…") text; nil when it is not an object with such a member.
    func arrayKey(field: String) -> String?
    /// Equal, decided without walking a container whose bytes differ (false then means "look
    /// inside", which finds nothing when they are equal after all).
    func isCheaplyEqual(to other: Self) -> Bool
    /// The value itself, for an operation.
    var value: JSONValue { get }
}

extension JSONValue: JSONDiffNode {
    var isObject: Bool { if case .object = self { true } else { false } }
    var isArray: Bool { if case .array = self { true } else { false } }
    func members() -> [(key: String, value: JSONValue)] {
        guard case .object(let object) = self else { return [] }
        return object.members
    }
    func elements() -> [JSONValue] {
        guard case .array(let elements) = self else { return [] }
        return elements
    }
    func arrayKey(field: String) -> String? {
        guard case .object(let object) = self else { return nil }
        switch object[field] {
        case .string(let text)?: return "s" + text
        case .number(let number)?: return "n" + number.text
        default: return nil
        }
    }
    func isCheaplyEqual(to other: JSONValue) -> Bool { self == other }
    var value: JSONValue { self }
}

extension JSONDocumentNode: JSONDiffNode {
    var isObject: Bool { tag == .objectStart }
    var isArray: Bool { tag == .arrayStart }
    func arrayKey(field: String) -> String? {
        guard tag == .objectStart, let key = member(field) else { return nil }
        switch key.tag {
        case .string: return "s" + key.stringValue()
        case .number: return key.withRawBytes { "n" + String(decoding: $0, as: UTF8.self) }
        default: return nil
        }
    }
    func isCheaplyEqual(to other: JSONDocumentNode) -> Bool {
        if hasSameBytes(as: other) { return true }
        return tag == .arrayStart || tag == .objectStart ? false : self == other
    }
}

private struct Differ<Node: JSONDiffNode> {
    let options: DiffOptions
    var operations: [PatchOperation] = []
    var realChange = false
    /// Whether the last LCS pass added or removed elements at its own level (otherwise the
    /// positional strategy would give the same patch and is not tried).
    var structuralEdits = false

    init(options: DiffOptions) { self.options = options }

    private func pointer(_ path: [String]) -> JSONPointer { JSONPointer(tokens: path) }

    private func isIgnored(_ path: [String]) -> Bool {
        !options.ignore.isEmpty && options.ignore.contains { $0.covers(path) }
    }

    /// Records an operation; it counts as a change unless it lies under an ignored path.
    private mutating func emit(_ operation: PatchOperation, path: [String]) {
        if !isIgnored(path) { realChange = true }
        operations.append(operation)
    }

    mutating func diff(_ old: Node, _ new: Node, path: inout [String]) {
        if old.isCheaplyEqual(to: new) { return }
        if old.isObject && new.isObject {
            diffObjects(old.members(), new.members(), path: &path)
        } else if old.isArray && new.isArray {
            diffArrays(old.elements(), new.elements(), path: &path)
        } else {
            emit(.replace(path: pointer(path), value: new.value), path: path)
        }
    }

    private mutating func diffObjects(_ a: [(key: String, value: Node)], _ b: [(key: String, value: Node)], path: inout [String]) {
        // Small objects look names up in place; larger ones through an index.
        let indexed = a.count + b.count > 24
        let positionsA = indexed ? Dictionary(a.enumerated().map { ($0.element.key, $0.offset) }, uniquingKeysWith: { first, _ in first }) : [:]
        let positionsB = indexed ? Dictionary(b.enumerated().map { ($0.element.key, $0.offset) }, uniquingKeysWith: { first, _ in first }) : [:]
        func find(_ key: String, in members: [(key: String, value: Node)], _ positions: [String: Int]) -> Node? {
            if indexed { return positions[key].map { members[$0].value } }
            return members.first { $0.key == key }?.value
        }
        for (key, _) in a where find(key, in: b, positionsB) == nil {
            path.append(key)
            emit(.remove(path: pointer(path)), path: path)
            path.removeLast()
        }
        for (key, newValue) in b {
            path.append(key)
            if let oldValue = find(key, in: a, positionsA) {
                diff(oldValue, newValue, path: &path)
            } else {
                emit(.add(path: pointer(path), value: newValue.value), path: path)
            }
            path.removeLast()
        }
    }

    private mutating func diffArrays(_ a: [Node], _ b: [Node], path: inout [String]) {
        if let field = options.arrayKeys.first(where: { $0.pattern.matches(path) })?.field,
           let keysA = keys(of: a, field: field), let keysB = keys(of: b, field: field, sameAsUnique: keysA) {
            diffKeyed(a, b, keysA: keysA, keysB: keysB, path: &path)
            return
        }
        // Strategy 1: LCS with in-place edits; strategy 2: position by position. Keep the smaller.
        var lcs = Differ(options: options)
        lcs.diffLCS(a, b, path: &path)
        var chosen = lcs
        if lcs.structuralEdits {
            var positional = Differ(options: options)
            positional.diffPositional(a, b, path: &path)
            if patchSize(positional.operations) < patchSize(lcs.operations) { chosen = positional }
        }
        operations.append(contentsOf: chosen.operations)
        realChange = realChange || chosen.realChange
    }

    private func patchSize(_ operations: [PatchOperation]) -> Int {
        operations.isEmpty ? 0 : JSONPatch.serialized(operations).count
    }

    /// Each element's key, when every element is an object with a unique string or number key.
    /// Keys equal to `sameAsUnique` (already known unique: the usual poll) need no checking.
    private func keys(of elements: [Node], field: String, sameAsUnique: [String]? = nil) -> [String]? {
        var keys: [String] = []
        keys.reserveCapacity(elements.count)
        for element in elements {
            guard let key = element.arrayKey(field: field) else { return nil }
            keys.append(key)
        }
        if let sameAsUnique, keys == sameAsUnique { return keys }
        var seen = Set<String>(minimumCapacity: keys.count)
        for key in keys where !seen.insert(key).inserted { return nil }
        return keys
    }

    /// Keyed arrays: remove vanished elements, keep the longest run already in order, move the
    /// others next to their new predecessor, add new ones, then diff each element in place.
    private mutating func diffKeyed(_ a: [Node], _ b: [Node], keysA: [String], keysB: [String], path: inout [String]) {
        if keysA == keysB {
            // The same elements in the same order (the usual poll): changes in place only.
            for index in b.indices {
                path.append(String(index))
                diff(a[index], b[index], path: &path)
                path.removeLast()
            }
            return
        }
        var targetIndex = [String: Int](minimumCapacity: keysB.count)
        for (index, key) in keysB.enumerated() { targetIndex[key] = index }
        var oldByKey = [String: Node](minimumCapacity: keysA.count)
        for (index, key) in keysA.enumerated() { oldByKey[key] = a[index] }

        // 1. Removals, highest index first so earlier indices stay valid.
        var working: [String] = []
        working.reserveCapacity(keysA.count)
        for index in stride(from: keysA.count - 1, through: 0, by: -1) where targetIndex[keysA[index]] == nil {
            path.append(String(index))
            emit(.remove(path: pointer(path)), path: path)
            path.removeLast()
        }
        for key in keysA where targetIndex[key] != nil { working.append(key) }

        // 2. The survivors forming the longest increasing run of target positions stay put.
        let stable = longestIncreasingRun(working.map { targetIndex[$0]! })
        var isStable = Set<String>(minimumCapacity: stable.count)
        for position in stable { isStable.insert(working[position]) }

        // 3. Place every other element right after its predecessor in the new order.
        if isStable.count != keysB.count || working.count != keysB.count {
            var position = [String: Int](minimumCapacity: working.count)
            func reindex(from start: Int) {
                for index in start..<working.count { position[working[index]] = index }
            }
            reindex(from: 0)
            for (index, key) in keysB.enumerated() where !isStable.contains(key) {
                let target = index == 0 ? 0 : position[keysB[index - 1]]! + 1
                if let current = position[key] {
                    working.remove(at: current)
                    let insertAt = current < target ? target - 1 : target
                    working.insert(key, at: insertAt)
                    reindex(from: min(current, insertAt))
                    if current != insertAt {
                        emit(.move(from: pointer(path + [String(current)]), path: pointer(path + [String(insertAt)])), path: path)
                    }
                } else {
                    working.insert(key, at: target)
                    reindex(from: target)
                    path.append(String(target))
                    emit(.add(path: pointer(path), value: b[index].value), path: path)
                    path.removeLast()
                }
                isStable.insert(key)
            }
        }

        // 4. In-place changes of elements that were there before.
        for (index, key) in keysB.enumerated() {
            guard let oldValue = oldByKey[key] else { continue }
            path.append(String(index))
            diff(oldValue, b[index], path: &path)
            path.removeLast()
        }
    }

    /// Indices (into `sequence`) of a longest strictly increasing subsequence.
    private func longestIncreasingRun(_ sequence: [Int]) -> [Int] {
        guard !sequence.isEmpty else { return [] }
        var tails: [Int] = []            // indices into sequence
        var previous = [Int](repeating: -1, count: sequence.count)
        for (index, value) in sequence.enumerated() {
            var low = 0, high = tails.count
            while low < high {
                let middle = (low + high) / 2
                if sequence[tails[middle]] < value { low = middle + 1 } else { high = middle }
            }
            if low > 0 { previous[index] = tails[low - 1] }
            if low == tails.count { tails.append(index) } else { tails[low] = index }
        }
        var result: [Int] = []
        var cursor = tails.last!
        while cursor >= 0 {
            result.append(cursor)
            cursor = previous[cursor]
        }
        return result.reversed()
    }

    /// Unkeyed arrays by longest common subsequence; within a run of deletions and insertions,
    /// pairs are diffed in place (an element that was only modified stays where it is).
    private mutating func diffLCS(_ a: [Node], _ b: [Node], path: inout [String]) {
        var prefix = 0
        while prefix < a.count && prefix < b.count && a[prefix] == b[prefix] { prefix += 1 }
        var suffix = 0
        while suffix < a.count - prefix && suffix < b.count - prefix && a[a.count - 1 - suffix] == b[b.count - 1 - suffix] { suffix += 1 }
        let middleA = Array(a[prefix..<(a.count - suffix)])
        let middleB = Array(b[prefix..<(b.count - suffix)])
        let n = middleA.count, m = middleB.count
        // Edit script as (deleted old indices, inserted new indices) hunks, via an LCS table.
        var script: [(kind: UInt8, old: Int, new: Int)] = [] // 0 keep, 1 delete, 2 insert
        if n * m > options.maximumLCSCells || n == 0 || m == 0 {
            for index in 0..<n { script.append((1, index, -1)) }
            for index in 0..<m { script.append((2, -1, index)) }
        } else {
            let hashesA = middleA.map(\.hashValue), hashesB = middleB.map(\.hashValue)
            let width = m + 1
            var table = [Int32](repeating: 0, count: (n + 1) * width)
            for i in stride(from: n - 1, through: 0, by: -1) {
                for j in stride(from: m - 1, through: 0, by: -1) {
                    table[i * width + j] = hashesA[i] == hashesB[j] && middleA[i] == middleB[j]
                        ? table[(i + 1) * width + j + 1] + 1
                        : max(table[(i + 1) * width + j], table[i * width + j + 1])
                }
            }
            var i = 0, j = 0
            while i < n || j < m {
                if i < n && j < m && hashesA[i] == hashesB[j] && middleA[i] == middleB[j] {
                    script.append((0, i, j)); i += 1; j += 1
                } else if j < m && (i == n || table[i * width + j + 1] >= table[(i + 1) * width + j]) {
                    script.append((2, -1, j)); j += 1
                } else {
                    script.append((1, i, -1)); i += 1
                }
            }
        }
        // Walk the script, tracking the current index in the array being transformed.
        var current = prefix
        var cursor = 0
        while cursor < script.count {
            if script[cursor].kind == 0 { current += 1; cursor += 1; continue }
            var deletes: [Int] = [], inserts: [Int] = []
            while cursor < script.count && script[cursor].kind != 0 {
                if script[cursor].kind == 1 { deletes.append(script[cursor].old) } else { inserts.append(script[cursor].new) }
                cursor += 1
            }
            let paired = min(deletes.count, inserts.count)
            if deletes.count != inserts.count { structuralEdits = true }
            for offset in 0..<paired {
                path.append(String(current))
                diff(middleA[deletes[offset]], middleB[inserts[offset]], path: &path)
                path.removeLast()
                current += 1
            }
            for _ in paired..<deletes.count {
                path.append(String(current))
                emit(.remove(path: pointer(path)), path: path)
                path.removeLast()
            }
            for offset in paired..<inserts.count {
                path.append(String(current))
                emit(.add(path: pointer(path), value: middleB[inserts[offset]].value), path: path)
                path.removeLast()
                current += 1
            }
        }
    }

    /// Element by element at the same index, then trailing removals or additions.
    private mutating func diffPositional(_ a: [Node], _ b: [Node], path: inout [String]) {
        for index in 0..<min(a.count, b.count) {
            path.append(String(index))
            diff(a[index], b[index], path: &path)
            path.removeLast()
        }
        if a.count > b.count {
            for index in stride(from: a.count - 1, through: b.count, by: -1) {
                path.append(String(index))
                emit(.remove(path: pointer(path)), path: path)
                path.removeLast()
            }
        } else {
            for index in a.count..<b.count {
                path.append(String(index))
                emit(.add(path: pointer(path), value: b[index].value), path: path)
                path.removeLast()
            }
        }
    }
}

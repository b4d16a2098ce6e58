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
        var differ = Differ(options: options)
        var path: [String] = []
        differ.diff(old, new, path: &path)
        let operations = differ.realChange ? differ.operations : []
        return DiffResult(operations: operations, serializedSize: JSONPatch.serialized(operations).count)
    }
}

private struct Differ {
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

    mutating func diff(_ old: JSONValue, _ new: JSONValue, path: inout [String]) {
        if old == new { return }
        switch (old, new) {
        case (.object(let a), .object(let b)):
            diffObjects(a, b, path: &path)
        case (.array(let a), .array(let b)):
            diffArrays(a, b, path: &path)
        default:
            emit(.replace(path: pointer(path), value: new), path: path)
        }
    }

    private mutating func diffObjects(_ a: JSONObject, _ b: JSONObject, path: inout [String]) {
        for (key, _) in a where b[key] == nil {
            path.append(key)
            emit(.remove(path: pointer(path)), path: path)
            path.removeLast()
        }
        for (key, newValue) in b {
            path.append(key)
            if let oldValue = a[key] {
                diff(oldValue, newValue, path: &path)
            } else {
                emit(.add(path: pointer(path), value: newValue), path: path)
            }
            path.removeLast()
        }
    }

    private mutating func diffArrays(_ a: [JSONValue], _ b: [JSONValue], path: inout [String]) {
        if let field = options.arrayKeys.first(where: { $0.pattern.matches(path) })?.field,
           let keysA = keys(of: a, field: field), let keysB = keys(of: b, field: field) {
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
    private func keys(of elements: [JSONValue], field: String) -> [String]? {
        var keys: [String] = []
        keys.reserveCapacity(elements.count)
        var seen = Set<String>(minimumCapacity: elements.count)
        for element in elements {
            guard case .object(let object) = element else { return nil }
            let key: String
            switch object[field] {
            case .string(let text)?: key = "s" + text
            case .number(let number)?: key = "n" + number.text
            default: return nil
            }
            guard seen.insert(key).inserted else { return nil }
            keys.append(key)
        }
        return keys
    }

    /// Keyed arrays: remove vanished elements, keep the longest run already in order, move the
    /// others next to their new predecessor, add new ones, then diff each element in place.
    private mutating func diffKeyed(_ a: [JSONValue], _ b: [JSONValue], keysA: [String], keysB: [String], path: inout [String]) {
        var targetIndex = [String: Int](minimumCapacity: keysB.count)
        for (index, key) in keysB.enumerated() { targetIndex[key] = index }
        var oldByKey = [String: JSONValue](minimumCapacity: keysA.count)
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
                    emit(.add(path: pointer(path), value: b[index]), path: path)
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
    private mutating func diffLCS(_ a: [JSONValue], _ b: [JSONValue], path: inout [String]) {
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
                emit(.add(path: pointer(path), value: middleB[inserts[offset]]), path: path)
                path.removeLast()
                current += 1
            }
        }
    }

    /// Element by element at the same index, then trailing removals or additions.
    private mutating func diffPositional(_ a: [JSONValue], _ b: [JSONValue], path: inout [String]) {
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
                emit(.add(path: pointer(path), value: b[index]), path: path)
                path.removeLast()
            }
        }
    }
}

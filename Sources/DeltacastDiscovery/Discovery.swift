import DeltacastJSON

/// What the samples say about an endpoint's shape.
public struct Discovery {
    /// The samples, oldest first.
    public let bodies: [[UInt8]]

    /// A discovery over `bodies` (at least one).
    public init(bodies: [[UInt8]]) { self.bodies = bodies }

    /// One array of objects, found at `pattern` (indices of enclosing arrays are `*`).
    struct ArrayShape {
        var pattern: String
        /// Every instance of the array in every sample.
        var instances: [[JSONValue]] = []
    }

    /// The report: an endpoint block with comments.
    public func report(path: String, url: String, intervalMilliseconds: Int, conditional: String?) -> String {
        let documents = bodies.map { try? JSONParser.parse($0) }
        var lines: [String] = []
        var notes: [String] = []
        let size = bodies.last!.count
        lines.append("  - path: \(path)")
        lines.append("    upstream: \(url)")
        lines.append("    interval: \(intervalMilliseconds < 100 ? "1s" : intervalMilliseconds % 1000 == 0 ? "\(intervalMilliseconds / 1000)s" : "\(intervalMilliseconds)ms")")
        guard documents.allSatisfy({ $0 != nil }) else {
            lines.append("    diff: snapshot")
            notes.append("the body is not JSON (\(size) bytes): the proxy sends each new version whole, as a snapshot whose data is a string")
            return render(lines, notes, conditional: conditional, size: size, patches: nil)
        }
        let samples = documents.map { $0! }
        var shapes: [String: ArrayShape] = [:]
        for sample in samples { Self.collectArrays(sample, pattern: [], into: &shapes) }
        var keys: [(pattern: String, field: String)] = []
        for shape in shapes.values.sorted(by: { $0.pattern < $1.pattern }) {
            let (field, reason) = Self.chooseKey(shape, samples: samples.count)
            let shown = shape.pattern.isEmpty ? "the root array" : shape.pattern
            if let field {
                keys.append((shape.pattern, field))
                notes.append("array_keys \(shown) → \(field): \(reason)")
            } else {
                notes.append("no key for \(shown): \(reason); its elements are matched by position")
            }
        }
        var options = DiffOptions(arrayKeys: keys.compactMap { key in (try? JSONPointerPattern(key.pattern)).map { ($0, key.field) } })
        var changedEvery: Set<String>?
        var changedAny: Set<String> = []
        for (old, new) in zip(samples, samples.dropFirst()) {
            let changed = Set(JSONDiff.diff(old, new, options: options).operations.compactMap(Self.leafPattern))
            changedEvery = changedEvery.map { $0.intersection(changed) } ?? changed
            changedAny.formUnion(changed)
        }
        let volatile = (changedEvery ?? []).sorted()
        let intervals = samples.count - 1
        if intervals < 2 {
            notes.append("with \(samples.count) samples there is one interval: too few to tell volatile fields from data (use --samples 3 or more)")
        } else if !volatile.isEmpty {
            notes.append("ignore \(volatile.joined(separator: ", ")): changed in all \(intervals) intervals"
                         + (changedAny == Set(volatile) ? " and nothing else changed" : " while other fields did not")
                         + "; remove any that clients must see")
        } else if changedAny.isEmpty {
            notes.append("nothing changed in \(intervals) intervals: no volatile field to ignore (sample longer to see real changes)")
        } else {
            notes.append("no field changed in every interval: nothing to ignore")
        }
        if intervals >= 2 { options.ignore = volatile.compactMap { try? JSONPointerPattern($0) } }
        if !keys.isEmpty {
            lines.append("    array_keys: { " + keys.map { "\($0.pattern.isEmpty ? "\"\"" : $0.pattern): \($0.field)" }.joined(separator: ", ") + " }")
        }
        if intervals >= 2 && !volatile.isEmpty { lines.append("    ignore: [\(volatile.joined(separator: ", "))]") }
        let patches = zip(samples, samples.dropFirst()).map { old, new in
            let diff = JSONDiff.diff(old, new, options: options)
            return diff.isChange ? diff.serializedSize : 0
        }
        return render(lines, notes, conditional: conditional, size: size, patches: patches)
    }

    private func render(_ lines: [String], _ notes: [String], conditional: String?, size: Int, patches: [Int]?) -> String {
        var out = lines
        out.append("    # conditional requests: \(conditional ?? "not probed")")
        if let patches {
            let changes = patches.filter { $0 > 0 }
            let summary: String
            if changes.isEmpty {
                summary = "no change in \(patches.count) interval\(patches.count == 1 ? "" : "s"): clients would receive nothing after the snapshot"
            } else {
                let share = Double(changes.reduce(0, +)) / Double(changes.count) * 100 / Double(max(size, 1))
                let tenths = Int((share * 10).rounded())
                summary = "patches \(changes.min()!)–\(changes.max()!) bytes (\(changes.count) of \(patches.count) intervals changed), "
                    + "\(tenths / 10).\(tenths % 10)% of the body on average"
            }
            out.append("    # body \(size) bytes; \(summary)")
        } else {
            out.append("    # body \(size) bytes")
        }
        for note in notes { out.append("    # \(note)") }
        return out.joined(separator: "\n")
    }

    /// Records every array whose elements are all objects, by pointer pattern.
    static func collectArrays(_ value: JSONValue, pattern: [String], into shapes: inout [String: ArrayShape]) {
        switch value {
        case .object(let object):
            for (key, member) in object { collectArrays(member, pattern: pattern + [JSONPointer.escape(key)], into: &shapes) }
        case .array(let elements):
            if !elements.isEmpty, elements.allSatisfy({ if case .object = $0 { true } else { false } }) {
                let text = pattern.map { "/" + $0 }.joined()
                shapes[text, default: ArrayShape(pattern: text)].instances.append(elements)
            }
            for element in elements { collectArrays(element, pattern: pattern + ["*"], into: &shapes) }
        default:
            break
        }
    }

    /// Names that usually identify a record, best first.
    static let preferredNames = ["id", "uuid", "_id", "key", "sku", "code", "slug", "name"]

    /// The best key field of an array, or nil, and why.
    static func chooseKey(_ shape: ArrayShape, samples: Int) -> (String?, String) {
        guard let first = shape.instances.first?.first, case .object(let prototype) = first else { return (nil, "it is empty") }
        var candidates: [(field: String, kept: Double)] = []
        var refused: [String] = []
        for field in prototype.keys {
            var present = true, unique = true, scalar = true
            for instance in shape.instances {
                var seen: Set<JSONValue> = []
                for element in instance {
                    guard case .object(let object) = element, let value = object[field] else { present = false; break }
                    switch value {
                    case .string: break
                    case .number(let number) where number.intValue != nil: break
                    default: scalar = false
                    }
                    if !seen.insert(value).inserted { unique = false }
                }
            }
            guard present, scalar, unique else {
                if preferredNames.contains(field.lowercased()) {
                    refused.append("'\(field)' is \(!present ? "missing from some elements" : !scalar ? "not a string or whole number" : "not unique")")
                }
                continue
            }
            // Stable: the values that identify elements persist from one sample to the next
            // (a timestamp or a counter unique to each answer would not).
            var kept = 1.0
            for (old, new) in zip(shape.instances, shape.instances.dropFirst()) {
                let before = Set(old.compactMap { if case .object(let o) = $0 { o[field] } else { nil } })
                let after = Set(new.compactMap { if case .object(let o) = $0 { o[field] } else { nil } })
                kept = min(kept, Double(before.intersection(after).count) / Double(max(1, min(before.count, after.count))))
            }
            if kept < 0.5 {
                refused.append("'\(field)' is unique but not stable (most values change between samples)")
                continue
            }
            candidates.append((field, kept))
        }
        let elements = shape.instances.map(\.count).reduce(0, +)
        guard !candidates.isEmpty else {
            return (nil, refused.isEmpty ? "no field is present, unique and stable in all \(elements) elements" : refused.joined(separator: "; "))
        }
        candidates.sort { a, b in
            let ra = preferredNames.firstIndex(of: a.field.lowercased()) ?? preferredNames.count
            let rb = preferredNames.firstIndex(of: b.field.lowercased()) ?? preferredNames.count
            return ra != rb ? ra < rb : a.field < b.field
        }
        let chosen = candidates[0]
        var reason = "present, unique and a string or whole number in all \(elements) elements of \(shape.instances.count) arrays over \(samples) samples"
        reason += shape.instances.count > 1 ? ", and \(Int(chosen.kept * 100))% of its values persist between samples" : ""
        if preferredNames.contains(chosen.field.lowercased()) { reason += "; its name is one that usually identifies a record" }
        let others = candidates.dropFirst().map(\.field)
        if !others.isEmpty { reason += "; also possible: \(others.joined(separator: ", "))" }
        if shape.instances.allSatisfy({ $0.count < 2 }) { reason += " (but no array had two elements, so uniqueness is unproven)" }
        return (chosen.field, reason)
    }

    /// The pointer pattern of a value-changing operation (array indices as `*`), or nil for
    /// an operation that adds or removes elements (that is data, not a volatile field).
    static func leafPattern(_ operation: PatchOperation) -> String? {
        guard case .replace(let path, _) = operation else { return nil }
        return path.tokens.map { "/" + ($0.allSatisfy(\.isNumber) && !$0.isEmpty ? "*" : JSONPointer.escape($0)) }.joined()
    }
}

/// JSON Merge Patch (RFC 7396): generation and application.
public enum JSONMergePatch {
    /// Applies `patch` to `target` as RFC 7396 section 2 defines: an object patch merges member
    /// by member (`null` removes), anything else replaces the target.
    public static func apply(_ patch: JSONValue, to target: JSONValue) -> JSONValue {
        guard case .object(let patchObject) = patch else { return patch }
        var result: JSONObject
        if case .object(let targetObject) = target { result = targetObject } else { result = JSONObject() }
        for (key, value) in patchObject {
            if value == .null {
                result[key] = nil
            } else {
                result[key] = apply(value, to: result[key] ?? .null)
            }
        }
        return .object(result)
    }

    /// The merge patch turning `old` into `new`, or nil when none exists: a merge patch cannot
    /// set a member to `null` (null means "remove"), so a `new` whose objects hold null members
    /// that differ from `old` needs a snapshot instead. Arrays are replaced whole.
    /// - Returns: the patch, or `nil`; `apply(patch, old) == new` whenever a patch is returned.
    public static func diff(_ old: JSONValue, _ new: JSONValue) -> JSONValue? {
        guard case .object(let a) = old, case .object(let b) = new else {
            return containsNullMember(new) && old != new ? nil : new
        }
        var patch = JSONObject()
        for (key, _) in a where b[key] == nil { patch[key] = .null }
        for (key, newValue) in b {
            if let oldValue = a[key] {
                if oldValue == newValue { continue }
                if newValue == .null { return nil }
                if case .object = oldValue, case .object = newValue {
                    guard let child = diff(oldValue, newValue) else { return nil }
                    patch[key] = child
                } else {
                    if containsNullMember(newValue) { return nil }
                    patch[key] = newValue
                }
            } else {
                if newValue == .null || containsNullMember(newValue) { return nil }
                patch[key] = newValue
            }
        }
        return .object(patch)
    }

    /// Whether an object member somewhere in `value` (outside arrays) is null.
    private static func containsNullMember(_ value: JSONValue) -> Bool {
        guard case .object(let object) = value else { return false }
        return object.contains { $0.value == .null || containsNullMember($0.value) }
    }
}

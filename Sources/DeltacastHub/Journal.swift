/// A topic's recent changes, oldest first, bounded by count and bytes: what a client that
/// resumes with a cursor is sent instead of a snapshot (DESIGN.md "Topics"). A value; the topic
/// holds it under its lock.
///
/// Trimmed entries stay in the storage until it is compacted: at most a quarter of the live
/// ones (or 4), so memory follows the limits (never twice the journal) and compacting costs
/// O(1) per change.
struct Journal {
    private var storage: [Change] = []
    private var start = 0
    /// Event bytes of the live entries.
    private(set) var bytes = 0

    /// Live entries.
    var count: Int { storage.count - start }
    /// Entries the storage still references, trimmed ones included.
    var storageCount: Int { storage.count }
    /// The live entries, oldest first.
    var entries: ArraySlice<Change> { storage[start...] }

    /// Appends `change`, then trims the oldest until at most `maxEntries` and `maxBytes` remain
    /// (the newest is kept, whatever its size).
    mutating func append(_ change: Change, maxEntries: Int, maxBytes: Int) {
        storage.append(change)
        bytes += change.event.count
        while count > maxEntries || (bytes > maxBytes && count > 1) {
            bytes -= storage[start].event.count
            start += 1
        }
        if start > max(4, count / 4) {
            storage.removeFirst(start)
            start = 0
        }
    }

    /// The changes after `seq` (a slice: no copy), when the journal still holds the one right
    /// after it; nil when it does not, and the client needs a snapshot.
    func changes(after seq: Int) -> ArraySlice<Change>? {
        guard let first = entries.first?.cursor, first.seq <= seq + 1 else { return nil }
        return entries.drop { $0.cursor!.seq <= seq }
    }

    /// Forgets every entry (a new epoch).
    mutating func removeAll() {
        storage = []
        start = 0
        bytes = 0
    }
}

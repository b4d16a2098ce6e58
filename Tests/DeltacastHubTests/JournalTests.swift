import DeltacastWire
import Testing
@testable import DeltacastHub

/// The journal alone: what a resuming client is sent, and the bounds on entries, bytes and storage.
@Suite struct JournalTests {
    func change(_ seq: Int, bytes: Int = 10) -> Change {
        Change(topic: "/t", kind: .patch, cursor: Cursor(epoch: "e", seq: seq), base: Cursor(epoch: "e", seq: seq - 1),
               event: [UInt8](repeating: 0x20, count: bytes), deflater: nil)
    }

    @Test func aResumingClientGetsExactlyTheChangesAfterItsCursor() {
        var journal = Journal()
        for seq in 1...5 { journal.append(change(seq), maxEntries: 3, maxBytes: 1_000) }
        #expect(journal.entries.map { $0.cursor!.seq } == [3, 4, 5])
        #expect(journal.changes(after: 3)?.map { $0.cursor!.seq } == [4, 5])
        #expect(journal.changes(after: 2)?.map { $0.cursor!.seq } == [3, 4, 5])
        #expect(journal.changes(after: 1) == nil)   // 2 was trimmed: a snapshot
        #expect(journal.changes(after: 5)?.isEmpty == true)
    }

    @Test func bytesBoundTheJournalButTheNewestStays() {
        var journal = Journal()
        for seq in 1...4 { journal.append(change(seq, bytes: 100), maxEntries: 100, maxBytes: 250) }
        #expect(journal.entries.map { $0.cursor!.seq } == [3, 4])
        #expect(journal.bytes == 200)
        journal.append(change(5, bytes: 1_000), maxEntries: 100, maxBytes: 250)
        #expect(journal.entries.map { $0.cursor!.seq } == [5])   // larger than the bound alone, still kept
    }

    @Test func storageNeverHoldsMuchMoreThanTheLiveEntries() {
        var journal = Journal()
        for seq in 1...10_000 {
            journal.append(change(seq), maxEntries: 64, maxBytes: 1 << 20)
            #expect(journal.storageCount <= 64 + max(4, 64 / 4) + 1)
        }
        journal.removeAll()
        #expect(journal.count == 0 && journal.storageCount == 0 && journal.bytes == 0)
    }
}

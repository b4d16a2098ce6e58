import Testing
@testable import DeltacastServer

/// The dense list a loop walks to fan a change out: every member once, whatever the order of
/// inserts and removals.
@Suite struct SubscriberListTests {
    final class Member {
        let name: String
        init(_ name: String) { self.name = name }
    }

    static func names(_ list: SubscriberList<Member>) -> Set<String> { Set(list.connections.map(\.name)) }

    @Test func insertsOnceAndRemovesByIdentityWhateverThePosition() {
        let members = (0..<5).map { Member("m\($0)") }
        var list = SubscriberList<Member>()
        for member in members { list.insert(member) }
        list.insert(members[2])   // a second subscribe of the same connection
        #expect(list.connections.count == 5)

        list.remove(members[1])   // the middle: the last one takes its place
        #expect(Self.names(list) == ["m0", "m2", "m3", "m4"])
        list.remove(members[4])   // the one that just moved
        list.remove(members[4])   // gone already: nothing changes
        list.remove(Member("m0"))   // same name, another object: not a member
        #expect(Self.names(list) == ["m0", "m2", "m3"])

        for member in [members[0], members[3], members[2]] { list.remove(member) }
        #expect(list.isEmpty)
        list.insert(members[3])   // positions were forgotten with the members
        #expect(Self.names(list) == ["m3"])
    }
}

/// A loop's lists by topic: a topic with no subscriber leaves the table, and one emptied
/// list's storage is kept for the next topic (held polls empty and refill theirs on every change).
@Suite struct SubscriberTableTests {
    typealias Member = SubscriberListTests.Member

    @Test func anEmptiedListLeavesTheTableAndOneSpareKeepsItsRoom() {
        let members = (0..<100).map { Member("m\($0)") }
        var table = SubscriberTable<Member>()
        for member in members { table.insert(member, topic: "/a") }
        table.insert(members[0], topic: "/b")
        #expect(table.count == 2 && table["/a"]?.count == 100 && table["/b"]?.count == 1)

        for member in members { table.remove(member, topic: "/a") }
        #expect(table["/a"] == nil && table.count == 1)
        #expect(table.spare?.isEmpty == true && (table.spare?.capacity ?? 0) >= 100)
        table.remove(members[0], topic: "/b")   // a second emptied list is let go: one spare at most
        #expect(table.count == 0 && (table.spare?.capacity ?? 0) >= 100)
        table.remove(members[0], topic: "/b")   // no such topic: nothing changes

        table.insert(members[5], topic: "/c")   // the spare serves the next topic, room and all
        #expect(table.spare == nil && table["/c"].map { $0.map(\.name) } == ["m5"])
        table.insert(members[6], topic: "/d")
        #expect(table["/d"]?.count == 1 && table.count == 2)
    }
}

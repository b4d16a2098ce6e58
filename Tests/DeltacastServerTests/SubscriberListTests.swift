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

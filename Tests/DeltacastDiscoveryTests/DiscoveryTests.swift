@testable import DeltacastDiscovery
import DeltacastJSON
import Testing

/// What `discover` infers from samples, without a network: array keys and why, volatile fields,
/// and what it cannot decide.
@Suite struct DiscoveryTests {
    func report(_ samples: [String]) -> String {
        Discovery(bodies: samples.map { Array($0.utf8) }).report(path: "/api/x", url: "/api/x", intervalMilliseconds: 1000, conditional: "ETag: yes")
    }

    func sample(_ at: Int, prices: [(String, Int)]) -> String {
        #"{"generatedAt":\#(at),"items":["# + prices.map { #"{"sku":"\#($0.0)","price":\#($0.1)}"# }.joined(separator: ",") + "]}"
    }

    @Test func aStableUniqueFieldBecomesTheKeyAndAFieldThatChangesEveryTimeIsIgnored() {
        // One price changes once, an element is added, and the timestamp changes every time.
        let out = report([sample(1, prices: [("A", 10), ("B", 20)]), sample(2, prices: [("A", 11), ("B", 20)]), sample(3, prices: [("B", 20), ("A", 11), ("C", 5)])])
        #expect(out.contains("    array_keys: { /items: sku }"))
        #expect(out.contains("    ignore: [/generatedAt]"))
        #expect(out.contains("ignore /generatedAt: changed in all 2 intervals while other fields did not"))
        #expect(out.contains("array_keys /items → sku: present, unique and a string or whole number in all 7 elements of 3 arrays over 3 samples"))
        #expect(out.contains("its name is one that usually identifies a record"))
        #expect(out.contains("    # conditional requests: ETag: yes"))
    }

    @Test func aPreferredNameThatIsNotUniqueIsRefusedWithItsReason() {
        let body = #"{"rows":[{"id":1,"v":1},{"id":1,"v":1}]}"#
        let out = report([body, body, body])
        #expect(out.contains("no key for /rows: 'id' is not unique; its elements are matched by position"))
        #expect(out.contains("nothing changed in 2 intervals"))
        #expect(!out.contains("array_keys:"))
    }

    @Test func aUniqueFieldWhoseValuesChangeEveryTimeIsNoKey() {
        let out = report([#"{"rows":[{"token":"a1"},{"token":"a2"}]}"#, #"{"rows":[{"token":"b1"},{"token":"b2"}]}"#, #"{"rows":[{"token":"c1"},{"token":"c2"}]}"#])
        #expect(out.contains("no key for /rows: 'token' is unique but not stable (most values change between samples)"))
    }

    @Test func twoSamplesAreTooFewToTellVolatileFieldsFromData() {
        let out = report([sample(1, prices: [("A", 1)]), sample(2, prices: [("A", 2)])])
        #expect(out.contains("with 2 samples there is one interval: too few to tell volatile fields from data"))
        #expect(!out.contains("ignore:"))
    }

    @Test func aBodyThatIsNotJSONTravelsAsSnapshots() {
        let out = report(["<html>1</html>", "<html>2</html>"])
        #expect(out.contains("    diff: snapshot"))
        #expect(out.contains("the body is not JSON (14 bytes)"))
    }

    @Test func onlyValueChangesCountAsVolatile() throws {
        // Replacing a value is a volatile candidate; adding or removing an element is data.
        let replace = PatchOperation.replace(path: try JSONPointer("/items/3/price"), value: .number(JSONNumber(1)))
        #expect(Discovery.leafPattern(replace) == "/items/*/price")
        let add = PatchOperation.add(path: try JSONPointer("/items/-"), value: .null)
        #expect(Discovery.leafPattern(add) == nil)
    }
}

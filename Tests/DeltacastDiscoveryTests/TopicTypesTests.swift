@testable import DeltacastDiscovery
import DeltacastJSON
import Testing

/// Types from samples, without a network: the shape, its JSON Schema and TypeScript, the
/// names and topic map, and the check of a later answer against the schema.
@Suite struct TopicTypesTests {
    func shape(_ samples: [String]) throws -> Shape {
        Shape(samples: try samples.map { try JSONParser.parse(Array($0.utf8)) })
    }

    func json(_ text: String) throws -> JSONValue { try JSONParser.parse(Array(text.utf8)) }

    let prices = [
        #"{"market":"open","items":[{"id":1,"price":10,"note":null,"side":"buy"},{"id":2,"price":20.5,"note":"x","side":"sell"},{"id":4,"price":1,"side":"buy"},{"id":5,"price":2,"side":"buy"}]}"#,
        #"{"market":"closed","items":[{"id":1,"price":11,"note":null,"side":"buy"}]}"#,
        #"{"market":"open","items":[{"id":3,"price":7,"side":"sell"}],"halted":true}"#,
        #"{"market":"open","items":[],"halted":false}"#,
    ]

    @Test func kindsRequiredMembersEnumerationsAndNullsComeFromTheSamples() throws {
        let type = try shape(prices).typeScript()
        #expect(type == """
            {
                market: string;
                items: {
                    id: number;
                    price: number;
                    /** in 3 of 6 objects: absent in samples 1, 3 */
                    note?: null | string;
                    side: 'buy' | 'sell';
                }[];
                /** in 2 of 4 objects: absent in samples 1–2 */
                halted?: boolean;
            }
            """)
        let schema = try shape(prices).jsonSchema(title: "Prices")
        guard case .object(let root) = schema, case .object(let properties)? = root["properties"],
              case .object(let items)? = properties["items"], case .object(let item)? = items["items"],
              case .object(let itemProperties)? = item["properties"] else { Issue.record("\(schema)"); return }
        #expect(root["$schema"] == "https://json-schema.org/draft/2020-12/schema" && root["title"] == "Prices")
        #expect(root["required"] == ["market", "items"])
        // A value at one place in each sample is not a closed set, however often it repeats;
        // one that several elements of one sample share is.
        #expect(properties["market"] == ["type": "string"])
        #expect(itemProperties["side"] == ["type": "string", "enum": ["buy", "sell"]])
        #expect(item["required"] == ["id", "price", "side"])
        #expect(itemProperties["id"] == ["type": "integer"])
        #expect(itemProperties["price"] == ["type": "number"])   // 20.5 among integers
        #expect(itemProperties["note"] == ["description": "in 3 of 6 objects: absent in samples 1, 3", "type": ["null", "string"]])
    }

    @Test func samplesThatDisagreeMakeAUnionThatSaysWhichSampleShowedWhat() throws {
        let disagreeing = try shape([#"{"v":1}"#, #"{"v":2}"#, #"{"v":"three"}"#, #"{"v":{"n":4}}"#])
        #expect(disagreeing.typeScript() == """
            {
                /** number in samples 1–2; string in sample 3; object in sample 4 */
                v: number | string | {
                    n: number;
                };
            }
            """)
        guard case .object(let root) = disagreeing.jsonSchema(title: "V"), case .object(let properties)? = root["properties"],
              case .object(let v)? = properties["v"] else { Issue.record("no v"); return }
        #expect(v["$comment"] == "number in samples 1–2; string in sample 3; object in sample 4")
        #expect(v["anyOf"] == [["type": "integer"], ["type": "string"], ["type": "object", "properties": ["n": ["type": "integer"]], "required": ["n"]]])
    }

    @Test func freeTextIsAStringAndAFewValuesSeenOnceAreNotAnEnumeration() throws {
        let free = try shape((0..<12).map { #"{"name":"user \#($0)"}"# })
        #expect(free.typeScript().contains("name: string;"))
        let few = try shape([#"{"s":"a"}"#, #"{"s":"b"}"#])
        #expect(few.typeScript().contains("s: string;"))
        let array = try shape([#"[1, "a", null]"#])
        #expect(array.typeScript() == "(null | number | string)[]")
    }

    @Test func interfaceNamesAndTopicKeysComeFromThePaths() {
        #expect(TopicTypes.names(for: ["/api/prices", "/api/users/{id}/notifications", "/"]) == ["Prices", "Notifications", "Root"])
        #expect(TopicTypes.names(for: ["/a/items", "/b/items", "/stock-levels"]) == ["AItems", "BItems", "StockLevels"])
        #expect(TopicTypes.names(for: ["/items", "/items/{id}"]) == ["Items", "Items2"])
        #expect(TopicTypes.topicKey("/api/prices") == "'/api/prices'")
        #expect(TopicTypes.topicKey("/api/users/{id}/notifications") == "[topic: `/api/users/${string}/notifications`]")
        let module = TopicTypes.module([.init(path: "/api/prices", shape: try? shape([#"{"a":1}"#]), samples: 1),
                                        .init(path: "/secret", shape: nil, reason: "the upstream answered 401: pass credentials with -H")],
                                       header: "Generated by deltacast types.")
        #expect(module.contains("export interface Prices {\n    a: number;\n}"))
        #expect(module.contains("/** `/secret`: no type: the upstream answered 401: pass credentials with -H. */\nexport type Secret = unknown;"))
        #expect(module.contains("export interface Topics {\n    '/api/prices': Prices;\n    '/secret': Secret;\n}"))
    }

    @Test func aLaterAnswerIsCheckedAgainstTheSchemaWithThePointerThatChanged() throws {
        let schema = try shape(prices).jsonSchema(title: "Prices")
        #expect(SchemaCheck.differences(try json(prices[0]), schema).isEmpty)
        let changed = try json(#"{"market":"paused","items":[{"id":1,"price":"10","side":"hold"},{"price":3,"currency":"EUR","side":"buy"}],"halted":0}"#)
        #expect(SchemaCheck.differences(changed, schema).map(\.description) == [
            #"/items/0/price: expected number, found string "10""#,
            #"/items/0/side: "hold" is not one of "buy", "sell""#,
            "/items/1/id: the required member is missing",
            "/items/1/currency: a member the schema does not have (string)",
            "/halted: expected boolean, found integer 0",
        ])
        #expect(SchemaCheck.differences(changed, schema).filter { $0.severity == .breaking }.count == 4)
        #expect(SchemaCheck.differences(try json("[]"), schema).map(\.description) == ["(root): expected object, found array []"])
        #expect(SchemaCheck.differences(changed, schema, limit: 2).count == 2)
    }

    @Test func namesAndValuesAreQuotedForTypeScript() throws {
        #expect(Shape.quoted("it's \"x\"\n") == #"'it\'s \"x\"\n'"#)   // a real newline, escaped
        #expect(Shape.propertyName("price") == "price")
        #expect(Shape.propertyName("unit-price") == "'unit-price'")
        #expect(Shape.propertyName("1st") == "'1st'")
        let nested = String(repeating: "[", count: 40) + String(repeating: "]", count: 40)
        // Past maximumDepth (32) the shape is not followed: the deepest arrays hold `unknown`.
        #expect(try shape([nested]).typeScript() == "unknown" + String(repeating: "[]", count: Shape.maximumDepth))
    }

    @Test func schemasAreWrittenIndented() throws {
        let text = TopicTypes.pretty(try shape([#"{"a":[1]}"#]).jsonSchema(title: "A"))
        #expect(text == """
            {
              "$schema": "https://json-schema.org/draft/2020-12/schema",
              "title": "A",
              "type": "object",
              "properties": {
                "a": {
                  "type": "array",
                  "items": {
                    "type": "integer"
                  }
                }
              },
              "required": ["a"]
            }
            """)
    }
}

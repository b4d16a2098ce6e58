import DeltacastClient
import Foundation

// An app's use of the library: typed states, updates with cursors and status, connection
// events. `ClientPackage URL TOPIC` prints the transport it connected on, then the first state
// of TOPIC as JSON keys, and exits.
struct AnyDocument: Decodable, Sendable {
    let keys: [String]
    init(from decoder: any Decoder) throws {
        keys = try decoder.container(keyedBy: Key.self).allKeys.map(\.stringValue).sorted()
    }
    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
}

let arguments = CommandLine.arguments
guard arguments.count == 3, let url = URL(string: arguments[1]) else {
    print("usage: ClientPackage URL TOPIC")
    exit(2)
}
var options = DeltacastClient.Options()
options.onConnection = { event in
    switch event {
    case .connected(let transport): print("connected: \(transport)")
    case .disconnected(let reason): print("disconnected: \(reason)")
    }
}
let client = DeltacastClient(url: url, options: options)
for try await update in client.updates(arguments[2], as: AnyDocument.self) {
    switch update {
    case .state(let document, let cursor):
        print("\(cursor) \(document.keys.joined(separator: ","))")
        client.close()
        exit(0)
    case .status(let stale, _, let message):
        print("status stale=\(stale) \(message ?? "")")
    }
}

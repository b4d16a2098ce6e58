import DeltacastConfig
import DeltacastDiscovery
import DeltacastHub
import DeltacastJSON

/// `GET /deltacast/types.d.ts` (`types: true`): the TypeScript module `deltacast types` writes,
/// inferred from the states the proxy holds now instead of fresh requests. Each endpoint's
/// shape merges the current states of up to ``samplesPerEndpoint`` of its topics. Endpoints
/// behind `auth: token` or `auth: passthrough` are typed `unknown` (their states are a user's,
/// and an enumeration would show their values); `deltacast types` with credentials types them.
enum TopicTypesSource {
    static let samplesPerEndpoint = 20

    static func module(configuration: Configuration, hub: Hub) -> String {
        var bodies: [String: [[UInt8]]] = [:]
        for topic in hub.allTopics where (bodies[topic.pattern]?.count ?? 0) < samplesPerEndpoint {
            if let body = topic.currentBodyForTypes() { bodies[topic.pattern, default: []].append(body) }
        }
        let endpoints = configuration.endpoints.map { endpoint -> TopicTypes.Endpoint in
            let path = endpoint.path.text
            guard endpoint.auth == .none else {
                return .init(path: path, shape: nil, reason: "auth: \(endpoint.auth.rawValue): not inferred from users' states (run deltacast types with credentials)")
            }
            let values = (bodies[path] ?? []).compactMap { try? JSONParser.parse($0) }
            guard !values.isEmpty else { return .init(path: path, shape: nil, reason: bodies[path] == nil ? "no state held now" : "its states are not JSON") }
            return .init(path: path, shape: Shape(samples: values), samples: values.count)
        }
        return TopicTypes.module(endpoints, header: "The topics of this proxy, inferred from the states it holds now (types: true).\nUse: new Deltacast<Topics>(url) with the declarations at /deltacast.d.ts.")
    }
}

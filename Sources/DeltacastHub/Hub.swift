public import DeltacastConfig
import DeltacastWire
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The topic table: finds or creates topics by name, bounds how many exist
/// (`limits.max_topics`, least recently used without subscribers evicted first), and owns the
/// shared encoder for changes. Changes reach the event loops through `deliver`.
public final class Hub: Sendable {
    /// The configuration it was built for.
    public let configuration: Configuration
    /// Maps targets to endpoints and topic names.
    public let matcher: EndpointMatcher
    /// Event loops that may have subscribers (indices 0..<loopCount).
    public let loopCount: Int
    let deliver: @Sendable (Int, Change) -> Void
    private let topics = Mutex<[String: Topic]>([:])
    private let deflater = Mutex<DeflaterBox>(DeflaterBox())

    /// A hub for `loopCount` loops; `deliver(loop, change)` must hand the change to that loop
    /// (it is called with a topic's lock held, so it must only enqueue).
    public init(configuration: Configuration, loopCount: Int, deliver: @escaping @Sendable (Int, Change) -> Void) {
        self.configuration = configuration
        self.matcher = EndpointMatcher(endpoints: configuration.endpoints)
        self.loopCount = loopCount
        self.deliver = deliver
    }

    /// Why a topic could not be had.
    public enum TopicError: Error, Equatable {
        /// `limits.max_topics` topics exist and every one has subscribers.
        case tooMany(Int)
    }

    /// The topic named `name` of endpoint `index`, created when missing.
    public func topic(named name: String, endpoint index: Int) throws(TopicError) -> Topic {
        let result = topics.withLock { table -> Result<Topic, TopicError> in
            if let existing = table[name] { existing.lastUsed = tick(); return .success(existing) }
            if table.count >= configuration.limits.maxTopics {
                let idle = table.values.filter { $0.subscriberCount == 0 }.min { $0.lastUsed < $1.lastUsed }
                guard let idle else { return .failure(.tooMany(configuration.limits.maxTopics)) }
                table[idle.name] = nil
            }
            let topic = Topic(name: name, endpoint: configuration.endpoints[index], hub: self)
            topic.lastUsed = tick()
            table[name] = topic
            return .success(topic)
        }
        return try result.get()
    }

    /// An existing topic, without creating one.
    public func existingTopic(named name: String) -> Topic? { topics.withLock { $0[name] } }

    /// Topics that exist now.
    public var topicCount: Int { topics.withLock { $0.count } }

    func makeChange(topic: String, kind: Change.Kind, cursor: Cursor?, base: Cursor?, event: [UInt8]) -> Change {
        deflater.withLock { box in
            Change(topic: topic, kind: kind, cursor: cursor, base: base, event: event, deflater: box.deflater)
        }
    }

    private let clock = Atomic<Int64>(0)
    /// A use counter: topics record it when used, and the smallest is the least recently used
    /// (a clock in milliseconds would tie).
    func tick() -> Int64 { clock.add(1, ordering: .relaxed).newValue }

    static func now() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }
}

/// The shared compressor, only used under the hub's lock.
struct DeflaterBox: @unchecked Sendable {
    let deflater = Deflater(windowBits: 15)
}

public import DeltacastConfig

/// Redis Cluster's key space: 16,384 hash slots, each served by one primary
/// (https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/).
public enum HashSlot {
    public static let count = 16384

    /// The slot of `key`: CRC16 (XMODEM) of its hash tag (the text between the first `{` and
    /// the first `}` after it, when that is not empty), else of the whole key, modulo 16,384.
    public static func of(_ key: String) -> Int { of(Array(key.utf8)) }

    public static func of(_ key: [UInt8]) -> Int {
        var hashed = key[...]
        if let open = key.firstIndex(of: UInt8(ascii: "{")),
           let close = key[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1 {
            hashed = key[(open + 1)..<close]
        }
        return Int(crc16(hashed)) & (count - 1)
    }

    /// CRC-16/XMODEM (polynomial 0x1021, initial 0), as Redis Cluster computes it.
    public static func crc16(_ bytes: some Collection<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc ^= UInt16(byte) << 8
            for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        }
        return crc
    }

    /// A short hash tag whose keys land in `slot` (the decimal number, from 0 up, that hashes
    /// there first): how a primary's own keys are named.
    public static func tag(for slot: Int) -> String { tags[slot] }

    private static let tags: [String] = {
        var table = [String?](repeating: nil, count: count)
        var found = 0
        var candidate = 0
        while found < count {
            let text = String(candidate)
            let slot = Int(crc16(text.utf8)) & (count - 1)
            if table[slot] == nil { table[slot] = text; found += 1 }
            candidate += 1
        }
        return table.map { $0! }
    }()
}

/// Which primary serves each hash slot, as `CLUSTER SLOTS` tells it.
public struct SlotMap: Equatable, Sendable {
    /// The primaries, each once.
    public private(set) var primaries: [Configuration.RedisURL.Seed] = []
    /// For each slot, its primary's index in ``primaries``, or -1 when no primary serves it.
    private var owners = [Int16](repeating: -1, count: HashSlot.count)

    public init() {}

    /// Reads a `CLUSTER SLOTS` reply: `[[first, last, [host, port, id...], replicas...], ...]`.
    /// A primary announced with an empty host is at `fallbackHost` (Redis's way of saying
    /// "the address you reached me at").
    public static func parse(_ reply: RESPValue, fallbackHost: String) -> Result<SlotMap, SlotMapError> {
        if case .error(let message) = reply { return .failure(SlotMapError(description: message)) }
        guard let ranges = reply.elements else { return .failure(SlotMapError(description: "CLUSTER SLOTS answered \(reply), not a list of slot ranges")) }
        var map = SlotMap()
        for range in ranges {
            guard let fields = range.elements, fields.count >= 3, let first = fields[0].integer, let last = fields[1].integer,
                  0 <= first, first <= last, last < HashSlot.count,
                  let node = fields[2].elements, node.count >= 2, let host = node[0].text, let port = node[1].integer, (1...65535).contains(port) else {
                return .failure(SlotMapError(description: "CLUSTER SLOTS sent a range that is not [first, last, [host, port, ...], ...]: \(range)"))
            }
            map.assign(Int(first)...Int(last), to: .init(host: host.isEmpty ? fallbackHost : host, port: Int(port)))
        }
        return .success(map)
    }

    /// Slots served by some primary.
    public var covered: Int { owners.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) } }

    public var isComplete: Bool { !owners.contains(-1) }

    /// The primary that serves `slot`, if any.
    public func primary(of slot: Int) -> Configuration.RedisURL.Seed? {
        let index = owners[slot]
        return index >= 0 ? primaries[Int(index)] : nil
    }

    /// `slot` is served by `primary` now (a `MOVED` answer).
    public mutating func assign(_ slots: ClosedRange<Int>, to primary: Configuration.RedisURL.Seed) {
        let index: Int
        if let known = primaries.firstIndex(of: primary) { index = known } else { primaries.append(primary); index = primaries.count - 1 }
        for slot in slots { owners[slot] = Int16(index) }
        // A primary left with no slot is no longer one.
        let used = Set(owners.filter { $0 >= 0 })
        if used.count < primaries.count {
            let kept = primaries.indices.filter { used.contains(Int16($0)) }
            let renumber = Dictionary(uniqueKeysWithValues: kept.enumerated().map { (Int16($0.element), Int16($0.offset)) })
            primaries = kept.map { primaries[$0] }
            owners = owners.map { $0 >= 0 ? renumber[$0]! : -1 }
        }
    }

    /// The lowest slot `primary` serves: where its own keys (changes stream, channel) live.
    public func firstSlot(of primary: Configuration.RedisURL.Seed) -> Int? {
        guard let index = primaries.firstIndex(of: primary) else { return nil }
        return owners.firstIndex(of: Int16(index))
    }

    /// The slots `primary` serves, as ranges (`0-5460,10923`).
    public func ranges(of primary: Configuration.RedisURL.Seed) -> String {
        guard let index = primaries.firstIndex(of: primary).map(Int16.init) else { return "" }
        var parts: [String] = []
        var slot = 0
        while slot < HashSlot.count {
            guard owners[slot] == index else { slot += 1; continue }
            var last = slot
            while last + 1 < HashSlot.count && owners[last + 1] == index { last += 1 }
            parts.append(last == slot ? "\(slot)" : "\(slot)-\(last)")
            slot = last + 1
        }
        return parts.joined(separator: ",")
    }
}

/// Why a `CLUSTER SLOTS` reply could not be read.
public struct SlotMapError: Error, Equatable, Sendable, CustomStringConvertible {
    public let description: String
}

/// A Redis Cluster redirection or refusal, read from an error reply.
public enum ClusterReply: Equatable, Sendable {
    /// `MOVED slot host:port`: the slot lives there now; update the map.
    case moved(slot: Int, to: Configuration.RedisURL.Seed)
    /// `ASK slot host:port`: this one command goes there, after `ASKING` (a slot migrating).
    case ask(slot: Int, to: Configuration.RedisURL.Seed)
    /// `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`, `LOADING`, or a script that reached a key this
    /// node no longer serves: the same command may succeed a little later.
    case retry(String)

    /// The redirection or refusal in `message`, or nil for an ordinary error.
    public static func parse(_ message: String) -> ClusterReply? {
        let words = message.split(separator: " ", maxSplits: 3)
        switch words.first {
        case "MOVED", "ASK":
            guard words.count >= 3, let slot = Int(words[1]), (0..<HashSlot.count).contains(slot),
                  let colon = words[2].lastIndex(of: ":"), let port = Int(words[2][words[2].index(after: colon)...]) else { return nil }
            var host = String(words[2][..<colon])
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            let seed = Configuration.RedisURL.Seed(host: host, port: port)
            return words[0] == "MOVED" ? .moved(slot: slot, to: seed) : .ask(slot: slot, to: seed)
        case "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "LOADING":
            return .retry(message)
        default:
            return message.contains("non local key") ? .retry(message) : nil
        }
    }
}

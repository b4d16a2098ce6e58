public import DeltacastWire

/// One update of a topic as every transport sends it, encoded once into immutable bytes that
/// every subscriber on every event loop shares (DESIGN.md invariant 5).
public final class Change: Sendable {
    /// What kind of event this is.
    public enum Kind: Sendable, Equatable { case snapshot, patch, status, error }

    /// The topic's name, as clients know it.
    public let topic: String
    /// The topic's table key: its name, plus a credential digest under `auth: passthrough`
    /// (two credentials' topics share a name, never a key). Deliveries are routed by it.
    public let key: String
    /// The kind.
    public let kind: Kind
    /// The cursor after this change (nil for status and error events, which do not move it).
    public let cursor: Cursor?
    /// The cursor a patch applies to.
    public let base: Cursor?
    /// The event JSON (DESIGN.md "Wire protocol").
    public let event: [UInt8]
    /// The size of the full body this change leads to (0 for status and error events): what a
    /// client polling the upstream would have fetched instead of `event`.
    public let stateBytes: Int
    /// A WebSocket text frame carrying `event`.
    public let webSocketFrame: [UInt8]
    /// The same as a permessage-deflate frame (window 15, no context takeover); nil when
    /// compression would not make it smaller.
    public let webSocketDeflatedFrame: [UInt8]?
    /// The SSE `event:` and `data:` lines and the blank line, without `id:` (multiplexed SSE
    /// writes its own id line first).
    public let sseBody: [UInt8]
    /// `id: CURSOR` followed by `sseBody`: the whole event for single-topic SSE.
    public let sseEvent: [UInt8]

    /// Encodes `event` for every framing. `deflater` compresses (nil: no compressed frame).
    public init(topic: String, key: String? = nil, kind: Kind, cursor: Cursor?, base: Cursor?, event: [UInt8], stateBytes: Int = 0, deflater: Deflater?) {
        self.topic = topic
        self.key = key ?? topic
        self.kind = kind
        self.cursor = cursor
        self.base = base
        self.event = event
        self.stateBytes = stateBytes
        self.webSocketFrame = WebSocketFrame.encode(.text, payload: event)
        if let deflater, event.count > 64 {
            let compressed = deflater.compress(event)
            webSocketDeflatedFrame = compressed.count < event.count ? WebSocketFrame.encode(.text, payload: compressed, compressed: true) : nil
        } else {
            webSocketDeflatedFrame = nil
        }
        let name: String
        switch kind {
        case .snapshot: name = "snapshot"
        case .patch: name = "patch"
        case .status: name = "status"
        case .error: name = "error"
        }
        var body = Array("event: \(name)\n".utf8)
        body += ServerSentEvents.dataLines(event)
        body.append(0x0A)
        self.sseBody = body
        self.sseEvent = cursor.map { Array("id: \($0)\n".utf8) + body } ?? body
    }

    /// The WebSocket frame for a connection that did (`deflate`) or did not agree to compression.
    public func webSocketFrame(deflate: Bool) -> [UInt8] {
        deflate ? (webSocketDeflatedFrame ?? webSocketFrame) : webSocketFrame
    }
}

// Example dashboard code against the served declarations (/deltacast.d.ts): a topic map for
// the topics it knows, a type named at the call for one it does not. It must compile with
// `tsc --strict`, and it runs in node against a real proxy (declarations_test.py).
import { Deltacast, ErrorEvent, PatchEvent, SnapshotEvent, StatusEvent, Transport } from './deltacast.js';

declare const process: { argv: string[]; exit(code: number): never };

interface Item { id: number; price: number }
interface Prices { version: number; items: Item[]; market: 'open' | 'closed' }
interface Feed { unread: number; items: { text: string }[] }

interface Topics {
    '/prices': Prices;
    [feed: `/users/${string}/feed`]: Feed;
}

const [url, transport] = process.argv.slice(2);
const log = (line: object) => console.log(JSON.stringify(line));

const dc = new Deltacast<Topics>(url, { transports: [transport as Transport], openTimeout: 4000, initialBackoff: 200 });
dc.on('transport', (t: Transport) => log({ transport: t }));
dc.on('drift', (d) => log({ drift: d.topic }));

const prices = dc.subscribe('/prices', {
    onState(state, event: SnapshotEvent<Prices> | PatchEvent) {
        const total: number = state.items.reduce((sum, item) => sum + item.price, 0);
        log({ topic: '/prices', type: event.type, version: state.version, total, market: state.market });
    },
    onPatch(event: PatchEvent) {
        log({ topic: '/prices', patch: event.patch ? event.patch.map((op) => op.op + ' ' + op.path) : 'merge', cursor: event.cursor });
    },
    onStatus(status: StatusEvent) { log({ topic: '/prices', stale: status.stale === true }); },
    onError(error: ErrorEvent) { log({ topic: '/prices', error: error.code }); },
});

// A template of the map: the state is a Feed.
dc.subscribe('/users/42/feed', {
    onState(feed) { log({ topic: '/users/42/feed', unread: feed.unread, first: feed.items[0]?.text ?? null }); },
});

// A topic outside the map, its type named at the call.
dc.subscribe<{ done: boolean }>('/other', {
    onState(other) {
        if (other.done) {
            log({ topic: '/other', done: true, pricesVersion: prices.state?.version ?? null, cursor: prices.cursor });
            dc.close();
            process.exit(0);
        }
    },
});

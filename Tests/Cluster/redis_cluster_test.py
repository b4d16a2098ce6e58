#!/usr/bin/env python3
"""Cluster mode on a real Redis Cluster: six `redis-server --cluster-enabled yes` on free
loopback ports (three primaries, three replicas, made by `redis-cli --cluster create`, a 1 s
node timeout, no persistence), three `deltacast serve` nodes given two of them as seeds, and
the simulator as the upstream. Clients on every transport check every cursor, as in
cluster_test.py, while slots move, a primary is killed and the whole cluster restarts.

Run: DELTACAST_BIN=.build/release/deltacast python3 Tests/Cluster/redis_cluster_test.py
"""
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from cluster_test import (ADMIN, ClusterCase, document, free_port, node_config, put, request, resp, wait_for_redis)  # noqa: E402

NODE_TIMEOUT_MS = 1000


def crc16(data):
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def slot_of(key):
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            key = key[start + 1:end]
    return crc16(key.encode()) % 16384


def topic_tag(topic_key):
    return hashlib.sha1(topic_key.encode()).hexdigest()[:16]


def topic_slot(topic_key):
    return slot_of("{" + topic_tag(topic_key) + "}")


def free_cluster_port():
    """A loopback port at most 55535 that is free, and whose cluster bus port (+10000) is too."""
    import random
    for _ in range(1000):
        port = random.randint(20000, 55535)
        try:
            with socket.socket() as first, socket.socket() as second:
                first.bind(("127.0.0.1", port))
                second.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair")


class RedisCluster:
    """Six cluster-enabled `redis-server`s on loopback: three primaries with a replica each."""

    def __init__(self):
        self.ports = []
        while len(self.ports) < 6:
            port = free_cluster_port()
            if port not in self.ports and port + 10000 not in self.ports and port - 10000 not in self.ports:
                self.ports.append(port)
        self.directory = tempfile.mkdtemp(prefix="deltacast-redis-cluster-")
        self.processes = {}
        try:
            for port in self.ports:
                self.start_server(port)
            run = subprocess.run(["redis-cli", "--cluster", "create"] + [f"127.0.0.1:{port}" for port in self.ports]
                                 + ["--cluster-replicas", "1", "--cluster-yes"], capture_output=True, text=True, timeout=60)
            if run.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed:\n{run.stdout}\n{run.stderr}")
            self.wait_ok()
        except BaseException:
            self.close()
            raise

    @property
    def url(self):
        return f"redis-cluster://127.0.0.1:{self.ports[0]},127.0.0.1:{self.ports[1]}"

    def start_server(self, port):
        directory = os.path.join(self.directory, str(port))
        os.makedirs(directory, exist_ok=True)
        self.processes[port] = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
             # A replica always takes over, however long it was cut off (a loaded test machine).
             "--cluster-replica-validity-factor", "0", "--save", "",
             "--appendonly", "no", "--dir", directory], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_redis(port)

    def kill(self, port):
        process = self.processes.pop(port)
        process.kill()
        process.wait(10)

    def close(self):
        for port in list(self.processes):
            self.kill(port)
        shutil.rmtree(self.directory, ignore_errors=True)

    def live_ports(self):
        return list(self.processes)

    def wait_ok(self, seconds=30):
        """Until every live node says cluster_state:ok and agrees on three primaries."""
        deadline = time.time() + seconds
        while time.time() < deadline:
            try:
                states = [resp(port, "CLUSTER", "INFO") for port in self.live_ports()]
                if all(isinstance(state, str) and "cluster_state:ok" in state for state in states) and len(self.primaries()) == 3:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the Redis Cluster did not become ok")

    def slots(self):
        for port in self.live_ports():
            try:
                reply = resp(port, "CLUSTER", "SLOTS")
            except OSError:
                continue
            if isinstance(reply, list):
                return [(first, last, node[1], [replica[1] for replica in rest]) for first, last, node, *rest in reply]
        return []

    def primaries(self):
        return sorted({port for _, _, port, _ in self.slots()})

    def primary_of(self, slot):
        return next(port for first, last, port, _ in self.slots() if first <= slot <= last)

    def node_id(self, port):
        return resp(port, "CLUSTER", "MYID")

    def command(self, key, *arguments):
        """A command routed to the primary of `key`'s slot."""
        return resp(self.primary_of(slot_of(key)), *arguments)

    def move_slot(self, slot, target):
        """Moves one slot to `target` as `redis-cli --cluster reshard` does: importing and
        migrating marks, then its keys in batches (`MIGRATE`), then the new owner."""
        source = self.primary_of(slot)
        if source == target:
            return
        source_id, target_id = self.node_id(source), self.node_id(target)
        assert resp(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id) == "OK"
        assert resp(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id) == "OK"
        while True:
            keys = resp(source, "CLUSTER", "GETKEYSINSLOT", slot, 10)
            if not keys:
                break
            # A pause between batches leaves the slot half moved while commands arrive (ASK).
            time.sleep(0.05)
            reply = resp(source, "MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
            assert reply == "OK", reply
        for port in (target, source):
            assert resp(port, "CLUSTER", "SETSLOT", slot, "NODE", target_id) == "OK"


def pick_topic(prefix, cluster, wanted):
    """A topic name under `prefix` whose keys hash into a slot `wanted(slot)` accepts."""
    for index in range(100000):
        name = f"{prefix}{index}"
        if wanted(topic_slot(name)):
            return name
    raise RuntimeError("no topic name found")


class RedisClusterTests(ClusterCase):
    cluster = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cluster = RedisCluster()

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()
        super().tearDownClass()

    def setUp(self):
        self.redis = self.cluster
        self.cluster.wait_ok()
        self.nodes = [self.start_node(index) for index in range(3)]

    def tearDown(self):
        result = self._outcome.result
        failed = any(test is self for test, _ in result.errors + result.failures)
        for node in self.nodes:
            if failed:
                print(f"\n--- {node.name}'s log ---\n" + node.log[-4000:], file=sys.stderr)
            node.stop()

    def tag_keys(self, topic_key):
        tag = topic_tag(topic_key)
        return {name: f"deltacast:{{{tag}}}:{name}" for name in ("meta", "log", "doc", "owner")}

    def journal_seqs(self, topic):
        log = self.tag_keys(topic)["log"]
        entries = self.cluster.command(log, "XRANGE", log, "-", "+")
        return [int(entry[0].split("-")[0]) for entry in entries]

    def status(self, node):
        _, _, body = request(node.url("/deltacast/status"), headers={"Authorization": f"Bearer {ADMIN}", "Accept": "application/json"})
        return json.loads(body)

    def metric_sum(self, name):
        """`name` summed over every node and label."""
        total = 0.0
        for node in self.nodes:
            _, _, body = request(node.url("/metrics"))
            total += sum(float(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines()
                         if line.startswith(name + " ") or line.startswith(name + "{"))
        return total

    def test_1_changes_flow_through_every_primary_and_each_shard_keeps_its_own_stream(self):
        primaries = self.cluster.primaries()
        topics = [pick_topic("/doc/spread-", self.cluster, lambda slot, p=p: self.cluster.primary_of(slot) == p) for p in primaries]
        for topic in topics:
            put(self.simulator, topic, document(0))
        clients = {}
        for topic in topics:
            found, final = self.run_clients(topic, topic, list(range(1, 6)), per_transport=3, hops=1, settle=15)
            self.assert_converged(found, final)
            clients[topic] = found
        # Each primary holds its topics' keys (a journal without gaps) and its own changes
        # stream, in its lowest slot.
        for topic, primary in zip(topics, primaries):
            self.assertEqual(self.cluster.primary_of(topic_slot(topic)), primary)
            seqs = self.journal_seqs(topic)
            self.assertEqual(seqs, list(range(seqs[0], seqs[0] + len(seqs))))
        for port in primaries:
            length = resp(port, "XLEN", self.shard_channel(port) + "-log")
            self.assertGreater(length, 0, f"the changes stream of the primary at {port}")
        # The status page shows the shard map: every primary and its slots.
        shards = self.status(self.nodes[0])["cluster"]["shards"]
        self.assertEqual(sorted(int(shard["address"].rsplit(":", 1)[1]) for shard in shards), primaries)

    def shard_channel(self, port):
        lowest = min(first for first, _, p, _ in self.cluster.slots() if p == port)
        tag = next(str(n) for n in range(100000) if crc16(str(n).encode()) % 16384 == lowest)
        return f"deltacast:{{{tag}}}:changes"

    def test_1_a_node_hears_only_the_shards_of_the_topics_it_holds(self):
        primaries = self.cluster.primaries()
        topic = pick_topic("/live/only-", self.cluster, lambda slot: self.cluster.primary_of(slot) == primaries[0])
        self.assertEqual(self.nodes[0].publish(topic, {"n": 1})[0], 200)
        self.wait(lambda: json.loads(request(self.nodes[0].url(topic))[2]) == {"n": 1}, 10, "the topic on node1")

        def subscribers():
            return [resp(port, "PUBSUB", "SHARDNUMSUB", self.shard_channel(port))[1] for port in primaries]

        # node1 holds one topic, on the first primary: it subscribes there and nowhere else.
        self.wait(lambda: subscribers() == [1, 0, 0], 10, "one subscription, on the first primary")
        # node2 meets the topic too: two subscribers on that primary, still none elsewhere.
        self.assertEqual(json.loads(request(self.nodes[1].url(topic))[2]), {"n": 1})
        self.wait(lambda: subscribers() == [2, 0, 0], 10, "two subscriptions, on the first primary")
        # A publish through node3 reaches both over that shard's channel.
        self.assertEqual(self.nodes[2].publish(topic, {"n": 2})[0], 200)
        for node in self.nodes[:2]:
            self.wait(lambda node=node: json.loads(request(node.url(topic))[2]) == {"n": 2}, 10, f"{node.name} at n=2")

    def test_2_a_slot_moved_under_load_loses_nothing_and_repeats_nothing(self):
        """The busy topic's slot, and the lowest slot of its primary (where that primary's
        changes stream lives), move to another primary while changes flow."""
        primaries = self.cluster.primaries()
        source, target = primaries[1], primaries[2]
        lowest = min(first for first, _, port, _ in self.cluster.slots() if port == source)
        topic = pick_topic("/doc/moving-", self.cluster, lambda slot: self.cluster.primary_of(slot) == source and slot != lowest)
        put(self.simulator, topic, document(0))

        def reshard(index):
            if index == 3:
                # `redis-cli --cluster reshard` takes a source's slots from its lowest: one slot
                # is the one that holds the source's changes stream and channel.
                run = subprocess.run(["redis-cli", "--cluster", "reshard", f"127.0.0.1:{source}",
                                      "--cluster-from", self.cluster.node_id(source), "--cluster-to", self.cluster.node_id(target),
                                      "--cluster-slots", "1", "--cluster-yes"], capture_output=True, text=True, timeout=60)
                self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
            if index == 5:
                # The topic's own slot, in small batches with pauses: commands meet ASK meanwhile.
                self.cluster.move_slot(topic_slot(topic), target)

        clients, final = self.run_clients(topic, topic, list(range(1, 11)), per_transport=6, hops=1, during=reshard)
        self.assert_converged(clients, final)
        self.assertEqual(self.cluster.primary_of(topic_slot(topic)), target)
        self.assertEqual(self.cluster.primary_of(lowest), target)
        # Every node now listens on the target's channel, named by its new lowest slot (the one
        # that moved): the subscribers followed the map.
        self.wait(lambda: resp(target, "PUBSUB", "SHARDNUMSUB", self.shard_channel(target))[1] == 3, 15,
                  "three nodes subscribed to the target's new channel")
        # The nodes were redirected (MOVED or ASK) and read the new map.
        self.assertGreater(self.metric_sum("deltacast_cluster_redis_redirects_total"), 0)
        self.assertGreater(self.metric_sum("deltacast_cluster_slot_map_reads_total"), 0)
        seqs = self.journal_seqs(topic)
        self.assertEqual(seqs, list(range(seqs[0], seqs[0] + len(seqs))))
        # Publishes after the move land on the new primary and reach every node.
        live = pick_topic("/live/moved-", self.cluster, lambda slot: slot == lowest or self.cluster.primary_of(slot) == target)
        for n in range(3):
            status, _, _ = self.nodes[n].publish(live, {"n": n})
            self.assertEqual(status, 200)
        for node in self.nodes:
            self.wait(lambda node=node: json.loads(request(node.url(live))[2]) == {"n": 2}, 10, f"{node.name} reading {live}")

    def test_3_a_killed_primary_is_replaced_by_its_replica_and_clients_converge(self):
        topic = pick_topic("/doc/failover-", self.cluster, lambda slot: True)
        put(self.simulator, topic, document(0))
        # Every node holds a topic on every primary, so every one of its PUB/SUB connections is
        # in subscribe mode (where it cannot read the slot map itself).
        for primary in self.cluster.primaries():
            held = pick_topic(f"/live/held-{primary}-", self.cluster, lambda slot, p=primary: self.cluster.primary_of(slot) == p)
            self.assertEqual(self.nodes[0].publish(held, {"held": True})[0], 200)
            for node in self.nodes:
                self.wait(lambda node=node, held=held: request(node.url(held))[0] == 200, 10, f"{node.name} holding {held}")
        killed = {}

        def kill_primary(index):
            if index == 3:
                killed["port"] = self.cluster.primary_of(topic_slot(topic))
                self.cluster.kill(killed["port"])

        clients, final = self.run_clients(topic, topic, list(range(1, 13)), per_transport=6, hops=1, during=kill_primary, settle=30)
        self.assert_converged(clients, final)
        self.cluster.wait_ok()
        promoted = self.cluster.primary_of(topic_slot(topic))
        self.assertNotEqual(promoted, killed["port"])
        # Every node subscribed to the promoted replica's channel: the subscribers took the
        # new map (their own connections, in subscribe mode, cannot read it).
        self.wait(lambda: resp(promoted, "PUBSUB", "SHARDNUMSUB", self.shard_channel(promoted))[1] == 3, 15,
                  "three nodes subscribed on the promoted primary")
        # A change the replica never received ends as a new epoch and a snapshot; a patch on a
        # wrong base would have failed the clients' checks above.
        self.cluster.start_server(killed["port"])   # it rejoins as a replica
        self.cluster.wait_ok()

    def test_4_the_whole_cluster_down_then_up(self):
        topic = pick_topic("/doc/outage-", self.cluster, lambda slot: True)
        put(self.simulator, topic, document(0))
        streams = self.event_streams(topic)
        try:
            received = [bytearray() for _ in streams]
            for stream, data in zip(streams, received):
                self.read_until(stream, data, b'"type":"snapshot"')
            ports = self.cluster.live_ports()
            try:
                for port in ports:
                    self.cluster.kill(port)
                # Every node says so to its subscribers, and keeps serving what it holds.
                for stream, data in zip(streams, received):
                    self.read_until(stream, data, b'"cluster":"unavailable"')
                for node in self.nodes:
                    self.assertEqual(json.loads(request(node.url(topic))[2]), document(0))
                put(self.simulator, topic, document(1))
            finally:
                for port in ports:
                    if port not in self.cluster.processes:
                        self.cluster.start_server(port)
            self.cluster.wait_ok(60)
            # The data is gone (no persistence): the upstream's state arrives in a new epoch, as
            # its snapshot or as a patch on the snapshot the node already sent.
            for stream, data in zip(streams, received):
                mark = len(data)
                while b'"version": 1' not in data[mark:] and b'{"op":"replace","path":"/version","value":1}' not in data[mark:]:
                    chunk = stream.recv(65536)
                    self.assertTrue(chunk, "the stream ended")
                    data += chunk
        finally:
            for stream in streams:
                stream.close()
        for node in self.nodes:
            self.wait(lambda node=node: json.loads(request(node.url(topic))[2]) == document(1), 15, f"{node.name} at version 1")

    def test_5_bad_seeds_and_an_incomplete_slot_map_are_clear_errors_at_start(self):
        bad = node_config(self.simulator, self.cluster, "bad").replace(self.cluster.url, "redis-cluster://127.0.0.1:1,,127.0.0.1:2")
        run = self.serve_once(bad)
        self.assertEqual(run.returncode, 1)
        self.assertIn("invalid cluster.redis: an empty seed in '127.0.0.1:1,,127.0.0.1:2'; separate seeds with one comma", run.stderr)
        plain = subprocess.Popen(["redis-server", "--port", str(port := free_port()), "--bind", "127.0.0.1", "--save", ""],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lonely_directory = tempfile.mkdtemp(prefix="deltacast-lonely-")
        lonely = subprocess.Popen(["redis-server", "--port", str(lonely_port := free_cluster_port()), "--bind", "127.0.0.1", "--save", "",
                                   "--cluster-enabled", "yes", "--dir", lonely_directory], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for probe in (port, lonely_port):
                wait_for_redis(probe)
            run = self.serve_once(node_config(self.simulator, self.cluster, "plain").replace(self.cluster.url, f"redis-cluster://127.0.0.1:{port}"))
            self.assertEqual(run.returncode, 1)
            self.assertIn(f"the redis-cluster seed 127.0.0.1:{port} is not a Redis Cluster node (ERR This instance has cluster support disabled); "
                          "use redis:// for one Redis", run.stderr)
            run = self.serve_once(node_config(self.simulator, self.cluster, "lonely").replace(self.cluster.url, f"redis-cluster://127.0.0.1:{lonely_port}"))
            self.assertEqual(run.returncode, 1)
            self.assertIn(f"within 10 s: the slot map from 127.0.0.1:{lonely_port} covers 0 of 16384 slots (CLUSTERDOWN): assign every slot",
                          run.stderr)
        finally:
            for process in (plain, lonely):
                process.kill()
                process.wait(10)
            shutil.rmtree(lonely_directory, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)

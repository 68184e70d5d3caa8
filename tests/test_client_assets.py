"""The Home Assistant and Node-RED assets in clients/ against what micboardd really publishes.

Every topic and payload here comes from micboardd's own builders: a StateHub, the alert engine and
the MQTT TopicMirror (the bridge minus the broker) run a short show, and the wire they would put on
the broker is what the assets are checked against. The Node-RED function nodes run in Node.js on
that wire (skipped without ``node``); the Home Assistant templates render in Jinja2's immutable
sandbox, the environment Home Assistant's own templates run in (skipped without PyYAML/Jinja2).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from micboardd.alerts import AlertEngine
from micboardd.commands import Identify
from micboardd.config import parse_config
from micboardd.hub import ChannelUpdate, DeviceUpdate, Put, Remove, StateHub, Update
from micboardd.model import TX_ABSENT, ConnState, ErrorKind, Kind, Manufacturer, Slot
from micboardd.mqtt.commands import parse_command
from micboardd.mqtt.discovery import DiscoveryContext
from micboardd.mqtt.mirror import BridgeStats, TopicMirror
from micboardd.mqtt.topics import Topics

CLIENTS = Path(__file__).resolve().parent.parent / "clients"
FLOW = CLIENTS / "node-red" / "micboardd-flow.json"
BLUEPRINT = CLIENTS / "homeassistant" / "blueprints" / "micboardd_low_battery.yaml"
DASHBOARD = CLIENTS / "homeassistant" / "dashboard.yaml"
HA_README = CLIENTS / "homeassistant" / "README.md"
NODE_TIMEOUT_S = 30  # one Node.js process runs every function node over the whole show; it takes well under 1 s


# ---------------------------------------------------------------------------------------------- MQTT semantics


def topic_matches(flt: str, topic: str) -> bool:
    """MQTT 3.1.1 §4.7 filter matching: ``+`` one level, ``#`` the rest (parent included), no ``$`` topics."""
    if topic.startswith("$") and flt[:1] in ("+", "#"):
        return False
    f_parts, t_parts = flt.split("/"), topic.split("/")
    for i, part in enumerate(f_parts):
        if part == "#":
            return True
        if i >= len(t_parts) or (part not in ("+", t_parts[i])):
            return False
    return len(f_parts) == len(t_parts)


def test_topic_matching_follows_mqtt_wildcard_rules() -> None:
    assert topic_matches("a/+/c", "a/b/c") and not topic_matches("a/+/c", "a/b/x/c")
    assert topic_matches("a/#", "a") and topic_matches("a/#", "a/b/c") and not topic_matches("a/#", "b")
    assert not topic_matches("a/+", "a/b/c") and not topic_matches("+/x", "$SYS/x")
    assert topic_matches("a/b", "a/b") and not topic_matches("a/b", "a/b/")


# ---------------------------------------------------------------------------------------------- a show


@dataclass
class Site:
    """micboardd's state, alert engine and MQTT mirror for one site, and the wire they produce."""

    name: str = "main"
    commands: bool = True
    wire: list[tuple[str, bytes]] = field(default_factory=list)  # (topic, payload) in publish order

    def __post_init__(self) -> None:
        cmds = {"enabled": self.commands, "rename": self.commands, "dangerous": self.commands}
        self.config = parse_config({"site": self.name, "mqtt": {"flat_topics": True, "commands": cmds}})
        self.topics = Topics.from_config(self.config)
        self.hub = StateHub()
        ctx = DiscoveryContext(self.topics, "0.1.0", self.config.mqtt.commands)
        self.mirror = TopicMirror(self.hub, self.config, self.topics, ctx, stats=BridgeStats(), wake=lambda: None)
        self.engine = AlertEngine(self.hub, None, self.config.alerts)
        self.retained: dict[str, bytes] = {}

    def apply(self, *updates: Update) -> list[tuple[str, bytes]]:
        """Run updates through hub, alert engine and mirror; return what the bridge would publish."""
        changes = self.hub.apply(updates)
        self.mirror.apply_changes(changes)
        alerts = self.engine.evaluate(changes)
        if alerts:
            self.mirror.apply_changes(self.hub.apply([Put(a) for a in alerts]))
        return self._drain()

    def publish(self, topic: str, payload: bytes, *, retain: bool = True) -> list[tuple[str, bytes]]:
        """What the bridge publishes itself (its LWT status), outside the mirror."""
        if retain:
            self.retained[topic] = payload
        self.wire.append((topic, payload))
        return [(topic, payload)]

    def _drain(self) -> list[tuple[str, bytes]]:
        out: list[tuple[str, bytes]] = []
        while jobs := self.mirror.next_jobs():
            for kind, topic, payload in jobs:
                if kind == "retained":
                    self.mirror.sending(topic, payload)
                    self.mirror.sent_ok(topic, payload)
                    if payload:
                        self.retained[topic] = payload
                    else:
                        self.retained.pop(topic, None)
                out.append((topic, payload))
        self.wire += out
        return out

    def receiver(self, device_id: str, name: str | None, **fields: Any) -> list[tuple[str, bytes]]:
        base = {"state": ConnState.ONLINE, "manufacturer": Manufacturer.SHURE, "model": "AD4Q", "name": name,
                "channel_count": 4}
        return self.apply(DeviceUpdate(device_id, {**base, **fields}))


def show(site: Site) -> list[list[tuple[str, bytes]]]:
    """A short show on one receiver; each step is the list of messages it puts on the wire."""
    return [
        site.publish(site.topics.status, b"online"),
        site.receiver("rack1", "Rack 1"),
        site.apply(ChannelUpdate("rack1", 1, {"name": "Lead Vox", "frequency_khz": 594075},
                                 tx={"present": True, "battery_bars": 4, "battery_percent": 80,
                                     "runtime_minutes": 312, "model": "AD2"})),
        site.apply(ChannelUpdate("rack1", 2, {}, tx={"present": False})),  # an unused channel: never "went off"
        site.apply(Put(Slot(7, "rack1/1", performer="Anna"))),
        # One bar above the limit: micboardd raises a low-battery warning (battery_low stays false).
        site.apply(ChannelUpdate("rack1", 1, tx={"battery_bars": 2, "battery_percent": 40, "runtime_minutes": 100})),
        # At the limit: the alert escalates to critical (an "updated" event) and battery_low turns true.
        site.apply(ChannelUpdate("rack1", 1, tx={"battery_bars": 1, "battery_percent": 20, "runtime_minutes": 25})),
        # The performer switches the pack off: low battery clears, transmitter-off is raised.
        site.apply(ChannelUpdate("rack1", 1, tx_replace=TX_ABSENT)),
        site.apply(DeviceUpdate("rack1", {"state": ConnState.OFFLINE, "last_error": "connect timeout"})),
        site.apply(Remove(Kind.CHANNEL, "rack1/2")),  # channel 2 left the config: its retained topics clear
        site.publish(site.topics.status, b"offline"),  # micboardd's last will
    ]


def inventory(site: Site) -> set[str]:
    """Every topic micboardd publishes or accepts for the site, from its own builders."""
    t = site.topics
    topics = {topic for topic, _ in site.wire}
    topics |= {t.status, t.alerts, t.alerts_active, t.errors, t.results}
    for dev in site.hub.all(Kind.DEVICE):
        topics |= {t.device_command(dev.device_id, a) for a in ("identify", "name")}
    for key in ("rack1/1", "rack1/2"):
        device_id, _, n = key.partition("/")
        topics |= {t.channel_command(device_id, int(n), a) for a in ("identify", "name", "muted", "gain_db")}
    return topics


def all_event_payloads(site: Site) -> list[dict[str, Any]]:
    return [json.loads(p) for topic, p in site.wire if topic == site.topics.alerts]


def latest(site: Site, predicate: Callable[[str], bool]) -> dict[str, Any]:
    payload = next(p for t, p in reversed(site.wire) if predicate(t) and p)
    return dict(json.loads(payload))


# ---------------------------------------------------------------------------------------------- Node-RED: the export


def load_flow() -> list[dict[str, Any]]:
    nodes = json.loads(FLOW.read_text(encoding="utf-8"))
    assert isinstance(nodes, list) and all(isinstance(n, dict) for n in nodes)
    return nodes


def flow_nodes(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Nodes that sit on a tab (everything but tabs and config nodes)."""
    return [n for n in nodes if n["type"] not in ("tab", "mqtt-broker")]


def test_node_red_flow_is_an_importable_export() -> None:
    nodes = load_flow()
    ids = [n["id"] for n in nodes]
    assert len(ids) == len(set(ids)), "duplicate node ids"
    assert all(isinstance(i, str) and i for i in ids)
    tabs = [n for n in nodes if n["type"] == "tab"]
    brokers = [n for n in nodes if n["type"] == "mqtt-broker"]
    assert len(tabs) == 1 and len(brokers) == 1
    assert (brokers[0]["broker"], str(brokers[0]["port"])) == ("localhost", "1883")
    by_id = {n["id"]: n for n in nodes}
    for n in flow_nodes(nodes):
        assert n["z"] == tabs[0]["id"], n["id"]
        assert isinstance(n["wires"], list) and all(isinstance(w, list) for w in n["wires"]), n["id"]
        for port in n["wires"]:
            for target in port:
                assert target in by_id, f"{n['id']} wires to missing node {target}"
                assert by_id[target].get("z") == n["z"], f"{n['id']} wires off its tab"
                assert by_id[target]["type"] not in ("mqtt in", "inject", "comment"), "wired into a node with no input"
        if n["type"] in ("mqtt in", "mqtt out"):
            assert n["broker"] == brokers[0]["id"]
            assert str(n["qos"]) in ("0", "1", "2")
        if n["type"] == "function":
            assert n["outputs"] == len(n["wires"]) and n["func"].strip()
        if n["type"] == "mqtt out":
            assert n["retain"] in ("false", False), "micboardd refuses retained commands"
    assert {"mqtt in", "mqtt out", "function", "debug"} <= {n["type"] for n in nodes}
    # Every mqtt in reaches a debug node (directly or through a function), so an import shows something.
    debug_ids = {n["id"] for n in nodes if n["type"] == "debug"}

    def reaches_debug(node_id: str, seen: frozenset[str] = frozenset()) -> bool:
        if node_id in debug_ids:
            return True
        return any(reaches_debug(t, seen | {node_id}) for port in by_id[node_id].get("wires", []) for t in port
                   if t not in seen)

    assert all(reaches_debug(n["id"]) for n in nodes if n["type"] == "mqtt in")


def test_node_red_subscriptions_match_micboardd_topics_of_one_kind_each() -> None:
    site = Site()
    show(site)
    published = inventory(site)
    for n in load_flow():
        if n["type"] != "mqtt in":
            continue
        hits = {t for t in published if topic_matches(n["topic"], t)}
        assert hits, f"{n['name']}: {n['topic']} matches nothing micboardd publishes"
        # One node, one kind of message: the channel-state filter must not also catch flat or meter topics.
        kinds = {site.topics.classify(t)[0::3] for t in hits}
        assert len(kinds) == 1, f"{n['topic']} catches several kinds of topic: {sorted(hits)}"


def test_node_red_identify_example_is_a_command_micboardd_accepts() -> None:
    site = Site()
    show(site)
    outs = [n for n in load_flow() if n["type"] == "mqtt out"]
    assert outs
    commands = {t for t in inventory(site) if t.endswith("/set")}
    for n in outs:
        assert n["topic"] in commands, f"{n['topic']} is not a command topic micboardd builds"
        injected = [i for i in load_flow() if any(n["id"] in port for port in i.get("wires", []))]
        payload = injected[0]["payload"].encode() if injected else b"PRESS"
        request = parse_command(site.topics, n["topic"], payload)
        assert request.commands == (Identify(channel=1),) and request.device_id == "rack1"


# ---------------------------------------------------------------------------------------------- Node-RED: the code

# What each payload variable in the function code stands for, and where its fields come from.
PAYLOAD_VARIABLES: dict[str, Callable[[Site], dict[str, Any]]] = {
    "state": lambda s: latest(s, lambda t: t == s.topics.channel_state("rack1", 1)),
    "tx": lambda s: dict(latest(s, lambda t: t == s.topics.channel_state("rack1", 1))["tx"]),
    "slot": lambda s: latest(s, lambda t: t == s.topics.slot_state(7)),
    "ev": lambda s: all_event_payloads(s)[0],
    "alert": lambda s: dict(all_event_payloads(s)[0]["alert"]),
}


def test_function_code_reads_only_fields_micboardd_publishes() -> None:
    site = Site()
    show(site)
    checked: set[str] = set()
    for n in load_flow():
        if n["type"] != "function":
            continue
        code = re.sub(r"//[^\n]*", "", n["func"])  # comments describe payloads in prose
        for var, sample in PAYLOAD_VARIABLES.items():
            used = set(re.findall(rf"(?<![\w.]){var}\.(\w+)", code)) | set(re.findall(rf"\.{var}\.(\w+)", code))
            used -= {"length"}
            if not used:
                continue
            fields = sample(site)
            missing = used - set(fields)
            assert not missing, f"{n['name']}: {var}.{sorted(missing)} not in micboardd's payload {sorted(fields)}"
            checked.add(var)
    assert checked == set(PAYLOAD_VARIABLES), f"the function code no longer reads {set(PAYLOAD_VARIABLES) - checked}"


NODE_HARNESS = r"""
// Runs Node-RED function-node bodies the way the function node does: an async function of
// (msg, node, context, flow, global, env, RED), a returned message (or one per output, or arrays
// of messages per output), and context stores that copy values (as persistent stores do).
const fs = require('fs');
const input = JSON.parse(fs.readFileSync(0, 'utf8'));
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
const copy = (v) => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)));
function store() {
    const data = {};
    return {get: (k) => copy(data[k]), set: (k, v) => { data[k] = copy(v); }, keys: () => Object.keys(data)};
}
const stores = {};
const flowStore = store();
const globalStore = store();
(async () => {
    const results = [];
    for (const step of input.steps) {
        const def = input.functions[step.node];
        const fn = new AsyncFunction('msg', 'node', 'context', 'flow', 'global', 'env', 'RED', def.func);
        const ctx = stores[step.node] || (stores[step.node] = store());
        const logs = [];
        let status = null;
        const api = {
            id: step.node, name: def.name,
            warn: (m) => logs.push(['warn', String(m)]), error: (m) => logs.push(['error', String(m)]),
            log: (m) => logs.push(['log', String(m)]), status: (s) => { status = s; },
            send: () => { throw new Error('node.send is not expected in these examples'); }, done: () => {},
        };
        const outputs = Array.from({length: def.outputs}, () => []);
        let ret = await fn(step.msg, api, ctx, flowStore, globalStore, {get: () => undefined}, {});
        if (ret !== null && ret !== undefined) {
            if (!Array.isArray(ret)) ret = [ret];
            if (ret.length > def.outputs) throw new Error(def.name + ' returned ' + ret.length + ' outputs');
            ret.forEach((r, i) => {
                for (const m of (Array.isArray(r) ? r : [r])) if (m !== null && m !== undefined) outputs[i].push(m);
            });
        }
        results.push({node: step.node, topic: step.msg.topic, outputs, logs, status});
    }
    process.stdout.write(JSON.stringify(results));
})().catch((e) => { process.stderr.write(String(e && e.stack || e)); process.exit(1); });
"""


def decode_like_node_red(datatype: str, payload: bytes) -> Any:
    """What an mqtt in node hands on for one datatype (Node-RED 3/4 semantics for these types)."""
    text = payload.decode("utf-8")
    if datatype == "json":
        return json.loads(text)
    if datatype == "auto-detect":
        try:
            return json.loads(text)
        except ValueError:
            return text
    assert datatype == "utf8", f"the flow uses datatype {datatype!r}; teach this test what Node-RED does with it"
    return text


@dataclass
class FlowRun:
    """Outputs of every function node while the show's wire was fed through the flow's mqtt in nodes."""

    results: list[dict[str, Any]]
    names: dict[str, str]

    def outputs(self, name: str, port: int) -> list[dict[str, Any]]:
        return [m for r in self.results if self.names[r["node"]] == name for m in r["outputs"][port]]

    def logs(self) -> list[tuple[str, str, str]]:
        return [(self.names[r["node"]], lvl, text) for r in self.results for lvl, text in r["logs"]]

    def last_status(self, name: str) -> dict[str, Any]:
        return next(r["status"] for r in reversed(self.results) if self.names[r["node"]] == name and r["status"])


def run_flow(wire: list[tuple[str, bytes]]) -> FlowRun:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed; the function nodes cannot run")
    nodes = load_flow()
    by_id = {n["id"]: n for n in nodes}
    functions = {n["id"]: {"func": n["func"], "outputs": n["outputs"], "name": n["name"]}
                 for n in nodes if n["type"] == "function"}
    steps = []
    for topic, payload in wire:
        for n in nodes:
            if n["type"] != "mqtt in" or not topic_matches(n["topic"], topic):
                continue
            msg = {"topic": topic, "payload": decode_like_node_red(n["datatype"], payload), "qos": 1}
            steps += [{"node": t, "msg": msg} for port in n["wires"] for t in port if by_id[t]["type"] == "function"]
    done = subprocess.run([node, "-e", NODE_HARNESS], input=json.dumps({"functions": functions, "steps": steps}),
                          capture_output=True, text=True, timeout=NODE_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr
    return FlowRun(json.loads(done.stdout), {i: f["name"] for i, f in functions.items()})


def function_names() -> dict[str, str]:
    """The flow's function nodes by the kind of topic that feeds them."""
    nodes = load_flow()
    site = Site()
    probes = {"board": site.topics.channel_state("rack1", 1), "alerts": site.topics.alerts,
              "availability": site.topics.device_availability("rack1")}
    out = {}
    by_id = {n["id"]: n for n in nodes}
    for role, topic in probes.items():
        fed = [by_id[t]["name"] for n in nodes if n["type"] == "mqtt in" and topic_matches(n["topic"], topic)
               for port in n["wires"] for t in port if by_id[t]["type"] == "function"]
        assert len(fed) == 1, f"{topic} should feed exactly one function node, feeds {fed}"
        out[role] = fed[0]
    return out


def test_board_function_turns_channel_states_into_board_lines_and_problems() -> None:
    site = Site()
    show(site)
    run = run_flow(site.wire)
    board = function_names()["board"]
    assert not [entry for entry in run.logs() if entry[0] == board], run.logs()

    lines = [m["payload"] for m in run.outputs(board, 0) if m["payload"].get("channel") == "rack1/1"]
    first = lines[0]
    assert first["name"] == "Lead Vox" and first["tx_state"] == "on" and first["site"] == "main"
    assert (first["battery_bars"], first["battery_percent"], first["runtime_minutes"]) == (4, 80, 312)
    assert first["bars"] == "▮▮▮▮▯" and first["runtime"] == "5:12"
    assert first["frequency_mhz"] == 594.075 and first["tx_model"] == "AD2"
    assert "Lead Vox" in first["text"] and "80%" in first["text"] and "5:12" in first["text"]
    # The slot's performer names the channel from then on, including at once when the slot arrives.
    assert lines[1]["name"] == "Anna" and lines[1]["performer"] == "Anna" and lines[1]["channel_name"] == "Lead Vox"
    assert all(line["name"] == "Anna" for line in lines[1:])
    assert lines[-1]["tx_state"] == "off" and lines[-1]["battery_bars"] is None
    # One line per change that matters: slot states (republished on every battery tick) add none.
    assert [line["text"] for line in lines] == [
        "Lead Vox  on  ▮▮▮▮▯  80%  5:12", "Anna  on  ▮▮▮▮▯  80%  5:12", "Anna  on  ▮▮▯▯▯  40%  1:40",
        "Anna  on  ▮▯▯▯▯  20%  0:25  LOW", "Anna  off"]

    problems = [(m["topic"], m["payload"]["active"], m["payload"]["channel"]) for m in run.outputs(board, 1)]
    # battery_low comes from micboardd's own flag (at the limit, not one bar above); tx_off only for a
    # transmitter that was on: channel 2 was off from the start and never raises one.
    assert problems == [
        ("battery_low", True, "rack1/1"), ("battery_low", False, "rack1/1"), ("tx_off", True, "rack1/1")]
    assert run.outputs(board, 1)[0]["payload"]["text"] == "Anna: battery low"

    removed = [m["payload"] for m in run.outputs(board, 0) if m["payload"].get("removed")]
    assert removed == [{"base": "micboard/main", "channel": "rack1/2", "removed": True, "text": "rack1/2 removed"}]
    assert run.last_status(board)["text"] == "1 channels, 0 low, 1 tx off"


def test_alert_function_notifies_new_and_escalated_alerts_only() -> None:
    site = Site()
    show(site)
    events = all_event_payloads(site)
    assert {e["event"] for e in events} >= {"raised", "updated", "cleared"}
    run = run_flow(site.wire)
    fn = function_names()["alerts"]
    assert not run.logs(), run.logs()
    notified = [(m["alert"]["rule"], m["event"], m["severity"]) for m in run.outputs(fn, 0)]
    assert notified == [
        ("low_battery", "raised", "warning"),
        ("low_battery", "updated", "critical"),  # the escalation at the limit
        ("tx_off", "raised", "warning"),
        ("device_offline", "raised", "critical"),
    ]
    messages = [m["payload"] for m in run.outputs(fn, 0)]
    assert messages[1] == "[CRITICAL] Low battery: Anna: battery 1/5 bars"
    assert messages[3].startswith("[CRITICAL] Receiver offline: Rack 1: offline")
    assert [m["payload"] for m in run.outputs(fn, 1)] == ["Cleared: Low battery: Anna: battery 1/5 bars"]


def test_availability_function_reports_changes_of_receivers_and_micboardd() -> None:
    site = Site()
    show(site)
    run = run_flow(site.wire)
    fn = function_names()["availability"]
    assert not run.logs(), run.logs()
    texts = [m["payload"]["text"] for m in run.outputs(fn, 0)]
    assert texts == [
        "micboardd (micboard/main) online",
        "receiver rack1 online",
        "receiver rack1 offline",
        "micboardd (micboard/main) offline: every micboardd state here is stale until it returns",
    ]
    assert run.last_status(fn)["text"] == "0/1 receivers online, micboardd offline"


def test_function_nodes_warn_about_foreign_payloads_and_carry_on() -> None:
    site = Site()
    show(site)
    t = site.topics
    junk = [(t.channel_state("rack9", 1), b'{"hello": 1}'), (t.alerts, b'{"event": "raised"}'),
            (t.device_availability("rack9"), b"maybe"), (t.channel_state("rack1", 1), site.retained[
                t.channel_state("rack1", 1)])]
    run = run_flow(junk)
    warned = {name for name, level, _ in run.logs() if level == "warn"}
    assert warned == set(function_names().values())
    assert run.outputs(function_names()["board"], 0), "a good message after junk still makes a board line"


# ---------------------------------------------------------------------------------------------- Home Assistant


@dataclass(frozen=True)
class Input:
    """A blueprint ``!input`` reference."""

    name: str


def load_ha_yaml(path: Path) -> Any:
    yaml = pytest.importorskip("yaml")

    class Loader(yaml.SafeLoader):  # type: ignore[misc, name-defined]
        pass

    Loader.add_constructor("!input", lambda loader, node: Input(loader.construct_scalar(node)))
    return yaml.load(path.read_text(encoding="utf-8"), Loader=Loader)  # a SafeLoader with one more tag


def sandbox() -> Any:
    """Jinja2's immutable sandbox: Home Assistant's template environment is built on it."""
    jinja2_sandbox = pytest.importorskip("jinja2.sandbox")
    return jinja2_sandbox.ImmutableSandboxedEnvironment()


def substitute(obj: Any, inputs: dict[str, Any]) -> Any:
    """Replace every ``!input`` by the value given (the blueprint's default unless overridden)."""
    if isinstance(obj, Input):
        return inputs[obj.name]
    if isinstance(obj, dict):
        return {k: substitute(v, inputs) for k, v in obj.items()}
    if isinstance(obj, list):
        return [substitute(v, inputs) for v in obj]
    return obj


def input_refs(obj: Any) -> Iterator[str]:
    if isinstance(obj, Input):
        yield obj.name
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from input_refs(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from input_refs(v)


def blueprint_run(bp: dict[str, Any], site: Site, **overrides: Any) -> list[dict[str, Any]]:
    """Feed every alert event on the site's wire through the blueprint; return the actions it would call."""
    env = sandbox()
    inputs = {k: v.get("default") for k, v in bp["blueprint"]["input"].items()} | overrides
    auto = substitute({k: v for k, v in bp.items() if k != "blueprint"}, inputs)
    variables = dict(auto.get("trigger_variables", {}))
    subscribed = [(trig, env.from_string(trig["topic"]).render(**variables)) for trig in auto["triggers"]]
    variables |= {k: (env.from_string(v).render(**variables) if isinstance(v, str) else v)
                  for k, v in auto.get("variables", {}).items()}
    calls = []
    for topic, raw in site.wire:
        text = raw.decode()
        for trig, flt in subscribed:
            if trig.get("enabled", True) is False or not topic_matches(flt, topic):
                continue
            value = env.from_string(trig["value_template"]).render(value=text, value_json=json.loads(text)).strip()
            if value != str(trig["payload"]):
                continue
            trigger = {"platform": "mqtt", "id": trig["id"], "topic": topic, "payload": text,
                       "payload_json": json.loads(text)}
            scope = variables | {"trigger": trigger}
            if all(env.from_string(c["value_template"]).render(**scope).strip() == "True"
                   for c in auto.get("conditions", [])):
                for action in auto["actions"]:
                    data = {k: " ".join(env.from_string(v).render(**scope).split()) for k, v in action["data"].items()}
                    calls.append({"action": action["action"], "trigger": trig["id"], **data})
    return calls


def raise_every_rule(site: Site) -> None:
    """The show, plus a receiver that rejects micboardd's credentials: every rule micboardd has fires."""
    show(site)
    site.receiver("rack2", "Rack 2", state=ConnState.OFFLINE, error_kind=ErrorKind.AUTH, last_error="401")


def test_blueprint_has_the_schema_home_assistant_requires() -> None:
    bp = load_ha_yaml(BLUEPRINT)
    meta = bp["blueprint"]
    assert meta["domain"] == "automation" and meta["name"] and meta["description"]
    assert isinstance(meta["input"], dict) and meta["input"]
    for name, spec in meta["input"].items():
        assert "selector" in spec and len(spec["selector"]) == 1, name
        assert "default" in spec, f"{name}: every input has a default so the automation works unedited"
    used = set(input_refs({k: v for k, v in bp.items() if k != "blueprint"}))
    assert used == set(meta["input"]), f"inputs declared but unused or used but undeclared: {used ^ set(meta['input'])}"
    assert bp["triggers"] and bp["actions"] and bp["mode"] in ("single", "restart", "queued", "parallel")
    assert all(t["trigger"] == "mqtt" for t in bp["triggers"])
    assert isinstance(bp["actions"][0]["action"], Input), "the notify action is the user's choice"


def test_blueprint_subscribes_to_the_alerts_topic_of_any_site() -> None:
    bp = load_ha_yaml(BLUEPRINT)
    env = sandbox()
    for site_name in ("main", "north"):
        site = Site(site_name)
        base = site.topics.base
        inputs = {k: v.get("default") for k, v in bp["blueprint"]["input"].items()} | {"base_topic": base}
        tv = substitute(bp["trigger_variables"], inputs)
        for trig in bp["triggers"]:
            assert env.from_string(trig["topic"]).render(**tv) == site.topics.alerts
    assert bp["blueprint"]["input"]["base_topic"]["default"] == Site("main").topics.base


def test_blueprint_offers_exactly_the_rules_micboardd_raises() -> None:
    site = Site()
    raise_every_rule(site)
    raised = {e["alert"]["rule"] for e in all_event_payloads(site) if e["event"] == "raised"}
    spec = load_ha_yaml(BLUEPRINT)["blueprint"]["input"]["rules"]
    offered = {o["value"] for o in spec["selector"]["select"]["options"]}
    assert offered == raised and set(spec["default"]) == raised
    labels = load_ha_yaml(BLUEPRINT)["variables"]["labels"]
    assert set(labels) == raised


def test_blueprint_notifies_new_alerts_and_escalations() -> None:
    bp = load_ha_yaml(BLUEPRINT)
    site = Site()
    raise_every_rule(site)
    events = all_event_payloads(site)
    # The show also publishes what must stay quiet: text-only updates (runtime counting down, a
    # performer assigned) and cleared alerts.
    assert {e["event"] for e in events} >= {"raised", "updated", "cleared"}
    calls = blueprint_run(bp, site)
    assert [(c["trigger"], c["title"]) for c in calls] == [
        ("raised", "Wireless mics: Low battery (warning)"),
        ("escalated", "Wireless mics: Low battery (critical, was warning)"),
        ("raised", "Wireless mics: Transmitter off (warning)"),
        ("raised", "Wireless mics: Receiver offline (critical)"),
        ("raised", "Wireless mics: Credentials rejected (critical)"),
    ]
    assert [c["message"] for c in calls] == [
        "Anna: battery 2/5 bars", "Anna: battery 1/5 bars", "Anna: transmitter off or out of range",
        "Rack 1: offline (connect timeout)", "Rack 2: credentials rejected (401)"]
    assert all(c["action"] == "persistent_notification.create" for c in calls)


def test_blueprint_inputs_narrow_what_notifies() -> None:
    bp = load_ha_yaml(BLUEPRINT)
    site = Site()
    raise_every_rule(site)
    only_offline = blueprint_run(bp, site, rules=["device_offline"], notify_action="notify.mobile_app_stage")
    assert [(c["action"], c["message"]) for c in only_offline] == [
        ("notify.mobile_app_stage", "Rack 1: offline (connect timeout)")]
    no_escalation = blueprint_run(bp, site, notify_escalation=False)
    assert [c["trigger"] for c in no_escalation] == ["raised"] * 4


def battery_runs_down(site: Site) -> None:
    """A pack from full to empty: raised (warning), escalated (critical), then updates that do not escalate."""
    site.receiver("rack1", "Rack 1")
    site.apply(ChannelUpdate("rack1", 1, {"name": "Lead Vox"}, tx={"present": True, "battery_bars": 4}))
    for bars in (2, 1, 0):  # warning one bar above the limit, critical at it, another bar lost while critical
        site.apply(ChannelUpdate("rack1", 1, tx={"battery_bars": bars}))
    site.apply(ChannelUpdate("rack1", 1, tx={"battery_bars": 1}))  # a flicker back up: still critical, quieter
    site.apply(ChannelUpdate("rack1", 1, tx={"runtime_minutes": 5}))  # more detail, same severity


def test_only_escalations_notify_twice() -> None:
    site = Site()
    battery_runs_down(site)
    events = [(e["event"], e["escalated"], e["alert"]["message"]) for e in all_event_payloads(site)]
    assert events == [
        ("raised", False, "Lead Vox: battery 2/5 bars"),
        ("updated", True, "Lead Vox: battery 1/5 bars"),
        ("updated", False, "Lead Vox: battery 0/5 bars"),
        ("updated", False, "Lead Vox: battery 1/5 bars"),
    ]
    bp = load_ha_yaml(BLUEPRINT)
    calls = blueprint_run(bp, site)
    assert [(c["trigger"], c["message"]) for c in calls] == [
        ("raised", "Lead Vox: battery 2/5 bars"), ("escalated", "Lead Vox: battery 1/5 bars")]
    run = run_flow(site.wire)
    fn = function_names()["alerts"]
    notified = [(m["event"], m["escalated"], m["previous"], m["payload"]) for m in run.outputs(fn, 0)]
    assert notified == [
        ("raised", False, None, "[WARNING] Low battery: Lead Vox: battery 2/5 bars"),
        ("updated", True, {"severity": "warning", "state": "active"},
         "[CRITICAL] Low battery: Lead Vox: battery 1/5 bars"),
    ]


# ---------------------------------------------------------------------------------------------- dashboard


def ha_slug(text: str) -> str:
    """Home Assistant's slugify for ASCII names (python-slugify with ``_``)."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "unknown"


@dataclass
class FakeHomeAssistant:
    """Device and entity registry plus states, built from micboardd's discovery configs as HA would.

    Entity ids as ``reference/integrations.md`` §8 found them: Home Assistant 2026.11 takes a
    component's ``default_entity_id``; 2025.4 ignores it (``honours_default_entity_id=False``) and,
    like both without one, builds the id from the device name and the entity name.
    """

    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    entities: dict[str, dict[str, Any]] = field(default_factory=dict)  # entity_id → device, state, attributes
    honours_default_entity_id: bool = True

    def discover(self, site: Site) -> None:
        retained = site.retained
        env = sandbox()
        prefix = site.topics.discovery_prefix + "/"
        for topic, raw in sorted(retained.items()):
            if not topic.startswith(prefix):
                continue
            cfg = json.loads(raw)
            dev_id = f"dev{len(self.devices) + 1}"
            self.devices[dev_id] = {"identifiers": {("mqtt", i) for i in cfg["dev"]["ids"]}, "name": cfg["dev"]["name"],
                                    "name_by_user": None}
            available = all(retained.get(a["t"]) == b"online" for a in cfg["avty"])
            for comp in cfg["cmps"].values():
                entity_id = comp.get("default_entity_id") if self.honours_default_entity_id else None
                entity_id = entity_id or f"{comp['p']}.{ha_slug(cfg['dev']['name'] + ' ' + comp['name'])}"
                while entity_id in self.entities:
                    entity_id += "_2"
                state: str | None = None
                if comp.get("en", True):
                    state = "unavailable" if not available else "unknown"
                    if available and comp.get("stat_t") in retained and "val_tpl" in comp:
                        value = env.from_string(comp["val_tpl"]).render(value_json=json.loads(retained[comp["stat_t"]]))
                        state = {"None": "unknown", "ON": "on", "OFF": "off"}.get(value, value)
                        if comp["p"] in ("binary_sensor", "switch") and state not in ("on", "off"):
                            state = "unknown"
                attrs = {"device_class": comp.get("dev_cla"), "unit_of_measurement": comp.get("unit_of_meas"),
                         "state_class": comp.get("stat_cla"), "options": comp.get("ops")}
                self.entities[entity_id] = {"device": dev_id, "state": state,
                                            "attributes": {k: v for k, v in attrs.items() if v is not None}}

    def render(self, template: str) -> str:
        env = sandbox()

        def device_id(entity_id: str) -> str | None:
            e = self.entities.get(entity_id)
            return None if e is None else str(e["device"])

        def device_attr(device_or_entity: str, attr: str) -> Any:
            if not isinstance(device_or_entity, str):
                raise TypeError("Must provide a device or entity ID")  # as HA's TemplateError
            dev = self.devices.get(device_id(device_or_entity) or "" if "." in device_or_entity else device_or_entity)
            return None if dev is None else dev.get(attr)

        def state_attr(entity_id: str, attr: str) -> Any:
            e = self.entities.get(entity_id)
            return None if e is None or e["state"] is None else e["attributes"].get(attr)

        def states(entity_id: str) -> str:
            e = self.entities.get(entity_id)
            return "unknown" if e is None or e["state"] is None else str(e["state"])

        env.globals.update(
            integration_entities=lambda integration: list(self.entities) if integration == "mqtt" else [],
            device_id=device_id, device_attr=device_attr, state_attr=state_attr, states=states,
            device_entities=lambda dev: [k for k, e in self.entities.items() if e["device"] == dev],
        )
        env.filters["device_id"] = device_id
        return str(env.from_string(template).render())


def dashboard_sites() -> tuple[Site, Site]:
    main = Site()
    main.publish(main.topics.status, b"online")
    main.receiver("rack1", "Rack 1")
    main.apply(ChannelUpdate("rack1", 1, {"name": "Lead Vox", "frequency_khz": 594075},
                             tx={"present": True, "battery_bars": 4, "battery_percent": 80, "runtime_minutes": 312}))
    main.apply(ChannelUpdate("rack1", 2, {}, tx={"present": False}))
    main.apply(ChannelUpdate("rack1", 10, {"name": "Gtr | DI"}, tx={"present": True, "battery_bars": 1}))
    main.receiver("rack2", "Rack 2")
    main.apply(ChannelUpdate("rack2", 1, {"name": "Choir"}, tx={"present": True, "battery_bars": 5}))
    main.apply(DeviceUpdate("rack2", {"state": ConnState.OFFLINE}))
    north = Site("north")
    north.publish(north.topics.status, b"online")
    north.receiver("rack1", "North rack")
    north.apply(ChannelUpdate("rack1", 1, {"name": "Elsewhere"}, tx={"present": True}))
    return main, north


def test_dashboard_uses_stock_cards_only() -> None:
    dash = load_ha_yaml(DASHBOARD)
    assert dash["views"]
    cards = [c for v in dash["views"] for c in v["cards"]]
    assert {c["type"] for c in cards} <= {"markdown", "entities", "history-graph", "tile", "glance"}


def test_dashboard_board_lists_every_channel_of_the_site_from_discovery() -> None:
    main, north = dashboard_sites()
    ha = FakeHomeAssistant()
    ha.discover(main)
    ha.discover(north)
    board = next(c for v in load_ha_yaml(DASHBOARD)["views"] for c in v["cards"] if c["type"] == "markdown")
    rendered = ha.render(board["content"])
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in rendered.splitlines() if line.startswith("|")]
    assert rows[0] == ["", "Channel", "Receiver/ch", "Transmitter", "Battery", "Runtime"]
    body = rows[2:]
    assert [r[2] for r in body] == ["rack1/1", "rack1/2", "rack1/10", "rack2/1"], rendered  # natural order, one site
    assert body[0] == ["", "**Lead Vox**", "rack1/1", "on", "▮▮▮▮▯ 80 %", "5:12"]
    assert body[1] == ["⚠️", "**Rack 1 ch2**", "rack1/2", "off", "", ""]
    assert body[2] == ["⚠️", "**Gtr / DI**", "rack1/10", "on", "▮▯▯▯▯ **LOW**", ""]
    assert body[3][0] == "⚠️" and body[3][3] == "offline"


def test_dashboard_board_explains_an_empty_site() -> None:
    board = next(c for v in load_ha_yaml(DASHBOARD)["views"] for c in v["cards"] if c["type"] == "markdown")
    assert "No micboardd channels for site **main**" in FakeHomeAssistant().render(board["content"])


def test_dashboard_example_entity_ids_are_the_stable_ids_micboardd_sets() -> None:
    main, _ = dashboard_sites()
    ha = FakeHomeAssistant()
    ha.discover(main)
    dash = load_ha_yaml(DASHBOARD)
    examples = [e["entity"] for v in dash["views"] for c in v["cards"] if c["type"] != "markdown"
                for e in c.get("entities", [])]
    assert examples and all(e.split(".")[1].startswith("micboard_main_rack1_1_") for e in examples)
    assert set(examples) <= set(ha.entities), set(examples) - set(ha.entities)
    # They follow config (site, device id, channel), never a name: renaming the channel changes none.
    main.apply(ChannelUpdate("rack1", 1, {"name": "Choir"}))
    renamed = FakeHomeAssistant()
    renamed.discover(main)
    assert set(renamed.entities) == set(ha.entities)
    # The ids the README promises, for the receiver and an unnamed channel too.
    assert {"sensor.micboard_main_rack1_2_battery", "binary_sensor.micboard_main_rack1_2_battery_low",
            "sensor.micboard_main_rack1_connection", "sensor.micboard_main_rack1_10_runtime"} <= set(ha.entities)


def test_without_default_entity_id_support_ids_come_from_names() -> None:
    """Home Assistant before 2025.10 ignores default_entity_id: the README's fallback naming."""
    main, _ = dashboard_sites()
    old = FakeHomeAssistant(honours_default_entity_id=False)
    old.discover(main)
    assert {"sensor.lead_vox_battery", "sensor.rack_1_ch2_battery", "binary_sensor.rack_1_ch2_battery_low",
            "sensor.rack_1_connection"} <= set(old.entities)
    # The board finds channels through the device registry, not entity ids: the same rows either way.
    board = next(c for v in load_ha_yaml(DASHBOARD)["views"] for c in v["cards"] if c["type"] == "markdown")
    new = FakeHomeAssistant()
    new.discover(main)
    assert old.render(board["content"]) == new.render(board["content"])


def test_readme_names_only_entity_ids_discovery_creates() -> None:
    main, _ = dashboard_sites()
    main.receiver("ulxd4q-1", "ULX-D quad")
    main.apply(ChannelUpdate("ulxd4q-1", 3, {"name": "Keys"}))
    ha = FakeHomeAssistant()
    ha.discover(main)  # with every command class on: identify, rename and mute entities too
    text = HA_README.read_text(encoding="utf-8")
    named = set(re.findall(r"\b((?:sensor|binary_sensor|button|text|switch)\.micboard_[a-z0-9_]+)\b", text))
    assert len(named) >= 15
    assert named <= set(ha.entities), sorted(named - set(ha.entities))

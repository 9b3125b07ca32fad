"""extension/src/c2pa-client.js under node, with a stand-in for the C2PA worker: offline settings, remote
manifests, and a reader that never answers (it is ended, and every read it held answers unavailable)."""

from __future__ import annotations

from pathlib import Path

from helpers import node_json

CLIENT_JS = Path(__file__).resolve().parents[1] / "extension" / "src" / "c2pa-client.js"
# A worker that answers initWorker, fails files named "remote" as c2pa-rs does when it may not fetch, and
# never answers the others; each read's settings and every worker started or ended are recorded.
DRIVER = """
const log = { started: 0, ended: 0, settings: [] };
globalThis.chrome = { runtime: { getURL: (path) => `chrome-extension://test/${path}` } };
globalThis.fetch = async () => new Response(new Uint8Array());
WebAssembly.compileStreaming = async () => ({});
globalThis.Worker = class {
  constructor() { log.started += 1; this.listeners = []; }
  addEventListener(type, listener) { this.listeners.push(listener); }
  terminate() { log.ended += 1; }
  postMessage({ method, args, id, channelName }) {
    const answer = (data) => setTimeout(() => this.listeners.forEach((listener) => listener({ data })), 0);
    if (method === 'initWorker') {
      answer({ id, channelName, result: null });
    } else if (method === 'reader_fromBlob') {
      log.settings.push(JSON.parse(args[2]));
      if (args[1].type === 'image/png') {
        answer({ id, channelName, error: new Error('C2pa(RemoteManifestUrl("http://127.0.0.1:9/m.c2pa"))') });
      }
    }
  }
};
const { readC2pa } = await import(%r);
const bytes = new Uint8Array([0xff, 0xd8, 0x6a, 0x75, 0x6d, 0x62]);
const remote = await readC2pa(bytes, 'image/png', null);
const [stuck, queued] = await Promise.all([readC2pa(bytes, 'image/jpeg', null), readC2pa(bytes, 'image/jpeg', null)]);
const after = await readC2pa(bytes, 'image/png', null);
process.stdout.write(JSON.stringify({ remote, stuck, queued, after, log }));
"""


def test_the_c2pa_client_reads_offline_and_ends_a_stuck_reader():
    out = node_json(DRIVER % CLIENT_JS.as_uri())
    for settings in out["log"]["settings"]:
        assert settings["verify"]["remote_manifest_fetch"] is False and settings["verify"]["ocsp_fetch"] is False
        assert settings["core"]["allowed_network_hosts"] == []
    assert out["remote"]["validation"] == "remote"
    # The read past its time ends the worker; the one it held up is not read either: neither is "broken".
    assert out["stuck"]["validation"] == out["queued"]["validation"] == "unavailable"
    assert out["stuck"]["problems"][0].startswith("timeout") and out["queued"]["problems"][0].startswith("busy")
    # The next read starts a fresh worker.
    assert out["after"]["validation"] == "remote" and out["log"]["started"] == 2 and out["log"]["ended"] == 1

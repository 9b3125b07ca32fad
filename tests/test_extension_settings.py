"""The extension's settings (extension/src/settings.js) under node: the API key goes to its own server only."""

from __future__ import annotations

from pathlib import Path

from helpers import node_json

SETTINGS_JS = Path(__file__).resolve().parents[1] / "extension" / "src" / "settings.js"
DRIVER = """
import { checkedSettings, serviceHeaders } from %r;
const form = { localOnly: false, serverUrl: 'https://aiface.example.org/', maxLocalMegapixels: '16' };
const saved = checkedSettings({ ...form, apiKey: ' s3cret-key ' }).settings;
process.stdout.write(JSON.stringify({
  saved,
  same: serviceHeaders(saved, 'https://aiface.example.org'),
  other: serviceHeaders({ ...saved, serverUrl: 'https://elsewhere.example.com' }, 'https://elsewhere.example.com'),
  port: serviceHeaders(saved, 'https://aiface.example.org:8443'),
  none: serviceHeaders(checkedSettings(form).settings, 'https://aiface.example.org'),
  noServer: checkedSettings({ ...form, serverUrl: '', apiKey: 'k' }).problem,
  spaces: checkedSettings({ ...form, apiKey: 'two words' }).problem,
}));
"""


def test_the_api_key_is_sent_only_to_the_origin_it_was_saved_for():
    out = node_json(DRIVER % SETTINGS_JS.as_uri())
    assert out["saved"]["apiKey"] == "s3cret-key" and out["saved"]["apiKeyOrigin"] == "https://aiface.example.org"
    assert out["same"] == {"Authorization": "Bearer s3cret-key"}
    assert out["other"] == {} and out["port"] == {} and out["none"] == {}
    assert "set its URL first" in out["noServer"] and "without spaces" in out["spaces"]

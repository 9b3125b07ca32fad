"""SavedModel export for TensorFlow Serving, and the service forwarding inference to it.

TF Serving itself cannot be installed here, so a stub on loopback speaks its
REST API and answers with the exported SavedModel's own predictions.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from helpers import TINY_SIZE, encode, face_like
from server import StartupError, create_app
from server.errors import BACKEND_MESSAGE
from training.export_savedmodel import export_savedmodel
from training.export_savedmodel import main as export_main

MODEL_URL_PATH = "/v1/models/aiface"


@pytest.fixture(scope="module")
def export_dir(tiny_model_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("tfserving") / "aiface"
    export_savedmodel(tiny_model_path, out)
    return out


class StubTFServing:
    """TF Serving's REST predict and status endpoints, answered by the SavedModel."""

    def __init__(self, saved_model_dir, reply_status: int = 200):
        signature = tf.saved_model.load(str(saved_model_dir), tags=["serve"]).signatures["serving_default"]
        self.requests: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path != MODEL_URL_PATH:
                    return self._send(404, {"error": "no such model"})
                self._send(200, {"model_version_status": [{"version": "1", "state": "AVAILABLE"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append(body)
                if self.path != MODEL_URL_PATH + ":predict" or reply_status != 200:
                    return self._send(reply_status if reply_status != 200 else 404, {"error": "failed"})
                image = tf.constant(body["instances"], tf.float32)
                outputs = signature(image=image)["probabilities"].numpy()
                self._send(200, {"predictions": outputs.tolist()})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{MODEL_URL_PATH}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def stub(export_dir):
    server = StubTFServing(export_dir / "1")
    yield server
    server.close()


def tfserving_app(export_dir, url: str, **settings):
    return create_app(
        {"MODEL_PATH": str(export_dir), "MODEL_BACKEND": "tfserving", "TFSERVING_URL": url,
         "TFSERVING_TIMEOUT_S": 10, **settings}
    )


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{MODEL_URL_PATH}"


def test_export_has_the_serving_signature(export_dir, tiny_model_path):
    assert sorted(p.name for p in export_dir.iterdir()) == ["1", "metadata.json"]
    signature = tf.saved_model.load(str(export_dir / "1"), tags=["serve"]).signatures["serving_default"]
    (inputs,) = signature.structured_input_signature[1].values()
    assert inputs.name == "image" and inputs.dtype == tf.float32
    assert inputs.shape.as_list() == [None, TINY_SIZE, TINY_SIZE, 3]
    assert list(signature.structured_outputs) == ["probabilities"]
    assert json.loads((export_dir / "metadata.json").read_text())["name"] == "tiny-test"


def test_export_refuses_to_replace_a_version_without_overwrite(export_dir, tiny_model_path, capsys):
    assert export_main([str(tiny_model_path), str(export_dir)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_forwarded_inference_scores_like_the_local_model(export_dir, stub, tiny_model_path, fmt):
    image = encode(face_like(21, size=64), fmt)
    local = create_app({"MODEL_PATH": str(tiny_model_path)}).test_client()
    remote = tfserving_app(export_dir, stub.url).test_client()
    expected = local.post("/v1/detect", data=image, content_type="image/png").json
    response = remote.post("/v1/detect", data=image, content_type="image/png")
    assert response.status_code == 200, response.json
    assert response.json["probability_fake"] == pytest.approx(expected["probability_fake"], abs=1e-5)
    assert response.json["label"] == expected["label"]
    assert response.json["model"] == expected["model"]
    request = stub.requests[-1]
    assert request["signature_name"] == "serving_default"
    assert np.asarray(request["instances"]).shape == (1, TINY_SIZE, TINY_SIZE, 3)


def test_batch_upload_images_are_scored_one_by_one(export_dir, stub):
    # One decoded image at a time (issue 13): a :predict call per image, in upload order.
    client = tfserving_app(export_dir, stub.url, FACE_DETECTION=False).test_client()
    before = len(stub.requests)
    files = [(io.BytesIO(encode(face_like(seed))), f"{seed}.png") for seed in range(3)]
    response = client.post("/v1/detect/batch", data={"image": files})
    assert response.status_code == 200
    assert len(response.json["results"]) == 3
    assert [len(request["instances"]) for request in stub.requests[before:]] == [1, 1, 1]


def test_healthz_follows_tfserving(export_dir, stub):
    assert tfserving_app(export_dir, stub.url).test_client().get("/healthz").status_code == 200
    url = closed_port_url()
    down = tfserving_app(export_dir, url).test_client().get("/healthz")
    assert down.status_code == 503
    # The backend's address is the operator's business, not the client's.
    assert down.json["error"]["message"] == "TensorFlow Serving has no version of the model available"
    assert "127.0.0.1" not in down.get_data(as_text=True)


def test_tfserving_down_is_a_503_that_logs_the_cause_and_tells_clients_no_more(export_dir, caplog):
    url = closed_port_url()
    client = tfserving_app(export_dir, url).test_client()
    response = client.post("/v1/detect", data=encode(face_like(1)), content_type="image/png")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json["error"] == {"code": "backend_unavailable", "message": BACKEND_MESSAGE}
    assert f"TensorFlow Serving at {url} is unreachable" in caplog.text


SERVE_WITHOUT_KERAS = """
import sys
from server import create_app
app = create_app({"MODEL_PATH": sys.argv[1], "MODEL_BACKEND": "tfserving", "TFSERVING_URL": sys.argv[2],
                  "TFSERVING_TIMEOUT_S": 10, "FACE_DETECTION": False})
status = app.test_client().post("/v1/detect", data=sys.stdin.buffer.read(), content_type="image/png").status_code
print(status, sorted({"keras", "tensorflow", "matplotlib", "training"} & set(sys.modules)))
"""


@pytest.mark.process
def test_tfserving_mode_loads_neither_keras_nor_the_training_package(export_dir):
    # The service imports only the core (aiface); with the model on TF Serving
    # (and no face finder, whose MTCNN runs on TensorFlow) nothing heavy is loaded.
    result = subprocess.run(
        [sys.executable, "-c", SERVE_WITHOUT_KERAS, str(export_dir), closed_port_url()],
        input=encode(face_like(1)), capture_output=True, cwd=Path(__file__).resolve().parent.parent, timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().split() == ["503", "[]"]


def test_tfserving_error_is_a_503_with_its_status_in_the_log(export_dir, caplog):
    failing = StubTFServing(export_dir / "1", reply_status=500)
    try:
        client = tfserving_app(export_dir, failing.url, MICRO_BATCHING=False).test_client()
        response = client.post("/v1/detect", data=encode(face_like(1)), content_type="image/png")
    finally:
        failing.close()
    assert response.status_code == 503
    assert response.json["error"] == {"code": "backend_unavailable", "message": BACKEND_MESSAGE}
    assert "answered 500" in caplog.text


def test_bad_image_never_reaches_tfserving(export_dir, stub):
    before = len(stub.requests)
    response = tfserving_app(export_dir, stub.url).test_client().post(
        "/v1/detect", data=b"\x89PNG\r\n\x1a\n broken", content_type="image/png"
    )
    assert response.status_code == 400
    assert len(stub.requests) == before


def test_tfserving_without_url_stops_start_up(export_dir):
    with pytest.raises(StartupError, match="MODEL_BACKEND=tfserving needs TFSERVING_URL"):
        tfserving_app(export_dir, "")


def test_unknown_backend_stops_start_up(tiny_model_path):
    with pytest.raises(StartupError, match="MODEL_BACKEND is 'onnx'"):
        create_app({"MODEL_PATH": str(tiny_model_path), "MODEL_BACKEND": "onnx"})


def test_tfserving_without_metadata_stops_start_up(tmp_path, stub):
    with pytest.raises(StartupError, match="metadata .*metadata.json does not exist"):
        tfserving_app(tmp_path, stub.url)

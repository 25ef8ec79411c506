"""The demo served for real on localhost and driven through its API with gradio_client."""
import socket
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

LOOPBACK = ("127.0.0.1", "::1", "localhost")
pytestmark = [  # Gradio's queue uses pandas options that pandas 3 deprecates; not ours to fix
    pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting'"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(zoo_root, tmp_path_factory):
    """(demo, client, outbound): the demo launched as ``mmlab demo`` launches it, a client, and
    every non-loopback address anything in this process tried to reach while it ran."""
    from gradio_client import Client

    import mmlab.demo

    outbound = []
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(sock, address):
        if isinstance(address, tuple) and address[0] not in LOOPBACK:
            outbound.append(address)
            raise OSError(f"the demo must run offline; tried {address}")
        return real_connect(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if host not in LOOPBACK and host is not None:
            outbound.append(host)
        return real_getaddrinfo(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", connect)
        mp.setattr(socket, "getaddrinfo", getaddrinfo)
        port = _free_port()
        demo = mmlab.demo.launch(port, zoo_root, block=False)
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False,
                            download_files=str(tmp_path_factory.mktemp("downloads")))
            yield demo, client, outbound
        finally:
            demo.close()


def _ask(client, image, text, token="(whole sentence)"):
    from gradio_client import handle_file

    return client.predict(handle_file(str(image)), text, "tiny", token, api_name="/predict")


def _check(result, classes):
    label, attention_file, mask_file, details, summary = result
    assert label["label"] in classes and details["label"] == label["label"]
    assert {c["label"] for c in label["confidences"]} == set(classes)
    assert np.asarray(details["attention"]).shape == (16, 16)
    assert np.asarray(details["mask"]).shape == (64, 64)
    shown = Image.open(attention_file).size
    assert shown == Image.open(mask_file).size and max(shown) == 384
    return details


def test_served_offline_with_one_named_endpoint(served):
    demo, client, outbound = served
    assert list(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == ["/predict"]
    assert demo.analytics_enabled is False and demo.share is False
    import re

    import httpx

    page = httpx.get(demo.local_url).text  # the browser loads nothing from outside either
    assert "mmlab demo" in page and re.findall(r'(?:src|href)="(https?://[^"]+)"', page) == []
    assert outbound == []


def test_predict_endpoint(served, classes, examples, scenes):
    _, client, outbound = served
    path, sentence = scenes[0]
    details = _check(_ask(client, path, sentence), classes)
    assert details["tokens"] == sentence.split()
    rocket = next(p for p, _ in examples if p.endswith("rocket.png"))  # 640 x 427
    label, attention_file, *_ = _ask(client, rocket, "the rocket on the launch pad", "rocket")
    assert Image.open(attention_file).size == (384, 256)
    assert outbound == []


def test_eight_concurrent_requests_equal_sequential(served, classes, examples, scenes):
    _, client, _ = served
    jobs = [(scenes[i % len(scenes)][0], f"{scenes[i % len(scenes)][1]} {'left' if i % 2 else 'below'}")
            for i in range(8)]
    sequential = [_check(_ask(client, p, t), classes) for p, t in jobs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(lambda job: _check(_ask(client, *job), classes), jobs))
    for seq, con in zip(sequential, concurrent):
        assert con["label"] == seq["label"] and con["tokens"] == seq["tokens"]
        np.testing.assert_allclose(list(con["probabilities"].values()), list(seq["probabilities"].values()), atol=1e-4)
        np.testing.assert_allclose(con["mask"], seq["mask"], atol=2e-3)
        np.testing.assert_allclose(con["attention"], seq["attention"], atol=2e-4)


def test_bad_uploads_are_errors_and_the_server_keeps_serving(served, classes, examples, scenes, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    _, client, _ = served
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"%PDF-1.4 definitely not a picture")
    with pytest.raises(AppError, match="not a readable image|format PDF not allowed") as err:
        _ask(client, junk, "the red circle")
    assert "Traceback" not in str(err.value)
    with pytest.raises(AppError, match="text is empty"):
        _ask(client, scenes[0][0], "   ")
    with pytest.raises(AppError, match="no checkpoint named"):
        client.predict(handle_file(scenes[0][0]), "the red circle", "../etc", None, api_name="/predict")
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as f:
        f.truncate(21 * 1024 * 1024)  # above the 20 MB upload limit
    with pytest.raises(ValueError, match="maximum file size"):
        _ask(client, huge, "the red circle")
    _check(_ask(client, *scenes[2]), classes)  # still serving


def test_api_cannot_read_server_files(served, examples, scenes, tmp_path):
    """A raw API call naming a file on the server (not uploaded) is refused, even a real picture."""
    import httpx

    demo, client, _ = served
    picture = tmp_path / "private.png"
    Image.open(scenes[0][0]).save(picture)
    call = f"{demo.local_url}gradio_api/call/predict"
    for payload in ({"path": str(picture), "meta": {"_type": "gradio.FileData"}},
                    {"path": None, "url": "http://10.255.255.1/x.png", "meta": {"_type": "gradio.FileData"}}):
        event = httpx.post(call, json={"data": [payload, "the red circle", "tiny", None]}).json()["event_id"]
        reply = httpx.get(f"{call}/{event}", timeout=60).text
        assert reply.startswith("event: error") and "confidences" not in reply


def test_api_payload_without_upload_metadata_cannot_read_server_files(served, examples, scenes, tmp_path):
    """A payload with a bare path skips Gradio's own "was this uploaded?" check (the handler takes the
    raw payload): the handler refuses it, with one message whatever the file, so nothing leaks."""
    import httpx

    demo, _, _ = served
    picture = tmp_path / "private.png"
    Image.open(scenes[0][0]).save(picture)
    call = f"{demo.local_url}gradio_api/call/predict"
    replies = set()
    for path in (str(picture), "docs/screenshots/home.png", "/root/.ssh/id_rsa", "/root", "/etc/shadow",
                 "/nonexistent.png"):
        event = httpx.post(call, json={"data": [{"path": path}, "the red circle", "tiny", None]}).json()["event_id"]
        reply = httpx.get(f"{call}/{event}", timeout=60).text
        assert reply.startswith("event: error") and "confidences" not in reply
        replies.add(reply.split("data:", 1)[1].strip())
    assert len(replies) == 1 and "must be uploaded" in replies.pop()

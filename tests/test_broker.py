"""The embedded broker never hands a reader half a message (stock kombu can)."""

import threading

from kombu import Connection

import portal  # noqa: F401  (installs the atomic filesystem transport)


def test_reader_racing_writer_gets_only_whole_messages(tmp_path):
    folder = tmp_path / "q"
    folder.mkdir()
    opts = {"data_folder_in": str(folder), "data_folder_out": str(folder), "control_folder": str(tmp_path), "polling_interval": 0.001}
    big = "x" * 200_000  # large enough that a non-atomic write is observable mid-way
    total = 300
    received, errors = [], []

    def reader():
        with Connection("filesystem://", transport_options=opts) as conn:
            q = conn.SimpleQueue("race")
            while len(received) < total:
                try:
                    msg = q.get(timeout=10)
                except Exception as exc:  # noqa: BLE001
                    errors.append(repr(exc))
                    return
                received.append(msg.payload["n"])
                assert msg.payload["pad"] == big
                msg.ack()

    t = threading.Thread(target=reader)
    t.start()
    with Connection("filesystem://", transport_options=opts) as conn:
        assert type(conn.transport).__module__ == "portal.broker"
        q = conn.SimpleQueue("race")
        for n in range(total):
            q.put({"n": n, "pad": big})
    t.join(60)
    assert not errors, errors[:3]
    assert sorted(received) == list(range(total))

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

    written = threading.Event()

    def reader():
        # Waits for the condition, not a deadline: an empty poll is only a loss once every message is on
        # disk (a loaded machine can take any time to write 60 MB), and then the queue must hand them all out.
        empty_after_written = 0
        with Connection("filesystem://", transport_options=opts) as conn:
            q = conn.SimpleQueue("race")
            while len(received) < total:
                try:
                    msg = q.get(timeout=1)
                except q.Empty:
                    if written.is_set():
                        empty_after_written += 1
                        if empty_after_written >= 3:
                            errors.append(f"queue empty after all {total} were written; {len(received)} received")
                            return
                    continue
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
    written.set()
    t.join()
    assert not errors, errors[:3]
    assert sorted(received) == list(range(total))


def test_two_broker_folders_in_one_process_both_deliver(tmp_path):
    """A binding made for one folder must not stop the same binding being written for another."""
    got = []
    for name in ("first", "second"):
        folder = tmp_path / name
        (folder / "q").mkdir(parents=True)
        (folder / "c").mkdir()
        opts = {"data_folder_in": str(folder / "q"), "data_folder_out": str(folder / "q"),
                "control_folder": str(folder / "c"), "polling_interval": 0.01}
        with Connection("filesystem://", transport_options=opts) as conn:
            q = conn.SimpleQueue("default")
            q.put({"folder": name})
            msg = q.get(timeout=5)
            got.append(msg.payload["folder"])
            msg.ack()
        assert (folder / "c" / "default.exchange").exists()
    assert got == ["first", "second"]


def test_a_late_ack_after_redis_went_away_is_a_connection_error_not_a_dead_worker(redis_url):
    """kombu tears a lost connection down; the ack that follows must fail as a connection error (which
    Celery logs and survives), not as AttributeError (which ends the worker process)."""
    import redis

    with Connection(redis_url) as conn:
        assert type(conn.transport).__module__ == "portal.broker"
        channel = conn.default_channel
        qos = channel.qos
        # What kombu leaves after the connection is lost: the transport's client and the channel's pool gone.
        conn.transport.client, channel._pool = None, None
        try:
            qos.ack("a-delivery-tag")
        except redis.exceptions.ConnectionError as exc:
            assert "delivered again" in str(exc)
        else:
            raise AssertionError("the ack on a torn-down connection did not fail")
        try:
            qos.reject("a-delivery-tag")
        except redis.exceptions.ConnectionError:
            pass
        else:
            raise AssertionError("the reject on a torn-down connection did not fail")
        qos._delivered["a-delivery-tag"] = object()  # a message taken and not yet acknowledged
        assert qos.restore_unacked() == [] and not qos._delivered  # closing goes on; Redis keeps the message
        conn.transport.client = conn  # so that closing the connection works

from conveyor.config import Settings
from conveyor.control import task_queue
from conveyor.runtime.app import PatternRouter, create_celery


def test_pattern_router_first_match_wins() -> None:
    router = PatternRouter({"reports.*": "low", "reports.urgent": "critical", "pay.*": "high"})
    assert router("reports.urgent", (), {}, {}) == {"queue": "low", "routing_key": "low"}
    assert router("pay.charge", (), {}, {})["queue"] == "high"
    assert router("other", (), {}, {}) is None


def test_tasks_route_by_name_pattern_and_default_queue() -> None:
    settings = Settings(broker_url="redis://127.0.0.1:1/0", routes={"reports.*": "low"})
    app = create_celery("routing-test", settings)

    @app.task(name="reports.daily")
    def daily() -> None: ...

    @app.task(name="mail.send")
    def send() -> None: ...

    assert task_queue(app, "reports.daily") == "low"
    assert task_queue(app, "mail.send") == "default"


def test_custom_queue_names_keep_priority_order() -> None:
    settings = Settings(queues=["urgent", "normal", "bulk"])
    app = create_celery("queues-test", settings)
    assert [q.name for q in app.conf.task_queues] == ["urgent", "normal", "bulk"]
    assert app.conf.task_default_queue == "bulk"
    assert Settings(queues=["a", "b", "c"], default_queue="b").task_default_queue == "b"

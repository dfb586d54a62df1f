from .conftest import DOUBLE, KEY


def test_smoke(live):
    with live.client() as c:
        assert c.health().status == "ok"
        job = c.start_job("double", {"x": 3})
        job = c.wait_job(job.job_id, timeout=10)
        assert job.status == "completed"
        assert c.job_state(job.job_id)["shared_data"]["out"] == [{"y": 3, "x": 3}]
        print(c.trace(job.job_id))
        print(c.get_flow("double"))
        print(c.export_flow("double", "yaml"))
        print(c.export_flow("double", "mermaid"))

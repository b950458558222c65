from django.apps import AppConfig


class CloudConfig(AppConfig):
    name = "portal.cloud"
    label = "cloud"

    def ready(self) -> None:
        # Worker processes build their AWS clients when they start: each prefork child, and the thread
        # pool's one process.
        from celery.signals import worker_process_init, worker_ready

        from portal.cloud.clients import warm_worker

        worker_process_init.connect(warm_worker, weak=False)
        worker_ready.connect(warm_worker, weak=False)
